"""The grid of methods that place susceptibility sources outside the mask (PDF, TFI).

The mask's bounding box sits in the middle of a periodic FFT grid with ``pad_mm`` of room
on every side, rounded up to FFT-friendly lengths that halve exactly (even, or a multiple
of four for two coarsenings). Sources in the margin wrap around periodically but stay
outside the mask, so they remain part of the model rather than an error. ``coarsen`` averages 2 x 2 x 2 blocks
for the coarse-to-fine solves.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import scipy.fft

from qsmiron.recon.fourier import bounding_box, mm_to_voxels


def fast_length(n: int, multiple: int = 2) -> int:
    """The smallest length >= n, a multiple of ``multiple``, that scipy's real FFT handles fast."""
    length = scipy.fft.next_fast_len(int(n), real=True)
    while length % multiple:
        length = scipy.fft.next_fast_len(length + 1, real=True)
    return int(length)


@dataclass(frozen=True)
class SourceGrid:
    """The mask's bounding box placed in the middle of a padded periodic grid.

    Attributes
    ----------
    full_shape : tuple of int
        Shape of the image the mask came from.
    box : tuple of slice
        The bounding box in the image.
    place : tuple of slice
        Where the box sits in the grid.
    shape : tuple of int
        The grid (even, FFT-friendly lengths).
    """

    full_shape: tuple[int, ...]
    box: tuple[slice, ...]
    place: tuple[slice, ...]
    shape: tuple[int, ...]

    def embed(self, image: np.ndarray, dtype=np.float32) -> np.ndarray:
        """The box of a full-shape image, in a zero grid."""
        out = np.zeros(self.shape, dtype=dtype)
        out[self.place] = np.asarray(image)[self.box]
        return out

    def extract(self, grid_image: np.ndarray, dtype=np.float32) -> np.ndarray:
        """A grid-shaped array's box, back in a zero image of the full shape."""
        out = np.zeros(self.full_shape, dtype=dtype)
        out[self.box] = grid_image[self.place]
        return out


def source_grid(mask: np.ndarray, voxel_size_mm: Sequence[float], pad_mm: float, *,
                multiple: int = 2) -> SourceGrid:
    """The grid for ``mask`` with at least ``pad_mm`` of room on every side, each length a
    multiple of ``multiple`` (4 for two halvings)."""
    box = bounding_box(mask)
    margin = mm_to_voxels(pad_mm, voxel_size_mm)
    extent = [s.stop - s.start for s in box]
    shape = tuple(fast_length(n + 2 * m, multiple) for n, m in zip(extent, margin))
    place = tuple(slice((n - e) // 2, (n - e) // 2 + e) for n, e in zip(shape, extent))
    return SourceGrid(tuple(int(n) for n in mask.shape), box, place, shape)


def block_sum(image: np.ndarray) -> np.ndarray:
    """Sums over 2 x 2 x 2 blocks (the grid's lengths are even)."""
    n0, n1, n2 = (s // 2 for s in image.shape)
    return image.reshape(n0, 2, n1, 2, n2, 2).sum(axis=(1, 3, 5))


def upsample(image: np.ndarray) -> np.ndarray:
    """Each voxel repeated into a 2 x 2 x 2 block (the inverse layout of ``block_sum``)."""
    return np.repeat(np.repeat(np.repeat(image, 2, 0), 2, 1), 2, 2)


def coarsen(inside: np.ndarray, weights: np.ndarray, field: np.ndarray
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A twice coarser problem: mask where most of a block is mask, weighted block means.

    Returns the coarse mask, the mean data weight of the block's mask voxels and the
    weighted mean field, both zero outside the coarse mask.
    """
    count = block_sum(inside.astype(np.float32))
    weight_sum = block_sum(weights)
    coarse_inside = count >= 4.0
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_field = np.where(weight_sum > 0, block_sum(weights * field) / weight_sum, 0.0)
        mean_weight = np.where(count > 0, weight_sum / count, 0.0)
    return (coarse_inside, np.where(coarse_inside, mean_weight, 0.0).astype(np.float32),
            np.where(coarse_inside, mean_field, 0.0).astype(np.float32))
