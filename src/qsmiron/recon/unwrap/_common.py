"""Helpers shared by the unwrappers: input checks, cropping to the mask, masked smoothing."""

from __future__ import annotations

import math
from typing import Sequence

import numba
import numpy as np
import scipy.fft


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


def masked_gaussian(values: np.ndarray, weights: np.ndarray, sigma_mm: float,
                    voxel_size_mm: Sequence[float], *, workers: int = -1) -> np.ndarray:
    """Normalised Gaussian smoothing: ``G*(w v) / G*w`` (zero where ``G*w`` vanishes).

    Done by FFT on a grid zero-padded by three sigmas so that the periodic convolution does
    not mix opposite faces; the cost does not grow with sigma. ``values`` may be complex.
    """
    smooth = _fft_smoother(values.shape, sigma_mm, voxel_size_mm, workers)
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


def smooth_phasors(phase_rad: np.ndarray, weights: np.ndarray, mask: np.ndarray,
                   sigma_mm: float, voxel_size_mm: Sequence[float], *,
                   workers: int = -1) -> np.ndarray:
    """Angle of the normalised Gaussian average of unit phasors, ``angle(G*(w e^{i p}))``.

    Parameters
    ----------
    phase_rad : ndarray, shape (X, Y, Z)
        Phase, rad.
    weights : ndarray, shape (X, Y, Z)
        Non-negative weights; only voxels in ``mask`` contribute.
    mask : ndarray of bool, shape (X, Y, Z)
    sigma_mm : float
        Gaussian standard deviation, mm.
    voxel_size_mm : 3 floats, mm

    Returns
    -------
    ndarray of float32
        Smoothed phase in [-pi, pi) inside the mask where the weights reach (0 where they
        do not), 0 outside the mask.
    """
    smooth = _fft_smoother(phase_rad.shape, sigma_mm, voxel_size_mm, workers)
    mask = np.ascontiguousarray(mask, dtype=bool)
    phase = np.ascontiguousarray(phase_rad, dtype=np.float32)
    w = np.where(mask, weights, 0).astype(np.float32)
    wr = np.zeros(phase.shape, np.float32)
    wi = np.zeros(phase.shape, np.float32)
    _weighted_phasors(phase, w, mask, wr, wi, np.empty(phase.shape, np.float32))
    denominator = smooth(w)
    del w
    tiny = np.float32(1e-6) * max(float(denominator.max()), np.finfo(np.float32).tiny)
    valid = mask & (denominator > tiny)
    del denominator
    out = np.arctan2(smooth(wi), smooth(wr))
    out[~valid] = 0.0
    out[out >= np.float32(np.pi)] -= np.float32(2.0 * np.pi)
    return out


def component_weighted_medians(values: np.ndarray, labels: np.ndarray, weights: np.ndarray | None = None
                               ) -> np.ndarray:
    """Weighted median of ``values`` within each label (index = label; label 0 ignored, 0 there).

    The 2*pi*k a component is shifted by must not follow its worst voxels: a mask that takes
    in skull or air holds noise phase, which region growing reaches last and unwraps to
    tens of radians, enough to move a mean by more than pi (family head h09: the echo
    difference's mean over the mask was -3.8 rad, the brain's -0.001 rad). A median weighted
    by magnitude follows the tissue.

    The median of a label is the smallest value at which the weight of the values at or below
    it reaches half the label's weight (negative and non-finite weights count as 0; a label
    without weight takes the plain median; non-finite values are left out). Found by selection
    rather than sorting: on the 2 x 10^6 voxels of a 1 mm brain a two-key sort took 0.3 s of
    the unwrapping, twice per reconstruction, against 0.03 s.
    """
    flat_labels = np.ascontiguousarray(labels).reshape(-1)
    n = int(flat_labels.max()) + 1 if flat_labels.size and flat_labels.max() > 0 else 1
    flat_weights = (np.ones(flat_labels.size, np.float32) if weights is None
                    else np.ascontiguousarray(weights).reshape(-1))
    return _grouped_weighted_medians(flat_labels, np.ascontiguousarray(values).reshape(-1), flat_weights, n)


