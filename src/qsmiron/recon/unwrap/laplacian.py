"""FFT Laplacian phase unwrapping (Schofield & Zhu, Opt Lett 2003;28:1194).

The Laplacian of the true phase is recovered from the wrapped phase through
``lap(phi) = cos(phi) lap(sin phi) - sin(phi) lap(cos phi)``; with the discrete 7-point
stencil this is ``sum over neighbours j of sin(phi_j - phi_i) / h_ij^2``, taken here only over
neighbour pairs inside the mask. The phase is then the inverse Laplacian of that, computed by
FFT on the mask's bounding box zero-padded so that the periodic solution does not fold
opposite faces onto each other. Anisotropic voxels enter through the stencil and its
Fourier eigenvalues ``sum_d (2 cos(2 pi k_d / n_d) - 2) / h_d^2``.

It is fast and never leaves a 2*pi jump, but it is **not exact**: the result differs from
the true phase by a smooth (harmonic inside the mask) function, and it underestimates the
phase where neighbouring voxels differ by a large fraction of pi (``sin`` saturates), that is
near strong susceptibility sources (veins, haemorrhage, air-tissue interfaces) and at the
mask edge. The harmonic part is largely removed later by background field removal, but the
local field near strong sources is altered; the QSM consensus recommends exact (path- or
region-growing) unwrapping, the default here (``romeo``).
"""

from __future__ import annotations

from typing import Literal, Sequence

import numpy as np
import scipy.fft

from qsmiron.recon.params import NonNegativeFloat, PositiveFloat
from qsmiron.recon.phase import wrap_to_pi
from qsmiron.recon.fourier import bounding_box
from qsmiron.recon.unwrap._common import as_4d, check_geometry
from qsmiron.recon.unwrap.romeo import RomeoResult, mcpc3ds_offset

__all__ = ["unwrap_laplacian", "laplacian_unwrap_3d"]


def _laplacian_of_wrapped(phase: np.ndarray, mask: np.ndarray, voxel: np.ndarray) -> np.ndarray:
    """Masked discrete Laplacian of the true phase from the wrapped phase, rad/mm^2."""
    out = np.zeros(phase.shape, np.float32)
    for axis in range(3):
        lo = [slice(None)] * 3
        hi = [slice(None)] * 3
        lo[axis] = slice(0, -1)
        hi[axis] = slice(1, None)
        lo, hi = tuple(lo), tuple(hi)
        pair = mask[lo] & mask[hi]
        term = np.sin(phase[hi] - phase[lo]).astype(np.float32)
        term *= pair
        term *= np.float32(1.0 / voxel[axis] ** 2)
        out[lo] += term
        out[hi] -= term
    return out


