"""Weighted least-squares fit of the field over echo times: unwrapped phase -> field (Hz).

Model, per voxel: ``phase_n = offset + 2 pi f TE_n + noise_n`` with ``var(noise_n) = s^2 / m_n^2``
(the phase noise of a complex signal of magnitude ``m_n`` with complex noise ``s`` per
channel), so the least-squares weights are ``m_n^2`` (equivalently, the per-echo field
estimates ``phase_n / (2 pi TE_n)`` weighted by ``m_n^2 TE_n^2``).

The offset (the echo-independent phase from coil sensitivities and excitation) is handled
in one of three ways:

- ``"smooth"`` (default, >= 2 echoes): fit ``offset + slope`` per voxel, smooth the fitted
  offsets spatially (unit phasors, Gaussian of ``offset_sigma_mm``, weighted by their
  inverse variance) and refit the slope with that offset fixed. The field then has almost the
  noise of a fit through the origin, and an offset that is smooth is not mistaken for field.
- ``"fit"``: a free offset per voxel (unbiased, noisier: about 2.3x the standard deviation for
  5 evenly spaced echoes starting at dTE).
- ``"none"``: the offset is zero (or given as ``offset_rad`` and subtracted first).

The field-noise map is the standard deviation of the fitted field propagated from the
magnitudes, ``s / (2 pi sqrt(sum_n m_n^2 TE_n^2))`` (through the origin, or the equivalent
for a free offset), with the complex noise ``s`` estimated once for the volume from the
fit residuals (median of ``chi^2`` over the mask, divided by the median of the chi-square
distribution with the residual degrees of freedom). When there are no residual degrees of
freedom (one echo, or two with a free offset) ``s`` comes from the spread of neighbour
differences of the first-echo magnitude inside the mask (an upper bound: tissue texture adds
to it). The per-voxel reduced chi-square is returned too: values far above 1 flag voxels
whose phase is not linear in TE (unwrapping errors, flow, fat, noise-only voxels).

Those beyond the chi-square quantile ``1 - misfit_p`` form the ``misfit`` map: voxels whose
phase does not follow any single frequency, so that their fitted field is not the voxel's
mean field. Where the field varies by more than a cycle per voxel over the echo train (next
to sinuses and bone) the voxel's signal is a sinc of that gradient, whose sign flips between
echoes: its phase jumps by pi. On the issue-9 head h02 the fitted field of such voxels was
0.05-0.36 ppm off in 4 374 voxels, enough to triple the error of the background removal.
Later steps treat these voxels as having no field data (infinite noise; ``ReconState``).
At high SNR the test alone also flags voxels whose phase bends only slightly over the echoes
and whose field is right, so a misfit voxel must also imply a field error above
``misfit_tolerance_ppm``. Voxels that the spatial unwrapping put a whole aliasing period of the
echo train off fit their phase perfectly; their neighbours find them
(``qsmiron.recon.aliasing``), and they join the misfit map.
"""

from __future__ import annotations

from dataclasses import dataclass, field
import math
from typing import Any, Literal, Sequence

import numba
import numpy as np
from scipy import ndimage

from qsmiron import ppm_per_hz
from qsmiron.methods import Method
from qsmiron.recon.aliasing import aliased_voxels, aliasing_period_hz
from qsmiron.recon.chi2 import chi2_median, chi2_upper_quantile
from qsmiron.recon.dephasing import FACTOR as DEPHASING_FACTOR, dephased_voxels
from qsmiron.recon.params import NonNegativeFloat, OpenFraction, PositiveFloat
from qsmiron.recon.fourier import bounding_box
from qsmiron.recon.unwrap import as_4d, smooth_phase_linear

__all__ = ["EchoFit", "fit_field", "local_misfit_factor", "misfit_factor_notes", "OFFSET_MODES", "METHODS"]

OFFSET_MODES = ("smooth", "fit", "none")


