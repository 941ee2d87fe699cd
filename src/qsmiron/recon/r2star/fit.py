"""R2* (with T2* and S0) from multi-echo magnitude: a mono-exponential fit that knows its noise.

Model, per voxel: ``M_n = |S0 exp(-R2* TE_n) + noise_n|`` with complex Gaussian noise of
standard deviation ``sigma`` per channel, so ``M_n`` is Rician (Rayleigh where there is no
signal; Gudbjartsson & Patz, MRM 1995;34:910).

Steps:

1. **Noise level.** ``sigma`` is given, or estimated from the air around the head (the
   first-echo magnitude below its Otsu threshold and outside the mask, where ``M`` is
   Rayleigh: ``median = sigma sqrt(2 ln 2)``, refined by excluding values above 4 sigma), or,
   when there is too little air, from the residuals of an unguarded fit (median residual sum
   of squares over the chi-square median with ``E - 2`` degrees of freedom; an upper bound,
   since model misfit adds to it).
2. **Noise-floor guard.** Per voxel the usable echoes are the leading run whose signal is
   at least ``floor_factor x sigma`` (the Rayleigh floor has mean 1.25 sigma and SD 0.66
   sigma, so the default factor 3 keeps echoes about 2.7 floor SDs above the floor mean).
   Judging each echo by its measured value would keep the echoes that noise lifted above the
   threshold and bias R2* low, so the run is judged by the fitted signal: a first fit over
   the echoes measured above half the threshold, then the echoes whose fitted signal
   ``S0 exp(-R2* TE_n)`` reaches the threshold, refitted. The decay is monotonic, so an echo
   below the floor ends the run. The kept magnitudes are corrected for the Rician bias,
   ``sqrt(M^2 - sigma^2)`` (first order in sigma/M).
3. **Fit**, on at least ``MIN_ECHOES`` usable echoes:

   - ``"nlls"`` (default): weighted log-linear fit (weights ``M^2``, the inverse variance
     of ``log M``) as the start, then Gauss-Newton on ``S0 exp(-R2* TE)`` with step halving
     (least squares on the magnitudes: the maximum-likelihood fit for Gaussian noise, which
     the corrected Rician magnitude is at the SNR the guard keeps).
   - ``"arlo"``: auto-regression on linear operations (Pei et al., MRM 2015;73:843), the
     closed-form ratio of Simpson integrals and echo differences over consecutive echo
     triplets (uneven spacing allowed); S0 then by least squares with R2* fixed. Fast,
     slightly noisier than NLLS.

4. **Validity.** A voxel is masked, never silently zero, when it has fewer than
   ``MIN_ECHOES`` usable echoes, the fit fails, R2* is negative beyond three standard
   errors (a signal rising with TE), or R2* exceeds ``r2star_max_per_s``. Masked voxels are
   NaN in the maps, counted by reason in ``info``; outside ``mask`` the maps are 0.

The standard error of R2* comes from the fit's Jacobian, ``sigma^2 [(J^T J)^-1]_RR``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Sequence

import numba
import numpy as np

from qsmiron.errors import InputError
from qsmiron.recon.chi2 import chi2_median

__all__ = ["R2starFit", "R2STAR_METHODS", "MIN_ECHOES", "fit_r2star", "estimate_noise_sigma"]

R2STAR_METHODS = ("nlls", "arlo")
MIN_ECHOES = 3
"""Two parameters and at least one residual degree of freedom."""

DEFAULT_FLOOR_FACTOR = 3.0
DEFAULT_R2STAR_MAX_PER_S = 500.0
"""Above this (T2* under 2 ms) a GRE with a first echo of a few ms has no usable decay left."""

MIN_AIR_VOXELS = 1000

_GN_TOL_PER_S = 1e-3
"""Gauss-Newton stops when R2* moves by less (s^-1): far below its noise (0.7 s^-1 at SNR 120)."""

# Per-voxel outcome codes of the kernel (``R2starFit.info["masked"]`` counts them).
_VALID, _FEW_ECHOES, _FAILED, _RISING, _TOO_FAST = 0, 1, 2, 3, 4
_REASONS = {_FEW_ECHOES: "fewer_than_3_echoes_above_noise_floor", _FAILED: "fit_failed",
            _RISING: "signal_rises_with_echo_time", _TOO_FAST: "r2star_above_maximum"}


@dataclass
class R2starFit:
    """Result of :func:`fit_r2star`.

    Attributes
    ----------
    r2star_per_s : ndarray of float32, shape (X, Y, Z)
        R2*, s^-1; NaN where ``mask`` but not ``valid``; 0 outside ``mask``.
    t2star_s : ndarray of float32
        1 / R2*, s, where valid and R2* > 0; NaN elsewhere inside ``mask`` (invalid, or an
        R2* within noise of zero, whose T2* is unbounded); 0 outside ``mask``.
    s0 : ndarray of float32
        Signal at TE = 0 (magnitude units), NaN / 0 like ``r2star_per_s``.
    valid : ndarray of bool
        Voxels of ``mask`` with a trustworthy fit.
    r2star_sd_per_s : ndarray of float32
        Standard error of R2* from the fit, s^-1 (NaN / 0 like ``r2star_per_s``).
    echoes_used : ndarray of uint8
        Echoes above the noise floor per voxel (0 outside ``mask``).
    info : dict
        ``method``, ``parameters`` (every setting used), ``noise_sigma`` and how it was
        estimated, ``n_voxels``, ``n_valid``, ``masked`` (count per reason), ``warnings``.
    """

    r2star_per_s: np.ndarray
    t2star_s: np.ndarray
    s0: np.ndarray
    valid: np.ndarray
    r2star_sd_per_s: np.ndarray
    echoes_used: np.ndarray
    info: dict[str, Any] = field(default_factory=dict)


def _check_echo_times(echo_times_s: Sequence[float], n_echoes: int) -> np.ndarray:
    te = np.asarray(echo_times_s, dtype=np.float64).reshape(-1)
    if te.size != n_echoes:
        raise ValueError(f"{te.size} echo times for {n_echoes} echoes")
    if not np.all(np.isfinite(te)) or np.any(te <= 0) or np.any(np.diff(te) <= 0):
        raise ValueError(f"echo times must be positive and increasing, got {te.tolist()}")
    if te.max() > 1.0:
        raise ValueError(f"echo times are in seconds; got {te.tolist()} (milliseconds?)")
    return te


def estimate_noise_sigma(magnitude: np.ndarray, mask: np.ndarray, *,
                         min_air_voxels: int = MIN_AIR_VOXELS) -> float | None:
    """Noise SD per channel from the air around the head (Rayleigh statistics), or None.

    Parameters
    ----------
    magnitude : ndarray, shape (X, Y, Z, E)
    mask : ndarray of bool, shape (X, Y, Z)
        The head or brain; never counted as air.
    min_air_voxels : int
        Fewer air voxels in the sample (every third voxel per axis; first echo below its Otsu
        threshold, outside ``mask``, not exactly zero, which marks zero-filled or
        scanner-masked background) -> None.

    Returns
    -------
    float or None
        ``sigma``, in magnitude units. Assumes one effective channel (adaptive combination);
        for a root-sum-of-squares combination of N coils it overestimates sigma.
    """
    from skimage.filters import threshold_otsu

    # Every third voxel along each axis (a strided view, no copy of the volume): over a
    # hundred thousand air voxels in a typical field of view, plenty for a median.
    step = 3 if min(np.shape(mask)) >= 24 else 1
    sample = np.asarray(magnitude[::step, ::step, ::step, :])
    inside = np.asarray(mask, dtype=bool)[::step, ::step, ::step]
    first = sample[..., 0]
    nonzero = first > 0  # exact zeros mark zero-filled or scanner-masked background
    if np.count_nonzero(nonzero) < min_air_voxels:
        return None
    threshold = float(threshold_otsu(first[nonzero].astype(np.float32)))
    air = nonzero & ~inside & (first < threshold)
    if np.count_nonzero(air) < min_air_voxels:
        return None
    values = sample[air].astype(np.float64).reshape(-1)
    rayleigh_median = math.sqrt(2.0 * math.log(2.0))
    sigma = float(np.median(values)) / rayleigh_median
    for _ in range(3):
        # Partial-volume tissue below the Otsu threshold inflates the median; a Rayleigh
        # variable exceeds 4 sigma with probability 3e-4, so values above it are not noise.
        kept = values[values < 4.0 * sigma]
        if kept.size < min_air_voxels:
            return None
        # Median of a Rayleigh truncated at 4 sigma: the quantile 0.5 (1 - exp(-8)).
        truncated_median = math.sqrt(-2.0 * math.log(1.0 - 0.5 * (1.0 - math.exp(-8.0))))
        sigma = float(np.median(kept)) / truncated_median
    return sigma if sigma > 0 else None


def fit_r2star(magnitude: np.ndarray, mask: np.ndarray, echo_times_s: Sequence[float], *,
               method: str = "nlls", noise_sigma: float | None = None,
               floor_factor: float = DEFAULT_FLOOR_FACTOR, rician_correction: bool = True,
               r2star_max_per_s: float = DEFAULT_R2STAR_MAX_PER_S, max_iter: int = 20) -> R2starFit:
    """Fit ``S0 exp(-R2* TE)`` to multi-echo magnitude inside a mask.

    Parameters
    ----------
    magnitude : ndarray, shape (X, Y, Z, E)
        Magnitude (any units), echoes last.
    mask : ndarray of bool, shape (X, Y, Z)
        Voxels to fit (the head or brain mask).
    echo_times_s : sequence of E floats
        Seconds, increasing.
    method : {"nlls", "arlo"}
        Nonlinear least squares started from the weighted log-linear fit, or ARLO (module
        docstring).
    noise_sigma : float, optional
        Noise SD per channel in magnitude units; estimated when not given (module
        docstring).
    floor_factor : float
        Echoes below ``floor_factor x sigma`` (and all later ones) are not used; 0 uses all.
    rician_correction : bool
        Fit ``sqrt(M^2 - sigma^2)`` instead of ``M``.
    r2star_max_per_s : float
        Fits above this are masked.
    max_iter : int
        Gauss-Newton iterations at most (``"nlls"``).

    Returns
    -------
    R2starFit

    Raises
    ------
    InputError
        Fewer than ``MIN_ECHOES`` echoes.
    """
    mag = np.asarray(magnitude)
    if mag.ndim != 4:
        raise ValueError(f"magnitude must be 4D (echoes last), got shape {mag.shape}")
    n_echoes = mag.shape[3]
    if n_echoes < MIN_ECHOES:
        raise InputError(f"R2* mapping needs at least {MIN_ECHOES} echoes (two parameters and "
                         f"a residual); this acquisition has {n_echoes}")
    te = _check_echo_times(echo_times_s, n_echoes)
    mask = np.asarray(mask, dtype=bool)
    if mask.shape != mag.shape[:3]:
        raise ValueError(f"mask shape {mask.shape} differs from the data's {mag.shape[:3]}")
    if method not in R2STAR_METHODS:
        raise ValueError(f"unknown R2* method {method!r}; choose one of {R2STAR_METHODS}")
    if floor_factor < 0 or r2star_max_per_s <= 0 or max_iter < 1:
        raise ValueError("floor_factor >= 0, r2star_max_per_s > 0 and max_iter >= 1 are needed")

    # One echo at a time: no copy of the whole 4D array whatever its memory order.
    signals = np.empty((int(np.count_nonzero(mask)), n_echoes), np.float32)
    for echo in range(n_echoes):
        signals[:, echo] = mag[..., echo][mask]
    warnings: list[str] = []
    if noise_sigma is not None:
        sigma, source = float(noise_sigma), "given"
        if not sigma >= 0:
            raise ValueError(f"noise_sigma must be >= 0, got {noise_sigma}")
    else:
        sigma, source = estimate_noise_sigma(mag, mask), "air around the head (Rayleigh median)"
        if sigma is None:
            sigma, source = _residual_sigma(signals, te, method, max_iter), \
                "fit residuals (median chi-square; an upper bound)"
            warnings.append("too little air around the head to measure the noise; the noise "
                            "level comes from the fit residuals and may be overestimated")
    floor = floor_factor * sigma
    correction = sigma * sigma if rician_correction else 0.0
    out = _run_kernel(signals, te, method, floor, correction, sigma, r2star_max_per_s, max_iter)
    r2s, s0, sd, used, code = out
    fit = _assemble(mask, r2s, s0, sd, used, code)
    fit.info.update({
        "method": method,
        "parameters": {"floor_factor": floor_factor, "rician_correction": rician_correction,
                       "r2star_max_per_s": r2star_max_per_s, "max_iter": max_iter,
                       "min_echoes": MIN_ECHOES, "echo_times_s": te.tolist()},
        "noise_sigma": sigma, "noise_estimate": source,
        "n_voxels": int(code.size), "n_valid": int(np.count_nonzero(code == _VALID)),
        "masked": {name: int(np.count_nonzero(code == c)) for c, name in _REASONS.items()},
        "warnings": warnings,
    })
    return fit


def _assemble(mask, r2s, s0, sd, used, code) -> R2starFit:
    """Full-size maps: values where valid, NaN where masked, 0 outside the mask."""
    index = np.flatnonzero(mask)
    size = mask.size
    maps = [np.zeros(size, np.float32) for _ in range(4)]
    valid = np.zeros(size, bool)
    echoes = np.zeros(size, np.uint8)
    unbounded = _scatter(index, r2s, s0, sd, used, code, *maps, valid, echoes)
    r2star, t2star, s0_map, sd_map = (m.reshape(mask.shape) for m in maps)
    return R2starFit(r2star, t2star, s0_map, valid.reshape(mask.shape), sd_map,
                     echoes.reshape(mask.shape), {"t2star_unbounded": int(unbounded)})


@numba.njit(parallel=True, cache=True)
def _scatter(index, r2s, s0, sd, used, code, r2s_out, t2_out, s0_out, sd_out, valid_out, used_out):
    """Write the per-voxel results into the flat full-size maps; returns the count of valid
    voxels with R2* <= 0 (T2* unbounded, NaN)."""
    unbounded = 0
    for i in numba.prange(index.size):
        j = index[i]
        used_out[j] = used[i]
        if code[i] != 0:
            r2s_out[j] = t2_out[j] = s0_out[j] = sd_out[j] = np.nan
            continue
        valid_out[j] = True
        r2s_out[j] = r2s[i]
        s0_out[j] = s0[i]
        sd_out[j] = sd[i]
        if r2s[i] > 0:
            t2_out[j] = 1.0 / r2s[i]
        else:
            t2_out[j] = np.nan
            unbounded += 1
    return unbounded


def _run_kernel(signals, te, method, floor, correction, sigma, r2star_max, max_iter):
    n = signals.shape[0]
    r2s, s0, sd = (np.zeros(n, np.float32) for _ in range(3))
    used, code = np.zeros(n, np.uint8), np.zeros(n, np.uint8)
    _fit_voxels(signals, te, method == "arlo", floor, correction, sigma, r2star_max, max_iter,
                r2s, s0, sd, used, code)
    return r2s, s0, sd, used, code


def _residual_sigma(signals: np.ndarray, te: np.ndarray, method: str, max_iter: int) -> float:
    """Noise SD from an unguarded fit of all echoes: median RSS over the chi-square median."""
    n = signals.shape[0]
    r2s, s0, sd, used, code = _run_kernel(signals, te, method, 0.0, 0.0, 0.0, np.inf, max_iter)
    fitted = s0[:, None] * np.exp(-r2s[:, None] * te[None, :])
    rss = np.sum((signals - fitted) ** 2, axis=1)
    good = (code == _VALID) & np.isfinite(rss)
    if not good.any() or n == 0:
        return 0.0
    dof = te.size - 2
    return float(math.sqrt(np.median(rss[good]) / chi2_median(dof)))


@numba.njit(cache=True, inline="always")
def _loglinear(y, te, n):
    """Weighted (w = y^2) line fit of log y over the first n echoes: (S0, R2*)."""
    s = st = stt = sy = sty = 0.0
    for k in range(n):
        w = y[k] * y[k]
        v = math.log(y[k])
        s += w
        st += w * te[k]
        stt += w * te[k] * te[k]
        sy += w * v
        sty += w * te[k] * v
    det = s * stt - st * st
    if not det > 0:
        return np.nan, np.nan
    slope = (s * sty - st * sy) / det
    return math.exp((sy - slope * st) / s), -slope


@numba.njit(cache=True, inline="always")
def _arlo(y, te, n):
    """ARLO R2* over the first n echoes (Pei et al. 2015, general echo spacing)."""
    yy = yx = beta_yx = beta_xx = 0.0
    for j in range(n - 2):
        t0, t1, t2 = te[j], te[j + 1], te[j + 2]
        alpha = (t2 - t0) * (t2 - t0) / 2.0 / (t1 - t0)
        tmp = (2.0 * t2 * t2 - t0 * t2 - t0 * t0 + 3.0 * t0 * t1 - 3.0 * t1 * t2) / 6.0
        beta = tmp / (t2 - t1)
        gamma = tmp / (t1 - t0)
        # Integral of the signal from t0 to t2 (Simpson-like) and the difference of its ends.
        integral = y[j] * (t2 - t0 - alpha + gamma) + y[j + 1] * (alpha - beta - gamma) + y[j + 2] * beta
        difference = y[j] - y[j + 2]
        yy += integral * integral
        yx += integral * difference
        beta_yx += beta * integral * difference
        beta_xx += beta * difference * difference
    denominator = beta_yx + yy
    if denominator == 0.0:
        return np.nan
    return (yx + beta_xx) / denominator


@numba.njit(cache=True, inline="always")
def _cost(y, te, n, a, r):
    c = 0.0
    for k in range(n):
        d = y[k] - a * math.exp(-r * te[k])
        c += d * d
    return c


@numba.njit(cache=True, inline="always")
def _gauss_newton(y, te, n, a, r, max_iter):
    """Least squares of a exp(-r t) over the first n echoes, from (a, r); step halving."""
    cost = _cost(y, te, n, a, r)
    for _ in range(max_iter):
        jaa = jar = jrr = ga = gr = 0.0
        for k in range(n):
            e = math.exp(-r * te[k])
            d = y[k] - a * e
            dr = -a * te[k] * e
            jaa += e * e
            jar += e * dr
            jrr += dr * dr
            ga += e * d
            gr += dr * d
        det = jaa * jrr - jar * jar
        if not det > 0:
            return a, r, False
        da = (jrr * ga - jar * gr) / det
        dr_step = (jaa * gr - jar * ga) / det
        step = 1.0
        improved = False
        for _ in range(12):
            trial = _cost(y, te, n, a + step * da, r + step * dr_step)
            if trial <= cost:
                improved = True
                break
            step *= 0.5
        if not improved:
            return a, r, True  # no descent left: at the minimum within rounding
        a += step * da
        r += step * dr_step
        cost = trial
        if abs(step * dr_step) < _GN_TOL_PER_S:
            break
    return a, r, True


@numba.njit(cache=True, inline="always")
def _r2star_variance(te, n, a, r):
    """[(J^T J)^-1]_RR for unit noise."""
    jaa = jar = jrr = 0.0
    for k in range(n):
        e = math.exp(-r * te[k])
        dr = -a * te[k] * e
        jaa += e * e
        jar += e * dr
        jrr += dr * dr
    det = jaa * jrr - jar * jar
    return jaa / det if det > 0 else np.inf


@numba.njit(cache=True, inline="always")
def _fit_first(y, te, n, use_arlo, max_iter):
    """Fit over the first n echoes: (S0, R2*, ok)."""
    if use_arlo:
        r = _arlo(y, te, n)
        num = den = 0.0
        for k in range(n):
            e = math.exp(-r * te[k])
            num += y[k] * e
            den += e * e
        a = num / den if den > 0 else np.nan
        return a, r, np.isfinite(r) and np.isfinite(a)
    a, r = _loglinear(y, te, n)
    if not (np.isfinite(a) and np.isfinite(r)):
        return a, r, False
    return _gauss_newton(y, te, n, a, r, max_iter)


_CHUNK = 4096
"""Voxels per parallel task (one work buffer each)."""


@numba.njit(parallel=True, cache=True)
def _fit_voxels(signals, te, use_arlo, floor, correction, sigma, r2star_max, max_iter,
                r2s_out, s0_out, sd_out, used_out, code_out):
    n_voxels, n_echoes = signals.shape
    n_chunks = (n_voxels + _CHUNK - 1) // _CHUNK
    for chunk in numba.prange(n_chunks):
        y = np.empty(n_echoes)
        for i in range(chunk * _CHUNK, min(n_voxels, (chunk + 1) * _CHUNK)):
            _fit_one(signals, i, y, te, use_arlo, floor, correction, sigma, r2star_max, max_iter,
                     r2s_out, s0_out, sd_out, used_out, code_out)


@numba.njit(cache=True)
def _fit_one(signals, i, y, te, use_arlo, floor, correction, sigma, r2star_max, max_iter,
             r2s_out, s0_out, sd_out, used_out, code_out):
    """Guarded fit of voxel i (module docstring); results and outcome code written at i."""
    n_echoes = signals.shape[1]
    # Rician-corrected magnitudes while they are positive.
    n_positive = 0
    while n_positive < n_echoes and signals[i, n_positive] > 0.0:
        m = np.float64(signals[i, n_positive])
        value = m * m - correction
        if value <= 0.0:
            break
        y[n_positive] = math.sqrt(value)
        n_positive += 1
    # Pass 1: the leading run of measured echoes clear of the floor's bulk (half the
    # threshold: about 1.5 sigma, above the Rayleigh mean of 1.25 sigma).
    n = 0
    while n < n_positive and signals[i, n] >= 0.5 * floor:
        n += 1
    a = r = np.nan
    ok = n >= 3
    if ok:
        a, r, ok = _fit_first(y, te, n, use_arlo, max_iter)
    # Pass 2: selecting echoes by their measured value keeps those that noise lifted above
    # the floor (a bias towards slow decay); select by the fitted signal instead.
    if ok and floor > 0.0:
        n_model = 0
        while n_model < n_positive and a * math.exp(-r * te[n_model]) >= floor:
            n_model += 1
        if n_model != n:
            n = n_model
            if n >= 3:
                a, r, ok = _fit_first(y, te, n, use_arlo, max_iter)
    used_out[i] = n
    if n < 3:
        code_out[i] = 1
        return
    if not ok or not (a > 0) or not np.isfinite(r):
        code_out[i] = 2
        return
    sd = sigma * math.sqrt(_r2star_variance(te, n, a, r))
    r2s_out[i] = r
    s0_out[i] = a
    sd_out[i] = sd
    if r < -3.0 * sd:
        code_out[i] = 3
    elif r > r2star_max:
        code_out[i] = 4
