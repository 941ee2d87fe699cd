"""Input checks and the padded grid shared by the background-removal methods."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from qsmiron.recon.fourier import PaddedGrid, irfftn, mm_to_voxels, padded_grid, rfftn, smv_kernel


def validate(field: np.ndarray, mask: np.ndarray, voxel_size_mm: Sequence[float]):
    field = np.asarray(field)
    mask = np.asarray(mask, dtype=bool)
    if field.ndim != 3:
        raise ValueError(f"the field must be 3D, got shape {field.shape}")
    if mask.shape != field.shape:
        raise ValueError(f"mask shape {mask.shape} differs from field shape {field.shape}")
    if not mask.any():
        raise ValueError("the mask is empty")
    if not np.isfinite(field[mask]).all():
        raise ValueError("the field has non-finite values inside the mask")
    voxel = tuple(float(v) for v in voxel_size_mm)
    if len(voxel) != 3 or min(voxel) <= 0:
        raise ValueError(f"voxel_size_mm must be 3 positive numbers, got {voxel_size_mm!r}")
    return np.where(mask, field, 0.0).astype(np.float32), mask, voxel


def smv_grid(mask: np.ndarray, voxel_size_mm: Sequence[float], radius_mm: float) -> PaddedGrid:
    """Grid for SMV filtering: the box plus two kernel radii of zeros on the far side.

    A periodic convolution with a ball of radius r needs r voxels of zeros between the box
    and its periodic image for values inside the box to see only true zeros outside; the
    second radius keeps the (non-compact) deconvolution from wrapping around.
    """
    return padded_grid(mask, [2 * v + 1 for v in mm_to_voxels(radius_mm, voxel_size_mm)])


def eroded_by_sphere(mask_pad: np.ndarray, kernel: np.ndarray, shape) -> np.ndarray:
    """Voxels whose whole SMV sphere lies in the mask (1e-3 slack for round-off)."""
    mean = irfftn(rfftn(mask_pad.astype(np.float32)) * kernel, shape)
    return (mean > 1.0 - 1e-3) & mask_pad


def default_radii_mm(voxel_size_mm: Sequence[float]) -> tuple[float, ...]:
    """V-SHARP radii: from 18 x the smallest voxel down to 2 x the largest in steps of 2 x
    the largest (Wu et al., MRM 2012;67:137 used 1-12 mm at about 1 mm; QSM.jl the same rule)."""
    largest = max(float(v) for v in voxel_size_mm)
    top = 18.0 * min(float(v) for v in voxel_size_mm)
    step = bottom = 2.0 * largest
    # Count the steps with a relative tolerance: voxel sizes read back from a float32 affine
    # (1.50000005 mm) must not drop the last radius to round-off.
    n_steps = int(np.floor((top - bottom) / step * (1.0 + 1e-6) + 1e-6))
    if n_steps < 0:
        return (bottom,)
    # Like the range top:-step:bottom (QSM.jl), the last radius not below bottom.
    return tuple(float(max(top - k * step, bottom)) for k in range(n_steps + 1))


__all__ = ["validate", "smv_grid", "eroded_by_sphere", "default_radii_mm", "smv_kernel"]
