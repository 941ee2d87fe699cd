"""Parameters of the reconstruction, one block per stage, with principled defaults.

Each block names the method (one of the stage's registry) and its parameters. Defaults
follow the QSM consensus recommendations (Magn Reson Med 2024;91:1834), not one dataset.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from qsmiron.settings_base import Settings


class PhaseSettings(Settings):
    scaling: Literal["auto", "radians", "integer"] = "auto"


class MaskSettings(Settings):
    method: Literal["magnitude"] = "magnitude"


class UnwrapSettings(Settings):
    method: Literal["romeo", "laplacian"] = "romeo"


class EchoFitSettings(Settings):
    pass


class BackgroundSettings(Settings):
    method: Literal["vsharp", "pdf", "resharp", "ismv"] = "vsharp"


class InversionSettings(Settings):
    method: str = "tv"


class ReferenceSettings(Settings):
    method: Literal["mean", "mask"] = "mean"


class ReconSettings(Settings):
    """All reconstruction parameters."""

    phase: PhaseSettings = Field(default_factory=PhaseSettings)
    mask: MaskSettings = Field(default_factory=MaskSettings)
    unwrap: UnwrapSettings = Field(default_factory=UnwrapSettings)
    echo_fit: EchoFitSettings = Field(default_factory=EchoFitSettings)
    background: BackgroundSettings = Field(default_factory=BackgroundSettings)
    inversion: InversionSettings = Field(default_factory=InversionSettings)
    reference: ReferenceSettings = Field(default_factory=ReferenceSettings)
