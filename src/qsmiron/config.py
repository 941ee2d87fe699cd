"""The one configuration object: every parameter of a run, validated, written beside outputs.

A configuration file (TOML or JSON) holds any subset of the blocks below; what it leaves out
takes the defaults. Unknown keys are an error that names them. ``write_config`` writes the
full resolved configuration (defaults included) so that a result can be re-run exactly.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pydantic import Field

from qsmiron.io.atomic import write_json_atomic
from qsmiron.pipeline.settings import PipelineSettings
from qsmiron.recon.settings import ReconSettings
from qsmiron.register.settings import RegistrationSettings
from qsmiron.roi.settings import RoiSettings
from qsmiron.settings_base import Settings, read_settings_file, validate_settings


class QsmironConfig(Settings):
    """Every processing parameter of qsmiron (the study design lives in the study file)."""

    recon: ReconSettings = Field(default_factory=ReconSettings)
    registration: RegistrationSettings = Field(default_factory=RegistrationSettings)
    roi: RoiSettings = Field(default_factory=RoiSettings)
    pipeline: PipelineSettings = Field(default_factory=PipelineSettings)


def config_from_dict(payload: dict[str, Any], *, source: str | os.PathLike | None = None) -> QsmironConfig:
    """The configuration validated from a dict; unknown and invalid keys are named."""
    return validate_settings(QsmironConfig, payload, what="configuration", source=source)


def load_config(path: str | os.PathLike | None = None) -> QsmironConfig:
    """The configuration from a TOML/JSON file, or the defaults when ``path`` is None.

    A file written by ``write_config`` (which records the qsmiron version beside the blocks)
    is accepted back as it is.
    """
    if path is None:
        return QsmironConfig()
    payload = read_settings_file(path, "settings file")
    payload.pop("qsmiron_version", None)
    return config_from_dict(payload, source=path)


def config_to_dict(config: QsmironConfig) -> dict[str, Any]:
    from qsmiron import __version__

    return {"qsmiron_version": __version__, **config.model_dump(mode="json")}


def write_config(config: QsmironConfig, path: str | os.PathLike) -> Path:
    """Write the full resolved configuration as JSON (atomically)."""
    return write_json_atomic(path, config_to_dict(config))
