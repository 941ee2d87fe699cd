"""Brain mask from magnitude (threshold + morphology), refined by phase quality.

``brain_mask`` is deliberately generous: it keeps everything bright enough and connected
to the largest object, then ``refine_mask_by_phase_quality`` (called by
the stage ``mask_refinement`` once the field has been fitted) peels off the edge
voxels whose phase is unreliable: high field noise, low unwrapping quality, or phase not
linear in echo time. Interior voxels are never removed by the refinement (a dark vein or
iron-rich nucleus inside the brain is tissue, not background). Morphology uses radii in mm,
so anisotropic voxels get ellipsoidal structuring elements.
"""

from __future__ import annotations

from typing import Annotated, Any, Sequence

import numba
import numpy as np
import scipy.ndimage
import scipy.stats
from annotated_types import Gt, Interval
from skimage.filters import threshold_otsu

from qsmiron.errors import InputError
from qsmiron.methods import Method
from qsmiron.recon.params import Fraction, NonNegativeFloat, OpenFraction

__all__ = ["brain_mask", "refine_mask_by_phase_quality", "given_mask", "keep_mask", "METHODS",
           "REFINEMENT_METHODS", "MASK_METHODS", "ellipsoid"]


def ellipsoid(radius_mm: float, voxel_size_mm: Sequence[float]) -> np.ndarray:
    """Boolean structuring element: the voxels within ``radius_mm`` of the centre (mm)."""
    half = [int(np.floor(radius_mm / float(d) + 1e-9)) for d in voxel_size_mm]
    axes = [np.arange(-h, h + 1) * float(d) for h, d in zip(half, voxel_size_mm)]
    x, y, z = np.meshgrid(*axes, indexing="ij")
    return (x * x + y * y + z * z) <= radius_mm ** 2 + 1e-9


def _largest_component(mask: np.ndarray) -> np.ndarray:
    labels, n = scipy.ndimage.label(mask)
    if n <= 1:
        return labels > 0
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    return labels == int(np.argmax(sizes))


def filled_holes(mask: np.ndarray) -> np.ndarray:
    """Fill the background components that do not reach the volume border (6-connected).

    The same result as ``scipy.ndimage.binary_fill_holes`` with one labelling pass instead
    of an iterated dilation.
    """
    background = np.pad(~mask, 1, constant_values=True)
    labels, _ = scipy.ndimage.label(background)
    return labels[1:-1, 1:-1, 1:-1] != labels[0, 0, 0]


@numba.njit(parallel=True, cache=True)
def _erode(mask, offsets, out):
    """Binary erosion by the structuring element given as voxel offsets (outside = False),
    what ``scipy.ndimage.binary_erosion`` computes for a symmetric element."""
    nx, ny, nz = mask.shape
    for x in numba.prange(nx):
        for y in range(ny):
            for z in range(nz):
                keep = mask[x, y, z]
                if keep:
                    for k in range(offsets.shape[0]):
                        a = x + offsets[k, 0]
                        b = y + offsets[k, 1]
                        c = z + offsets[k, 2]
                        if a < 0 or b < 0 or c < 0 or a >= nx or b >= ny or c >= nz \
                                or not mask[a, b, c]:
                            keep = False
                            break
                out[x, y, z] = keep


@numba.njit(parallel=True, cache=True)
def _dilate(mask, offsets, out):
    """Binary dilation by a symmetric structuring element given as voxel offsets."""
    nx, ny, nz = mask.shape
    for x in numba.prange(nx):
        for y in range(ny):
            for z in range(nz):
                hit = mask[x, y, z]
                if not hit:
                    for k in range(offsets.shape[0]):
                        a = x + offsets[k, 0]
                        b = y + offsets[k, 1]
                        c = z + offsets[k, 2]
                        if a >= 0 and b >= 0 and c >= 0 and a < nx and b < ny and c < nz \
                                and mask[a, b, c]:
                            hit = True
                            break
                out[x, y, z] = hit


