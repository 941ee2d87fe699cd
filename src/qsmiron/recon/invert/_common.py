"""What every inversion method shares: the padded problem, data weights, the noise level."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Sequence

import numpy as np

from qsmiron.recon.dipole import dipole_kernel, kspace_coordinates
from qsmiron.recon.fill import filled_where_no_data, without_data
from qsmiron.recon.fourier import PaddedGrid, half_spectrum_multiplicity, mm_to_voxels, padded_grid, rfftn

DEFAULT_PAD_MM = 16.0
"""Zero margin around the mask's bounding box: dipole fields fall as r^-3, so at 16 mm the
wrapped-around field of a source is under 1e-3 of its value one voxel away."""


@dataclass
class Problem:
    """A local field on its padded FFT grid with the dipole kernel built once.

    Attributes
    ----------
    grid : PaddedGrid
    field_ppm : ndarray, float32, grid shape; zero outside the mask
    mask : ndarray of bool, grid shape
    dipole : ndarray, float32, half spectrum of D(k)
    voxel_size_mm : tuple of 3 floats
    """

    grid: PaddedGrid
    field_ppm: np.ndarray
    mask: np.ndarray
    dipole: np.ndarray
    voxel_size_mm: tuple[float, float, float]

    def pad(self, image: np.ndarray) -> np.ndarray:
        return self.grid.pad(np.asarray(image, dtype=np.float32))

    def result(self, chi_pad: np.ndarray) -> np.ndarray:
        """Back to the full image grid, zero outside the mask."""
        return self.grid.unpad(np.where(self.mask, chi_pad, 0.0))


def validate(local_ppm: np.ndarray, mask: np.ndarray, voxel_size_mm: Sequence[float]) -> tuple:
    field = np.asarray(local_ppm, dtype=np.float32)
    mask = np.asarray(mask, dtype=bool)
    if field.ndim != 3:
        raise ValueError(f"the local field must be 3D, got shape {field.shape}")
    if mask.shape != field.shape:
        raise ValueError(f"mask shape {mask.shape} differs from field shape {field.shape}")
    if not mask.any():
        raise ValueError("the mask is empty")
    if not np.isfinite(field[mask]).all():
        raise ValueError("the local field has non-finite values inside the mask")
    voxel = tuple(float(v) for v in voxel_size_mm)
    if len(voxel) != 3 or min(voxel) <= 0:
        raise ValueError(f"voxel_size_mm must be 3 positive numbers, got {voxel_size_mm!r}")
    return field, mask, voxel


def setup(local_ppm: np.ndarray, mask: np.ndarray, voxel_size_mm: Sequence[float],
          b0_direction: Sequence[float], *, pad_mm: float = DEFAULT_PAD_MM,
          noise_ppm: np.ndarray | None = None) -> Problem:
    """Crop to the mask's bounding box, pad, and build the dipole kernel for that grid.

    Voxels of infinite ``noise_ppm`` carry no field: their value is replaced by the Gaussian-
    weighted mean of the usable field around them. Their data weight is 0, so the solution's
    data term does not change; the inconsistency level and the residual of the discrepancy
    principle, which are unweighted, no longer see what was there.
    """
    field, mask, voxel = validate(local_ppm, mask, voxel_size_mm)
    field, _ = filled_where_no_data(field, mask, noise_ppm, voxel)
    grid = padded_grid(mask, mm_to_voxels(pad_mm, voxel))
    mask_pad = grid.pad(mask, dtype=bool)
    field_pad = grid.pad(np.where(mask, field, 0.0).astype(np.float32))
    dipole = dipole_kernel(grid.shape, voxel, b0_direction, real=True)
    return Problem(grid, field_pad, mask_pad, dipole, voxel)


def estimate_noise_ppm(field_ppm: np.ndarray, mask: np.ndarray) -> float:
    """Noise standard deviation of a field from its finest wavelet sub-band (Donoho's MAD).

    The 3D Haar "HHH" coefficient of each 2x2x2 block lying wholly inside the mask,
    ``sum (+-1) f / sqrt(8)``, has the noise variance of one voxel and is nearly blind to a
    smooth field; the median absolute value / 0.6745 is a robust estimate of its standard
    deviation (Donoho & Johnstone, Biometrika 1994).
    """
    f = np.asarray(field_ppm, dtype=np.float64)
    m = np.asarray(mask, dtype=bool)
    n = [s - s % 2 for s in f.shape]
    f = f[: n[0], : n[1], : n[2]]
    m = m[: n[0], : n[1], : n[2]]
    coefficient = np.zeros([s // 2 for s in n])
    inside = np.ones([s // 2 for s in n], dtype=bool)
    for a in (0, 1):
        for b in (0, 1):
            for c in (0, 1):
                sign = -1.0 if (a + b + c) % 2 else 1.0
                coefficient += sign * f[a::2, b::2, c::2]
                inside &= m[a::2, b::2, c::2]
    values = coefficient[inside] / np.sqrt(8.0)
    if values.size < 8:
        return float("nan")
    return float(np.median(np.abs(values)) / 0.6745)


CONE_MAX_DIPOLE = 0.05
"""|D(k)| below which a frequency counts as "on the magic cone" for ``inconsistency_ppm``: a
dipole field keeps at most 5 % of the susceptibility's amplitude there (|D| reaches 2/3)."""
CONE_MIN_FREQUENCY_PER_MM = 0.1
"""Lowest spatial frequency (cycles per mm, i.e. wavelengths under 10 mm) used by
``inconsistency_ppm``: below it the cone holds the leakage of the zero-filled outside of the
mask (the mask's spectrum convolved with the field's), which the masked data term of the
iterative solvers does not see as inconsistency. The band is physical, not per voxel: in cycles
per voxel (0.1, as before) it reached down to 0.04 cycles/mm along 2.5 mm slices, where the
leak is larger, and stopped the inversion early on thick slices. ``benchmarks/bench_bgremove.py``
(own masks; Chimap NRMSE median / worst, regional error ppb, before -> after): the ten held-out
heads with 2-2.5 mm slices 42.3 / 46.3 -> 41.4 / 43.8 % and 5.5 / 8.8 -> 5.2 / 8.0 ppb (worst head
d1-03: VeP -21.2 -> -18.7 ppb), the fourteen with 1-1.5 mm 35.2 / 40.0 % either way; the family
slab frame 36.2 / 41.0 -> 36.2 / 40.7 %, scanner frame 37.2 / 41.5 -> 37.1 / 41.1 %. On grids
too coarse for it (voxels over 2.5 mm along every axis) it is lowered to half the finest axis'
Nyquist frequency, so that the band is never empty. Measured and not adopted: 0.25 cycles/mm,
above which the cone power of the 1-1.5 mm heads levels off (it still falls on the 2.5 mm heads,
by 24-30 % from 0.1 to 0.35). Own masks: family 36.2 / 40.7 -> 36.0 / 40.6 % (slab) and 37.1 /
41.1 -> 37.0 / 40.9 % (scanner), held-out draw 1 (scanner) 37.5 / 43.3 -> 37.2 / 41.3 % with
regional error 4.3 / 8.3 -> 4.2 / 8.2 ppb: small, and short of what one more Bregman step gives
the thick heads (d1-03 43.3 % and 8.3 ppb -> 41.7 % and 5.9 ppb)."""


def cone_band_min_frequency_per_mm(voxel_size_mm: Sequence[float]) -> float:
    """``CONE_MIN_FREQUENCY_PER_MM``, or half the Nyquist frequency of the finest axis if lower."""
    return min(CONE_MIN_FREQUENCY_PER_MM, 0.25 / min(float(v) for v in voxel_size_mm))


def inconsistency_ppm(problem: Problem, *, max_dipole: float = CONE_MAX_DIPOLE,
                      min_frequency_per_mm: float | None = None) -> float:
    """RMS (ppm per mask voxel) of what in the field no susceptibility can explain.

    A field produced by a susceptibility has spectrum ``D(k) X(k)``, nearly zero where the
    dipole kernel vanishes (the magic cone). Noise, non-dipolar and anisotropic contributions
    and background residuals do not vanish there; the mean power of the field on the cone
    therefore measures all of them together. With unnormalised FFTs, white noise of standard
    deviation sigma in n mask voxels has E|F(k)|^2 = n sigma^2 at every k, so
    ``sqrt(mean_cone |F|^2 / n)`` estimates sigma for noise and, for other inconsistencies,
    their RMS assuming a spectrum as flat as noise across the band. Only frequencies above
    ``min_frequency_per_mm`` cycles/mm are used (by default ``cone_band_min_frequency_per_mm``).
    """
    spectrum = rfftn(problem.field_ppm)
    power = spectrum.real ** 2 + spectrum.imag ** 2
    coords = kspace_coordinates(problem.grid.shape, problem.voxel_size_mm, real=True)
    if min_frequency_per_mm is None:
        min_frequency_per_mm = cone_band_min_frequency_per_mm(problem.voxel_size_mm)
    k2 = sum(k ** 2 for k in coords)
    band = (np.abs(problem.dipole) < max_dipole) & (k2 > min_frequency_per_mm ** 2)
    if not band.any():
        return float("nan")
    # The mean over the full spectrum: a bin of the half spectrum inside the last axis stands for
    # two. Counted once, the level depended on which axis is stored last (1 x 1 x 2 mm: 7.39
    # against 8.00 ppb with the axes in another order, tests/pipeline/test_orientation_invariance.py).
    multiplicity = np.broadcast_to(half_spectrum_multiplicity(problem.grid.shape), band.shape)[band]
    mean_power = float(np.dot(power[band].astype(np.float64), multiplicity) / multiplicity.sum(dtype=np.float64))
    return float(np.sqrt(mean_power / problem.mask.sum()))


def truncation_leak_ppm(problem: Problem, predicted_ppm: np.ndarray) -> float:
    """``inconsistency_ppm`` of the field a map predicts, zeroed outside the mask.

    A field that a susceptibility inside the mask explains exactly still shows power on the
    magic cone once it is known only inside the mask: the cut at the mask's edge spreads its
    spectrum there. That power is not inconsistency, and a fitted map's predicted field shows
    it too (a smooth map somewhat less: what it leaves out of the field leaks less).
    """
    inside = np.where(problem.mask, predicted_ppm, 0).astype(np.float32)
    return inconsistency_ppm(replace(problem, field_ppm=inside))


def weights_on_grid(mask: np.ndarray, magnitude: np.ndarray | None, noise_ppm: np.ndarray | None
                    ) -> tuple[np.ndarray, str]:
    """The data term's weight rule on any grid (arrays of one shape): mean 1 in ``mask``.

    1/noise when a field-noise map is given (maximum likelihood), else the magnitude (MEDI's
    SNR proxy), else uniform; clipped to [0.1, 10] x their median so that a few voxels cannot
    dominate; zero outside the mask and where the noise is infinite (no usable field, e.g. the
    echo fit's misfit). Returns the weights (float32) and "noise map", "magnitude" or "uniform".
    """
    if noise_ppm is not None:
        noise = np.asarray(noise_ppm, dtype=np.float32)
        good = mask & np.isfinite(noise) & (noise > 0)
        raw = np.zeros(mask.shape, np.float32)
        raw[good] = 1.0 / noise[good]
        source = "noise map"
    elif magnitude is not None:
        raw = np.abs(np.asarray(magnitude, dtype=np.float32))
        source = "magnitude"
    else:
        raw = mask.astype(np.float32)
        source = "uniform"
    raw = np.where(mask & np.isfinite(raw), raw, 0.0).astype(np.float32)
    median = float(np.median(raw[mask]))
    if not median > 0:
        raw = mask.astype(np.float32)
        source = "uniform"
        median = 1.0
    raw = np.where(mask, np.clip(raw, 0.1 * median, 10.0 * median), 0.0).astype(np.float32)
    if noise_ppm is not None:
        raw[without_data(noise_ppm, mask)] = 0.0
    return raw / np.float32(raw[mask].mean()), source


def weighted_noise_level(weights: np.ndarray, noise_ppm: np.ndarray, mask: np.ndarray) -> float:
    """Expected RMS over the mask of ``weights * noise``: the discrepancy principle's level.

    Voxels without usable field (infinite noise) weigh 0 and count as 0, as they do in the
    weighted residual it is compared to (an RMS over every mask voxel).
    """
    noise = np.asarray(noise_ppm, dtype=np.float32)[mask]
    carried = weights[mask] * np.where(np.isfinite(noise), noise, 0.0)
    return float(np.sqrt(np.mean(carried ** 2, dtype=np.float64)))


def data_weights(problem: Problem, magnitude: np.ndarray | None, noise_ppm: np.ndarray | None
                 ) -> tuple[np.ndarray, float, str]:
    """Per-voxel weights of the data term on the problem's grid (``weights_on_grid``).

    Returns
    -------
    weights : ndarray, float32, grid shape
    noise_weighted : float
        Expected standard deviation of ``weights * noise``: the level the discrepancy
        principle compares the weighted residual to (without a noise map, the wavelet
        estimate of the weighted field's noise).
    source : str
        "noise map", "magnitude" or "uniform".
    """
    noise = None if noise_ppm is None else problem.pad(noise_ppm)
    magnitude = None if magnitude is None else problem.pad(magnitude)
    weights, source = weights_on_grid(problem.mask, magnitude, noise)
    if source == "noise map":
        level = weighted_noise_level(weights, noise, problem.mask)
    else:
        level = estimate_noise_ppm(weights * problem.field_ppm, problem.mask)
    return weights, level, source
