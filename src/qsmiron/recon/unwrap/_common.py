"""Helpers shared by the unwrappers: input checks, cropping to the mask, masked smoothing."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import scipy.fft
import scipy.ndimage


def as_4d(array: np.ndarray, name: str) -> np.ndarray:
    """A 3D volume as one echo of a 4D array (echoes last); 4D unchanged."""
    array = np.asarray(array)
    if array.ndim == 3:
        return array[..., None]
    if array.ndim != 4:
        raise ValueError(f"{name} must be 3D or 4D (echoes last), got shape {array.shape}")
    return array


def check_geometry(shape3: Sequence[int], mask: np.ndarray,
                   voxel_size_mm: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    mask = np.asarray(mask, dtype=bool)
    if mask.shape != tuple(shape3):
        raise ValueError(f"mask shape {mask.shape} differs from the data's {tuple(shape3)}")
    voxel = np.asarray(voxel_size_mm, dtype=float)
    if voxel.shape != (3,) or np.any(~np.isfinite(voxel)) or np.any(voxel <= 0):
        raise ValueError(f"voxel_size_mm must be 3 positive numbers, got {voxel_size_mm!r}")
    return mask, voxel


def bounding_box(mask: np.ndarray, margin: int = 0) -> tuple[slice, slice, slice]:
    """Slices of the smallest box holding the mask, grown by ``margin`` voxels (clipped)."""
    if not mask.any():
        raise ValueError("the mask is empty")
    box = []
    for axis in range(3):
        other = tuple(a for a in range(3) if a != axis)
        hits = np.flatnonzero(mask.any(axis=other))
        box.append(slice(max(0, int(hits[0]) - margin),
                         min(mask.shape[axis], int(hits[-1]) + 1 + margin)))
    return tuple(box)


def masked_gaussian(values: np.ndarray, weights: np.ndarray, sigma_mm: float,
                    voxel_size_mm: Sequence[float], *, workers: int = -1) -> np.ndarray:
    """Normalised Gaussian smoothing: ``G*(w v) / G*w`` (zero where ``G*w`` vanishes).

    Done by FFT on a grid zero-padded by three sigmas so that the periodic convolution does
    not mix opposite faces; the cost does not grow with sigma. ``values`` may be complex.
    """
    sigma_vox = [sigma_mm / float(dx) for dx in voxel_size_mm]
    pad = [int(np.ceil(3 * s)) for s in sigma_vox]
    shape = [int(scipy.fft.next_fast_len(n + p, real=True)) for n, p in zip(values.shape, pad)]

    def smooth(real_array: np.ndarray) -> np.ndarray:
        spectrum = scipy.fft.rfftn(real_array, s=shape, workers=workers)
        spectrum = scipy.ndimage.fourier_gaussian(spectrum, sigma_vox, n=shape[-1], output=spectrum)
        out = scipy.fft.irfftn(spectrum, s=shape, workers=workers)
        return out[: values.shape[0], : values.shape[1], : values.shape[2]].astype(np.float32)

    weights = weights.astype(np.float32, copy=False)
    denominator = smooth(weights)
    tiny = np.float32(1e-6) * max(float(denominator.max()), np.finfo(np.float32).tiny)
    valid = denominator > tiny
    if np.iscomplexobj(values):
        weighted = values * weights
        result = np.zeros(values.shape, np.complex64)
        result.real[valid] = smooth(np.ascontiguousarray(weighted.real))[valid] / denominator[valid]
        result.imag[valid] = smooth(np.ascontiguousarray(weighted.imag))[valid] / denominator[valid]
        return result
    result = np.zeros(values.shape, np.float32)
    result[valid] = smooth(values * weights)[valid] / denominator[valid]
    return result


def component_means(values: np.ndarray, labels: np.ndarray, weights: np.ndarray | None = None
                    ) -> np.ndarray:
    """Mean of ``values`` within each label (index = label; label 0 ignored)."""
    flat_labels = labels.reshape(-1)
    inside = flat_labels > 0
    lab = flat_labels[inside]
    val = values.reshape(-1)[inside].astype(np.float64)
    w = np.ones_like(val) if weights is None else weights.reshape(-1)[inside].astype(np.float64)
    n = int(labels.max()) + 1
    total = np.bincount(lab, weights=w * val, minlength=n)
    norm = np.bincount(lab, weights=w, minlength=n)
    with np.errstate(invalid="ignore", divide="ignore"):
        means = np.where(norm > 0, total / np.where(norm > 0, norm, 1), 0.0)
    return means


def _fft_smoother(shape3: Sequence[int], sigma_mm: float, voxel_size_mm: Sequence[float],
                  workers: int):
    sigma_vox = [sigma_mm / float(dx) for dx in voxel_size_mm]
    pad = [int(np.ceil(3 * s)) for s in sigma_vox]
    shape = [int(scipy.fft.next_fast_len(n + p, real=True)) for n, p in zip(shape3, pad)]

    def smooth(real_array: np.ndarray) -> np.ndarray:
        spectrum = scipy.fft.rfftn(real_array.astype(np.float32, copy=False), s=shape,
                                   workers=workers)
        spectrum = scipy.ndimage.fourier_gaussian(spectrum, sigma_vox, n=shape[-1],
                                                  output=spectrum)
        out = scipy.fft.irfftn(spectrum, s=shape, workers=workers)
        return np.ascontiguousarray(out[: shape3[0], : shape3[1], : shape3[2]], np.float32)

    return smooth


def smooth_phase_linear(phase_rad: np.ndarray, weights: np.ndarray, mask: np.ndarray,
                        sigma_mm: float, voxel_size_mm: Sequence[float], *,
                        workers: int = -1) -> np.ndarray:
    """Smooth a phase map (rad) inside a mask, exact to first order for sloping phases.

    The normalised Gaussian average of unit phasors, ``angle(G*(w e^{i c}) / G*w)``, returns
    the phase at the weighted centroid of the kernel; near the mask edge that centroid moves
    inwards and a sloping phase is biased by ``grad(c) . (x - centroid)``. That bias is
    removed here to first order: the centroid is ``x + sigma^2 grad(log G*w)`` (an identity
    of the Gaussian), and the slope is the Gaussian average of neighbour phase differences
    (unbiased at edges for a linear phase). What remains is of second order (curvature times
    sigma^2). Nine FFT convolutions in all.

    Parameters
    ----------
    phase_rad : ndarray, shape (X, Y, Z)
        Phase to smooth, rad (wrapped or not).
    weights : ndarray, shape (X, Y, Z)
        Non-negative reliability of each voxel (e.g. inverse variance); 0 outside the mask.
    mask : ndarray of bool, shape (X, Y, Z)
    sigma_mm : float
        Gaussian standard deviation, mm.
    voxel_size_mm : 3 floats, mm

    Returns
    -------
    ndarray of float32
        Smoothed phase in [-pi, pi) inside the mask, 0 outside.
    """
    smooth = _fft_smoother(phase_rad.shape, sigma_mm, voxel_size_mm, workers)
    w = np.where(mask, weights, 0).astype(np.float32)
    phasor = np.zeros(phase_rad.shape, np.complex64)
    phasor[mask] = np.exp(1j * phase_rad[mask])
    s0 = smooth(w)
    floor = np.float32(1e-6) * max(float(s0.max()), 1e-30)
    valid = mask & (s0 > floor)
    wp = w * phasor
    out = np.angle(smooth(wp.real) + 1j * smooth(wp.imag)).astype(np.float32)
    del wp
    log_s0 = np.log(np.maximum(s0, floor))
    del s0
    root_w = np.sqrt(w)
    for axis in range(3):
        lo = [slice(None)] * 3
        hi = [slice(None)] * 3
        lo[axis] = slice(0, -1)
        hi[axis] = slice(1, None)
        lo, hi = tuple(lo), tuple(hi)
        # Neighbour phase differences as phasors weighted by both ends.
        pair = np.zeros(phase_rad.shape, np.complex64)
        pair[lo] = phasor[hi] * np.conj(phasor[lo]) * (root_w[hi] * root_w[lo])
        slope = np.angle(smooth(pair.real) + 1j * smooth(pair.imag)).astype(np.float32)
        del pair
        sigma2 = np.float32((sigma_mm / float(voxel_size_mm[axis])) ** 2)
        # x - centroid = -sigma^2 d(log S0)/dx (voxel units).
        out -= slope * sigma2 * np.gradient(log_s0, axis=axis).astype(np.float32)
        del slope
    own = mask & ~valid
    out[own] = phase_rad[own]
    out = np.angle(np.exp(1j * out)).astype(np.float32)
    out[~mask] = 0.0
    return out