def binary_opening(mask: np.ndarray, ball: np.ndarray) -> np.ndarray:
    """``scipy.ndimage.binary_opening(mask, structure=ball)`` for a symmetric ``ball``.

    Erosion and dilation visit the element's offsets nearest the centre first and stop at
    the first voxel that decides, in parallel over the first axis.
    """
    if not np.array_equal(ball, ball[::-1, ::-1, ::-1]):
        return scipy.ndimage.binary_opening(mask, structure=ball)
    centre = np.array([h // 2 for h in ball.shape])
    offsets = np.argwhere(ball) - centre
    offsets = offsets[np.argsort(np.abs(offsets).sum(axis=1), kind="stable")].astype(np.int64)
    mask = np.ascontiguousarray(mask, dtype=bool)
    eroded = np.empty(mask.shape, bool)
    _erode(mask, offsets, eroded)
    opened = np.empty(mask.shape, bool)
    _dilate(eroded, offsets, opened)
    return opened


def _open(mask: np.ndarray, ball: np.ndarray) -> np.ndarray:
    """Binary opening that does not erode where the object meets the array edge.

    The edge is replicated before opening: an object cut by the field of view continues
    beyond it.
    """
    pad = [(h // 2, h // 2) for h in ball.shape]
    padded = np.pad(mask, pad, mode="edge")
    opened = binary_opening(padded, ball)
    return opened[tuple(slice(p, n - p) for (p, _), n in zip(pad, opened.shape))]


@numba.njit(parallel=True, cache=True)
def _root_sum_of_squares(magnitude, out):
    """out = sqrt(sum over echoes of magnitude^2) in float32; False if any is not finite."""
    nx, ny, nz, ne = magnitude.shape
    bad = 0
    for x in numba.prange(nx):
        for y in range(ny):
            for z in range(nz):
                acc = np.float32(0.0)
                for n in range(ne):
                    v = np.float32(magnitude[x, y, z, n])
                    acc += v * v
                r = np.sqrt(acc)
                out[x, y, z] = r
                if not np.isfinite(r):
                    bad += 1
    return bad == 0


def _crop(mask: np.ndarray, margin: int) -> tuple[slice, ...]:
    if not mask.any():
        return tuple(slice(0, n) for n in mask.shape)
    box = []
    for axis in range(mask.ndim):
        other = tuple(a for a in range(mask.ndim) if a != axis)
        hits = np.flatnonzero(mask.any(axis=other))
        box.append(slice(max(0, hits[0] - margin), min(mask.shape[axis], hits[-1] + 1 + margin)))
    return tuple(box)


def brain_mask(magnitude: np.ndarray, voxel_size_mm: Sequence[float], *,
               threshold_cap: Annotated[float, Interval(gt=0, le=1)] = 0.25,
               opening_mm: NonNegativeFloat = 2.0, fill_holes: bool = True) -> np.ndarray:
    """Brain (object) mask from the magnitude: robust threshold, opening, largest component.

    1. The echoes are combined as the root sum of squares (the best SNR for a threshold).
    2. Threshold: Otsu's threshold of the combined magnitude, capped at ``threshold_cap``
       times its 99th percentile. Otsu separates background noise from the head when the
       field of view holds background; when it holds only tissue (a crop), Otsu would split
       grey from white matter, and the cap keeps all tissue.
    3. Opening with a ball of ``opening_mm`` (ellipsoidal in voxels): detaches the scalp and
       thin bridges through the skull and removes isolated noise voxels.
    4. Largest connected component (6-connectivity), then holes filled.

    Parameters
    ----------
    magnitude : ndarray, shape (X, Y, Z) or (X, Y, Z, E)
        Magnitude, any units, echoes last.
    voxel_size_mm : 3 floats, mm
    threshold_cap : float
        Upper bound of the threshold, as a fraction of the 99th percentile.
    opening_mm : float
        Radius of the opening, mm (0 to skip).
    fill_holes : bool
        Fill enclosed holes (dark veins, sinuses inside the brain are kept in the mask).

    Returns
    -------
    mask : ndarray of bool, shape (X, Y, Z)
    """
    mag = np.asarray(magnitude)
    if mag.ndim == 4:
        combined = np.empty(mag.shape[:3], np.float32)
        finite = _root_sum_of_squares(mag, combined)
    elif mag.ndim == 3:
        combined = np.abs(mag).astype(np.float32, copy=False)
        finite = bool(np.all(np.isfinite(combined)))
    else:
        raise ValueError(f"magnitude must be 3D or 4D, got shape {mag.shape}")
    if not finite:
        raise ValueError("magnitude holds NaN or infinite values")
    flat = combined.reshape(-1)
    sample = flat[:: max(1, flat.size // 2_000_000)]
    positive = sample[sample > 0]
    if positive.size < 2 or np.ptp(positive) == 0:
        raise ValueError("magnitude is constant or empty: no mask can be derived from it")
    p99 = float(np.percentile(positive, 99))
    threshold = min(float(threshold_otsu(positive)), threshold_cap * p99)
    mask = combined > threshold
    del combined
    if opening_mm > 0:
        ball = ellipsoid(opening_mm, voxel_size_mm)
        box = _crop(mask, margin=max(ball.shape))
        opened = _open(mask[box], ball)
        mask = np.zeros_like(mask)
        mask[box] = opened
    box = _crop(mask, margin=1)
    inner = _largest_component(mask[box])
    if fill_holes:
        inner = filled_holes(inner)
    mask = np.zeros(mask.shape, bool)
    mask[box] = inner
    return mask


def refine_mask_by_phase_quality(mask: np.ndarray, voxel_size_mm: Sequence[float], *,
                                 noise_hz: np.ndarray | None = None,
                                 quality: np.ndarray | None = None,
                                 reduced_chi2: np.ndarray | None = None,
                                 dof: int = 0, noise_factor: Annotated[float, Gt(1)] = 3.0,
                                 min_quality: Fraction = 0.25, chi2_p: OpenFraction = 1e-4,
                                 opening_mm: NonNegativeFloat = 1.0) -> tuple[np.ndarray, dict[str, Any]]:
    """Remove the unreliable edge of a mask, judged by the phase.

    A voxel is unreliable when any of these holds:

    - its field noise exceeds ``noise_factor`` times the median field noise in the mask
      (its magnitude-weighted SNR is a third of typical brain or worse);
    - its unwrapping quality (mean ROMEO edge quality, 0..1) is below ``min_quality``;
    - its echo-fit residual is implausible for Gaussian noise: reduced chi-square above the
      ``1 - chi2_p`` quantile of the chi-square distribution with ``dof`` degrees of freedom
      (phase not linear in TE).

    Unreliable voxels connected to the outside of the mask through other unreliable voxels
    are removed (the edge is peeled); unreliable voxels enclosed by reliable tissue stay.
    Then an opening of ``opening_mm`` smooths the new edge, the largest component is kept and
    holes are filled.

    Parameters
    ----------
    mask : ndarray of bool, shape (X, Y, Z)
    voxel_size_mm : 3 floats, mm
    noise_hz, quality, reduced_chi2 : ndarray, shape (X, Y, Z), optional
        Evidence maps (any may be None).
    dof : int
        Residual degrees of freedom of the echo fit (for ``reduced_chi2``).

    Returns
    -------
    refined : ndarray of bool
    info : dict
        Voxel counts flagged and removed, and the criteria.
    """
    full_mask = np.asarray(mask, dtype=bool)
    info: dict[str, Any] = {"noise_factor": noise_factor, "min_quality": min_quality,
                            "chi2_p": chi2_p, "opening_mm": opening_mm}
    if not full_mask.any():
        info.update(removed_voxels=0, removed_fraction=0.0)
        return full_mask.copy(), info
    # Work in the mask's bounding box (plus a margin of one voxel of background).
    box = _crop(full_mask, margin=1)
    mask = full_mask[box]
    noise_hz = None if noise_hz is None else noise_hz[box]
    quality = None if quality is None else quality[box]
    reduced_chi2 = None if reduced_chi2 is None else reduced_chi2[box]
    unreliable = np.zeros(mask.shape, bool)
    if noise_hz is not None and mask.any():
        limit = noise_factor * float(np.median(noise_hz[mask]))
        flagged = mask & (noise_hz > limit)
        info["noise_limit_hz"] = limit
        info["flagged_noise"] = int(flagged.sum())
        unreliable |= flagged
    if quality is not None:
        flagged = mask & (quality < min_quality)
        info["flagged_quality"] = int(flagged.sum())
        unreliable |= flagged
    if reduced_chi2 is not None and dof > 0:
        limit = float(scipy.stats.chi2.isf(chi2_p, dof) / dof)
        with np.errstate(invalid="ignore"):
            flagged = mask & (reduced_chi2 > limit)
        info["chi2_limit"] = limit
        info["flagged_residual"] = int(flagged.sum())
        unreliable |= flagged
    # Peel: unreliable voxels reachable from outside the mask through unreliable voxels.
    # The volume border counts as outside (a mask may touch the edge of the field of view).
    region = np.pad(~mask | unreliable, 1, constant_values=True)
    labels, _ = scipy.ndimage.label(region)
    outside_labels = np.unique(labels[np.pad(~mask, 1, constant_values=True)])
    outside_labels = outside_labels[outside_labels > 0]
    peeled = unreliable & np.isin(labels[1:-1, 1:-1, 1:-1], outside_labels)
    del labels, region
    refined = mask & ~peeled
    if opening_mm > 0 and refined.any():
        refined = _open(refined, ellipsoid(opening_mm, voxel_size_mm))
    if refined.any():
        refined = filled_holes(_largest_component(refined)) & mask
    info["removed_voxels"] = int(mask.sum() - refined.sum())
    info["removed_fraction"] = float(info["removed_voxels"] / max(1, int(mask.sum())))
    out = np.zeros(full_mask.shape, bool)
    out[box] = refined
    return out, info


def given_mask(magnitude: np.ndarray, voxel_size_mm: Sequence[float], *,
               mask: np.ndarray) -> np.ndarray:
    """A mask given by the user, checked against the data: same grid, not empty.

    Raises
    ------
    ValueError
        Another shape than the magnitude's.
    InputError
        An empty mask.
    """
    mask = np.asarray(mask).astype(bool)
    shape = np.shape(magnitude)[:3]
    if mask.shape != shape:
        raise ValueError(f"mask shape {mask.shape} differs from the data's {shape}")
    if not mask.any():
        raise InputError("the brain mask is empty")
    return mask


def keep_mask(mask: np.ndarray, voxel_size_mm: Sequence[float]) -> tuple[np.ndarray, dict[str, Any]]:
    """No refinement: the mask as it is (for a user's mask, or when refinement is off)."""
    return np.asarray(mask, dtype=bool), {"removed_voxels": 0, "removed_fraction": 0.0}


METHODS = (
    Method("magnitude", brain_mask, label="from the magnitude (Otsu threshold, opening, largest component)",
           description="threshold of the echo-combined magnitude (Otsu, capped), opening, largest "
                       "component, holes filled",
           citation="Otsu N. IEEE Trans Syst Man Cybern 1979;9:62-66", doi="10.1109/TSMC.1979.4310076"),
    Method("given", given_mask, label="user-supplied mask", description="the mask given with --mask",
           selectable=False),
)
"""Brain-mask methods (stage ``mask``)."""

REFINEMENT_METHODS = (
    Method("phase_quality", refine_mask_by_phase_quality,
           label="removal of edge voxels with unreliable phase (field noise, unwrapping quality, "
                 "echo-fit residual)",
           description="peel edge voxels whose field noise, ROMEO quality or echo-fit residual "
                       "marks the phase as unreliable"),
    Method("none", keep_mask, label="none", description="keep the mask as it is"),
)
"""Mask refinement methods (stage ``mask_refinement``), after the echo fit."""

MASK_METHODS = {method.name: method.function for method in METHODS if method.selectable}
"""Name -> mask function, from ``METHODS``."""
