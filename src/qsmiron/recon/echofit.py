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
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Sequence

import numpy as np
import scipy.stats

from qsmiron.recon.unwrap._common import as_4d, bounding_box, smooth_phase_linear

__all__ = ["EchoFit", "fit_field", "OFFSET_MODES"]

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
        degrees of freedom.
    """

    field_hz: np.ndarray
    noise_hz: np.ndarray
    offset_rad: np.ndarray
    reduced_chi2: np.ndarray | None = None
    info: dict[str, Any] = field(default_factory=dict)


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
              offset_sigma_mm: float = 4.0, workers: int = -1) -> EchoFit:
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
        Gaussian smoothing of the fitted offset, mm.
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
    m = mask[box]
    n_vox = int(m.sum())
    given = np.zeros(n_vox, np.float64) if offset_rad is None else \
        np.asarray(offset_rad, np.float64)[box][m]
    y = np.empty((n_echoes, n_vox), np.float64)
    w = np.empty((n_echoes, n_vox), np.float64)
    for n in range(n_echoes):
        y[n] = phase[box + (n,)][m]
        y[n] -= given
        w[n] = 1.0 if mag is None else np.square(mag[box + (n,)][m], dtype=np.float64)
    te_col = te[:, None]

    def free_fit():
        s = w.sum(0)
        st = (w * te_col).sum(0)
        stt = (w * te_col ** 2).sum(0)
        sy = (w * y).sum(0)
        sty = (w * te_col * y).sum(0)
        det = s * stt - st * st
        ok = det > 0
        det = np.where(ok, det, 1.0)
        slope = np.where(ok, (s * sty - st * sy) / det, 0.0)
        intercept = np.where(ok, (stt * sy - st * sty) / det, 0.0)
        return slope, intercept, np.where(ok, s / det, np.inf), np.where(ok, stt / det, np.inf)

    info: dict[str, Any] = {"offset": offset, "n_echoes": n_echoes,
                            "weights": "magnitude^2" if mag is not None else "uniform"}
    fitted_offset = np.zeros(n_vox, np.float64)
    if offset == "fit":
        slope, fitted_offset, var_slope, _ = free_fit()
        n_params = 2
    else:
        if offset == "smooth":
            _, intercept, _, var_intercept = free_fit()
            weights_box = np.zeros(m.shape, np.float32)
            with np.errstate(divide="ignore"):
                weights_box[m] = np.where(np.isfinite(var_intercept) & (var_intercept > 0),
                                          1.0 / var_intercept, 0.0)
            intercept_box = np.zeros(m.shape, np.float32)
            intercept_box[m] = intercept
            smooth = smooth_phase_linear(intercept_box, weights_box, m, offset_sigma_mm,
                                         voxel_size_mm, workers=workers)
            fitted_offset = smooth[m].astype(np.float64)
            y -= fitted_offset
            info["offset_sigma_mm"] = offset_sigma_mm
        stt = (w * te_col ** 2).sum(0)
        ok = stt > 0
        slope = np.where(ok, (w * te_col * y).sum(0) / np.where(ok, stt, 1.0), 0.0)
        var_slope = np.where(ok, 1.0 / np.where(ok, stt, 1.0), np.inf)
        n_params = 1

    dof = n_echoes - n_params
    residual = y - (fitted_offset if offset == "fit" else 0.0) - slope * te_col
    chi2 = (w * residual ** 2).sum(0)
    del residual, y
    if dof > 0:
        sigma2 = float(np.median(chi2) / scipy.stats.chi2.median(dof))
        info["noise_estimate"] = "fit residuals (median chi-square)"
    else:
        first = np.ones(m.shape, np.float32) if mag is None else mag[box + (0,)]
        sigma2 = _spatial_noise_sigma(np.asarray(first, np.float64), m) ** 2
        info["noise_estimate"] = "first-echo magnitude neighbour differences"
    if mag is None:
        info["noise_estimate"] += " (uniform weights: noise in rad of phase)"
    info["noise_sigma"] = float(np.sqrt(sigma2))
    info["dof"] = dof

    def scatter(values, dtype=np.float32):
        out = np.zeros(mask.shape, dtype)
        inner = np.zeros(m.shape, dtype)
        inner[m] = values
        out[box] = inner
        return out

    field_hz = scatter(slope / (2.0 * np.pi))
    noise_hz = scatter(np.sqrt(sigma2 * var_slope) / (2.0 * np.pi))
    total_offset = np.angle(np.exp(1j * (given + fitted_offset)))
    offset_map = scatter(total_offset)
    reduced = None
    if dof > 0 and sigma2 > 0:
        reduced = scatter(chi2 / (dof * sigma2))
        reduced[~mask] = np.nan
    return EchoFit(field_hz, noise_hz, offset_map, reduced, info)
