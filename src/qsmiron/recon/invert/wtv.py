"""Magnitude-weighted TV inversion (``wtv``; called ``medi`` before qsmiron 0.2).

``min_chi 1/2 ||W (D chi - f)||^2 + alpha ||M_G grad chi||_{2,1}``, solved with the ADMM of
``tv_admm``. The magnitude prior is the one of MEDI (morphology-enabled dipole inversion,
Liu et al., MRM 2011;66:777 and NeuroImage 2012;59:2560), but this is not Liu's MEDI: the
data term is linear by default (MEDI's is nonlinear), the solver is ADMM (MEDI: Gauss-Newton
with conjugate gradients) and the weight is chosen by qsmiron's own rule (below), not fixed:

- data weights W: 1/noise from the field-noise map of the echo fit when given (the maximum
  likelihood weighting), otherwise the magnitude (MEDI's SNR proxy);
- gradient weights M_G: zero on the edges of the magnitude image (the ``edge_fraction`` of
  mask voxels with the largest magnitude gradient), one elsewhere, so that TV does not
  smooth across anatomical boundaries the magnitude shows while it suppresses streaks and
  noise everywhere else; with ``edge_mask="per_axis"`` per gradient component instead (MEDI's
  gradient mask: only the directions across an edge are exempt; ``wtv_bregman``'s default);
- alpha picked automatically on a continuation path: the weight whose residual inside the
  mask equals the field's total inconsistency with the dipole model, measured on the magic
  cone (noise + model errors; see ``qsmiron.recon.invert`` for the evidence);
- optionally the nonlinear data term ``||W (exp(i D chi) - exp(i f))||^2`` with the field
  expressed as phase (``phase_scale_rad_per_ppm`` = 2 pi gamma B0 TE / 1e6), which
  tolerates phase noise at low magnitude better (Milovic et al., MRM 2018;80:814).

Without a magnitude image the gradient weights are uniform (plain weighted TV).
"""

from __future__ import annotations

from typing import Literal, Sequence

import numpy as np
from scipy import ndimage

from qsmiron.recon.invert._common import DEFAULT_PAD_MM, Problem, data_weights, setup
from qsmiron.recon.invert.tv_admm import run_weighted_tv
from qsmiron.recon.params import Fraction, NonNegativeFloat, PositiveFloat, PositiveInt

DEFAULT_EDGE_FRACTION = 0.3
"""Fraction of mask voxels treated as magnitude edges (MEDI, Liu et al. 2011: about 30 %).

Measured with ``wtv_bregman`` and the edges of the echoes' root sum of squares on two families
(median / worst): the 11 heads of
``benchmarks/bench_bgremove.py`` (pdf_ismv's local fields; Chimap NRMSE %, regional error ppb,
|VeP error| ppb, range of regional slopes) and the 10 proxies of ``benchmarks/bench_invert.py``
(NRMSE %, regional error ppb, regional slope):

========  =============  ===========  ===========  ==========  =============  ===========  ============
fraction  heads NRMSE    regional     |VeP|        slopes      proxies NRMSE  regional     slope
========  =============  ===========  ===========  ==========  =============  ===========  ============
0         38.3 / 43.7    7.5 / 11.1   19.6 / 33.1  0.91-0.97   42.0 / 65.3    10.3 / 17.2  0.899 / 0.698
0.15      38.6 / 44.4    6.4 /  9.7   17.6 / 34.2  0.91-0.98   43.2 / 67.0     9.1 / 16.5  0.909 / 0.705
0.2       39.3 / 45.3    4.6 /  7.9   14.2 / 31.9  0.94-1.01   44.0 / 69.0     8.0 / 14.7  0.933 / 0.752
0.25      40.0 / 46.3    4.3 /  7.1    8.9 / 27.2  0.96-1.02   44.9 / 71.0     6.7 / 12.5  0.944 / 0.808
0.3       40.9 / 47.2    4.1 /  6.8    7.0 / 20.0  0.96-1.01   46.0 / 72.5     6.3 / 11.9  0.951 / 0.811
0.4       41.8 / 48.5    4.0 /  7.4    7.6 / 17.3  0.95-1.00   45.8 / 75.4     6.1 / 11.7  0.959 / 0.793
0.5       42.3 / 48.6    4.4 /  8.2    8.9 / 17.4  0.95-1.00
========  =============  ===========  ===========  ==========  =============  ===========  ============

Fewer edges smooth more: the map's NRMSE falls, but the nuclei, whose borders the magnitude
shows, lose contrast (VeP down to -34 ppb). 0.3 has the lowest worst regional error on the
heads and keeps the slopes within 0.05 of 1 on both families: a study of regional differences
is decided by those, so 0.3 stays. No fraction meets issue 9's map targets (35 / 45 %) with a
regional error within 5 ppb.

With the edges of the last echo, which ``qsmiron recon`` now uses (``qsmiron.recon.invert``),
the curve is flat on the heads: 0.2, 0.3 and 0.4 give NRMSE 39.0 / 44.7, 39.0 / 45.0 and
38.4 / 44.3 %, regional error 4.2 / 6.9, 3.8 / 7.1 and 4.2 / 7.6 ppb, |VeP| 7.8 / 20.2, 7.0 / 16.6
and 7.6 / 15.5 ppb, slopes 0.96-1.01, 0.95-1.01 and 0.94-1.00. 0.3 keeps the lowest median
regional error and slopes within 0.05 of 1.
"""