@numba.njit(cache=True, nogil=True)
def _grouped_weighted_medians(labels, values, weights, n):
    """``component_weighted_medians`` on flat arrays: the labels' voxels gathered by a counting
    sort, then one weighted selection per label."""
    counts = np.zeros(n + 1, np.int64)
    for k in range(labels.size):
        if labels[k] > 0 and np.isfinite(values[k]):
            counts[labels[k] + 1] += 1
    for j in range(n):
        counts[j + 1] += counts[j]
    fill = counts[:n].copy()
    grouped_values = np.empty(counts[n], np.float64)
    grouped_weights = np.empty(counts[n], np.float64)
    for k in range(labels.size):
        label = labels[k]
        if label > 0 and np.isfinite(values[k]):
            w = weights[k]
            grouped_values[fill[label]] = values[k]
            grouped_weights[fill[label]] = w if np.isfinite(w) and w > 0 else 0.0
            fill[label] += 1
    medians = np.zeros(n, np.float64)
    for label in range(1, n):
        start, stop = counts[label], counts[label + 1]
        if stop == start:
            continue
        total = grouped_weights[start:stop].sum()
        if total <= 0:
            medians[label] = np.median(grouped_values[start:stop])
        else:
            medians[label] = _weighted_select(grouped_values[start:stop], grouped_weights[start:stop], 0.5 * total)
    return medians


