"""The reconstruction record (``recon.json``; ``sub-X_desc-recon_qsm.json`` in a run): inputs,
acquisition, every step, outputs, settings."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from qsmiron.config import QsmironConfig
from qsmiron.records.acquisition import Acquisition, ReadoutInfo
from qsmiron.records.base import SCHEMA_VERSION, Record, StepInfo, utc_now
from qsmiron.records.relaxometry import ChiSeparationInfo, R2starInfo


class MapUnits(Record):
    """The unit of each map a reconstruction writes (by its role in ``ReconPaths``)."""

    chimap: str = "ppm"
    fieldmap: str = "Hz"
    localfield: str = "ppm"
    mask: str = "binary"
    r2starmap: str = "s^-1"
    t2starmap: str = "s"
    s0map: str = "arbitrary (magnitude units)"
    r2star_mask: str = "binary"
    chimap_paramagnetic: str = "ppm"
    chimap_diamagnetic: str = "ppm"


class ReconInputs(Record):
    """The files a reconstruction read (absolute paths)."""

    magnitude: list[str]
    phase: list[str]
    mask: str | None = None
    r2: str | None = None
    """A measured R2 map for chi-separation."""


class ReconRecord(Record):
    """One reconstruction: written as ``recon.json`` beside the maps, read by the report.

    Attributes
    ----------
    steps : list of StepInfo
        One per stage of ``qsmiron.recon.stages.RECON_STAGES``, in order; the ``reference``
        step says what zero means.
    units : MapUnits
        The unit of each map.
    readout : ReadoutInfo or None
        The readout polarity read from the phase (None in records made before the check).
    r2star : R2starInfo or None
        How the R2*, T2* and S0 maps were made, or why not (None in records older than them).
    chi_separation : ChiSeparationInfo or None
        How the paramagnetic and diamagnetic maps were made (constants, whether R2' is an
        approximation), or why not.
    outputs : dict
        Output role -> file name (only the files written).
    config : QsmironConfig
        Every setting in force (re-run with it).
    """

    schema_version: int = SCHEMA_VERSION
    qsmiron_version: str
    created: str = Field(default_factory=utc_now)
    inputs: ReconInputs
    acquisition: Acquisition
    steps: list[StepInfo]
    units: MapUnits = Field(default_factory=MapUnits)
    readout: ReadoutInfo | None = None
    r2star: R2starInfo | None = None
    chi_separation: ChiSeparationInfo | None = None
    outputs: dict[str, str]
    mask_description: str
    seconds: float
    warnings: list[str] = Field(default_factory=list)
    config: QsmironConfig
    versions: dict[str, str | None]

    def step(self, name: str) -> StepInfo | None:
        """The record of stage ``name`` (None when that stage did not run)."""
        return next((step for step in self.steps if step.step == name), None)


class InversionRecord(Record):
    """A dipole inversion of a local field file (``qsmiron invert``): the sidecar's ``qsmiron``."""

    schema_version: int = SCHEMA_VERSION
    qsmiron_version: str
    created: str = Field(default_factory=utc_now)
    command: str = "invert"
    inputs: dict[str, str]
    """The files read: ``field``, ``mask`` and, when given, ``magnitude`` (absolute paths)."""
    command_line_parameters: dict[str, Any] = Field(default_factory=dict)
    """Method parameters given on the command line (``--param KEY=VALUE``), as validated; the
    inversion step's ``parameters`` hold every parameter used."""
    voxel_size_mm: list[float]
    b0_direction_voxel: list[float]
    steps: list[StepInfo]
    """The ``inversion`` and ``reference`` steps."""
    versions: dict[str, str | None]
