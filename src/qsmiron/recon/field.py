"""Total field from multi-echo phase: unwrapping, echo fit, mask refinement by phase quality."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from qsmiron.errors import InputError
from qsmiron.recon.echofit import fit_field
from qsmiron.recon.mask import refine_mask_by_phase_quality
from qsmiron.recon.phase import wrap_to_pi
from qsmiron.recon.settings import ReconSettings
from qsmiron.recon.unwrap import UNWRAPPERS
from qsmiron.recon.unwrap.laplacian import laplacian_unwrap_3d
from qsmiron.recon.unwrap.romeo import mcpc3ds_offset, unwrap_romeo_full

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
    unwrapped_rad : ndarray of float32, shape (X, Y, Z, E)
        Unwrapped phase, rad (input + 2*pi*k for ROMEO), 0 outside the input mask.
    info : dict
        ``unwrap`` and ``echo_fit`` records (method, parameters, seconds, notes) and
        ``mask_refinement`` (what was removed and why).
    """

    field_hz: np.ndarray
    noise_hz: np.ndarray
    mask: np.ndarray
    unwrapped_rad: np.ndarray
    info: dict[str, Any] = field(default_factory=dict)


def _laplacian_path(phase, magnitude, mask, voxel, te, unwrap_settings):
    pad = unwrap_settings.laplacian_pad_fraction

    def lap3d(values, m, _magnitude=None):
        return laplacian_unwrap_3d(values, m, voxel, pad_fraction=pad)

    if unwrap_settings.phase_offset == "mcpc3ds" and phase.shape[3] >= 2:
        offset = mcpc3ds_offset(phase, magnitude, mask, voxel, te,
                                sigma_mm=unwrap_settings.offset_sigma_mm, unwrap3d=lap3d)
    else:
        offset = np.zeros(mask.shape, np.float32)
    unwrapped = np.zeros(phase.shape, np.float32)
    for n in range(phase.shape[3]):
        corrected = wrap_to_pi(phase[..., n] - offset)
        unwrapped[..., n] = lap3d(corrected, mask)
        unwrapped[..., n] += offset
        unwrapped[..., n][~mask] = 0.0
    return unwrapped, offset, None


def total_field(magnitude: np.ndarray, phase_rad: np.ndarray, mask: np.ndarray,
                voxel_size_mm: Sequence[float], echo_times_s: Sequence[float], *,
                settings: ReconSettings | None = None, user_mask: bool = False) -> FieldMapResult:
    """Unwrap the phase, fit the field over echoes and refine the mask by phase quality.

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
        Uses the ``unwrap`` and ``echo_fit`` blocks (defaults when None).
    user_mask : bool
        The mask came from the user: it is used as it is, never refined.

    Returns
    -------
    FieldMapResult

    Raises
    ------
    InputError
        An empty mask, or a mask from which the refinement leaves nothing.
    """
    settings = ReconSettings() if settings is None else settings
    phase = np.asarray(phase_rad, dtype=np.float32)
    if phase.ndim == 3:
        phase = phase[..., None]
    magnitude = None if magnitude is None else np.asarray(magnitude, dtype=np.float32)
    if magnitude is not None and magnitude.ndim == 3:
        magnitude = magnitude[..., None]
    mask = np.asarray(mask, dtype=bool)
    if not mask.any():
        raise InputError("the brain mask is empty")
    voxel = tuple(float(v) for v in voxel_size_mm)
    te = tuple(float(t) for t in echo_times_s)
    unwrap_settings = settings.unwrap
    fit_settings = settings.echo_fit
    if unwrap_settings.method not in UNWRAPPERS:
        raise ValueError(f"unknown unwrapping method {unwrap_settings.method!r}")

    start = time.perf_counter()
    quality = None
    unwrap_notes: dict[str, Any] = {}
    if unwrap_settings.method == "romeo":
        template = min(unwrap_settings.template_echo, phase.shape[3] - 1)
        result = unwrap_romeo_full(phase, magnitude, mask, voxel, te,
                                   phase_offset=unwrap_settings.phase_offset,
                                   offset_sigma_mm=unwrap_settings.offset_sigma_mm,
                                   template_echo=template)
        unwrapped, offset, quality = result.unwrapped_rad, result.offset_rad, result.quality
        unwrap_notes.update(result.info)
        del result
    else:
        unwrapped, offset, quality = _laplacian_path(phase, magnitude, mask, voxel, te,
                                                     unwrap_settings)
    unwrap_seconds = time.perf_counter() - start

    start = time.perf_counter()
    fit = fit_field(unwrapped, magnitude, mask, te, offset=fit_settings.offset,
                    offset_rad=offset, voxel_size_mm=voxel,
                    offset_sigma_mm=fit_settings.offset_sigma_mm)
    del offset
    fit_seconds = time.perf_counter() - start

    refinement: dict[str, Any] = {"applied": False}
    refined = mask
    start = time.perf_counter()
    if not user_mask and fit_settings.refine_mask:
        refined, refinement = refine_mask_by_phase_quality(
            mask, voxel, noise_hz=fit.noise_hz, quality=quality, reduced_chi2=fit.reduced_chi2,
            dof=int(fit.info.get("dof", 0)), noise_factor=fit_settings.refine_noise_factor,
            min_quality=fit_settings.refine_min_quality, chi2_p=fit_settings.refine_chi2_p,
            opening_mm=fit_settings.refine_opening_mm)
        refinement["applied"] = True
        if not refined.any():
            raise InputError("no voxel of the brain mask has a reliable phase "
                             "(check the phase images, or give a mask)")
    refinement["seconds"] = round(time.perf_counter() - start, 4)
    field_hz = np.where(refined, fit.field_hz, np.float32(0))
    noise_hz = np.where(refined, fit.noise_hz, np.float32(0))
    fit_notes = dict(fit.info)
    info = {
        "unwrap": {"method": unwrap_settings.method, "seconds": unwrap_seconds, **unwrap_notes},
        "echo_fit": {"method": "weighted_least_squares", "seconds": fit_seconds, **fit_notes},
        "mask_refinement": refinement,
    }
    return FieldMapResult(field_hz, noise_hz, refined, unwrapped, info)