EdgeMask = Literal["voxel", "per_axis"]
"""How the magnitude's edges exempt the map's gradient from TV: ``"voxel"``, every component of
the gradient at an edge voxel; ``"per_axis"``, only the components along which the magnitude
changes strongly there (MEDI's gradient mask, Liu et al. 2012, eq. 4)."""


def magnitude_edge_weights(magnitude: np.ndarray, mask: np.ndarray, voxel_size_mm: Sequence[float], *,
                           edge_fraction: float = DEFAULT_EDGE_FRACTION,
                           edge_mask: EdgeMask = "voxel") -> np.ndarray:
    """TV's weights from the magnitude's edges: 0 on the strongest ``edge_fraction``, 1 elsewhere.

    ``edge_mask="voxel"``: one weight per voxel (shape of ``mask``), 0 where the size of the
    magnitude's gradient is among the strongest ``edge_fraction`` of the mask's voxels.
    ``edge_mask="per_axis"``: one weight per gradient component (shape ``(3, *mask.shape)``), 0
    where ``|d magnitude / d axis|`` is among the strongest ``edge_fraction`` of the mask's
    components, as MEDI's ``gradient_mask`` (whose default ``percentage`` 0.9 counts edge
    components per mask voxel: the same 30 % of the components).

    The magnitude is normalised by its mean in the mask and lightly smoothed (sigma 0.5
    voxel) so that single noisy voxels are not mistaken for edges; outside the mask the
    weight is 1 (TV there only shapes the unobserved extension).

    ``wtv_bregman`` takes ``per_axis`` by default (results revision 13); ``wtv`` keeps ``voxel``,
    which its own weight rule was measured with. ``qsmiron recon`` end to end with its own mask,
    per_axis against voxel on the same heads (``benchmarks/bench_bgremove.py --own-mask
    [--config]``, slab frame; median / worst):

    ================  ======================  ======================  ==================  ====================
    heads             Chimap NRMSE %          XSIM                    regional ppb        |VeP error| ppb
    ================  ======================  ======================  ==================  ====================
    family (12)       36.2/40.7 -> 34.3/38.9  .767/.717 -> .788/.743  3.6/4.8 -> 3.4/4.6  worst 9.0 -> 8.9
    held out, draw 0  39.1/43.8 -> 37.5/41.9  .724/.677 -> .746/.699  4.1/7.1 -> 4.2/7.5  8.7/14.1 -> 8.3/15.4
    held out, draw 1  37.2/42.9 -> 35.2/41.2  .748/.664 -> .771/.686  3.6/8.0 -> 3.6/8.6  6.2/18.7 -> 6.4/19.1
    held out, draw 2  36.5/41.8 -> 34.5/40.3  .749/.707 -> .774/.733  3.7/5.0 -> 3.5/5.0  4.7/9.9 -> 5.8/10.2
    deep veins (12)   34.1/38.2 -> 32.3/36.5  .768/.720 -> .789/.744  3.7/5.1 -> 3.6/5.5  6.2/10.5 -> 6.5/10.6
    1.5 T (4 heads)   41.5/44.5 -> 39.7/42.8  .693/.662 -> .715/.692  3.3/4.8 -> 3.8/4.8  8.3/10.9 -> 9.1/12.0
    2 echoes (4)      43.8/46.1 -> 41.5/44.1  .664/.650 -> .694/.675  3.6/4.0 -> 3.6/4.0  6.7/17.8 -> 7.0/17.7
    SNR 40 (4)        43.5/45.8 -> 42.0/44.5  .672/.643 -> .692/.668  4.0/5.4 -> 4.0/5.4  5.7/11.9 -> 5.5/12.0
    ================  ======================  ======================  ==================  ====================

    The NRMSE fell on each of the 60 paired heads below the family (by 1.1 to 2.7 points, median
    1.9) and XSIM rose by 0.02 to 0.03; the regional slopes did not move or rose by 0.01 (0.91 to
    1.04). The regions pay a little: the regional bias is 0.1 to 0.8 ppb more negative on most
    heads (1.7 on h06 at 1.5 T), the regional error changed by -0.6 to +0.6 ppb (+1.2 on h06 at
    1.5 T), and VeP reads 0.1 to 0.4 ppb lower at the median of each set but up to 2.9 ppb lower
    on a few heads (d2-08 -4.2 -> -7.1, h04 with veins -6.5 -> -9.2; d1-03, the worst held-out
    head, -18.7 -> -19.1 ppb and regional error 8.0 -> 8.6 ppb), while d0-08 went from +13.5 to
    +9.9. The scanner frame (measured before it was built in, with the weights patched into
    ``benchmarks/bench_bregman_stop.py``) agreed: NRMSE 1.2 to 2.6 points lower on 60 head runs,
    slopes unchanged.

    One quantile over all three components, as MEDI's: on slices of 1.5 to 2.5 mm the slice axis
    holds fewer edges (24 to 25 % of its components against 31 to 34 % in plane on d0-07, d1-03,
    d1-04 and d1-11). Measured and not kept: a quantile per axis (30 % of each), in the scanner
    frame with ITK on one thread; d1-03 41.6 -> 41.5 % and regional error 8.8 -> 8.7 ppb, d1-11
    38.1 -> 38.0 % and 8.2 -> 8.3 ppb, d0-07 42.5 -> 42.4 % and 7.7 -> 7.6 ppb, d0-08 39.9 % and
    5.3 -> 5.0 ppb: the thick heads' low nuclei do not come from the slice axis's share of edges.
    """
    if not 0 <= edge_fraction < 1:
        raise ValueError(f"edge_fraction must lie in [0, 1), got {edge_fraction}")
    if edge_mask not in ("voxel", "per_axis"):
        raise ValueError(f"edge_mask must be 'voxel' or 'per_axis', got {edge_mask!r}")
    mask = np.asarray(mask, dtype=bool)
    mag = np.where(mask, np.abs(np.asarray(magnitude, dtype=np.float32)), 0.0)
    mean = float(mag[mask].mean()) if mask.any() else 1.0
    mag = ndimage.gaussian_filter(mag / max(mean, 1e-30), 0.5)
    grads = np.gradient(mag, *voxel_size_mm)
    if edge_mask == "per_axis":
        strength = np.abs(np.stack(grads))
        inside = np.broadcast_to(mask, strength.shape)
    else:
        strength = np.sqrt(sum(g * g for g in grads))
        inside = mask
    weights = np.ones(strength.shape, np.float32)
    if edge_fraction > 0 and mask.any():
        level = np.quantile(strength[inside], 1.0 - edge_fraction)
        weights[inside & (strength > level)] = 0.0
    return weights


