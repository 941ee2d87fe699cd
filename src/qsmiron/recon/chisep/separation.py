"""Susceptibility source separation: paramagnetic (chi+) and diamagnetic (chi-) maps.

Model (chi-separation, Shin et al., NeuroImage 2021;240:118371), with both sources as
non-negative magnitudes, ppm:

- field: ``f = D (chi+ - chi-)``, the dipole convolution of the net susceptibility;
- reversible transverse relaxation: ``R2' = Dr (chi+ + chi-)``; in the static-dephasing
  regime (Yablonskiy & Haacke, MRM 1994;32:749) R2' grows with the magnitude of the field
  perturbation whatever its sign. ``Dr`` (Hz/ppm = s^-1/ppm) defaults to 137 Hz/ppm at 3 T,
  the value of Shin et al. 2021 (the COSMOS-calibrated chi-sepnet value is 114 Hz/ppm),
  scaled in proportion to B0 at other field strengths (R2' is proportional to B0 there).

R2' is ``R2* - R2`` when a spin-echo R2 map is given. Without one, an **approximation**
(written into ``info`` and to be labelled so in reports): a pseudo-R2 from R2*,
``R2 = 5.25 s^-1 + 0.5 R2*``, which follows from the 3 T grey-matter regressions of Gelman
et al. (Radiology 1999;210:759): R2 = 12.7 s^-1 + b [Fe] and R2' = 2.2 s^-1 + b [Fe] with
(about) the same iron slope b, so R2* = 14.9 s^-1 + 2 b [Fe] and R2' = 0.5 R2* - 5.25 s^-1.
It holds for iron-dominated grey matter at 3 T; in white matter, where myelin rather than
iron drives R2', it is biased, and at other field strengths its constants do not apply.

Solved jointly for both maps by ADMM, minimising

``1/2 ||W_f (D(chi+ - chi-) - f)||^2 + lambda/2 ||W_r (chi+ + chi- - R2'/Dr)||^2
  + alpha (TV_M(chi+) + TV_M(chi-))``  subject to ``chi+ >= 0, chi- >= 0``

with the data weights of the dipole inversion (``W_f``: 1/noise, else magnitude, mean 1),
``W_r`` from the R2* standard error when given (else uniform), and ``TV_M`` the
magnitude-edge-weighted TV of MEDI. The field's misfit is dominated by its inconsistency with
the dipole model (noise and model errors, measured on the magic cone by
``inconsistency_ppm``), not by thermal noise alone, so ``lambda = (inconsistency / R2' noise)^2``
whitens the two terms alike. ``alpha`` is by default the weight ``wtv``'s automatic rule picks for
the same field (its residual meets that inconsistency); that ``wtv`` solve, the net
susceptibility, also starts the separation (``chi+ = (R2'/Dr + chi)/2``,
``chi- = (R2'/Dr - chi)/2``, clipped at 0). The pipeline can pass the weight and map of its
own dipole inversion instead (``alpha``, ``chi_ppm``).

Splittings: ``z = grad chi+-`` (shrinkage), ``y = D(chi+ - chi-)`` (voxel-wise field weights)
and ``q = chi+-`` (the voxel-wise R2' term with the non-negativity, a 2-variable quadratic
program solved exactly). The least-squares step is diagonal in k-space for the sum and the
difference of the two maps.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal, Sequence

import numba
import numpy as np

from qsmiron.errors import InputError
from qsmiron.recon.fourier import irfftn, laplacian_kernel, rfftn
from qsmiron.recon.invert import (DEFAULT_PAD_MM, data_weights, estimate_noise_ppm,
                                  gradient_adjoint_of_difference, gradient_shrink, gradient_shrink_by_axis,
                                  inconsistency_ppm, prepare_problem)
from qsmiron.recon.invert.tv_admm import run_weighted_tv, split_gradient_weights
from qsmiron.recon.invert.wtv import DEFAULT_EDGE_FRACTION, EdgeMask, padded_edge_weights
from qsmiron.recon.params import Fraction, NonNegativeFloat, PositiveFloat, PositiveInt


__all__ = ["ChiSeparation", "separate_susceptibility", "r2prime_from_r2star", "check_r2_map",
           "relaxometric_constant", "DR_3T_HZ_PER_PPM", "PSEUDO_R2_3T"]

DR_3T_HZ_PER_PPM = 137.0
"""Relaxometric constant R2'/|chi| at 3 T, Hz/ppm (Shin et al., NeuroImage 2021;240:118371)."""

