"""Binary morphology on brain masks, with structuring elements in mm.

Balls are ellipsoidal in voxels when the voxels are anisotropic; erosion and dilation stamp
the ball on the edge voxels of the object (or of the background) in a numba loop, so their
cost grows with the surface rather than the volume (``binary_opening``, ``dilate``), and the
edge of the field of view does not erode an object it cuts (``open_keeping_edges``). Used by
the brain masks (``qsmiron.recon.mask``).
"""

from __future__ import annotations

from typing import Sequence

import numba
import numpy as np
import scipy.ndimage

from qsmiron.recon.fourier import bounding_box

__all__ = ["ellipsoid", "largest_component", "filled_holes", "binary_opening", "dilate", "open_keeping_edges",
           "erode_keeping_edges", "surface_layer_element", "crop_box"]


def ellipsoid(radius_mm: float, voxel_size_mm: Sequence[float]) -> np.ndarray:
    """Boolean structuring element: the voxels within ``radius_mm`` of the centre (mm)."""
    half = [int(np.floor(radius_mm / float(d) + 1e-9)) for d in voxel_size_mm]
    axes = [np.arange(-h, h + 1) * float(d) for h, d in zip(half, voxel_size_mm)]
    x, y, z = np.meshgrid(*axes, indexing="ij")
    return (x * x + y * y + z * z) <= radius_mm ** 2 + 1e-9


def surface_layer_element(depth_mm: float, voxel_size_mm: Sequence[float]) -> np.ndarray:
    """The element whose erosion removes the voxels whose centres lie within ``depth_mm`` of the
    mask's surface (half a voxel beyond the outermost centres).

    Along an axis of voxel edge ``d`` the ``k``-th layer's centre lies ``(k - 1/2) d`` deep, so
    ``ceil(depth / d - 1/2)`` layers go: 1 mm of depth peels one layer of 1, 1.05 or 1.5 mm
    voxels, none of 2 or 2.5 mm slices, and two of 0.5 mm voxels. Between the axes, an ellipsoid
    of those half-widths (in voxels).
    """
    half = [max(0, int(np.ceil(depth_mm / float(d) - 0.5 - 1e-9))) for d in voxel_size_mm]
    axes = [np.arange(-h, h + 1) / max(h, 1) for h in half]
    x, y, z = np.meshgrid(*axes, indexing="ij")
    return (x * x + y * y + z * z) <= 1.0 + 1e-9


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


@numba.njit(cache=True, nogil=True)
def _stamp_edges(mask, inside, offsets, out):
    """Set ``out`` True at every offset from each edge voxel of the set ``mask == inside``.

    An edge voxel belongs to the set and has a 6-neighbour inside the array that does not.
    For a ball-like element (``_ball_like``) the element placed on the edge voxels alone
    covers everything it covers placed on every voxel of the set outside the set itself:
    the element reaching a voxel from the nearest set voxel is never placed on an interior
    one (a step towards the target would be nearer and still reach it).
    """
    nx, ny, nz = mask.shape
    for x in range(nx):
        for y in range(ny):
            for z in range(nz):
                if mask[x, y, z] != inside:
                    continue
                edge = ((x > 0 and mask[x - 1, y, z] != inside) or (x < nx - 1 and mask[x + 1, y, z] != inside)
                        or (y > 0 and mask[x, y - 1, z] != inside) or (y < ny - 1 and mask[x, y + 1, z] != inside)
                        or (z > 0 and mask[x, y, z - 1] != inside) or (z < nz - 1 and mask[x, y, z + 1] != inside))
                if not edge:
                    continue
                for k in range(offsets.shape[0]):
                    a = x + offsets[k, 0]
                    b = y + offsets[k, 1]
                    c = z + offsets[k, 2]
                    if a >= 0 and b >= 0 and c >= 0 and a < nx and b < ny and c < nz:
                        out[a, b, c] = True


