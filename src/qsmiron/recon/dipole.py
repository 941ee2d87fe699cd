"""The unit dipole kernel in k-space and the forward model chi -> field.

Conventions used throughout ``recon``: arrays are indexed (x, y, z) along the image's voxel
axes; ``voxel_size_mm`` gives the edge length along each axis; ``b0_direction`` is a unit
vector in the same voxel-axis frame (see ``qsmiron.io.nifti.b0_direction_voxel``). The field
is the relative field shift dB/B0, so a susceptibility in ppm gives a field in ppm.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import scipy.fft


def _normalised(b0_direction: Sequence[float]) -> np.ndarray:
    b0 = np.asarray(b0_direction, dtype=float)
    norm = np.linalg.norm(b0)
    if b0.shape != (3,) or not np.isfinite(norm) or norm == 0:
        raise ValueError(f"b0_direction must be a non-zero 3-vector, got {b0_direction!r}")
    return b0 / norm


def kspace_coordinates(shape: Sequence[int], voxel_size_mm: Sequence[float], *,
                       real: bool = False) -> list[np.ndarray]:
    """Spatial frequencies (cycles/mm) along each axis, broadcastable to ``shape``.

    With ``real=True`` the last axis holds only the non-negative frequencies, matching
    ``scipy.fft.rfftn``.
    """
    coords = []
    for axis, (n, dx) in enumerate(zip(shape, voxel_size_mm)):
        if real and axis == len(shape) - 1:
            k = scipy.fft.rfftfreq(n, d=dx)
        else:
            k = scipy.fft.fftfreq(n, d=dx)
        view = [1] * len(shape)
        view[axis] = k.size
        coords.append(k.reshape(view))
    return coords


def dipole_kernel(shape: Sequence[int], voxel_size_mm: Sequence[float],
                  b0_direction: Sequence[float] = (0.0, 0.0, 1.0), *,
                  real: bool = False, dtype=np.float32) -> np.ndarray:
    """The dipole kernel D(k) = 1/3 - (k . b0)^2 / |k|^2 on an FFT grid.

    Parameters
    ----------
    shape : sequence of 3 ints
        Grid size (after any padding).
    voxel_size_mm : sequence of 3 floats
        Voxel edge lengths, mm; anisotropic voxels are handled exactly.
    b0_direction : sequence of 3 floats
        B0 in voxel-axis coordinates (normalised here).
    real : bool
        Half-spectrum layout for ``rfftn``.

    Returns
    -------
    ndarray
        D(k) with D(0) = 0 (the mean field is not determined by the model).
    """
    b0 = _normalised(b0_direction)
    coords = kspace_coordinates(shape, voxel_size_mm, real=real)
    k2 = sum(k * k for k in coords)
    # (k . b0)^2 expanded, with the cross terms of a Nyquist frequency left out: on an even
    # axis the bin at -1/2 cycle per voxel also stands for +1/2, and D averaged over the two
    # signs keeps only the squares. Without that, an oblique B0 gives a kernel that is not
    # D(k) = D(-k) on those planes, and the same head stored with an axis reversed or the axes
    # in another order gave a local field 8-10 % different (tests/pipeline/test_orientation_invariance.py).
    signed = [np.where(np.abs(k) * float(dx) >= 0.5 - 1e-9, 0.0, k) for k, dx in zip(coords, voxel_size_mm)]
    kb2 = sum((k * b) ** 2 for k, b in zip(coords, b0))
    for i in range(3):
        for j in range(i + 1, 3):
            kb2 = kb2 + 2.0 * signed[i] * signed[j] * b0[i] * b0[j]
    with np.errstate(invalid="ignore", divide="ignore"):
        kernel = 1.0 / 3.0 - kb2 / k2
    kernel[k2 == 0] = 0.0
    return kernel.astype(dtype, copy=False)


def padded_shape(shape: Sequence[int], pad_voxels: Sequence[int] | int) -> tuple[int, ...]:
    """``shape`` plus ``pad_voxels`` per axis, rounded up to FFT-friendly lengths."""
    pads = np.broadcast_to(np.asarray(pad_voxels, dtype=int), (len(shape),))
    return tuple(int(scipy.fft.next_fast_len(int(n + p), real=True)) for n, p in zip(shape, pads))


def forward_field(chi_ppm: np.ndarray, voxel_size_mm: Sequence[float],
                  b0_direction: Sequence[float] = (0.0, 0.0, 1.0), *,
                  pad_factor: float = 1.0, workers: int = -1) -> np.ndarray:
    """Field (ppm of B0) produced by a susceptibility distribution (ppm), by FFT convolution.

    The array is zero-padded by ``pad_factor`` times its size on each axis before the FFT so
    that the periodic convolution does not wrap the fields of sources at one edge onto the
    other; ``pad_factor=1`` (doubling) removes the wrap-around for any source inside the grid.

    Parameters
    ----------
    chi_ppm : ndarray, shape (X, Y, Z)
    voxel_size_mm : sequence of 3 floats
    b0_direction : sequence of 3 floats, voxel-axis coordinates
    pad_factor : float
        Padding per axis as a fraction of the axis length.
    workers : int
        Threads for scipy.fft (-1: all cores).

    Returns
    -------
    field_ppm : ndarray, shape (X, Y, Z), float32
    """
    chi = np.asarray(chi_ppm, dtype=np.float32)
    pad = [int(np.ceil(pad_factor * n)) for n in chi.shape]
    shape = padded_shape(chi.shape, pad)
    kernel = dipole_kernel(shape, voxel_size_mm, b0_direction, real=True)
    spectrum = scipy.fft.rfftn(chi, s=shape, workers=workers)
    spectrum *= kernel
    field = scipy.fft.irfftn(spectrum, s=shape, workers=workers)
    return np.ascontiguousarray(field[: chi.shape[0], : chi.shape[1], : chi.shape[2]], dtype=np.float32)