@dataclass
class EchoFit:
    """Result of the echo fit.

    Attributes
    ----------
    field_hz : ndarray of float32, shape (X, Y, Z)
        Total field, Hz; 0 outside the mask.
    noise_hz : ndarray of float32, shape (X, Y, Z)
        Standard deviation of ``field_hz`` from the magnitude SNR, Hz; 0 outside the mask.
    offset_rad : ndarray of float32, shape (X, Y, Z)
        The phase offset used (given + fitted), rad, wrapped to [-pi, pi); 0 outside.
    reduced_chi2 : ndarray of float32, shape (X, Y, Z)
        Residual sum of squares / (noise variance x degrees of freedom); about 1 where the
        model holds, NaN when there are no residual degrees of freedom.
    info : dict
        Noise level ``noise_sigma`` (magnitude units), how it was estimated, offset mode,
        degrees of freedom, the misfit limit and count.
    misfit : ndarray of bool, shape (X, Y, Z), or None
        Mask voxels whose reduced chi-square exceeds its ``1 - misfit_p`` quantile (None
        without residual degrees of freedom).
    """

    field_hz: np.ndarray
    noise_hz: np.ndarray
    offset_rad: np.ndarray
    reduced_chi2: np.ndarray | None = None
    info: dict[str, Any] = field(default_factory=dict)
    misfit: np.ndarray | None = None


def _spatial_noise_sigma(magnitude0: np.ndarray, mask: np.ndarray) -> float:
    """Complex noise std from neighbour differences of a magnitude image in the mask."""
    values = []
    for axis in range(3):
        lo = [slice(None)] * 3
        hi = [slice(None)] * 3
        lo[axis] = slice(0, -1)
        hi[axis] = slice(1, None)
        pair = mask[tuple(lo)] & mask[tuple(hi)]
        values.append((magnitude0[tuple(hi)] - magnitude0[tuple(lo)])[pair])
    diffs = np.concatenate(values)
    if diffs.size == 0:
        return float("nan")
    # MAD of a difference of two independent N(0, s^2) values: s * sqrt(2) * 0.6745.
    mad = np.median(np.abs(diffs - np.median(diffs)))
    return float(mad / (np.sqrt(2.0) * 0.6744897501960817))


