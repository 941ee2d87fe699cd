"""The configuration as a commented TOML file: what ``qsmiron config`` prints.

Every block and parameter with its value; each stage of the reconstruction lists its methods
with their one-line descriptions and each method's table names the publication it follows,
all read from the declarations (``qsmiron.recon.stages``). A parameter whose value is None
(the method decides from the data) is written as a comment, since TOML has no null; reading
the file back gives the same configuration.
"""

from __future__ import annotations

import json
import math
from typing import Any

from pydantic import BaseModel

from qsmiron.config import QsmironConfig


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    return json.dumps(str(value))


def _describe(model: BaseModel, name: str) -> str | None:
    field = type(model).model_fields.get(name)
    return None if field is None else field.description


def _table(path: str, model: BaseModel, comments: dict[str, list[str]], lines: list[str]) -> None:
    """Append ``[path]`` with the scalar fields of ``model``, then its sub-tables."""
    scalars, tables = [], []
    for name in type(model).model_fields:
        value = getattr(model, name)
        (tables if isinstance(value, BaseModel) else scalars).append((name, value))
    if scalars or path in comments:
        lines.append("")
        lines.extend(f"# {text}" for text in comments.get(path, []))
        lines.append(f"[{path}]")
    for name, value in scalars:
        description = _describe(model, name)
        if description and name != "method":
            lines.append(f"# {name}: {description}")
        if value is None:
            unset = "the method decides from the data" if path.startswith("recon.") else "see above"
            lines.append(f"# {name} = (not set: {unset})")
        else:
            lines.append(f"{name} = {_value(value)}")
    for name, value in tables:
        _table(f"{path}.{name}" if path else name, value, comments, lines)


def _stage_comments() -> dict[str, list[str]]:
    from qsmiron.recon.stages import RECON_STAGES

    comments: dict[str, list[str]] = {}
    for stage in RECON_STAGES:
        selectable = [m for m in stage.methods if m.selectable]
        comments[f"recon.{stage.name}"] = [f"{stage.label}: method = one of"] + [
            f"  {m.name}{' (default)' if m.name == stage.default else ''}: {m.description}" for m in selectable]
        for method in selectable:
            text = [f"{stage.name} method '{method.name}': {method.label}"]
            if method.reference:
                text.append(f"  {method.reference}")
            comments[f"recon.{stage.name}.{method.name}"] = text
    return comments


def config_to_toml(config: QsmironConfig) -> str:
    """``config`` as TOML, with the declared methods' descriptions and references as comments."""
    from qsmiron import __version__

    lines = [f"# qsmiron {__version__} configuration: every setting, with its value.",
             "# A file given with --config may hold any subset; unknown keys are an error."]
    _table("", config, _stage_comments(), lines)
    return "\n".join(lines).lstrip("\n") + "\n"
