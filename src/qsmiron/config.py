"""The one configuration object: every parameter of a run, validated, written beside outputs.

A configuration file (TOML or JSON) holds any subset of the blocks below; what it leaves out
takes the defaults. Unknown keys are an error that names them. ``write_config`` writes the
full resolved configuration (defaults included) so that a result can be re-run exactly.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from pydantic import Field, ValidationError

from qsmiron.errors import InputError
from qsmiron.io.atomic import write_json_atomic
from qsmiron.pipeline.settings import PipelineSettings
from qsmiron.recon.settings import ReconSettings
from qsmiron.register.settings import RegistrationSettings
from qsmiron.roi.settings import RoiSettings
from qsmiron.settings_base import Settings

try:  # Python >= 3.11
    import tomllib
except ModuleNotFoundError:  # pragma: no cover - Python 3.10
    import tomli as tomllib


class QsmironConfig(Settings):
    """Every processing parameter of qsmiron (the study design lives in the study file)."""

    recon: ReconSettings = Field(default_factory=ReconSettings)
    registration: RegistrationSettings = Field(default_factory=RegistrationSettings)
    roi: RoiSettings = Field(default_factory=RoiSettings)
    pipeline: PipelineSettings = Field(default_factory=PipelineSettings)


def describe_validation_error(error: ValidationError) -> str:
    """One line listing each invalid or unknown key with pydantic's reason."""
    parts = []
    for item in error.errors():
        where = ".".join(str(part) for part in item.get("loc", ())) or "(top level)"
        if item.get("type") == "extra_forbidden":
            parts.append(f"unknown key '{where}'")
        else:
            parts.append(f"'{where}': {item.get('msg', 'invalid')}")
    return "; ".join(parts)


def read_settings_file(path: str | os.PathLike) -> dict[str, Any]:
    """Parse a TOML or JSON file into a dict, with a one-line error naming the file."""
    path = Path(path)
    if not path.exists():
        raise InputError("file not found", path)
    try:
        text = path.read_text(encoding="utf-8")
        if path.suffix.lower() == ".json":
            payload = json.loads(text)
        else:
            payload = tomllib.loads(text)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, tomllib.TOMLDecodeError) as exc:
        raise InputError(f"cannot be parsed ({exc})", path) from None
    if not isinstance(payload, dict):
        raise InputError("must hold a table of settings", path)
    return payload


def config_from_dict(payload: dict[str, Any], *, source: str | os.PathLike | None = None) -> QsmironConfig:
    try:
        return QsmironConfig.model_validate(payload)
    except ValidationError as exc:
        raise InputError(f"invalid configuration: {describe_validation_error(exc)}", source) from None


def load_config(path: str | os.PathLike | None = None) -> QsmironConfig:
    """The configuration from a TOML/JSON file, or the defaults when ``path`` is None.

    A file written by ``write_config`` (which records the qsmiron version beside the blocks)
    is accepted back as it is.
    """
    if path is None:
        return QsmironConfig()
    payload = read_settings_file(path)
    payload.pop("qsmiron_version", None)
    return config_from_dict(payload, source=path)


def config_to_dict(config: QsmironConfig) -> dict[str, Any]:
    from qsmiron import __version__

    return {"qsmiron_version": __version__, **config.model_dump(mode="json")}


def write_config(config: QsmironConfig, path: str | os.PathLike) -> Path:
    """Write the full resolved configuration as JSON (atomically)."""
    return write_json_atomic(path, config_to_dict(config))
