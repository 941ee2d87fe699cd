"""Binary morphology on brain masks, with structuring elements in mm.

Balls are ellipsoidal in voxels when the voxels are anisotropic; erosion and dilation run in
parallel numba loops over the element's offsets (``binary_opening``), and the edge of the
field of view does not erode an object it cuts (``open_keeping_edges``). Used by the brain
masks (``qsmiron.recon.mask``).
"""

from __future__ import annotations

from typing import Sequence

import numba
import numpy as np
import scipy.ndimage

__all__ = ["ellipsoid", "largest_component", "filled_holes", "binary_opening", "dilate", "open_keeping_edges",
           "crop_box"]

def ellipsoid(radius_mm: float, voxel_size_mm: Sequence[float]) -> np.ndarray:
    """Boolean structuring element: the voxels within ``radius_mm`` of the centre (mm)."""
    half = [int(np.floor(radius_mm / float(d) + 1e-9)) for d in voxel_size_mm]
    axes = [np.arange(-h, h + 1) * float(d) for h, d in zip(half, voxel_size_mm)]
    x, y, z = np.meshgrid(*axes, indexing="ij")
    return (x * x + y * y + z * z) <= radius_mm ** 2 + 1e-9


def largest_component(mask: np.ndarray) -> np.ndarray:
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


def open_keeping_edges(mask: np.ndarray, ball: np.ndarray) -> np.ndarray:
    """Binary opening that does not erode where the object meets the array edge.

    The edge is replicated before opening: an object cut by the field of view continues
    beyond it.
    """
    pad = [(h // 2, h // 2) for h in ball.shape]
    padded = np.pad(mask, pad, mode="edge")
    opened = binary_opening(padded, ball)
    return opened[tuple(slice(p, n - p) for (p, _), n in zip(pad, opened.shape))]



def crop_box(mask: np.ndarray, margin: int) -> tuple[slice, ...]:
    """The bounding box of ``mask`` grown by ``margin`` voxels (the whole array when empty)."""
    if not mask.any():
        return tuple(slice(0, n) for n in mask.shape)
    box = []
    for axis in range(mask.ndim):
        other = tuple(a for a in range(mask.ndim) if a != axis)
        hits = np.flatnonzero(mask.any(axis=other))
        box.append(slice(max(0, hits[0] - margin), min(mask.shape[axis], hits[-1] + 1 + margin)))
    return tuple(box)


def dilate(mask: np.ndarray, ball: np.ndarray) -> np.ndarray:
    """``scipy.ndimage.binary_dilation(mask, structure=ball)`` for a symmetric ``ball``, computed
    only in the mask's bounding box grown by the ball."""
    mask = np.asarray(mask, dtype=bool)
    if not mask.any():
        return mask.copy()
    box = crop_box(mask, margin=max(ball.shape))
    offsets = (np.argwhere(ball) - np.array([h // 2 for h in ball.shape])).astype(np.int64)
    grown = np.empty(mask[box].shape, bool)
    _dilate(np.ascontiguousarray(mask[box]), offsets, grown)
    out = np.zeros_like(mask)
    out[box] = grown
    return out
