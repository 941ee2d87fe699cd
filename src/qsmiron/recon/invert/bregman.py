"""Weighted TV with Bregman iterations, stopped by the discrepancy principle (``wtv_bregman``).

The problem is the one of ``wtv``, ``min_chi 1/2 ||W (D chi - f)||^2 + alpha ||M_G grad
chi||_{2,1}`` (magnitude-edge weights M_G when a magnitude is given, else plain TV), but the
regularisation is set by Bregman iterations (Osher, Burger, Goldfarb, Xu & Yin, Multiscale
Model Simul 2005;4:460) instead of by the weight alone:

    f_1 = f;  chi_k = argmin 1/2 ||W (D chi - f_k)||^2 + alpha TV(chi);  f_{k+1} = f_k + (f - D chi_k)

Each step adds back what the last solution did not explain, so contrast that TV shrank is
restored (large, high-contrast structures first: an inverse scale space), while the
iterations stop as soon as the residual inside the mask falls to the field's inconsistency
with the dipole model (noise + model errors, measured on the magic cone:
``_common.inconsistency_ppm``), before the fine-scale inconsistency is fitted. A single TV
solve at the weight with that residual (``wtv``) reaches it by shrinking contrast instead,
which is why it underestimates (regional slope 0.77 against COSMOS in vivo).

The weight of the Bregman steps needs no constant: the weights of the ``wtv`` path (from
``tv_admm.alpha_path``'s top, half a decade apart, a few warm-started iterations each) are
descended until the first one whose residual reaches the level. The weight at which the
residual crosses the level is interpolated between the last two (linearly in log weight and
log residual, ``level_crossing``), and the steps run half a path step (a quarter decade) above
it, warm-started from the last weight above the level; the Bregman steps take the
over-smoothed first solve to the level from there (two or three steps on every benchmark case).
The path's iterates are not converged (a few iterations per weight), so the interpolated crossing
can lie below the converged one; when the first solve alone already reaches the level (a plain
TV solve: the analytic sphere of the tests then keeps 0.178 of its 0.2 ppm), the weight is raised
by a quarter decade and the steps start again (``MAX_WEIGHT_RAISES``; it never acted on the
family heads in the slab frame or on the second held-out draw, whose results it left unchanged).

The level without the mask's truncation leak. A field that susceptibility inside the mask explains
exactly still has power on the magic cone once it is known only inside the mask: the cut at the
mask's edge spreads its spectrum there. ``inconsistency_ppm`` counts that as inconsistency. On a
smooth head with a step (``tests/recon/test_bregman.py``) it is 0.54 ppb at 1 mm and 0.96 ppb at 1
x 1 x 2.5 mm (1.04 while the band of ``_common.inconsistency_ppm`` was set in cycles per voxel and
reached lower physical frequencies along the slices). With the true field's leak removed in
quadrature, the cone gives the added noise's SD within 3 %. On the family and held-out heads of
``benchmarks/bench_bgremove.py`` (own masks) the exact field of the truth inside the mask has a
cone level of 0.48 ppb on the axial 1 mm head and 1.3-1.7 ppb on three 2.5 mm-slice heads, about
three quarters of the level of their measured local fields: over half its power was leak (the level
without it: h01 0.42 against 0.64 ppb, d1-03 1.48 against 2.24), and the leak was three times
larger on thick slices than at 1 mm, where the TV then shrank the small nuclei (held-out head
d1-03, 2.5 mm slices: the exact field inverted on its own mask gave 37.2 % and VeP -12.6 ppb; now
30.3 % and -10.6 ppb). So the level is now the cone's RMS less, in quadrature, that of the field
the solver's iterate predicts inside the mask, taken where the descent first reaches the
uncorrected level (``tv_admm.LeakCorrectedLevel``); the descent then goes on to the lower level.
The iterate is smoother than the truth and leaks less (on that thick-slice phantom the level
becomes 1.20 ppb, noise 1.00, against 1.40 uncorrected), so the correction errs on the side of
regularising. Cost: one FFT and usually one more path weight. What it did
(``benchmarks/bench_bgremove.py``, Chimap NRMSE %, XSIM, regional error ppb, |VeP error| ppb;
median / worst; before -> after): ``qsmiron recon`` with its own mask, 12 family heads, slab frame
37.0 / 42.9 -> 36.2 / 41.0 %, XSIM 0.755 / 0.676 -> 0.765 / 0.709, regional 3.4 / 4.8 -> 3.6 / 4.8,
|VeP| 4.1 / 8.9 -> 3.4 / 9.0; scanner frame 37.7 / 43.4 -> 37.2 / 41.5 %, 0.745 / 0.668 -> 0.758 /
0.703, regional 3.0 / 6.4 -> 2.9 / 6.9, |VeP| 5.7 / 8.7 -> 4.3 / 8.2; the 24 held-out heads
(``--drawn 12``, draw seeds 0 and 1, slab frame) 39.6 / 49.1 -> 38.7 / 46.3 %, 0.714 / 0.566 ->
0.732 / 0.614, regional 4.0 / 9.5 -> 4.0 / 8.8, |VeP| 7.9 / 23.1 -> 7.8 / 21.2, slopes 0.92-1.01 ->
0.92-1.00; of them the ten with 2-2.5 mm slices 44.5 / 49.1 -> 42.3 / 46.3 % and 5.8 / 9.5 -> 5.5 /
8.8 ppb, the fourteen with 1-1.5 mm 35.4 / 40.4 -> 35.2 / 40.0 % and 3.2 / 6.7 -> 3.0 / 6.5 ppb.
With the family's given masks (11 heads, slab) 38.4 / 44.6 -> 38.1 / 42.6 %, regional 3.7 / 6.8 ->
3.5 / 6.2 ppb. Less regularisation raises the nuclei against the brain's mean everywhere: where
they read low (most heads) it helps, on h01, whose nuclei already read high (background left at the
skull base), the regional error rose 3.7 -> 4.8 ppb (slab) and 6.4 -> 6.9 (scanner). Measured and
not kept: the leak taken from the full solution at the uncorrected level and the whole inversion
run again at the lower one (twice the cost; family slab 36.1 / 40.9 %, regional 3.7 / 5.0 ppb;
held-out draw 1 37.4 / 45.4 %, 3.6 / 8.6 ppb).

Where the steps stop, checked (``benchmarks/bench_bregman_stop.py``: the recon's own problem,
steps continued past the stop, own masks, scanner frame unless said). Hold-out cross-validation
(a tenth of the voxels given weight zero; the step whose map best predicts their field) chose
the discrepancy stop, always the second step, on all 60 heads: the family in both frames and
three held-out draws, the third (seed 2) never used before. By the truth, the second step was
the best map on 10, 8 (slab), 7, 3 and 7 of the 12 heads of each. Three steps instead of two
give lower regional errors (family 2.9 / 6.9 -> 2.7 / 6.2 ppb, median / worst; draws 0, 1 and
2: 4.7 / 7.2 -> 4.0 / 5.1, 4.4 / 8.3 -> 3.4 / 6.0, 3.8 / 5.7 -> 3.0 / 5.3) and Chimap NRMSE
from 1.1 points worse (family median 37.1 -> 38.2 %) to 1.6 better (draw 1 worst 43.3 ->
41.7 %); the 2-2.5 mm heads gain most (d1-03: 43.3 % / 8.3 ppb / VeP -18.5 -> 41.7 % / 5.9
ppb / -10.4 ppb). But a step amplifies what the local field carries: on d0-08 (2.5 mm, VeP
+13.5 ppb at the stop) it read +26.6 ppb, worse than any head at the stop. The data do not
show the thick-slice gain either: on the three 2.5 mm heads of the family and draw 1 (h04,
d1-03, d1-04) the level recomputed from each step's own prediction (its leak grows as the map
sharpens), the discrepancy on the noise-weighted residual, and the cone band cut at half or
three quarters of each axis's Nyquist frequency all stop at the second step too. So the stop
stays a principle, not a count. Cross-validation also chose the steps' weight, a quarter decade
above the level's crossing, over 0, 0.5 and 0.75 decades (``--weight-offsets``) on all 24 heads
of the family and draw 1. By the truth the weight at the crossing itself helps the thick heads
(d1-03 43.3 -> 40.4 %, d1-04 42.0 -> 39.3 %; draw 1 worst 43.3 -> 40.6 %) and hurts h01
(regional error 6.9 -> 8.2 ppb). Every change that regularises 2-2.5 mm heads less helps them by
the truth while no criterion computed from their data asks for it. Nor is the gain the ringing
of the truth, which is cropped in k-space along the slices like the data: with map and truth
both smoothed along the slices (Gaussian, one voxel) the third step still helps d1-03 (39.2 ->
38.1 %, regional 6.3 -> 4.6 ppb), d1-04, d0-07 and d0-08 (NRMSE; regional error on three of
the four).

Why interpolated. Before, the steps ran at the last path weight above the level, which lies 0 to
0.5 decades above the crossing depending on where the level happens to fall between two path
weights: a quarter decade on average, but a result that jumps when the level passes a path
weight. On family head h10 (``benchmarks/bench_bgremove.py``) adding noise of 0.04 and 0.06
times the local field's RMS (6.0 ppb: 0.24 and 0.36 ppb, well under the measured noise) moved
that weight from 0.000815 to 0.00258 and the Chimap NRMSE from 45.0 to 50.2 % (VeP -17.7 to
-14.3 ppb); with the crossing interpolated the NRMSE went smoothly from 47.1 % (no noise) to
48.3 % (0.15 times). What the change did, on pdf_ismv's local fields of the 11 family heads
(median / worst): Chimap NRMSE 41.7 / 52.0 -> 41.6 / 48.2 %, XSIM 0.709 / 0.564 -> 0.700 /
0.617, regional error 4.3 / 6.8 -> 4.4 / 7.1 ppb, |VeP error| 9.0 / 17.5 -> 8.3 / 21.0 ppb
(h10); on the 10 proxies of ``benchmarks/bench_invert.py`` with the magnitude NRMSE 45.0 / 73.4
-> 46.0 / 72.5 %, regional error 5.8 / 11.3 -> 6.3 / 11.9 ppb, slope 0.958 / 0.820 -> 0.951 /
0.811, and field-only 42.0 / 65.4 -> 42.1 / 65.2 %; the analytic sphere of the tests keeps 0.205
and 0.208 of its 0.2 ppm (0.208 and 0.209 before); the 1 mm head without texture 27.8 -> 29.0 %.
Running the steps a full half decade above the crossing instead gave the family 44.0 / 51.3 %
with regional errors of 3.9 / 5.5 ppb and |VeP| 5.6 / 15.9 ppb: better regional means, worse
maps; the quarter decade keeps the old rule's average.

Measured on the head family (``benchmarks/bench_bgremove.py``, pdf_ismv's local fields) and not
kept: MEDI's MERIT (data weights divided by (|r| / 6 std|r|)^2 where the weighted residual r is
beyond 6 std|r|, between Bregman steps: within 0.3 points of the Chimap NRMSE on h03, h04, h10
and h12; a voxel MERIT sets aside must then not hold the discrepancy back, or the steps run on
to their cap), and data weights lowered towards the mask's edge (a quarter at the edge, full 3
mm further in: h03 49.5 -> 43.3 %, h04 52.0 -> 43.0 %, but h12 41.5 -> 44.0 % and h10 44.9 ->
45.6 %; with the interpolated crossing, over all 11 heads: 41.6 / 48.2 -> 43.5 / 45.1 %, |VeP
error| 8.3 / 21.0 -> 2.5 / 12.4 ppb, but worst regional slope 0.96 -> 0.92; weight 0 over the
outer 1.5 to 5 mm gave 44.6 to 101.9 % on h03 and a VeP error of +12 ppb on h04). Nor data
weights from a fitted error model: noise plus the residual's excess per one-voxel depth shell in
quadrature (variance components; the residual where the path first reaches the level is 2.1 to
3.3 ppb in the outermost shell against 1.0 to 1.8 ppb deeper than ten voxels, the noise 0.4 to
1.0 ppb), the excess made non-growing inward (a running minimum: what background removal leaves
is harmonic, largest at the boundary), then the path resumed from the last weight above the
level. Over the 11 heads: 41.6 / 48.2 -> 41.5 / 47.3 % (XSIM 0.710 / 0.622, regional error 4.1
/ 6.6 ppb, |VeP| 6.3 / 19.1 ppb, worst slope 0.955) for 12 more iterations; with the discrepancy
taken on the weighted residual (the level spread over the voxels as the model says) 41.8 / 47.9
%; refitting it a second time 41.9 / 46.9 %; from the residual of a full first solve and a
second full solve 42.0 / 46.0 % (twice the cost; these two without the running minimum, which
changes nothing on the family, whose excess already falls inward). On the analytic sphere of
the tests with a smooth error of 3, 5 or 10 ppb RMS added to the mask's outer 2 mm, the model
found the error
(excess 1.6, 2.4 and 7.2 ppb in the outer shells, under 0.3 ppb deeper) but the weight fell 2 to
10-fold to reach the level, and the inner RMS error rose (14.3 against 13.8, 15.2 against 13.8,
20.6 against 14.7 ppb): with the edge's data set aside, the level is met by over-fitting the
deep voxels, and part of the family's gain is that weaker weight, not the model. Nor a finer
path: a quarter-decade step, the Bregman steps starting one step above the crossing, took the
family from 41.7 / 52.0 % (median / worst) to 41.4 / 46.2 % and its worst XSIM from 0.564 to
0.647, by a weaker weight; but then one Bregman step often reaches the level, and the analytic
sphere of the tests keeps only 0.183 and 0.187 of its 0.2 ppm contrast (0.208 with half a
decade), and the 1 mm head without texture goes from 27.8 to 33.4 %. Starting half a decade
above a crossing found to a quarter keeps the contrast (0.206) but gives the family no gain
(43.2 / 51.7 %). With the last path weight above the level, the result was sensitive to where
the level fell between two weights (h10: local fields within 0.1 % gave 44.9 and 49.9 %): the
reason for the interpolated crossing.

Nor second-order TGV in place of TV (Bredies, Kunisch & Pock 2010; the regulariser of TGV-QSM,
Langkammer et al. 2015), with the same weights, descent and Bregman steps: ADMM with FANSI's
splittings and ratios (alpha0 = 2 alpha1, mu1 = 100 alpha1, mu0 = 2 mu1), the joint (chi, w)
step solved exactly per frequency (a 4 x 4 Cholesky; checked to minimise the quadratic
subproblem), 10 real FFTs per iteration against 4. On the 10 proxies NRMSE 46.2 / 73.0 against
46.0 / 72.5 %, XSIM 0.415 / 0.348 against 0.454 / 0.359, regional error 7.4 / 11.3 against
6.3 / 11.9 ppb, for 3 times the CPU; on family heads h01 and h03 39.9 and 49.5 % against 35.4 and
46.0 %, VeP -5.6 and -13.9 against -3.4 and -7.0 ppb, for 5 times the CPU. Even solved to
convergence (400 iterations) at a fixed weight, on a 64^3 sphere of smooth susceptibility
(ramps, a slow cosine and a 0.1 ppm ball) TGV gave 29.2-46.2 % over four weights against
18.6-37.9 % for TV. A likely reason, not tested: affine variations cost TGV nothing, and in the
unobserved extension around the mask, which only the regulariser shapes, such ramps can act as
background sources that take part of the field (TGV-QSM keeps chi inside the mask).

Nor MEDI+0's uniform-CSF term (Liu et al., MRM 2018;79:2795): ``lambda/2 ||P_C chi||^2``, P_C
removing the mean over the ventricles' CSF, as a third ADMM splitting (u = chi; the u step in
closed form, the chi step still diagonal in k-space with one more constant), lambda 1 (CSF
variations cost as much as field misfit), the splitting's penalty 0.02 (0.005 and 0.1 worse on
h01). The CSF: R2* (``nlls``) under half the brain median, deeper than 10 mm in the mask, the two
largest components, eroded by a voxel (2 000 to 30 000 voxels, 1-2 % outside the true CSF). On
pdf_ismv's local fields of the 11 family heads (last-echo edges): Chimap NRMSE 39.0 / 45.1 ->
38.4 / 44.3 % (every head better, by 0.1 to 2.0 points), regional error 3.8 / 7.1 -> 3.7 / 6.2
ppb, but |VeP error| 7.0 / 16.6 -> 8.1 / 19.5 ppb (more negative on 8 heads, by up to 2.9 ppb)
and the worst regional slope 0.950 -> 0.944; the CSF's SD fell from 4-10 to 1-2.5 ppb. With the
CSF taken from the truth (up to 50 000 voxels, partial volume included) h01, h03 and h06 gained
2.6, 2.6 and 3.3 points. The ventral pallidum is the study's first region and the map's gain
is small, so it is not kept; it would also need R2* (three echoes) and a penalty chosen on one head.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from qsmiron.recon.invert._common import DEFAULT_PAD_MM, Problem, data_weights, inconsistency_ppm, setup
from qsmiron.recon.invert.tv_admm import LeakCorrectedLevel, TVSolver, alpha_path
from qsmiron.recon.invert.wtv import DEFAULT_EDGE_FRACTION, EdgeMask, padded_edge_weights
from qsmiron.recon.params import Fraction, NonNegativeFloat, PositiveFloat, PositiveInt


def descend_to_level(solver: TVSolver, top: float, level: float, *, step_decades: float,
                     iterations: int, max_steps: int,
                     lower_level: Callable[[TVSolver], float] | None = None
                     ) -> tuple[float, np.ndarray, list[dict], float]:
    """Walk weights from ``top`` down by ``step_decades`` until the residual reaches ``level``.

    With ``lower_level``, the first time the residual reaches the level it is called on the
    solver (at that iterate) and returns the level to reach instead (lower: the walk goes on).

    Returns the last weight whose residual was still above the (final) level (``top`` when
    even the first was not), the iterate at that weight, the path (weight, residual per step)
    and the final level.
    """
    path = []
    alpha, state = top, solver.chi.copy()
    for step in range(max_steps):
        current = top * 10.0 ** (-step_decades * step)
        solver.set_alpha(current)
        solver.iterate(iterations)
        residual = solver.residual_rms_ppm()
        path.append({"alpha": current, "residual_rms_ppm": residual})
        if residual <= level and lower_level is not None:
            level, lower_level = min(level, lower_level(solver)), None
        if residual <= level:
            break
        alpha, state = current, solver.chi.copy()
    return alpha, state, path, level


def level_crossing(path: list[dict], level: float) -> float | None:
    """The weight at which the residual reaches ``level``, interpolated linearly in
    log(weight) and log(residual) between the two path weights around it; None when the
    path does not cross the level (it starts below it or ends above it)."""
    if len(path) < 2 or path[-1]["residual_rms_ppm"] > level or path[-2]["residual_rms_ppm"] <= level:
        return None
    (a0, r0), (a1, r1) = ((p["alpha"], p["residual_rms_ppm"]) for p in path[-2:])
    if not (r0 > r1 > 0):
        return float(a0)
    t = (np.log(level) - np.log(r0)) / (np.log(r1) - np.log(r0))
    return float(np.exp(np.log(a0) + t * (np.log(a1) - np.log(a0))))


def bregman_steps(solver: TVSolver, field_ppm: np.ndarray, mask: np.ndarray, level: float, *,
                  inner_iterations: int, max_outer: int) -> list[float]:
    """Bregman iterations at the solver's weight until the residual falls to ``level``.

    Returns the residual RMS (ppm, inside the mask) after each step.
    """
    target = field_ppm.copy()
    residuals = []
    for _ in range(max_outer):
        solver.iterate(inner_iterations)
        residual = np.where(mask, field_ppm - solver.dchi / np.float32(solver.scale), 0).astype(np.float32)
        residuals.append(float(np.sqrt(np.mean(residual[mask] ** 2, dtype=np.float64))))
        if residuals[-1] <= level:
            break
        target += residual
        solver.set_field(target)
    return residuals


MAX_WEIGHT_RAISES = 4
"""How often the Bregman weight is raised (by half a path step) when its first solve already
reaches the level (``run_bregman_tv``)."""


@dataclass
class BregmanStart:
    """Where the Bregman steps start (``bregman_start``): the solver, at the iterate of the last
    path weight above the level, the weight of the steps, the level they stop at, and how they
    were found."""

    solver: TVSolver
    alpha: float
    start: np.ndarray
    level_ppm: float
    raw_level_ppm: float
    leak_ppm: float
    crossing_alpha: float | None
    path: list[dict]


def bregman_start(problem: Problem, weights: np.ndarray, gradient_weights: np.ndarray | None, *,
                  path_step_decades: float, path_iterations: int, path_decades: float) -> BregmanStart:
    """The level and the weight of the Bregman steps: the path of weights descended to the
    leak-corrected inconsistency level, the steps half a path step above its crossing."""
    raw_level = inconsistency_ppm(problem)
    solver = TVSolver(problem, weights, gradient_weights=gradient_weights)
    top = float(alpha_path(problem, weights, n_alphas=1, span_decades=0.0)[0])
    max_steps = int(np.floor(path_decades / path_step_decades + 1e-9)) + 1
    lower = LeakCorrectedLevel(problem, raw_level)
    alpha, start, path, level = descend_to_level(solver, top, raw_level, step_decades=path_step_decades,
                                                 iterations=path_iterations, max_steps=max_steps,
                                                 lower_level=lower)
    crossing = level_crossing(path, level)
    if crossing is not None:
        alpha = crossing * 10.0 ** (path_step_decades / 2)
    return BregmanStart(solver, alpha, start, level, raw_level, lower.leak_ppm, crossing, path)


def run_bregman_tv(problem: Problem, weights: np.ndarray, gradient_weights: np.ndarray | None, *,
                   path_step_decades: float, path_iterations: int, path_decades: float,
                   inner_iterations: int, max_outer: int) -> tuple[np.ndarray, dict]:
    """The driver of ``wtv_bregman`` on a prepared problem."""
    begin = bregman_start(problem, weights, gradient_weights, path_step_decades=path_step_decades,
                          path_iterations=path_iterations, path_decades=path_decades)
    solver, alpha, level = begin.solver, begin.alpha, begin.level_ppm
    for raises in range(MAX_WEIGHT_RAISES + 1):
        solver.restart(begin.start)
        solver.set_alpha(alpha)
        residuals = bregman_steps(solver, problem.field_ppm, problem.mask, level,
                                  inner_iterations=inner_iterations, max_outer=max_outer)
        # A first solve already at the level is a plain TV solve, which meets it by shrinking
        # contrast: the weight was not above the crossing (the path's iterates are not converged).
        if len(residuals) > 1 or residuals[-1] > level or raises == MAX_WEIGHT_RAISES:
            break
        alpha *= 10.0 ** (path_step_decades / 2)
    reached = bool(residuals[-1] <= level)
    info = {"alpha": alpha, "level_crossing_alpha": begin.crossing_alpha,
            "inconsistency_ppm": begin.raw_level_ppm, "truncation_leak_ppm": begin.leak_ppm,
            "level_ppm": level, "path": begin.path, "weight_raises": raises,
            "bregman_steps": len(residuals), "bregman_residual_rms_ppm": residuals,
            "stopped_by": "discrepancy" if reached else "max_outer",
            "converged": reached, "iterations": solver.iterations,
            "chosen_by": "Bregman iterations stopped by the inconsistency discrepancy (the mask's "
                         "truncation leak removed)"}
    return solver.chi, info


def wtv_bregman(local_ppm: np.ndarray, mask: np.ndarray, voxel_size_mm: Sequence[float],
                b0_direction: Sequence[float], *, magnitude: np.ndarray | None = None,
                noise_ppm: np.ndarray | None = None, edge_fraction: Fraction = DEFAULT_EDGE_FRACTION,
                edge_mask: EdgeMask = "per_axis",
                inner_iterations: PositiveInt = 7, max_outer: PositiveInt = 8,
                path_step_decades: PositiveFloat = 0.5, path_iterations: PositiveInt = 3,
                path_decades: NonNegativeFloat = 3.5,
                pad_mm: NonNegativeFloat = DEFAULT_PAD_MM) -> tuple[np.ndarray, dict]:
    """Susceptibility (ppm) by (magnitude-weighted) TV with Bregman iterations.

    Parameters
    ----------
    local_ppm, mask, voxel_size_mm, b0_direction
        Local field (ppm), mask and geometry (voxel axes), as every method of ``invert``.
    magnitude : ndarray, optional
        Magnitude: TV is not applied on its strongest edges (``edge_fraction`` of the mask),
        and without a noise map it weights the data. ``qsmiron recon`` passes the last echo's
        (see ``qsmiron.recon.invert``).
    noise_ppm : ndarray, optional
        Field-noise map, ppm: data weights 1/noise (maximum likelihood).
    edge_fraction : float
        Share of the mask's gradient components (``per_axis``) or voxels (``voxel``) treated as
        magnitude edges (MEDI's 30 %).
    edge_mask : {"per_axis", "voxel"}
        Which gradient components an edge exempts from TV (``wtv.EdgeMask``): by default only
        those across it, as MEDI's gradient mask (the evidence is in ``wtv.magnitude_edge_weights``).
    inner_iterations : int
        ADMM iterations per Bregman step (warm-started).
    max_outer : int
        Cap on the Bregman steps (the discrepancy stops them first on every benchmark case).
    path_step_decades, path_iterations, path_decades : the descent of weights that fixes the
        weight of the Bregman steps (see the module docstring).
    pad_mm : float
        Zero margin around the mask's bounding box.

    Returns
    -------
    chi_ppm : ndarray
    info : dict
        The weight, the inconsistency level, the path, the residual after each Bregman step,
        the iterations and whether the level was reached (``converged``).
    """
    for name, value in (("inner_iterations", inner_iterations), ("max_outer", max_outer),
                        ("path_iterations", path_iterations)):
        if int(value) < 1:
            raise ValueError(f"{name} must be at least 1, got {value}")
    problem = setup(local_ppm, mask, voxel_size_mm, b0_direction, pad_mm=pad_mm, noise_ppm=noise_ppm)
    weights, _, source = data_weights(problem, magnitude, noise_ppm)
    edge_weights, gradient_source = padded_edge_weights(problem, magnitude, mask, edge_fraction, edge_mask)
    chi, info = run_bregman_tv(problem, weights, edge_weights, path_step_decades=path_step_decades,
                               path_iterations=int(path_iterations), path_decades=path_decades,
                               inner_iterations=int(inner_iterations), max_outer=int(max_outer))
    info.update({"data_weights": source, "gradient_weights": gradient_source,
                 "edge_fraction": edge_fraction if magnitude is not None else None,
                 "edge_mask": edge_mask if magnitude is not None else None, "pad_mm": pad_mm})
    return problem.result(chi), info