@numba.njit(cache=True, nogil=True)
def _weighted_select(values, weights, need):
    """The smallest value at which the weight of the values at or below it reaches ``need``.

    Quickselect with three-way partitions (expected linear time); reorders both arrays.
    """
    lo, hi = 0, values.size
    answer = values[0]
    while hi > lo:
        a, b, c = values[lo], values[(lo + hi) // 2], values[hi - 1]
        pivot = max(min(a, b), min(max(a, b), c))
        lt, i, gt = lo, lo, hi
        below, equal = 0.0, 0.0
        while i < gt:
            v = values[i]
            if v < pivot:
                values[i], values[lt] = values[lt], v
                weights[i], weights[lt] = weights[lt], weights[i]
                below += weights[lt]
                lt += 1
                i += 1
            elif v > pivot:
                gt -= 1
                values[i], values[gt] = values[gt], v
                weights[i], weights[gt] = weights[gt], weights[i]
            else:
                equal += weights[i]
                i += 1
        if below >= need and lt > lo:
            hi = lt
        elif below + equal >= need or gt == hi:
            return pivot
        else:
            need -= below + equal
            answer = pivot
            lo = gt
    return answer


def _fft_smoother(shape3: Sequence[int], sigma_mm: float, voxel_size_mm: Sequence[float],
                  workers: int):
    """``smooth(array) -> float32 array``: Gaussian convolution by FFT, zero-padded 3 sigma.

    The Gaussian transfer function is built once (separable, float32) and applied in place.
    """
    sigma_vox = [sigma_mm / float(dx) for dx in voxel_size_mm]
    pad = [int(np.ceil(3 * s)) for s in sigma_vox]
    shape = [int(scipy.fft.next_fast_len(n + p, real=True)) for n, p in zip(shape3, pad)]
    # exp(-2 pi^2 sigma^2 f^2) per axis on the frequencies of the (half) spectrum, as
    # scipy.ndimage.fourier_gaussian computes it.
    factors = []
    for axis, (n, s) in enumerate(zip(shape, sigma_vox)):
        f = np.fft.rfftfreq(n) if axis == 2 else np.fft.fftfreq(n)
        factors.append(np.exp(-2.0 * np.pi ** 2 * s * s * f * f).astype(np.float32))

    def smooth(real_array: np.ndarray) -> np.ndarray:
        spectrum = scipy.fft.rfftn(real_array.astype(np.float32, copy=False), s=shape,
                                   workers=workers)
        _apply_separable(spectrum, factors[0], factors[1], factors[2])
        out = scipy.fft.irfftn(spectrum, s=shape, workers=workers, overwrite_x=True)
        return np.ascontiguousarray(out[: shape3[0], : shape3[1], : shape3[2]], np.float32)

    return smooth


@numba.njit(parallel=True, cache=True)
def _apply_separable(spectrum, fx, fy, fz):
    """spectrum *= fx[:, None, None] * fy[None, :, None] * fz[None, None, :], in place."""
    nx, ny, nz = spectrum.shape
    for x in numba.prange(nx):
        for y in range(ny):
            fxy = fx[x] * fy[y]
            for z in range(nz):
                spectrum[x, y, z] *= fxy * fz[z]


@numba.njit(parallel=True, cache=True)
def _weighted_phasors(phase, weights, mask, wr, wi, root_w):
    """w cos(phase), w sin(phase) and sqrt(w) inside the mask (w = weights), 0 outside."""
    nx, ny, nz = phase.shape
    for x in numba.prange(nx):
        for y in range(ny):
            for z in range(nz):
                if mask[x, y, z]:
                    w = weights[x, y, z]
                    p = np.float64(phase[x, y, z])
                    wr[x, y, z] = w * math.cos(p)
                    wi[x, y, z] = w * math.sin(p)
                    root_w[x, y, z] = math.sqrt(w)


@numba.njit(parallel=True, cache=True)
def _pair_phasors(phase, root_w, mask, axis, pr, pi):
    """Neighbour phase differences along ``axis`` as phasors weighted by both ends.

    ``p[v] = sqrt(w_v w_{v+1}) exp(i (phase_{v+1} - phase_v))`` where both are in the mask
    (weights are 0 outside it), 0 elsewhere and on the last plane.
    """
    nx, ny, nz = phase.shape
    for x in numba.prange(nx):
        for y in range(ny):
            for z in range(nz):
                x2 = x + (axis == 0)
                y2 = y + (axis == 1)
                z2 = z + (axis == 2)
                if x2 >= nx or y2 >= ny or z2 >= nz or not mask[x, y, z] \
                        or not mask[x2, y2, z2]:
                    pr[x, y, z] = 0.0
                    pi[x, y, z] = 0.0
                    continue
                r = root_w[x, y, z] * root_w[x2, y2, z2]
                d = np.float64(phase[x2, y2, z2]) - np.float64(phase[x, y, z])
                pr[x, y, z] = r * math.cos(d)
                pi[x, y, z] = r * math.sin(d)


@numba.njit(cache=True, inline="always")
def _difference(f, x, y, z, axis, n, i):
    """np.gradient's difference of ``f`` along ``axis`` at index ``i`` (edges one-sided)."""
    a = i - 1
    b = i + 1
    h = np.float32(2.0)
    if i == 0:
        a = 0
        h = np.float32(1.0)
    elif i == n - 1:
        b = n - 1
        h = np.float32(1.0)
    if axis == 0:
        return (f[b, y, z] - f[a, y, z]) / h
    if axis == 1:
        return (f[x, b, z] - f[x, a, z]) / h
    return (f[x, y, b] - f[x, y, a]) / h


@numba.njit(parallel=True, cache=True)
def _subtract_centroid_bias(out, sr, si, log_s0, axis, sigma2):
    """out -= angle(sr + i si) * sigma2 * d(log_s0)/d(axis) (np.gradient's differences)."""
    nx, ny, nz = out.shape
    n = out.shape[axis]
    if n < 2:
        return
    for x in numba.prange(nx):
        for y in range(ny):
            for z in range(nz):
                i = np.int64(x)
                if axis == 1:
                    i = np.int64(y)
                elif axis == 2:
                    i = np.int64(z)
                g = _difference(log_s0, x, y, z, axis, np.int64(n), i)
                slope = np.float32(math.atan2(si[x, y, z], sr[x, y, z]))
                out[x, y, z] -= slope * sigma2 * g


@numba.njit(parallel=True, cache=True)
def _finish_smoothed_phase(out, phase, mask, valid):
    """Wrap ``out`` into [-pi, pi]; the input phase where the smoothing had no support; 0
    outside the mask."""
    nx, ny, nz = out.shape
    for x in numba.prange(nx):
        for y in range(ny):
            for z in range(nz):
                if not mask[x, y, z]:
                    out[x, y, z] = 0.0
                    continue
                v = np.float64(out[x, y, z]) if valid[x, y, z] else np.float64(phase[x, y, z])
                out[x, y, z] = math.atan2(math.sin(v), math.cos(v))


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
    mask = np.ascontiguousarray(mask, dtype=bool)
    phase = np.ascontiguousarray(phase_rad, dtype=np.float32)
    w = np.where(mask, weights, 0).astype(np.float32)
    wr = np.zeros(phase.shape, np.float32)
    wi = np.zeros(phase.shape, np.float32)
    root_w = np.zeros(phase.shape, np.float32)
    _weighted_phasors(phase, w, mask, wr, wi, root_w)
    s0 = smooth(w)
    del w
    floor = np.float32(1e-6) * max(float(s0.max()), 1e-30)
    valid = mask & (s0 > floor)
    out = np.arctan2(smooth(wi), smooth(wr))
    np.maximum(s0, floor, out=s0)
    log_s0 = np.log(s0, out=s0)
    for axis in range(3):
        _pair_phasors(phase, root_w, mask, axis, wr, wi)
        sigma2 = np.float32((sigma_mm / float(voxel_size_mm[axis])) ** 2)
        # x - centroid = -sigma^2 d(log S0)/dx (voxel units).
        _subtract_centroid_bias(out, smooth(wr), smooth(wi), log_s0, axis, sigma2)
    _finish_smoothed_phase(out, phase, mask, valid)
    return out
