"""Voxels whose field carries no information (the echo fit's misfit): how they are marked
and what stands in for their values.

The mark is an infinite field noise (infinite variance: weight 0 in every weighted fit).
Background removal and inversion give such voxels no weight; a fill, or leaving them out,
keeps their wrong values out of the steps that cannot weight (SMV deconvolutions, the
unweighted inconsistency level and residual of the discrepancy principle).

A local field (after PDF, before the inversion) is small and smooth: the Gaussian-weighted
mean of the usable neighbours stands in for it (``filled_where_no_data``). A total field is
not: next to a sinus the background changes by ppm over millimetres, and no fill from one
side follows it. The methods that take the total field and cannot weight (iSMV, V-SHARP,
RESHARP, LBV) fill only what a fill interpolates, groups of such voxels enclosed by usable
ones, and leave the groups that reach the mask's edge out of their mask
(``prepared_total_field``); their erosion then keeps the output clear of those too. On family
heads h02 (12 253 voxels without data, mask 1 mm too large) and h06 (22 366, a big sinus), 99 %
lie in groups that reach the edge. iSMV's local-field NRMSE there (``benchmarks/
bench_bgremove.py``): the misfit values kept 80 / 105 %, every voxel filled 287 / 429 % (the
fill off by 0.31 / 0.29 ppm at the median, the misfit values by 0.02 / 0.01), a harmonic fill
(Laplace's equation, the usable voxels around the gap as its boundary values) 222 / 345 %,
every voxel left out 53 / 63 % (1.3 / 2.6 % fewer brain voxels), the rule 54 / 65 %. Leaving
out an enclosed group costs instead: a wrong patch inside a sphere scene (the tests) left
iSMV's error at 9.5 % left out against 6.7 % filled, V-SHARP's at 21 % against 7 %.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from scipy import ndimage

__all__ = ["marked_without_data", "without_data", "filled_from_neighbours", "filled_where_no_data",
           "prepared_total_field", "check_noise_shape"]

TRUNCATE_SIGMAS = 3.0
"""Reach of the fill's Gaussian, in sigmas."""

NO_DATA_FILL_SIGMA_MM = 2.0
"""Default reach of the fill: 2 mm averages the nearest few dozen usable neighbours, well
inside an SMV ball. On 6 family heads (``pdf_ismv``, default inversion) 1 and 4 mm gave the
same Chimap NRMSE as 2 mm within 0.3 points (median and worst)."""


def check_noise_shape(noise: np.ndarray | None, field: np.ndarray) -> None:
    """A noise map must lie on the field's grid: say so with both shapes (numpy's broadcasting
    error, or an indexing error deep in a solver, names neither)."""
    if noise is not None and np.shape(noise) != np.shape(field):
        raise ValueError(f"the noise map has shape {np.shape(noise)}, the field {np.shape(field)}: they must match")


def marked_without_data(noise: np.ndarray, missing: np.ndarray | None) -> np.ndarray:
    """``noise`` with +inf on the ``missing`` voxels (``noise`` itself when there are none)."""
    if missing is None or not missing.any():
        return noise
    return np.where(missing, np.float32(np.inf), noise)


def scaled_noise(noise: np.ndarray, factor: np.ndarray | None) -> np.ndarray:
    """``noise`` times a per-voxel ``factor`` (``noise`` itself without one); +inf stays +inf."""
    return noise if factor is None else (noise * factor).astype(np.float32)


def without_data(noise: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Mask voxels whose field noise is +inf: the field there carries no information."""
    return mask & np.isposinf(np.asarray(noise))


def filled_from_neighbours(values: np.ndarray, known: np.ndarray, region: np.ndarray,
                           voxel_size_mm: Sequence[float], sigma_mm: float) -> np.ndarray:
    """``values`` with the voxels of ``region`` outside ``known`` replaced by the Gaussian-
    weighted mean (sigma ``sigma_mm``) of the known voxels around them (normalised
    convolution); 0 where no known voxel lies within reach.

    The filters run only on the box that the unknown voxels' kernels reach: the same result
    as on the whole volume (SciPy's border handling applies only where the box meets it).
    """
    unknown = region & ~known
    if not unknown.any():
        return values
    sigma = [sigma_mm / float(v) for v in voxel_size_mm]
    index = np.argwhere(unknown)
    reach = [int(TRUNCATE_SIGMAS * s + 0.5) for s in sigma]  # scipy's kernel radius
    box = tuple(slice(max(int(lo) - r, 0), min(int(hi) + r + 1, n))
                for lo, hi, r, n in zip(index.min(0), index.max(0), reach, unknown.shape))
    known_box = known[box]
    weight = ndimage.gaussian_filter(known_box.astype(np.float32), sigma, truncate=TRUNCATE_SIGMAS)
    total = ndimage.gaussian_filter(np.where(known_box, values[box], 0).astype(np.float32), sigma,
                                    truncate=TRUNCATE_SIGMAS)
    with np.errstate(invalid="ignore", divide="ignore"):
        estimate = np.where(weight > 1e-3, total / weight, 0.0)
    out = np.array(values, dtype=np.float32, copy=True)
    out[box] = np.where(unknown[box], estimate, out[box])
    return out


def filled_where_no_data(field: np.ndarray, mask: np.ndarray, noise: np.ndarray | None,
                         voxel_size_mm: Sequence[float], sigma_mm: float = NO_DATA_FILL_SIGMA_MM
                         ) -> tuple[np.ndarray, int]:
    """``field`` with the mask's voxels of infinite ``noise`` filled from their usable
    neighbours (``filled_from_neighbours``), and how many were filled (``field`` itself and 0
    without a noise map or such voxels)."""
    if noise is None:
        return field, 0
    check_noise_shape(noise, field)
    missing = without_data(noise, mask)
    if not missing.any():
        return field, 0
    return filled_from_neighbours(field, mask & ~missing, mask, voxel_size_mm, sigma_mm), int(missing.sum())


def prepared_total_field(field: np.ndarray, mask: np.ndarray, noise: np.ndarray | None,
                         voxel_size_mm: Sequence[float], sigma_mm: float = NO_DATA_FILL_SIGMA_MM
                         ) -> tuple[np.ndarray, np.ndarray, dict[str, int]]:
    """A total field and its mask for a method that cannot weight: each group of voxels of
    infinite ``noise`` (6-connected) that reaches the mask's edge is left out of the mask, where
    a fill would extrapolate a steep background; an enclosed group, which a fill interpolates,
    is filled from its neighbours (``filled_from_neighbours``). Returns the field, the mask and
    the counts (``excluded_voxels``, ``filled_voxels``; empty without a noise map)."""
    if noise is None:
        return field, mask, {}
    check_noise_shape(noise, field)
    missing = without_data(noise, mask)
    if not missing.any():
        return field, mask, {"excluded_voxels": 0, "filled_voxels": 0}
    groups, _ = ndimage.label(missing)
    edge = mask & ~ndimage.binary_erosion(mask, border_value=0)
    reaching = np.unique(groups[edge & missing])
    at_edge = np.isin(groups, reaching[reaching > 0])
    kept = mask & ~at_edge
    enclosed = missing & ~at_edge
    if enclosed.any():
        field = filled_from_neighbours(field, kept & ~enclosed, kept, voxel_size_mm, sigma_mm)
    return field, kept, {"excluded_voxels": int(at_edge.sum()), "filled_voxels": int(enclosed.sum())}
