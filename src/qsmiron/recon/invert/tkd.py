"""Thresholded k-space division (TKD).

chi = F^-1[ F(f) / D_t ] with D_t = D where |D| > t and sign(D) t elsewhere (Shmueli et al.,
MRM 2009;62:1510; Wharton, Schaefer & Bowtell, MRM 2010;63:1292). The default threshold
t = 0.19 is the value Wharton et al. found to balance streaking against the underestimation
TKD causes; the 2016 challenge's "TKD default" row used 0.15. Fast and parameter-light,
but streaks along the magic cone remain: a baseline, not the default.
"""

from __future__ import annotations

from typing import Annotated, Sequence

import numpy as np
from annotated_types import Interval

from qsmiron.recon.fourier import irfftn, rfftn
from qsmiron.recon.invert._common import DEFAULT_PAD_MM, setup
from qsmiron.recon.params import NonNegativeFloat

DEFAULT_THRESHOLD = 0.19


def truncated_inverse(dipole: np.ndarray, threshold: float) -> np.ndarray:
    """1/D where |D| > threshold, sign(D)/threshold elsewhere, 0 at k = 0."""
    inverse = np.where(np.abs(dipole) > threshold, dipole, np.where(dipole < 0, -threshold, threshold))
    inverse = (1.0 / inverse).astype(np.float32)
    inverse.flat[0] = 0.0
    return inverse


def tkd(local_ppm: np.ndarray, mask: np.ndarray, voxel_size_mm: Sequence[float],
        b0_direction: Sequence[float], *,
        threshold: Annotated[float, Interval(gt=0, lt=2.0 / 3.0)] = DEFAULT_THRESHOLD,
        pad_mm: NonNegativeFloat = DEFAULT_PAD_MM) -> tuple[np.ndarray, dict]:
    """Susceptibility (ppm) by thresholded k-space division.

    Parameters
    ----------
    local_ppm : ndarray, shape (X, Y, Z)
        Local field, ppm of B0.
    mask : ndarray of bool
    voxel_size_mm, b0_direction : geometry (voxel axes)
    threshold : float
        Truncation level of |D(k)| (0 < t < 2/3).
    pad_mm : float
        Zero margin around the mask's bounding box.

    Returns
    -------
    chi_ppm : ndarray, zero outside the mask
    info : dict
    """
    if not 0 < threshold < 2.0 / 3.0:
        raise ValueError(f"the TKD threshold must lie in (0, 2/3), got {threshold}")
    problem = setup(local_ppm, mask, voxel_size_mm, b0_direction, pad_mm=pad_mm)
    spectrum = rfftn(problem.field_ppm)
    spectrum *= truncated_inverse(problem.dipole, threshold)
    chi = irfftn(spectrum, problem.grid.shape)
    return problem.result(chi), {"threshold": threshold, "pad_mm": pad_mm, "iterations": 0,
                                 "converged": True}
