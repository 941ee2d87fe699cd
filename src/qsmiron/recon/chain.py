"""All reconstruction stages in order, on arrays: magnitude and phase in, susceptibility out.

The chain is a loop over ``qsmiron.recon.stages.RECON_STAGES`` (phase scaling, brain mask,
R2* mapping, unwrapping, echo fit, mask refinement, background field removal, dipole
inversion, chi-separation, referencing): each runs the method the settings choose and leaves a
``qsmiron.records.StepInfo`` (method, the parameters actually used, seconds, notes) for the
file-level pipeline to write into ``recon.json``. Pure: no files, no printing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from qsmiron.errors import InputError
from qsmiron.records.base import StepInfo
from qsmiron.records.acquisition import ReadoutInfo
from qsmiron.records.relaxometry import ChiSeparationInfo, R2starInfo
from qsmiron.recon.chisep import ChiSeparation
from qsmiron.recon.r2star import R2starFit
from qsmiron.recon.settings import ReconSettings, check_total_field_pairing
from qsmiron.recon.stages import RECON_STAGES, ReconState, ppm_per_hz, run_stages

__all__ = ["ReconResult", "reconstruct_arrays", "ppm_per_hz", "STEP_NAMES"]

STEP_NAMES = tuple(stage.name for stage in RECON_STAGES)
"""The steps recorded in ``ReconResult.steps``, in order (the recon.json vocabulary)."""


@dataclass
class ReconResult:
    """What ``reconstruct_arrays`` returns.

    Attributes
    ----------
    chi_ppm : ndarray, shape (X, Y, Z), float32
        Susceptibility, ppm, referenced (whole-brain mean by default), zero outside ``mask``.
    mask : ndarray of bool, shape (X, Y, Z)
        Where ``chi_ppm`` and ``local_ppm`` are valid (the brain mask after the erosion of
        background field removal).
    field_hz : ndarray, shape (X, Y, Z), float32
        Total field, Hz, zero outside ``field_mask``.
    local_ppm : ndarray, shape (X, Y, Z), float32
        Local field, ppm of B0, zero outside ``mask``.
    noise_hz : ndarray, shape (X, Y, Z), float32
        Standard deviation of the total field from the echo fit, Hz.
    steps : list of StepInfo
        One record per stage, in order.
    field_mask : ndarray of bool
        The mask of the total field (before the erosion of background removal).
    readout_info : ReadoutInfo or None
        The readout polarity found in the phase (``qsmiron.recon.bipolar``).
    r2star : R2starFit or None
        R2* (s^-1), T2* (s), S0 and the valid-fit mask over the brain mask; None when not
        mapped (``r2star_info.skipped`` says why).
    separation : ChiSeparation or None
        Paramagnetic and diamagnetic susceptibility (ppm, magnitudes) over ``mask``; None
        when not made (``chisep_info.skipped`` says why).
    """

    chi_ppm: np.ndarray
    mask: np.ndarray
    field_hz: np.ndarray
    local_ppm: np.ndarray
    noise_hz: np.ndarray
    steps: list[StepInfo]
    field_mask: np.ndarray
    warnings: list[str] = field(default_factory=list)
    r2star: R2starFit | None = None
    r2star_info: R2starInfo | None = None
    readout_info: ReadoutInfo | None = None
    separation: ChiSeparation | None = None
    chisep_info: ChiSeparationInfo | None = None

    @property
    def seconds(self) -> float:
        """Total time of all steps, s."""
        return float(sum(step.seconds for step in self.steps))


def reconstruct_arrays(magnitude: np.ndarray, phase: np.ndarray,
                       voxel_size_mm: Sequence[float], b0_direction: Sequence[float],
                       echo_times_s: Sequence[float], field_strength_t: float, *,
                       settings: ReconSettings | None = None,
                       mask: np.ndarray | None = None,
                       reference_mask: np.ndarray | None = None,
                       brain_probability: np.ndarray | None = None,
                       brain_probability_notes: dict[str, Any] | None = None,
                       brain_probability_source: Callable[[], tuple[np.ndarray | None, dict[str, Any]]]
                       | None = None,
                       r2_per_s: np.ndarray | None = None) -> ReconResult:
    """Reconstruct a susceptibility map from multi-echo magnitude and raw phase.

    Parameters
    ----------
    magnitude : ndarray, shape (X, Y, Z, E)
        Magnitude, echoes last.
    phase : ndarray, shape (X, Y, Z, E)
        Phase as stored by the scanner (vendor integers or radians), echoes last.
    voxel_size_mm : sequence of 3 floats
    b0_direction : sequence of 3 floats
        Unit B0 vector in voxel axes.
    echo_times_s : sequence of float
        One per echo, seconds, increasing.
    field_strength_t : float
        B0, tesla.
    settings : ReconSettings, optional
        Methods and parameters of every stage (default: ``ReconSettings()``).
    mask : ndarray of bool, shape (X, Y, Z), optional
        A brain mask to use instead of the automatic one (not refined by phase quality).
    reference_mask : ndarray of bool, shape (X, Y, Z), optional
        The reference region when ``settings.reference.method == "mask"``.
    brain_probability : ndarray, shape (X, Y, Z), optional
        A template's brain on this grid (0..1, e.g. registered by
        ``qsmiron.register.brainmask``): the automatic mask is restricted to it
        (``recon.mask.restrict_to_template_brain``) unless the mask method's
        ``template_brain`` is off.
    brain_probability_notes : dict, optional
        How it was obtained (``seconds`` count in the mask step), or why there is none;
        recorded with the mask step.
    brain_probability_source : callable, optional
        Instead of the two above: a function returning both, called by the mask step once the
        magnitude mask is made (e.g. the result of a registration running in another thread,
        which then overlaps the stages before; the mask step's time includes only the wait).
    r2_per_s : ndarray, shape (X, Y, Z), optional
        A measured (spin-echo) R2 map, s^-1, for chi-separation (R2' = R2* - R2); checked
        against the R2* map right after it is fitted (``InputError`` with step
        ``qsmiron.recon.stages.R2_MAP_STEP`` when implausible).


    Returns
    -------
    ReconResult

    Raises
    ------
    InputError
        When a stage finds the data unusable (unrecognisable phase scaling, an empty mask);
        the error's ``step`` names the stage.
    """
    settings = ReconSettings() if settings is None else settings
    magnitude = np.asarray(magnitude, dtype=np.float32)
    if magnitude.ndim != 4 or np.shape(phase) != magnitude.shape:
        raise ValueError(f"magnitude and phase must both be (X, Y, Z, E); got "
                         f"{magnitude.shape} and {np.shape(phase)}")
    echo_times_s = tuple(float(t) for t in echo_times_s)
    if len(echo_times_s) != magnitude.shape[3]:
        raise ValueError(f"{len(echo_times_s)} echo times for {magnitude.shape[3]} echoes")
    if settings.reference.method == "mask" and reference_mask is None:
        raise InputError("reference method 'mask' needs a reference mask; recon takes none, so use "
                         "the whole-brain 'mean'", step="reference")
    check_total_field_pairing(settings)
    b0 = np.asarray(b0_direction, dtype=float)
    state = ReconState(voxel_size_mm=tuple(float(v) for v in voxel_size_mm), magnitude=magnitude, phase=phase,
                       b0_direction=b0 / np.linalg.norm(b0), echo_times_s=echo_times_s,
                       field_strength_t=float(field_strength_t), given_mask=mask,
                       reference_mask=None if reference_mask is None else np.asarray(reference_mask, bool),
                       brain_probability=brain_probability, brain_probability_notes=dict(brain_probability_notes or {}),
                       brain_probability_source=brain_probability_source,
                       r2_per_s=None if r2_per_s is None else np.asarray(r2_per_s, np.float32))
    steps = run_stages(state, settings)
    return ReconResult(chi_ppm=state.chi_ppm, mask=state.local_mask, field_hz=state.field_hz,
                       local_ppm=state.local_ppm, noise_hz=state.noise_hz, steps=steps,
                       field_mask=state.field_mask,
                       warnings=[warning for step in steps for warning in step.warnings],
                       r2star=state.r2star, r2star_info=state.r2star_info, readout_info=state.readout_info,
                       separation=state.separation,
                       chisep_info=state.chisep_info)