def padded_edge_weights(problem: Problem, magnitude: np.ndarray | None, mask: np.ndarray,
                        edge_fraction: float, edge_mask: EdgeMask = "voxel") -> tuple[np.ndarray | None, str]:
    """TV's weights (per voxel, or per axis) on the problem's grid (None without a magnitude)
    and their source.

    Outside the mask the weight is 1: TV there only shapes the unobserved extension.
    """
    if magnitude is None:
        return None, "uniform (no magnitude)"
    edges = magnitude_edge_weights(magnitude, np.asarray(mask, dtype=bool), problem.voxel_size_mm,
                                   edge_fraction=edge_fraction, edge_mask=edge_mask)
    if edge_mask == "per_axis":
        # 0/1 flags as uint8, the solver's own type: a float32 stack of three grids would be
        # copied again there (``tv_admm.split_gradient_weights``)
        weights = np.stack([problem.grid.pad(component, dtype=np.uint8) for component in edges])
        weights[:, ~problem.mask] = 1
        return weights, "magnitude edges per axis (MEDI's gradient mask)"
    weights = problem.grid.pad(edges)
    weights[~problem.mask] = 1.0
    return weights, "magnitude edges"


def wtv(local_ppm: np.ndarray, mask: np.ndarray, voxel_size_mm: Sequence[float],
        b0_direction: Sequence[float], *, magnitude: np.ndarray | None = None,
        noise_ppm: np.ndarray | None = None, alpha: PositiveFloat | Literal["auto", "lcurve", "discrepancy"] = "auto",
        edge_fraction: Fraction = DEFAULT_EDGE_FRACTION, edge_mask: EdgeMask = "voxel", max_iter: PositiveInt = 30,
        tol: PositiveFloat = 1e-2, path_alphas: PositiveInt = 6, path_decades: PositiveFloat = 3.5,
        path_iterations: PositiveInt = 3, phase_scale_rad_per_ppm: PositiveFloat | None = None,
        pad_mm: NonNegativeFloat = DEFAULT_PAD_MM) -> tuple[np.ndarray, dict]:
    """Susceptibility (ppm) by magnitude-weighted TV with automatic regularisation.

    Parameters
    ----------
    local_ppm : ndarray, shape (X, Y, Z)
        Local field, ppm.
    mask : ndarray of bool
    voxel_size_mm, b0_direction : geometry (voxel axes)
    magnitude : ndarray, optional
        Magnitude image (e.g. the first echo or the echo-combined magnitude): edges and,
        without a noise map, data weights.
    noise_ppm : ndarray, optional
        Field-noise map, ppm.
    alpha : float or {"auto", "lcurve", "discrepancy"}
    edge_fraction : float
    edge_mask : {"voxel", "per_axis"}
        Which gradient components an edge exempts from TV (``EdgeMask``).
    max_iter, tol : iterations at the chosen weight and relative-change tolerance.
        Where the cap is met first (``converged`` False in the info), running on to the
        tolerance moved the map away from the truth on the benchmark's head phantoms with
        model error (61.5 to 65.1 % and 97.4 to 99.4 % NRMSE; ``bench_invert.py`` part 5):
        the late iterations fit model error, so the cap stays at 30.
    path_alphas, path_decades, path_iterations : the continuation path of weights.
    phase_scale_rad_per_ppm : float, optional
        Use the nonlinear data term with the field scaled to radians of phase.
    pad_mm : float

    Returns
    -------
    chi_ppm : ndarray
    info : dict
    """
    problem = setup(local_ppm, mask, voxel_size_mm, b0_direction, pad_mm=pad_mm, noise_ppm=noise_ppm)
    weights, level, source = data_weights(problem, magnitude, noise_ppm)
    edge_weights, gradient_source = padded_edge_weights(problem, magnitude, mask, edge_fraction, edge_mask)
    chi, info = run_weighted_tv(problem, weights, level, alpha=alpha, gradient_weights=edge_weights,
                                max_iter=max_iter, tol=tol, path_alphas=path_alphas,
                                path_decades=path_decades, path_iterations=path_iterations,
                                nonlinear_scale_rad_per_ppm=phase_scale_rad_per_ppm)
    info.update({"data_weights": source, "gradient_weights": gradient_source,
                 "edge_fraction": edge_fraction if magnitude is not None else None,
                 "edge_mask": edge_mask if magnitude is not None else None,
                 "data_term": "linear" if phase_scale_rad_per_ppm is None else "nonlinear",
                 "phase_scale_rad_per_ppm": phase_scale_rad_per_ppm, "pad_mm": pad_mm})
    return problem.result(chi), info
