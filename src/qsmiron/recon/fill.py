"""Values for voxels whose field carries no information (the echo fit's misfit).

Background removal and inversion give such voxels no weight; this fill only keeps their
wrong values out of the steps that cannot weight (iSMV's deconvolution, the unweighted
inconsistency level and residual of the discrepancy principle).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from scipy import ndimage

__all__ = ["filled_from_neighbours"]


def filled_from_neighbours(values: np.ndarray, known: np.ndarray, region: np.ndarray,
                           voxel_size_mm: Sequence[float], sigma_mm: float) -> np.ndarray:
    """``values`` with the voxels of ``region`` outside ``known`` replaced by the Gaussian-
    weighted mean (sigma ``sigma_mm``) of the known voxels around them (normalised
    convolution); 0 where no known voxel lies within reach."""
    unknown = region & ~known
    if not unknown.any():
        return values
    sigma = [sigma_mm / float(v) for v in voxel_size_mm]
    weight = ndimage.gaussian_filter(known.astype(np.float32), sigma, truncate=3.0)
    total = ndimage.gaussian_filter(np.where(known, values, 0).astype(np.float32), sigma, truncate=3.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        estimate = np.where(weight > 1e-3, total / weight, 0.0)
    return np.where(unknown, estimate, values).astype(np.float32)