PSEUDO_R2_3T = (5.25, 0.5)
"""(intercept s^-1, slope) of the pseudo-R2 ``R2 = a + b R2*`` at 3 T (module docstring)."""

QSM_PATH = {"max_iter": 30, "tol": 1e-2, "path_alphas": 6, "path_decades": 3.5, "path_iterations": 3}
"""Settings of the ``wtv`` solve that picks the TV weight under ``alpha="auto"`` (those of
``qsmiron.recon.invert.wtv``)."""

R2_PLAUSIBLE_PER_S = (2.0, 45.0)
"""Median R2 over a brain, s^-1, from 1.5 to 7 T (T2 about 22 to 500 ms); outside it the map is
in other units (T2 in ms or s, R2 in ms^-1)."""

R2_OVER_R2STAR_MAX = 1.25
"""Largest median R2 / R2* accepted over the brain."""


@dataclass
class ChiSeparation:
    """Result of :func:`separate_susceptibility`.

    Attributes
    ----------
    paramagnetic_ppm, diamagnetic_ppm : ndarray of float32, shape (X, Y, Z)
        chi+ and chi- as non-negative magnitudes, ppm; zero outside the mask.
    r2prime_per_s : ndarray of float32
        The R2' the separation used, s^-1 (NaN where there was none); zero outside the mask.
    info : dict
        Method, every parameter and constant used with its source, whether R2' is an
        approximation, the weights, iterations and convergence.
    """

    paramagnetic_ppm: np.ndarray
    diamagnetic_ppm: np.ndarray
    r2prime_per_s: np.ndarray
    info: dict[str, Any] = field(default_factory=dict)


def relaxometric_constant(field_strength_t: float, dr_hz_per_ppm: float | None = None) -> tuple[float, str]:
    """Dr in Hz/ppm and where it comes from (given, or 137 Hz/ppm at 3 T scaled with B0)."""
    if dr_hz_per_ppm is not None:
        if not dr_hz_per_ppm > 0:
            raise ValueError(f"dr_hz_per_ppm must be positive, got {dr_hz_per_ppm}")
        return float(dr_hz_per_ppm), "given"
    if not field_strength_t > 0:
        raise ValueError(f"field_strength_t must be positive, got {field_strength_t}")
    value = DR_3T_HZ_PER_PPM * float(field_strength_t) / 3.0
    return value, (f"{DR_3T_HZ_PER_PPM:g} Hz/ppm at 3 T (Shin et al., NeuroImage 2021;240:118371)"
                   f" x B0 / 3 T")