def _laplacian_eigenvalues(shape: Sequence[int], voxel: np.ndarray) -> np.ndarray:
    """Fourier eigenvalues of the 7-point Laplacian on the rfftn grid (<= 0)."""
    total = np.zeros((shape[0], shape[1], shape[2] // 2 + 1), np.float32)
    for axis, (n, h) in enumerate(zip(shape, voxel)):
        m = n // 2 + 1 if axis == 2 else n
        k = np.arange(m, dtype=np.float64)
        values = ((2.0 * np.cos(2.0 * np.pi * k / n) - 2.0) / h ** 2).astype(np.float32)
        view = [1, 1, 1]
        view[axis] = m
        total += values.reshape(view)
    return total


def laplacian_unwrap_3d(phase_rad: np.ndarray, mask: np.ndarray, voxel_size_mm: Sequence[float],
                        *, pad_fraction: float = 0.5, workers: int = -1) -> np.ndarray:
    """Laplacian-unwrap one 3D phase (already cropped or not); 0 outside the mask.

    The constant lost by the Laplacian is chosen so that the result agrees best with the
    wrapped phase (circular mean of the difference).
    """
    mask, voxel = check_geometry(phase_rad.shape, mask, voxel_size_mm)
    box = bounding_box(mask, margin=1)
    m = np.ascontiguousarray(mask[box])
    phase = np.ascontiguousarray(phase_rad[box], np.float32)
    rhs = _laplacian_of_wrapped(phase, m, voxel)
    shape = [int(scipy.fft.next_fast_len(int(n + np.ceil(pad_fraction * n)), real=True))
             for n in m.shape]
    spectrum = scipy.fft.rfftn(rhs, s=shape, workers=workers)
    del rhs
    eigen = _laplacian_eigenvalues(shape, voxel)
    eigen[0, 0, 0] = 1.0
    spectrum /= eigen
    spectrum[0, 0, 0] = 0.0
    del eigen
    solution = scipy.fft.irfftn(spectrum, s=shape, workers=workers)
    del spectrum
    unwrapped = np.ascontiguousarray(solution[: m.shape[0], : m.shape[1], : m.shape[2]],
                                     dtype=np.float32)
    del solution
    constant = np.angle(np.mean(np.exp(1j * (phase[m] - unwrapped[m]))))
    unwrapped += np.float32(constant)
    unwrapped[~m] = 0.0
    out = np.zeros(mask.shape, np.float32)
    out[box] = unwrapped
    return out


def unwrap_laplacian(phase_rad: np.ndarray, mask: np.ndarray, voxel_size_mm: Sequence[float],
                     *, pad_fraction: float = 0.5, workers: int = -1) -> np.ndarray:
    """Unwrap each echo with the FFT Laplacian method (fast, not exact).

    Parameters
    ----------
    phase_rad : ndarray, shape (X, Y, Z, E) or (X, Y, Z)
        Wrapped phase, rad.
    mask : ndarray of bool, shape (X, Y, Z)
    voxel_size_mm : 3 floats, mm
        Voxel edge lengths (anisotropy enters the Laplacian).
    pad_fraction : float
        Zero padding of the mask's bounding box per axis, as a fraction of its length.
    workers : int
        Threads for scipy.fft.

    Returns
    -------
    unwrapped_rad : ndarray of float32, shape of the input
        Smooth phase, rad, 0 outside the mask. Differs from the true phase by a harmonic
        function inside the mask, and near strong sources (see the module docstring).
    """
    phase = as_4d(phase_rad, "phase_rad")
    mask, voxel = check_geometry(phase.shape[:3], mask, voxel_size_mm)
    out = np.zeros(phase.shape, np.float32)
    for n in range(phase.shape[3]):
        out[..., n] = laplacian_unwrap_3d(phase[..., n], mask, voxel,
                                          pad_fraction=pad_fraction, workers=workers)
    return out[..., 0] if np.asarray(phase_rad).ndim == 3 else out


def unwrap_laplacian_full(phase_rad: np.ndarray, magnitude: np.ndarray | None, mask: np.ndarray,
                          voxel_size_mm: Sequence[float], echo_times_s: Sequence[float], *,
                          phase_offset: Literal["mcpc3ds", "none"] = "mcpc3ds",
                          offset_sigma_mm: PositiveFloat = 8.0,
                          pad_fraction: NonNegativeFloat = 0.5, workers: int = -1) -> RomeoResult:
    """Laplacian-unwrap multi-echo phase after removing the echo-independent offset.

    The offset (MCPC-3D-S, its echo difference Laplacian-unwrapped too) is subtracted from
    each echo before the echo is unwrapped and added back after, so the echoes share one
    offset as with ROMEO (``unwrap_romeo_full``, whose result type this returns; ``quality``
    is None: the Laplacian method has no edge quality).

    Parameters
    ----------
    phase_rad : ndarray, shape (X, Y, Z, E)
        Wrapped phase, rad.
    magnitude : ndarray, same shape, optional
        For the offset's smoothing weights.
    mask : ndarray of bool, shape (X, Y, Z)
    voxel_size_mm : 3 floats, mm
    echo_times_s : E floats, s
    phase_offset : {"mcpc3ds", "none"}
        Remove the offset first (needs >= 2 echoes), or assume it is removed.
    offset_sigma_mm : float
        Gaussian smoothing of the offset, mm.
    pad_fraction : float
        Zero padding of the FFT box per axis, fraction of its size.
    workers : int
        Threads for scipy.fft.
    """
    phase = as_4d(phase_rad, "phase_rad")
    voxel = tuple(float(v) for v in voxel_size_mm)

    def lap3d(values, m, _magnitude=None):
        return laplacian_unwrap_3d(values, m, voxel, pad_fraction=pad_fraction, workers=workers)

    if phase_offset == "mcpc3ds" and phase.shape[3] >= 2:
        offset = mcpc3ds_offset(phase, magnitude, mask, voxel, echo_times_s,
                                sigma_mm=offset_sigma_mm, unwrap3d=lap3d)
    else:
        offset = np.zeros(mask.shape, np.float32)
    unwrapped = np.zeros(phase.shape, np.float32)
    for n in range(phase.shape[3]):
        unwrapped[..., n] = lap3d(wrap_to_pi(phase[..., n] - offset), mask)
        unwrapped[..., n] += offset
        unwrapped[..., n][~mask] = 0.0
    return RomeoResult(unwrapped, offset, None, {"phase_offset": phase_offset,
                                                 "pad_fraction": pad_fraction})