def fit_field(unwrapped_rad: np.ndarray, magnitude: np.ndarray | None, mask: np.ndarray,
              echo_times_s: Sequence[float], *,
              offset: Literal["smooth", "fit", "none"] = "smooth",
              offset_rad: np.ndarray | None = None,
              voxel_size_mm: Sequence[float] | None = None,
              offset_sigma_mm: PositiveFloat = 2.0, misfit_p: OpenFraction = 1e-4,
              misfit_tolerance_ppm: NonNegativeFloat = 0.005,
              field_strength_t: float | None = None, workers: int = -1) -> EchoFit:
    """Fit ``phase = offset + 2 pi f TE`` over echoes by weighted least squares.

    Parameters
    ----------
    unwrapped_rad : ndarray, shape (X, Y, Z, E) or (X, Y, Z)
        Unwrapped phase, rad, consistent across echoes (see ``qsmiron.recon.unwrap``).
    magnitude : ndarray, same shape, optional
        Magnitude (any units): weights ``m^2``. Without it all echoes weigh the same and the
        noise map is relative (noise level 1).
    mask : ndarray of bool, shape (X, Y, Z)
    echo_times_s : E floats, s
    offset : {"smooth", "fit", "none"}
        How the echo-independent phase offset is treated (module docstring). ``"smooth"``
        needs ``voxel_size_mm`` and >= 2 echoes; with one echo ``"none"`` is used.
    offset_rad : ndarray, shape (X, Y, Z), optional
        A known offset (e.g. from MCPC-3D-S), subtracted before the fit.
    voxel_size_mm : 3 floats, mm
        For the offset smoothing.
    offset_sigma_mm : float
        Gaussian smoothing of the fitted offset, mm: 2 mm averages a few hundred voxels
        (offset noise negligible) while the curvature bias, growing with sigma^2, stays small.
    misfit_p : float
        False-alarm rate of the ``misfit`` map under the noise model: 1e-4 flags about 160
        of 1.6 million brain voxels where the model holds (the same level as the mask
        refinement's ``chi2_p``). On 6 family heads 1e-3 and 1e-5 gave the same Chimap error
        (median 44.1 and 46.0 %, worst 52.0 and 52.2 %, against 43.8 and 52.0 %); the worst VeP
        error moves with it (-19.7 and -14.7 against -17.5 ppb), and 1e-3 lowers the worst slope
        (0.94 against 0.96).
    misfit_tolerance_ppm : float
        A misfit voxel also needs a field uncertainty above this, ppm: its field-noise SD times
        the square root of its reduced chi-square (the SD its own residuals imply). At high SNR
        the chi-square test alone flags voxels whose phase bends only slightly over the echoes
        (intravoxel dephasing near sinuses) but whose fitted field is right, and discards their
        data. On family head h06 at 7 T (SNR 200; ``simulate.heads.ACQUISITIONS``) it flagged
        111 287 voxels (8.9 % of the mask); of those with an implied SD under 0.005 ppm (76 439)
        the field was off by 0.0015-0.0028 ppm (median), of those above 0.01 ppm by 0.028-0.049.
        0 keeps the chi-square test alone. Needs ``field_strength_t`` (else not applied).
    field_strength_t : float, optional
        Tesla, for ``misfit_tolerance_ppm``.
    workers : int
        Threads for the FFT smoothing.

    Returns
    -------
    EchoFit
    """
    phase = as_4d(unwrapped_rad, "unwrapped_rad")
    mask = np.asarray(mask, dtype=bool)
    if mask.shape != phase.shape[:3]:
        raise ValueError(f"mask shape {mask.shape} differs from the data's {phase.shape[:3]}")
    te = np.asarray(echo_times_s, dtype=np.float64).reshape(-1)
    n_echoes = phase.shape[3]
    if te.size != n_echoes:
        raise ValueError(f"{te.size} echo times for {n_echoes} echoes")
    if offset not in OFFSET_MODES:
        raise ValueError(f"offset must be one of {OFFSET_MODES}, got {offset!r}")
    if n_echoes == 1:
        offset = "none"
    if offset == "fit" and n_echoes < 2:
        raise ValueError("a free offset needs at least two echoes")
    if offset == "smooth" and voxel_size_mm is None:
        raise ValueError("offset='smooth' needs voxel_size_mm")
    mag = None if magnitude is None else as_4d(magnitude, "magnitude")
    if mag is not None and mag.shape != phase.shape:
        raise ValueError(f"magnitude shape {mag.shape} differs from phase shape {phase.shape}")

    box = bounding_box(mask)
    m = np.ascontiguousarray(mask[box])
    origin = np.array([b.start for b in box], np.int64)
    phase_k = _kernel_view(phase)
    mag_k = _EMPTY4 if mag is None else _kernel_view(mag)
    given_k = _EMPTY3 if offset_rad is None else _kernel_view(offset_rad)
    info: dict[str, Any] = {"offset": offset, "n_echoes": n_echoes,
                            "weights": "magnitude^2" if mag is not None else "uniform"}
    fitted_box = _EMPTY3
    if offset == "smooth":
        intercept_box = np.zeros(m.shape, np.float32)
        weights_box = np.zeros(m.shape, np.float32)
        _intercepts(phase_k, mag_k, given_k, m, origin, te, intercept_box, weights_box)
        fitted_box = smooth_phase_linear(intercept_box, weights_box, m, offset_sigma_mm,
                                         voxel_size_mm, workers=workers)
        del intercept_box, weights_box
        info["offset_sigma_mm"] = offset_sigma_mm
    n_params = 2 if offset == "fit" else 1
    field_hz = np.zeros(mask.shape, np.float32)
    noise_hz = np.zeros(mask.shape, np.float32)
    offset_map = np.zeros(mask.shape, np.float32)
    var_box = np.zeros(m.shape, np.float64)
    chi2_box = np.zeros(m.shape, np.float64)
    _final_fit(phase_k, mag_k, given_k, fitted_box, offset == "fit", m, origin, te,
               field_hz, offset_map, var_box, chi2_box)
    del fitted_box

    dof = n_echoes - n_params
    if dof > 0:
        sigma2 = float(np.median(chi2_box[m]) / chi2_median(dof))
        info["noise_estimate"] = "fit residuals (median chi-square)"
    else:
        first = np.ones(m.shape, np.float32) if mag is None else mag[box + (0,)]
        sigma2 = _spatial_noise_sigma(np.asarray(first, np.float64), m) ** 2
        info["noise_estimate"] = "first-echo magnitude neighbour differences"
    if mag is None:
        info["noise_estimate"] += " (uniform weights: noise in rad of phase)"
    info["noise_sigma"] = float(np.sqrt(sigma2))
    info["dof"] = dof
    reduced = None
    if dof > 0 and sigma2 > 0:
        reduced = np.full(mask.shape, np.nan, np.float32)
    _noise_maps(var_box, chi2_box, m, origin, sigma2, float(max(dof, 1)), noise_hz,
                _EMPTY3F if reduced is None else reduced)
    misfit = None
    if reduced is not None:
        tolerance_hz = 0.0 if field_strength_t is None else misfit_tolerance_ppm / ppm_per_hz(field_strength_t)
        misfit = misfit_voxels(reduced, mask, dof, misfit_p, noise_hz=noise_hz, tolerance_hz=tolerance_hz)
        info.update(misfit_p=misfit_p, misfit_limit=round(reduced_chi2_limit(misfit_p, dof), 4),
                    misfit_tolerance_hz=round(tolerance_hz, 6), misfit_voxels=int(misfit.sum()))
    misfit = _with_dephased_voxels(mag, mask, misfit, te, dof, float(np.sqrt(sigma2)), info)
    misfit = _with_aliased_voxels(field_hz, mask, misfit, te, info)
    return EchoFit(field_hz, noise_hz, offset_map, reduced, info, misfit)