def check_r2_map(r2_per_s: np.ndarray, r2star_per_s: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """An R2 map (s^-1) checked against the R2* map's grid and a plausible range.

    Raises
    ------
    InputError
        Another shape than R2*, no finite value in the mask, a median outside
        ``R2_PLAUSIBLE_PER_S`` (with the likely unit named), or a median R2 / R2* above
        ``R2_OVER_R2STAR_MAX``.
    """
    r2 = np.asarray(r2_per_s, dtype=np.float32)
    if r2.shape != np.shape(r2star_per_s):
        raise InputError(f"the R2 map has shape {r2.shape}, the R2* map {np.shape(r2star_per_s)}: "
                         f"resample it onto the GRE grid first")
    mask = np.asarray(mask, dtype=bool)
    values = r2[mask & np.isfinite(r2)]
    if values.size == 0:
        raise InputError("the R2 map has no finite value inside the brain mask")
    median = float(np.median(values))
    low, high = R2_PLAUSIBLE_PER_S
    if not low <= median <= high:
        if 20.0 <= median <= 500.0:
            guess = "it looks like T2 in ms; give R2 = 1000 / T2 in s^-1"
        elif 0.002 <= median < low:
            guess = "it looks like T2 in s or R2 in ms^-1; give R2 in s^-1"
        else:
            guess = "give R2 in s^-1"
        raise InputError(f"the R2 map's median in the brain is {median:.4g}, outside the "
                         f"{low:g}-{high:g} s^-1 of brain tissue: {guess}")
    star = np.asarray(r2star_per_s, dtype=np.float32)
    both = mask & np.isfinite(r2) & np.isfinite(star) & (star > 0)
    # R2 <= R2* (R2* = R2 + R2'); a 20 % error in R2 can push it above R2* where R2' is
    # small, so only a map well above R2* over the brain is refused.
    if both.any() and float(np.median(r2[both] / star[both])) > R2_OVER_R2STAR_MAX:
        raise InputError(f"the R2 map is above R2* by more than {R2_OVER_R2STAR_MAX - 1:.0%} over "
                         f"the brain (median R2/R2* {float(np.median(r2[both] / star[both])):.2f}), "
                         f"which cannot be (R2* = R2 + R2'): check that it is R2 in s^-1 of the "
                         f"same subject and session")
    return r2


def r2prime_from_r2star(r2star_per_s: np.ndarray, mask: np.ndarray, *,
                        r2_per_s: np.ndarray | None = None, field_strength_t: float = 3.0,
                        pseudo_r2: tuple[float, float] = PSEUDO_R2_3T) -> tuple[np.ndarray, dict]:
    """R2' = R2* - R2 (s^-1), with a measured R2 or the pseudo-R2 approximation.

    Returns
    -------
    r2prime_per_s : ndarray of float32
        NaN where R2* (or R2) is not finite; 0 outside the mask.
    info : dict
        ``source``, ``approximation`` (bool), the constants and their reference, warnings.
    """
    star = np.asarray(r2star_per_s, dtype=np.float32)
    mask = np.asarray(mask, dtype=bool)
    warnings: list[str] = []
    if r2_per_s is not None:
        r2 = check_r2_map(r2_per_s, star, mask)
        info = {"source": "R2* - R2 (measured R2)", "approximation": False}
    else:
        intercept, slope = (float(v) for v in pseudo_r2)
        r2 = np.float32(intercept) + np.float32(slope) * star
        info = {"source": "R2* - pseudo-R2", "approximation": True,
                "pseudo_r2": {"intercept_per_s": intercept, "slope": slope,
                              "model": "R2 = intercept + slope x R2*",
                              "reference": "Gelman et al., Radiology 1999;210:759 (3 T grey "
                                           "matter: R2 and R2' share their iron slope)"}}
        if abs(float(field_strength_t) - 3.0) > 0.25:
            warnings.append(f"the pseudo-R2 constants were derived at 3 T, not "
                            f"{float(field_strength_t):g} T: chi-separation without R2 is rough here")
    r2prime = np.where(mask, star - r2, 0.0).astype(np.float32)
    info["warnings"] = warnings
    info["n_voxels_without_r2prime"] = int(np.count_nonzero(mask & ~np.isfinite(r2prime)))
    return r2prime, info


def separate_susceptibility(local_ppm: np.ndarray, r2star_per_s: np.ndarray, mask: np.ndarray,
                            voxel_size_mm: Sequence[float], b0_direction: Sequence[float], *,
                            field_strength_t: float, r2_per_s: np.ndarray | None = None,
                            dr_hz_per_ppm: PositiveFloat | None = None,
                            pseudo_r2: tuple[float, float] = PSEUDO_R2_3T,
                            magnitude: np.ndarray | None = None, noise_ppm: np.ndarray | None = None,
                            r2star_sd_per_s: np.ndarray | None = None,
                            alpha: PositiveFloat | Literal["auto"] = "auto", chi_ppm: np.ndarray | None = None,
                            edge_fraction: Fraction = DEFAULT_EDGE_FRACTION, edge_mask: EdgeMask = "per_axis",
                            max_iter: PositiveInt = 200, tol: PositiveFloat = 2e-3,
                            pad_mm: NonNegativeFloat = DEFAULT_PAD_MM) -> ChiSeparation:
    """chi+ and chi- (ppm, both >= 0) from the local field and R2' (module docstring).

    Parameters
    ----------
    local_ppm : ndarray, shape (X, Y, Z)
        Local field, ppm of B0 (positive for paramagnetic sources).
    r2star_per_s : ndarray, shape (X, Y, Z)
        R2*, s^-1; NaN where it could not be fitted (those voxels get no R2' term).
    mask : ndarray of bool
    voxel_size_mm, b0_direction : geometry (voxel axes)
    field_strength_t : float
        B0, tesla (for Dr and the validity of the pseudo-R2).
    r2_per_s : ndarray, optional
        Spin-echo R2, s^-1, same grid; without it R2' is the pseudo-R2 approximation.
    dr_hz_per_ppm : float, optional
        Relaxometric constant; default 137 Hz/ppm x B0 / 3 T.
    pseudo_r2 : (intercept s^-1, slope)
        The approximation's constants (used only without ``r2_per_s``).
    magnitude : ndarray, optional
        Magnitude for the TV edge weights (and the field weights without ``noise_ppm``).
    noise_ppm : ndarray, optional
        Field-noise map (ppm): field weights 1/noise.
    r2star_sd_per_s : ndarray, optional
        Standard error of R2* (s^-1): R2' weights and noise level.
    alpha : float or "auto"
        TV weight, ppm mm (the convention of ``qsmiron.recon.invert.wtv``); "auto": the
        weight ``wtv``'s automatic rule picks for this field (one ``wtv`` solve, module docstring).
    chi_ppm : ndarray, optional
        Net susceptibility of the same field (e.g. the pipeline's QSM) to start from; with
        ``alpha="auto"`` the ``wtv`` solve provides it.
    edge_fraction : as for ``wtv``.
    edge_mask : {"per_axis", "voxel"}
        Which gradient components a magnitude edge exempts from TV
        (``qsmiron.recon.invert.wtv.magnitude_edge_weights``): per axis, as the default dipole
        inversion (``wtv_bregman``), whose weight the pipeline passes here, or all three of an
        edge voxel's. Per axis had the lower NRMSE of both maps on each of the 8 varied heads
        of ``benchmarks/bench_chisep.py --family`` (1 to 2.5 mm, SNR 40 to 200, 0 to 25
        degrees; true R2): chi+ / chi- median 11.9 / 9.6 against 13.4 / 11.4 %, worst 18.0 /
        13.4 against 21.0 / 16.1 % (figures and edge fractions: ``qsmiron.recon.chisep``). With
        R2 20 % off or the pseudo-R2 (two heads) they moved by at most 2 points either way.
    max_iter, tol, pad_mm : as for ``wtv``; ``tol`` on the relative change of the two maps per
        iteration.

    Returns
    -------
    ChiSeparation
    """
    if max_iter < 1 or not tol > 0 or not (alpha == "auto" or (not isinstance(alpha, str) and alpha > 0)):
        raise ValueError("alpha > 0 or 'auto', max_iter >= 1 and tol > 0 are needed")
    dr, dr_source = relaxometric_constant(field_strength_t, dr_hz_per_ppm)
    problem = prepare_problem(local_ppm, mask, voxel_size_mm, b0_direction, pad_mm=pad_mm, noise_ppm=noise_ppm)
    full_mask = np.asarray(mask, dtype=bool)
    r2prime, r2p_info = r2prime_from_r2star(r2star_per_s, full_mask, r2_per_s=r2_per_s,
                                            field_strength_t=field_strength_t, pseudo_r2=pseudo_r2)
    weights_f, level_f, source_f = data_weights(problem, magnitude, noise_ppm)
    have_r2prime = problem.mask & np.isfinite(problem.pad(r2prime))
    target = np.where(have_r2prime, problem.pad(np.nan_to_num(r2prime)) / np.float32(dr), 0.0)
    weights_r, level_r, source_r = _r2prime_weights(problem, r2prime, r2star_sd_per_s, dr)
    edges, _ = padded_edge_weights(problem, magnitude, full_mask, edge_fraction, edge_mask)
    alpha, start, inconsistency, qsm_info = _weight_and_start(problem, weights_f, level_f, edges,
                                                              alpha, chi_ppm)
    field_level = max(inconsistency, level_f) if np.isfinite(inconsistency) else level_f
    lam = float((field_level / level_r) ** 2) if level_r > 0 and field_level > 0 else 1.0
    solver = _Solver(problem, weights_f, weights_r * np.float32(math.sqrt(lam)), target, edges, alpha)
    if start is not None:
        solver.start_from(start, target, have_r2prime)
    iterations, change = solver.run(max_iter, tol)
    info = {
        "method": "chi-separation (Shin et al., NeuroImage 2021;240:118371), ADMM with "
                  "magnitude-weighted TV",
        "parameters": {"alpha": alpha, "edge_fraction": edge_fraction if magnitude is not None else None,
                       "edge_mask": edge_mask if magnitude is not None else None,
                       "max_iter": max_iter, "tol": tol, "pad_mm": pad_mm,
                       "dr_hz_per_ppm": dr, "field_strength_t": float(field_strength_t)},
        "dr_source": dr_source, "r2prime": {k: v for k, v in r2p_info.items() if k != "warnings"},
        "approximation": bool(r2p_info["approximation"]),
        "alpha_source": ("wtv automatic rule on this field (inconsistency discrepancy)"
                         if qsm_info else "given"),
        "alpha_selection": qsm_info or None,
        "field_weights": source_f, "r2prime_weights": source_r, "lambda_r2prime": lam,
        "field_inconsistency_ppm": inconsistency, "noise_level_field_ppm": level_f,
        "noise_level_r2prime_ppm": level_r, "started_from": (
            "wtv solution" if qsm_info else "given susceptibility" if chi_ppm is not None else "zero"),
        "iterations": iterations, "relative_change": change, "converged": bool(change < tol),
        "warnings": list(r2p_info["warnings"]),
    }
    if not info["converged"]:
        info["warnings"].append(f"chi-separation stopped at {max_iter} iterations with a relative "
                                f"change of {change:.2g} (tolerance {tol:g})")
    return ChiSeparation(problem.result(solver.p), problem.result(solver.n), r2prime, info)


def _weight_and_start(problem, weights_f, level_f, edges, alpha, chi_ppm):
    """(alpha, start map or None, field inconsistency in ppm, the ``wtv`` selection's record)."""
    start = None if chi_ppm is None else problem.pad(np.nan_to_num(np.asarray(chi_ppm, np.float32)))
    if alpha != "auto":
        return float(alpha), start, inconsistency_ppm(problem), {}
    # The raw cone level, as the data terms' balance (lambda) uses: with the leak-corrected level
    # of wtv the regional errors of benchmarks/bench_chisep.py rose (chi+ median 1.2 -> 1.6 ppb).
    start, details = run_weighted_tv(problem, weights_f, level_f, alpha="auto",
                                     gradient_weights=edges, leak_corrected_level=False, **QSM_PATH)
    record = {k: details[k] for k in ("alpha", "chosen_by", "inconsistency_ppm", "iterations",
                                      "converged") if k in details}
    return float(details["alpha"]), start, float(details["inconsistency_ppm"]), record


def _r2prime_weights(problem, r2prime, r2star_sd_per_s, dr) -> tuple[np.ndarray, float, str]:
    """Weights of the R2' term (mean 1 where R2' exists, 0 elsewhere) and its noise level (ppm)."""
    have = problem.mask & np.isfinite(problem.pad(r2prime))
    if not have.any():
        raise InputError("no voxel of the brain mask has an R2* value: chi-separation needs R2*")
    if r2star_sd_per_s is not None:
        sd = problem.pad(np.asarray(r2star_sd_per_s, dtype=np.float32) / np.float32(dr))
        good = have & np.isfinite(sd) & (sd > 0)
        raw = np.zeros(problem.grid.shape, np.float32)
        raw[good] = 1.0 / sd[good]
        median = float(np.median(raw[good])) if good.any() else 0.0
        if median > 0:
            raw = np.where(good, np.clip(raw, 0.1 * median, 10.0 * median), 0.0).astype(np.float32)
            weights = raw / np.float32(raw[good].mean())
            level = float(np.sqrt(np.mean((weights[good] * sd[good]) ** 2)))
            return weights, level, "1 / standard error of R2*"
    weights = have.astype(np.float32)
    target = np.where(have, problem.pad(np.nan_to_num(r2prime)) / np.float32(dr), 0.0)
    return weights, estimate_noise_ppm(target, have), "uniform"


class _Solver:
    """ADMM state on the padded grid: p = chi+, n = chi- (both >= 0, ppm)."""

    MU_GRADIENT_FACTOR = 100.0  # FANSI's choice, as in tv_admm
    MU_DATA = 1.0
    MU_SPLIT = 1.0

    def __init__(self, problem, weights_f, weights_r, target_r, edges, alpha):
        shape = problem.grid.shape
        self.problem = problem
        self.inv_dx = np.array([1.0 / v for v in problem.voxel_size_mm], np.float32)
        self.field = problem.field_ppm
        self.wf2 = (weights_f * weights_f).astype(np.float32)
        self.wr2 = (weights_r * weights_r).astype(np.float32)
        self.target = target_r.astype(np.float32)
        self.mu1 = self.MU_GRADIENT_FACTOR * alpha
        self.mu2, self.mu3 = self.MU_DATA, self.MU_SPLIT
        voxel_weights, self.penalised = split_gradient_weights(edges, shape)
        self.threshold = (np.float32(alpha / self.mu1) * voxel_weights).astype(np.float32)
        lap = laplacian_kernel(shape, problem.voxel_size_mm)
        d2 = problem.dipole * problem.dipole
        self.inv_sum = (1.0 / (self.mu1 * lap + self.mu3)).astype(np.float32)
        self.inv_diff = (1.0 / (self.mu1 * lap + 2.0 * self.mu2 * d2 + self.mu3)).astype(np.float32)
        self.dipole = problem.dipole
        self.p = np.zeros(shape, np.float32)
        self.n = np.zeros(shape, np.float32)
        self.zp, self.sp = np.zeros((3, *shape), np.float32), np.zeros((3, *shape), np.float32)
        self.zn, self.sn = np.zeros((3, *shape), np.float32), np.zeros((3, *shape), np.float32)
        self.y, self.sy = np.where(problem.mask, self.field, 0.0).astype(np.float32), np.zeros(shape, np.float32)
        self.qp, self.qn = np.zeros(shape, np.float32), np.zeros(shape, np.float32)
        self.tp, self.tn = np.zeros(shape, np.float32), np.zeros(shape, np.float32)
        self.work_p, self.work_n = np.empty(shape, np.float32), np.empty(shape, np.float32)

    def start_from(self, chi, target, have_target) -> None:
        """Both maps from a net susceptibility and the R2' target: (target +- chi) / 2, >= 0."""
        chi = chi.astype(np.float32)
        total = np.where(have_target, np.maximum(target, np.abs(chi)), np.abs(chi))
        np.maximum(0.5 * (total + chi), 0.0, out=self.p)
        np.maximum(0.5 * (total - chi), 0.0, out=self.n)
        self.qp[...], self.qn[...] = self.p, self.n
        zero = np.zeros(self.p.shape, np.float32)
        for chi_map, z, s in ((self.p, self.zp, self.sp), (self.n, self.zn, self.sn)):
            gradient_shrink(chi_map, z, s, zero, self.inv_dx)
            s[...] = 0.0

    def _shrink(self, chi, z, s) -> None:
        """TV's proximal step on one map: all three gradient components, or the penalised ones."""
        if self.penalised is None:
            gradient_shrink(chi, z, s, self.threshold, self.inv_dx)
        else:
            gradient_shrink_by_axis(chi, z, s, self.threshold, self.penalised, self.inv_dx)

    def run(self, max_iter: int, tol: float) -> tuple[int, float]:
        shape = self.p.shape
        change = np.inf
        for iteration in range(1, max_iter + 1):
            # Least-squares step: sum and difference of the maps are diagonal in k-space.
            gradient_adjoint_of_difference(self.zp, self.sp, self.inv_dx, self.work_p)
            gradient_adjoint_of_difference(self.zn, self.sn, self.inv_dx, self.work_n)
            _rhs(self.work_p, self.work_n, self.qp, self.tp, self.qn, self.tn,
                 np.float32(self.mu1), np.float32(self.mu3))
            spectrum_sum = rfftn(self.work_p) * self.inv_sum
            spectrum_diff = (rfftn(self.work_n) + np.float32(2.0 * self.mu2) * self.dipole
                             * rfftn(self.y - self.sy)) * self.inv_diff
            total = irfftn(spectrum_sum, shape).astype(np.float32, copy=False)
            difference = irfftn(spectrum_diff, shape).astype(np.float32, copy=False)
            field_of_difference = irfftn(spectrum_diff * self.dipole, shape).astype(np.float32, copy=False)
            change = _update_maps(total, difference, self.p, self.n)
            # Proximal steps and dual updates.
            self._shrink(self.p, self.zp, self.sp)
            self._shrink(self.n, self.zn, self.sn)
            _field_step(field_of_difference, self.sy, self.field, self.wf2, np.float32(self.mu2), self.y)
            _relaxation_step(self.p, self.n, self.tp, self.tn, self.target, self.wr2,
                             np.float32(self.mu3), self.qp, self.qn)
            if change < tol:
                break
        # The split copies carry the constraint exactly; the maps converge to them.
        np.maximum(self.qp, 0.0, out=self.p)
        np.maximum(self.qn, 0.0, out=self.n)
        return iteration, float(change)


@numba.njit(parallel=True, cache=True, fastmath=True)
def _rhs(gp, gn, qp, tp, qn, tn, mu1, mu3):
    """gp <- sum of the right-hand sides, gn <- their difference (image space, no D term)."""
    nx, ny, nz = gp.shape
    for i in numba.prange(nx):
        for j in range(ny):
            for k in range(nz):
                bp = mu1 * gp[i, j, k] + mu3 * (qp[i, j, k] - tp[i, j, k])
                bn = mu1 * gn[i, j, k] + mu3 * (qn[i, j, k] - tn[i, j, k])
                gp[i, j, k] = bp + bn
                gn[i, j, k] = bp - bn


@numba.njit(parallel=True, cache=True, fastmath=True)
def _update_maps(total, difference, p, n):
    """p, n <- (total +- difference) / 2; returns the relative change of (p, n)."""
    nx, ny, nz = p.shape
    num = np.zeros(nx)
    den = np.zeros(nx)
    for i in numba.prange(nx):
        a = b = 0.0
        for j in range(ny):
            for k in range(nz):
                new_p = 0.5 * (total[i, j, k] + difference[i, j, k])
                new_n = 0.5 * (total[i, j, k] - difference[i, j, k])
                dp, dn = new_p - p[i, j, k], new_n - n[i, j, k]
                a += dp * dp + dn * dn
                b += new_p * new_p + new_n * new_n
                p[i, j, k] = new_p
                n[i, j, k] = new_n
        num[i] = a
        den[i] = b
    total_den = den.sum()
    return math.sqrt(num.sum() / total_den) if total_den > 0 else 0.0


@numba.njit(parallel=True, cache=True, fastmath=True)
def _field_step(dchi, s, field, w2, mu, y):
    """y <- argmin w2/2 (y - f)^2 + mu/2 (y - (D chi + s))^2; s <- s + D chi - y."""
    nx, ny, nz = y.shape
    for i in numba.prange(nx):
        for j in range(ny):
            for k in range(nz):
                v = dchi[i, j, k] + s[i, j, k]
                w = w2[i, j, k]
                new = (w * field[i, j, k] + mu * v) / (w + mu)
                y[i, j, k] = new
                s[i, j, k] = v - new


@numba.njit(parallel=True, cache=True, fastmath=True)
def _relaxation_step(p, n, tp, tn, target, wr2, mu, qp, qn):
    """(qp, qn) <- argmin_{q >= 0} c/2 (qp + qn - r)^2 + mu/2 |q - (x + t)|^2; duals updated.

    A 2-variable quadratic program per voxel: the unconstrained minimiser moves both
    components by the same amount; otherwise one of them is zero (or both).
    """
    nx, ny, nz = p.shape
    for i in numba.prange(nx):
        for j in range(ny):
            for k in range(nz):
                a = p[i, j, k] + tp[i, j, k]
                b = n[i, j, k] + tn[i, j, k]
                c = wr2[i, j, k]
                r = target[i, j, k]
                shift = c * (r - a - b) / (2.0 * c + mu)
                u, v = a + shift, b + shift
                if u < 0.0 or v < 0.0:
                    best = np.inf
                    u = v = 0.0
                    for case in range(3):
                        if case == 0:
                            cu, cv = 0.0, max((c * r + mu * b) / (c + mu), 0.0)
                        elif case == 1:
                            cu, cv = max((c * r + mu * a) / (c + mu), 0.0), 0.0
                        else:
                            cu, cv = 0.0, 0.0
                        cost = (c * (cu + cv - r) * (cu + cv - r)
                                + mu * ((cu - a) * (cu - a) + (cv - b) * (cv - b)))
                        if cost < best:
                            best, u, v = cost, cu, cv
                qp[i, j, k] = u
                qn[i, j, k] = v
                tp[i, j, k] = a - u
                tn[i, j, k] = b - v
