"""Total field from multi-echo phase: unwrapping, echo fit, mask refinement by phase quality.

``total_field`` runs the three stages ``unwrap``, ``echo_fit`` and ``mask_refinement`` of
``qsmiron.recon.stages`` on wrapped phase in radians: the same code the full chain runs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from qsmiron.errors import InputError
from qsmiron.records.base import StepInfo
from qsmiron.recon.fill import marked_without_data, scaled_noise

__all__ = ["FieldMapResult", "total_field"]


@dataclass
class FieldMapResult:
    """The total field and what came with it.

    Attributes
    ----------
    field_hz : ndarray of float32, shape (X, Y, Z)
        Total field, Hz, 0 outside ``mask``.
    noise_hz : ndarray of float32, shape (X, Y, Z)
        Standard deviation of the field from the magnitude SNR, Hz, 0 outside ``mask``.
    mask : ndarray of bool, shape (X, Y, Z)
        The mask after refinement by phase quality (the input mask for a user mask).
    steps : list of StepInfo
        The ``unwrap``, ``echo_fit`` and ``mask_refinement`` records.
    misfit : ndarray of bool, shape (X, Y, Z), or None
        Voxels of ``mask`` whose phase the echo fit could not explain (``EchoFit.misfit``);
        ``data_noise_hz`` counts their field as unknown.
    misfit_factor : ndarray of float32, shape (X, Y, Z), or None
        The field's SD over the noise model's (``echofit.local_misfit_factor``), which
        ``inversion_noise_hz`` applies.
    """

    field_hz: np.ndarray
    noise_hz: np.ndarray
    mask: np.ndarray
    steps: list[StepInfo] = field(default_factory=list)
    misfit: np.ndarray | None = None
    misfit_factor: np.ndarray | None = None

    @property
    def inversion_noise_hz(self) -> np.ndarray:
        """``data_noise_hz`` times ``misfit_factor`` (``ReconState.inversion_noise_ppm``): the noise
        map to give the inversion."""
        return scaled_noise(self.data_noise_hz, self.misfit_factor)

    @property
    def data_noise_hz(self) -> np.ndarray:
        """``noise_hz`` with +inf (no usable field) on the misfit voxels: the noise map to
        give background removal and inversion."""
        return marked_without_data(self.noise_hz, self.misfit)

    def step(self, name: str) -> StepInfo:
        """The record of stage ``name``."""
        return next(step for step in self.steps if step.step == name)


def total_field(magnitude: np.ndarray, phase_rad: np.ndarray, mask: np.ndarray,
                voxel_size_mm: Sequence[float], echo_times_s: Sequence[float], *,
                settings=None, user_mask: bool = False,
                field_strength_t: float | None = None) -> FieldMapResult:
    """Check the readout polarity, unwrap the phase, fit the field over echoes and refine the
    mask by phase quality (the recon's stages from ``readout`` to ``mask_refinement``).

    Parameters
    ----------
    magnitude : ndarray, shape (X, Y, Z, E)
        Magnitude, any units, echoes last.
    phase_rad : ndarray, shape (X, Y, Z, E)
        Wrapped phase, rad (``qsmiron.recon.phase.phase_to_radians``).
    mask : ndarray of bool, shape (X, Y, Z)
        Brain mask (automatic from ``brain_mask``, or the user's).
    voxel_size_mm : 3 floats, mm
    echo_times_s : E floats, s, increasing
    settings : ReconSettings, optional
        Uses the ``readout``, ``unwrap``, ``echo_fit`` and ``mask_refinement`` blocks (defaults
        when None).
    user_mask : bool
        The mask came from the user: it is used as it is, never refined.
    field_strength_t : float, optional
        Tesla: the echo fit's misfit tolerance (ppm) needs it; without it, misfit voxels are
        judged by the chi-square test alone.

    Returns
    -------
    FieldMapResult

    Raises
    ------
    InputError
        An empty mask, or a mask from which the refinement leaves nothing.
    """
    from qsmiron.recon.settings import ReconSettings
    from qsmiron.recon.stages import ECHO_FIT, MASK_REFINEMENT, READOUT, UNWRAP, ReconState, run_stages

    settings = ReconSettings() if settings is None else settings
    phase = np.asarray(phase_rad, dtype=np.float32)
    if phase.ndim == 3:
        phase = phase[..., None]
    magnitude = np.asarray(magnitude, dtype=np.float32)
    if magnitude.ndim == 3:
        magnitude = magnitude[..., None]
    mask = np.asarray(mask, dtype=bool)
    if not mask.any():
        raise InputError("the brain mask is empty")
    state = ReconState(voxel_size_mm=tuple(float(v) for v in voxel_size_mm), magnitude=magnitude, phase=phase,
                       echo_times_s=tuple(float(t) for t in echo_times_s),
                       given_mask=mask if user_mask else None, phase_rad=phase, mask=mask,
                       field_strength_t=field_strength_t)
    steps = run_stages(state, settings, (READOUT, UNWRAP, ECHO_FIT, MASK_REFINEMENT))
    return FieldMapResult(state.field_hz, state.noise_hz, state.field_mask, steps, state.field_misfit,
                          state.misfit_factor)