def _with_dephased_voxels(magnitude: np.ndarray | None, mask: np.ndarray, misfit: np.ndarray | None,
                          te: np.ndarray, dof: int, noise_sigma: float, info: dict[str, Any]) -> np.ndarray | None:
    """The misfit map with the voxels the magnitude shows dephased added (``qsmiron.recon.
    dephasing``), when the chi-square test is weak (at most one residual degree of freedom);
    their count goes into ``info``."""
    if magnitude is None or dof > 1 or te.size < 2:
        return misfit
    dephased = dephased_voxels(magnitude, mask, te, noise_sigma)
    info.update(dephased_voxels=int(dephased.sum()), dephasing_factor=DEPHASING_FACTOR)
    return _joined(misfit, dephased, info)


def _with_aliased_voxels(field_hz: np.ndarray, mask: np.ndarray, misfit: np.ndarray | None,
                         te: np.ndarray, info: dict[str, Any]) -> np.ndarray | None:
    """The misfit map with the voxels off by an aliasing period of the echo train added
    (``qsmiron.recon.aliasing``); their count and the period go into ``info``."""
    period = aliasing_period_hz(te)
    if period is None:
        return misfit
    usable = mask if misfit is None else mask & ~misfit
    aliased = aliased_voxels(field_hz, usable, period)
    info.update(aliasing_period_hz=period, aliased_voxels=int(aliased.sum()))
    return _joined(misfit, aliased, info)


def _joined(misfit: np.ndarray | None, flagged: np.ndarray, info: dict[str, Any]) -> np.ndarray | None:
    """The misfit map with ``flagged`` voxels added, None while both are empty; the joined
    count goes into ``info`` whichever test found the voxels."""
    if misfit is None and not flagged.any():
        return None
    joined = flagged if misfit is None else misfit | flagged
    info["misfit_voxels"] = int(joined.sum())
    return joined


def reduced_chi2_limit(p: float, dof: int) -> float:
    """The reduced chi-square that a fit following the noise model exceeds with probability ``p``."""
    return float(chi2_upper_quantile(p, dof) / dof)


def misfit_voxels(reduced_chi2: np.ndarray, mask: np.ndarray, dof: int, p: float, *,
                  noise_hz: np.ndarray | None = None, tolerance_hz: float = 0.0) -> np.ndarray:
    """Mask voxels whose reduced chi-square exceeds ``reduced_chi2_limit(p, dof)`` (NaN: not)
    and, with ``tolerance_hz`` > 0, whose field SD implied by their residuals,
    ``noise_hz * sqrt(reduced_chi2)``, exceeds it."""
    with np.errstate(invalid="ignore"):
        flagged = mask & (reduced_chi2 > reduced_chi2_limit(p, dof))
        if tolerance_hz > 0:
            if noise_hz is None:
                raise ValueError("a misfit tolerance needs the field noise")
            flagged &= noise_hz * np.sqrt(reduced_chi2) > tolerance_hz
        return flagged


