"""Automatic choice of a regularisation weight, so that no dataset needs hand tuning.

Rules, each evaluated on a path of weights from strong to weak:

- **Discrepancy principle on the total inconsistency** (Morozov 1966; the default "auto" of
  ``tv``/``wtv``): the weight whose RMS residual inside the mask equals the RMS of what no
  susceptibility can explain, measured from the field's energy on the magic cone
  (``_common.inconsistency_ppm``: noise and model errors together). ``discrepancy_crossing``
  interpolates the crossing in log-log.
- **L-curve** (Hansen & O'Leary, SIAM J Sci Comput 1993): the corner of the curve
  (log residual norm, log regularisation norm), taken as the point of maximum curvature.
- **Discrepancy principle on the noise only**: the strongest regularisation whose weighted
  residual is no larger than the noise, ``mean(w^2 r^2) <= tau * sigma_w^2`` (tau = 1).

``choose_weight`` picks by the last two ("auto" there: the larger of the two weights; used by
closed-form Tikhonov and by ``alpha="lcurve"/"discrepancy"`` of the TV solvers). With model
errors both sit near the noise and under-regularise TV about tenfold (see
``qsmiron.recon.invert``), which is why the TV default uses the total inconsistency.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np


def menger_curvature(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Signed curvature of the circle through each consecutive triple of points (ends: nan)."""
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    curvature = np.full(x.shape, np.nan)
    for i in range(1, x.size - 1):
        ax, ay = x[i - 1], y[i - 1]
        bx, by = x[i], y[i]
        cx, cy = x[i + 1], y[i + 1]
        cross = (bx - ax) * (cy - ay) - (by - ay) * (cx - ax)
        ab = np.hypot(bx - ax, by - ay)
        bc = np.hypot(cx - bx, cy - by)
        ca = np.hypot(ax - cx, ay - cy)
        denominator = ab * bc * ca
        curvature[i] = 2.0 * cross / denominator if denominator > 0 else 0.0
    return curvature


def lcurve_corner(weights: Sequence[float], residual_norms: Sequence[float],
                  regulariser_norms: Sequence[float]) -> int:
    """Index of the L-curve corner: maximum curvature of (log residual, log regulariser).

    The points may come in any order of weight; the curve is traversed from weak to strong
    regularisation (residual growing, regulariser shrinking), along which the corner bends
    towards the origin (positive curvature in this orientation). Falls back to the point
    closest to the origin of the normalised log-log curve when no point bends that way.
    """
    weights = np.asarray(weights, dtype=float)
    order = np.argsort(weights)
    rho = np.log(np.asarray(residual_norms, dtype=float)[order])
    eta = np.log(np.asarray(regulariser_norms, dtype=float)[order])
    if weights.size < 3:
        return int(order[0])
    curvature = menger_curvature(rho, eta)
    # Traversed with residual increasing and regulariser decreasing, the corner of an "L"
    # turns left: positive cross product.
    if np.nanmax(curvature) > 0:
        return int(order[int(np.nanargmax(curvature))])
    span_r = np.ptp(rho) or 1.0
    span_e = np.ptp(eta) or 1.0
    distance = ((rho - rho.min()) / span_r) ** 2 + ((eta - eta.min()) / span_e) ** 2
    return int(order[int(np.argmin(distance))])


def discrepancy_index(weights: Sequence[float], mean_square_residuals: Sequence[float],
                      noise_level: float, *, tau: float = 1.0) -> int | None:
    """Index of the largest weight whose mean squared residual is <= tau * noise_level^2.

    None when no weight on the path fits the data that well (the noise level is then
    below what the model can reach, e.g. because of model errors).
    """
    weights = np.asarray(weights, dtype=float)
    msr = np.asarray(mean_square_residuals, dtype=float)
    ok = np.flatnonzero(msr <= tau * noise_level ** 2)
    if ok.size == 0 or not np.isfinite(noise_level):
        return None
    return int(ok[np.argmax(weights[ok])])


def discrepancy_crossing(weights: Sequence[float], residual_rms: Sequence[float], level: float) -> float | None:
    """The weight at which the RMS residual falls to ``level``, along a path from strong to weak.

    The residual decreases as the weight decreases; between the last path point above the
    level and the first at or below it, the crossing is interpolated linearly in
    (log weight, log residual). None when no point reaches the level; the first weight when
    even it fits that closely.
    """
    a = np.log(np.asarray(weights, dtype=float))
    r = np.log(np.maximum(np.asarray(residual_rms, dtype=float), 1e-300))
    if not (np.isfinite(level) and level > 0):
        return None
    below = np.flatnonzero(r <= np.log(level))
    if below.size == 0:
        return None
    i = int(below[0])
    if i == 0:
        return float(np.exp(a[0]))
    t = (np.log(level) - r[i - 1]) / (r[i] - r[i - 1]) if r[i] != r[i - 1] else 1.0
    return float(np.exp(a[i - 1] + t * (a[i] - a[i - 1])))


def choose_weight(weights: Sequence[float], residual_norms: Sequence[float],
                  regulariser_norms: Sequence[float], *, noise_level: float | None,
                  n_data: int, rule: str = "auto") -> tuple[int, dict]:
    """Pick one weight on a path by ``rule``: "lcurve", "discrepancy" or "auto" (the larger).

    Parameters
    ----------
    weights : sequence of float
    residual_norms : sequence of float
        ||w (A x - b)|| for each weight.
    regulariser_norms : sequence of float
        The regulariser's value (a norm) for each weight.
    noise_level : float or None
        Expected standard deviation of the weighted noise per datum.
    n_data : int
        Number of data (voxels in the mask).
    rule : str

    Returns
    -------
    index : int
    details : dict
        The index each rule gave (None when a rule could not apply) and the rule used.
    """
    weights = np.asarray(weights, dtype=float)
    corner = lcurve_corner(weights, residual_norms, regulariser_norms)
    discrepancy = None
    if noise_level is not None and np.isfinite(noise_level) and noise_level > 0:
        msr = np.asarray(residual_norms, dtype=float) ** 2 / n_data
        discrepancy = discrepancy_index(weights, msr, noise_level)
    if rule == "lcurve":
        index, used = corner, "lcurve"
    elif rule == "discrepancy":
        if discrepancy is None:
            index, used = corner, "lcurve (discrepancy not reachable)"
        else:
            index, used = discrepancy, "discrepancy"
    elif rule == "auto":
        if discrepancy is None or weights[corner] >= weights[discrepancy]:
            index, used = corner, "lcurve"
        else:
            index, used = discrepancy, "discrepancy"
    else:
        raise ValueError(f"unknown regularisation rule {rule!r}; use 'auto', 'lcurve' or 'discrepancy'")
    details = {"rule": rule, "chosen_by": used,
               "lcurve_weight": float(weights[corner]),
               "discrepancy_weight": None if discrepancy is None else float(weights[discrepancy])}
    return index, details
