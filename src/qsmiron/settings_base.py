"""The base of every settings model, and the one reader of settings files.

Settings blocks are validated, strict about unknown keys and JSON-able. Configuration files
(``qsmiron.config``) and study files (``qsmiron.stats.study``) are read by the same
``read_settings_file`` and their errors described by the same ``describe_validation_error``,
so both say the same thing about the same mistake.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from qsmiron.errors import InputError

try:  # Python >= 3.11
    import tomllib
except ModuleNotFoundError:  # pragma: no cover - Python 3.10
    import tomli as tomllib


class Settings(BaseModel):
    """A block of parameters: unknown keys are an error, values are validated on assignment.

    Every processing parameter of qsmiron lives in one of these blocks so that the full
    configuration can be written beside every output and any result re-run from it.
    """

    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=False)


SettingsModel = TypeVar("SettingsModel", bound=BaseModel)


def read_settings_file(path: str | os.PathLike, what: str = "settings file") -> dict[str, Any]:
    """Parse a TOML (or ``.json``) file into a dict, with a one-line error naming the file."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{what} not found", path)
    try:
        text = path.read_text(encoding="utf-8")
        payload = json.loads(text) if path.suffix.lower() == ".json" else tomllib.loads(text)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, tomllib.TOMLDecodeError) as exc:
        raise InputError(f"cannot be parsed ({exc})", path) from None
    if not isinstance(payload, dict):
        raise InputError("must hold a table of settings", path)
    return payload


def describe_validation_error(error: ValidationError) -> str:
    """One line naming every unknown key, then every invalid value with pydantic's reason."""
    unknown, invalid = [], []
    for item in error.errors():
        where = ".".join(str(part) for part in item.get("loc", ())) or "(top level)"
        if item.get("type") == "extra_forbidden":
            unknown.append(where)
        else:
            invalid.append(f"'{where}': {item.get('msg', 'invalid')}")
    parts = []
    if unknown:
        parts.append("unknown key(s) " + ", ".join(f"'{key}'" for key in unknown))
    parts.extend(invalid)
    return "; ".join(parts)


def validate_settings(model: type[SettingsModel], payload: dict[str, Any], *, what: str,
                      source: str | os.PathLike | None = None) -> SettingsModel:
    """``model`` validated from ``payload``; an ``InputError`` naming every bad key otherwise."""
    try:
        return model.model_validate(payload)
    except ValidationError as exc:
        raise InputError(f"invalid {what}: {describe_validation_error(exc)}", source) from None