MISFIT_NEIGHBOURHOOD_VOXELS = 5
"""Side of the cube over which ``local_misfit_factor`` pools the reduced chi-square: 125 voxels
of 3-4 residual degrees of freedom each, so that noise alone moves the mean by about 0.1."""


def local_misfit_factor(reduced_chi2: np.ndarray, usable: np.ndarray, *,
                        size_voxels: int = MISFIT_NEIGHBOURHOOD_VOXELS) -> np.ndarray:
    """How much the field's SD exceeds the noise model's, from the fit's local residuals.

    ``sqrt(max(1, mean reduced chi-square))`` over the usable voxels of each voxel's
    ``size_voxels``-cube: 1 where the echoes follow one frequency within the noise, above 1
    where the phase is systematically not linear in TE (intra-voxel dephasing next to sinuses
    and bone, thick slices), whose field is then off by more than its propagated noise. 1
    outside ``usable`` and where the chi-square is unknown (no residual degrees of freedom).
    Measured on the head family: see ``qsmiron.recon.invert``.
    """
    chi2 = np.asarray(reduced_chi2, dtype=np.float32)
    factor = np.ones(chi2.shape, np.float32)
    usable = np.asarray(usable, dtype=bool) & np.isfinite(chi2)
    if not usable.any():
        return factor
    box = bounding_box(usable, margin=size_voxels // 2 + 1)
    inside = usable[box]
    total = ndimage.uniform_filter(np.where(inside, chi2[box], 0).astype(np.float32), size_voxels, mode="constant")
    count = ndimage.uniform_filter(inside.astype(np.float32), size_voxels, mode="constant")
    mean = total / np.maximum(count, np.float32(1e-6))
    factor[box] = np.where(inside, np.sqrt(np.maximum(mean, 1.0)), 1.0)
    return factor


def misfit_factor_notes(factor: np.ndarray, usable: np.ndarray) -> dict[str, Any]:
    """What the record says of a ``local_misfit_factor`` map over its usable voxels."""
    values = factor[usable]
    return {"neighbourhood_voxels": MISFIT_NEIGHBOURHOOD_VOXELS,
            "median": round(float(np.median(values)), 4) if values.size else None,
            "fraction_above_1_5": round(float(np.mean(values > 1.5)), 4) if values.size else None}


_EMPTY3 = np.zeros((0, 0, 0), np.float32)
_EMPTY3F = np.zeros((0, 0, 0), np.float32)
_EMPTY4 = np.zeros((0, 0, 0, 0), np.float32)


def _kernel_view(array: np.ndarray) -> np.ndarray:
    """float32 without a copy when possible (the kernels read any memory layout)."""
    return np.asarray(array, dtype=np.float32)


@numba.njit(cache=True, inline="always")
def _echo_weight(mag, use_mag, X, Y, Z, n):
    """Weight of echo ``n`` at one voxel: its squared magnitude (1 without magnitude)."""
    if use_mag:
        a = np.float64(mag[X, Y, Z, n])
        return a * a
    return 1.0


@numba.njit(cache=True, inline="always")
def _weighted_sums(phase, mag, use_mag, X, Y, Z, shift, te):
    """Sums of the weighted line fit of ``phase - shift`` over echoes at one voxel.

    Weights are the squared magnitudes (1 without magnitude). Returns
    ``(sum w, sum w t, sum w t^2, sum w v, sum w t v)``.
    """
    s = st = stt = sy = sty = 0.0
    for n in range(te.size):
        v = np.float64(phase[X, Y, Z, n]) - shift
        w = _echo_weight(mag, use_mag, X, Y, Z, n)
        t = te[n]
        wt = w * t
        s += w
        st += wt
        stt += w * (t * t)
        sy += w * v
        sty += wt * v
    return s, st, stt, sy, sty


@numba.njit(parallel=True, cache=True)
def _intercepts(phase, mag, given, m, origin, te, intercept_out, weight_out):
    """Free fit ``offset + slope * TE`` per voxel; the offset and its inverse variance."""
    nx, ny, nz = m.shape
    use_mag = mag.size > 0
    use_given = given.size > 0
    x0, y0, z0 = origin[0], origin[1], origin[2]
    for x in numba.prange(nx):
        for y in range(ny):
            for z in range(nz):
                if not m[x, y, z]:
                    continue
                g = np.float64(given[x0 + x, y0 + y, z0 + z]) if use_given else 0.0
                s, st, stt, sy, sty = _weighted_sums(phase, mag, use_mag, x0 + x, y0 + y, z0 + z, g, te)
                det = s * stt - st * st
                if det > 0:
                    intercept_out[x, y, z] = (stt * sy - st * sty) / det
                    var = stt / det
                    if var > 0 and np.isfinite(var):
                        weight_out[x, y, z] = 1.0 / var


@numba.njit(parallel=True, cache=True)
def _final_fit(phase, mag, given, fitted, free, m, origin, te, field_out, offset_out,
               var_out, chi2_out):
    """Per voxel: field (Hz), offset used (rad), slope variance and weighted chi-square.

    ``free``: offset and slope fitted together; else the slope through the origin after
    subtracting the given and the smoothed (``fitted``, may be empty) offsets.
    """
    nx, ny, nz = m.shape
    n_echoes = te.size
    use_mag = mag.size > 0
    use_given = given.size > 0
    use_fitted = fitted.size > 0
    x0, y0, z0 = origin[0], origin[1], origin[2]
    two_pi = 2.0 * np.pi
    for x in numba.prange(nx):
        for y in range(ny):
            for z in range(nz):
                if not m[x, y, z]:
                    continue
                X, Y, Z = x0 + x, y0 + y, z0 + z
                g = np.float64(given[X, Y, Z]) if use_given else 0.0
                c = np.float64(fitted[x, y, z]) if use_fitted else 0.0
                shift = g + c
                s, st, stt, sy, sty = _weighted_sums(phase, mag, use_mag, X, Y, Z, shift, te)
                intercept = 0.0
                if free:
                    det = s * stt - st * st
                    if det > 0:
                        slope = (s * sty - st * sy) / det
                        intercept = (stt * sy - st * sty) / det
                        var = s / det
                    else:
                        slope = 0.0
                        var = np.inf
                else:
                    if stt > 0:
                        slope = sty / stt
                        var = 1.0 / stt
                    else:
                        slope = 0.0
                        var = np.inf
                chi2 = 0.0
                for n in range(n_echoes):
                    v = np.float64(phase[X, Y, Z, n]) - shift
                    w = _echo_weight(mag, use_mag, X, Y, Z, n)
                    r = v - intercept - slope * te[n]
                    chi2 += w * (r * r)
                field_out[X, Y, Z] = slope / two_pi
                total = shift + intercept
                offset_out[X, Y, Z] = math.atan2(math.sin(total), math.cos(total))
                var_out[x, y, z] = var
                chi2_out[x, y, z] = chi2


@numba.njit(parallel=True, cache=True)
def _noise_maps(var, chi2, m, origin, sigma2, dof, noise_out, reduced_out):
    """Field noise (Hz) and, when ``reduced_out`` is not empty, reduced chi-square."""
    nx, ny, nz = m.shape
    x0, y0, z0 = origin[0], origin[1], origin[2]
    two_pi = 2.0 * np.pi
    use_reduced = reduced_out.size > 0
    for x in numba.prange(nx):
        for y in range(ny):
            for z in range(nz):
                if not m[x, y, z]:
                    continue
                noise_out[x0 + x, y0 + y, z0 + z] = math.sqrt(sigma2 * var[x, y, z]) / two_pi
                if use_reduced:
                    reduced_out[x0 + x, y0 + y, z0 + z] = chi2[x, y, z] / (dof * sigma2)


METHODS = (
    Method("weighted_least_squares", fit_field, label="weighted least squares",
           description="fit of phase = offset + 2 pi f TE over echoes, magnitude-squared weights, "
                       "with a field-noise map from the magnitude SNR",
           citation="QSM Consensus Organization Committee. Magn Reson Med 2024;91:1834-1862",
           doi="10.1002/mrm.30006"),
)
"""Echo combination methods (stage ``echo_fit``)."""