def _ball_like(element: np.ndarray) -> bool:
    """Symmetric, holding its centre, and closed under a unit step of any offset towards the
    centre along one axis (an ellipsoid is; a random symmetric element usually is not)."""
    element = np.asarray(element, bool)
    if any(n % 2 == 0 for n in element.shape) or not np.array_equal(element, element[::-1, ::-1, ::-1]):
        return False
    centre = np.array([n // 2 for n in element.shape])
    for axis in range(3):
        offsets = np.argwhere(element) - centre
        moved = offsets[offsets[:, axis] != 0]
        moved[:, axis] -= np.sign(moved[:, axis])
        if not element[tuple((moved + centre).T)].all():
            return False
    return True


def _offsets(element: np.ndarray) -> np.ndarray:
    return (np.argwhere(element) - np.array([n // 2 for n in element.shape])).astype(np.int64)


def _dilated(mask: np.ndarray, element: np.ndarray) -> np.ndarray:
    """Dilation by a ball-like element: the element stamped on the mask's edge voxels."""
    out = mask.copy()
    _stamp_edges(mask, True, _offsets(element), out)
    return out


def _eroded(mask: np.ndarray, element: np.ndarray) -> np.ndarray:
    """Erosion by a ball-like element, outside the array counting as background (as scipy):
    the background's dilation removed, and the faces as deep as the element reaches."""
    removed = np.zeros(mask.shape, bool)
    _stamp_edges(mask, False, _offsets(element), removed)
    for axis, n in enumerate(element.shape):
        half = n // 2
        if half:
            removed[(slice(None),) * axis + (slice(0, half),)] = True
            removed[(slice(None),) * axis + (slice(-half, None),)] = True
    return mask & ~removed


def binary_opening(mask: np.ndarray, ball: np.ndarray) -> np.ndarray:
    """``scipy.ndimage.binary_opening(mask, structure=ball)``.

    For a ball-like element (an ellipsoid, ``_ball_like``) erosion and dilation stamp the
    element on the edge voxels only (``_stamp_edges``): the work grows with the surface, not
    the volume (0.05 s instead of 0.6 s for the 2 mm opening of a 256 x 256 x 176 head);
    other elements go to scipy.
    """
    mask = np.ascontiguousarray(mask, dtype=bool)
    if not _ball_like(ball):
        return scipy.ndimage.binary_opening(mask, structure=ball)
    return _dilated(_eroded(mask, ball), ball)


def _keeping_edges(operation, mask: np.ndarray, ball: np.ndarray) -> np.ndarray:
    """``operation(mask, ball)`` with the edge replicated first: an object cut by the field of
    view continues beyond it, so the array's edge is not an edge of the object."""
    pad = [(h // 2, h // 2) for h in ball.shape]
    padded = np.pad(mask, pad, mode="edge")
    done = operation(padded, ball)
    return done[tuple(slice(p, n - p) for (p, _), n in zip(pad, done.shape))]


def open_keeping_edges(mask: np.ndarray, ball: np.ndarray) -> np.ndarray:
    """Binary opening that does not erode where the object meets the array edge."""
    return _keeping_edges(binary_opening, mask, ball)


def _erosion(mask: np.ndarray, ball: np.ndarray) -> np.ndarray:
    mask = np.ascontiguousarray(mask, dtype=bool)
    if not _ball_like(ball):
        return scipy.ndimage.binary_erosion(mask, structure=ball)
    return _eroded(mask, ball)


def erode_keeping_edges(mask: np.ndarray, ball: np.ndarray) -> np.ndarray:
    """Binary erosion (``scipy.ndimage.binary_erosion``) that does not erode where the object
    meets the array edge."""
    return _keeping_edges(_erosion, mask, ball)


def crop_box(mask: np.ndarray, margin: int) -> tuple[slice, ...]:
    """The bounding box of ``mask`` grown by ``margin`` voxels (the whole array when empty)."""
    if not mask.any():
        return tuple(slice(0, n) for n in mask.shape)
    return bounding_box(mask, margin)


def dilate(mask: np.ndarray, ball: np.ndarray) -> np.ndarray:
    """``scipy.ndimage.binary_dilation(mask, structure=ball)`` for a symmetric ``ball``, computed
    only in the mask's bounding box grown by the ball (stamped on the edge voxels when
    ball-like, else by scipy)."""
    mask = np.asarray(mask, dtype=bool)
    if not mask.any():
        return mask.copy()
    box = crop_box(mask, margin=max(ball.shape))
    inner = np.ascontiguousarray(mask[box])
    grown = _dilated(inner, ball) if _ball_like(ball) else scipy.ndimage.binary_dilation(inner, structure=ball)
    out = np.zeros_like(mask)
    out[box] = grown
    return out
