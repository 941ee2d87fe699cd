"""Group comparison of one region: ANCOVA, adjusted means, effect sizes, Mann-Whitney check.

Definitions (one region and hemisphere, participants of the two compared groups with every
value present):

- **ANCOVA**: OLS ``value ~ group + covariates`` (statsmodels ``OLS``); F and p of the
  group term from its type-II sum of squares (the increase of the residual sum of squares
  when the group term is dropped; one degree of freedom), which is what ``anova_lm(typ=2)``
  reports. The model has no interactions, so type-II and type-III sums of squares of the
  group term are identical.
- **partial eta squared** = SS_group / (SS_group + SS_residual), from the same table.
- **adjusted means** (estimated marginal means): each group's prediction averaged over the
  analysed sample with the group set to that group, which is the prediction at the sample
  means of the covariates; text covariates (sex) are weighted by their observed proportions
  in the analysed sample (emmeans ``weights = "proportional"``; SPSS with sex entered as a
  0/1 covariate).
- **Cohen's d** = (mean_a - mean_b) / pooled SD, from the raw group means and SDs (ddof 1),
  pooled SD = sqrt(((n_a - 1) sd_a^2 + (n_b - 1) sd_b^2) / (n_a + n_b - 2)). Negative d:
  group_a lower.
- **Mann-Whitney U** two-sided p (scipy ``mannwhitneyu``, exact for small samples without
  ties, normal approximation with tie correction otherwise) as the non-parametric check.
- **adjusted difference** ``diff`` = adj_mean_a - adj_mean_b (the ANCOVA's group
  coefficient) in the values' unit, with its 95 % CI b +- t(0.975, n - 2 - k) se(b); for chi
  (ppm) also ``diff_ppb`` (1 ppb = 0.001 ppm), which other measures leave empty
  (:mod:`qsmiron.stats.measures`).
- **CI of Cohen's d** by inverting the noncentral t distribution of the two-sample t
  statistic t = d / sqrt(1/n_a + 1/n_b) with n_a + n_b - 2 degrees of freedom (Steiger &
  Fouladi 1997; as R's effectsize ``cohens_d`` and MBESS ``ci.smd``).
- ``min_detectable_d``: the smallest |d| this row's sample detects with 80 % power at
  two-sided alpha 0.05 (:func:`qsmiron.stats.power.min_detectable_d`).

Raw means, SDs and d are computed on the same participants as the ANCOVA (after listwise
deletion over the covariates) so that every number of a row describes one sample.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import statsmodels.api as sm
from scipy import optimize, stats

from qsmiron.stats._design import covariate_design, is_constant
from qsmiron.stats.power import min_detectable_d

GROUP_COLUMNS = ["region", "hemisphere", "group_a", "group_b", "n_a", "n_b", "mean_a", "sd_a",
                 "mean_b", "sd_b", "adj_mean_a", "adj_mean_b", "F", "p", "p_fdr",
                 "partial_eta2", "cohen_d", "mwu_p", "family", "diff", "diff_ci_low", "diff_ci_high",
                 "diff_ppb", "diff_ci_low_ppb", "diff_ci_high_ppb", "cohen_d_ci_low", "cohen_d_ci_high",
                 "min_detectable_d", "note"]
"""Columns of ``group_comparison.tsv`` (``note`` says why a row has no statistics; ``family``,
the FDR family, is filled by the study analysis)."""

PPB_PER_PPM = 1000.0
CONFIDENCE = 0.95


def cohen_d(a, b) -> float:
    """Cohen's d of ``a`` minus ``b`` with the pooled SD (ddof 1); NaN when the SD is 0."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    n_a, n_b = a.size, b.size
    if n_a < 2 or n_b < 2:
        return float("nan")
    pooled = np.sqrt(((n_a - 1) * a.var(ddof=1) + (n_b - 1) * b.var(ddof=1)) / (n_a + n_b - 2))
    return float((a.mean() - b.mean()) / pooled) if pooled > 0 else float("nan")


def cohen_d_interval(d: float, n_a: int, n_b: int, *, confidence: float = CONFIDENCE
                     ) -> tuple[float, float]:
    """Confidence interval of Cohen's d (pooled SD) from the noncentral t distribution.

    The bounds are the d whose noncentral t distribution (n_a + n_b - 2 degrees of freedom,
    noncentrality d / sqrt(1/n_a + 1/n_b)) puts the observed t at its upper and lower
    (1 - confidence) / 2 quantiles.
    """
    if not np.isfinite(d) or n_a < 2 or n_b < 2:
        return float("nan"), float("nan")
    scale = np.sqrt(1.0 / n_a + 1.0 / n_b)
    t_observed, df = d / scale, n_a + n_b - 2
    tail = (1.0 - confidence) / 2.0

    def bound(quantile: float) -> float:
        def excess(ncp: float) -> float:
            value = float(stats.nct.cdf(t_observed, df, ncp))
            if not np.isfinite(value):  # scipy's far tails: the cdf is then 1 below t, 0 above
                value = 1.0 if ncp < t_observed else 0.0
            return value - quantile
        # the bounds lie within about 2 standard errors sqrt(1 + t^2 / (2 df)) of t (Hedges
        # & Olkin): 6 keep the bracket safe and away from the noncentral t's far tails,
        # where scipy returns NaN
        width = 6.0 * np.sqrt(1.0 + t_observed ** 2 / (2.0 * df))
        return float(optimize.brentq(excess, t_observed - width, t_observed + width,
                                     xtol=1e-10)) * scale

    return bound(1.0 - tail), bound(tail)


def compare_groups(values: pd.Series, groups: pd.Series, covariates: pd.DataFrame, *,
                   group_a: str, group_b: str, min_group_size: int = 3) -> dict[str, Any]:
    """Every number of one group-comparison row.

    Parameters
    ----------
    values : Series of float
        Regional susceptibility (ppm) of the analysed participants (no missing values).
    groups : Series of str
        ``group_a`` or ``group_b`` for each participant (same index).
    covariates : DataFrame
        Covariate columns, numeric or text (same index); may have no columns.
    group_a, group_b : str
    min_group_size : int
        Fewest participants per group for the statistics.

    Returns
    -------
    dict
        Keys of :data:`GROUP_COLUMNS` except region, hemisphere, p_fdr and family; ``note`` is empty
        when every statistic was computed and says why otherwise.
    """
    y = values.astype(float)
    in_a, in_b = (groups == group_a).to_numpy(), (groups == group_b).to_numpy()
    a, b = y[in_a].to_numpy(), y[in_b].to_numpy()
    row: dict[str, Any] = {
        "group_a": group_a, "group_b": group_b, "n_a": int(a.size), "n_b": int(b.size),
        "mean_a": _mean(a), "sd_a": _sd(a), "mean_b": _mean(b), "sd_b": _sd(b),
        "adj_mean_a": np.nan, "adj_mean_b": np.nan, "F": np.nan, "p": np.nan,
        "partial_eta2": np.nan, "cohen_d": np.nan, "mwu_p": np.nan, "diff": np.nan,
        "diff_ci_low": np.nan, "diff_ci_high": np.nan, "diff_ppb": np.nan, "diff_ci_low_ppb": np.nan, "diff_ci_high_ppb": np.nan, "cohen_d_ci_low": np.nan,
        "cohen_d_ci_high": np.nan, "min_detectable_d": np.nan, "note": "",
    }
    notes: list[str] = []
    small = [f"{label} has {n}" for label, n in ((group_a, a.size), (group_b, b.size))
             if n < min_group_size]
    if small:
        row["note"] = (f"too few participants with data ({'; '.join(small)}; at least "
                       f"{min_group_size} per group needed)")
        return row
    if is_constant(y.to_numpy()):
        row["note"] = "chi_ppm is the same for every participant: nothing to compare"
        return row
    row["cohen_d"] = cohen_d(a, b)
    row["cohen_d_ci_low"], row["cohen_d_ci_high"] = cohen_d_interval(row["cohen_d"], a.size,
                                                                     b.size)
    row["mwu_p"] = float(stats.mannwhitneyu(a, b, alternative="two-sided").pvalue)

    design = covariate_design(covariates, list(covariates.columns))
    notes.extend(design.notes)
    n, k = y.size, design.k
    row["min_detectable_d"] = min_detectable_d(int(a.size), int(b.size), n_covariates=k)
    if n - 2 - k < 1:
        notes.append(f"{n} participants cannot fit a model with {k} covariate column(s)")
        row["note"] = "; ".join(notes)
        return row
    # OLS y ~ 1 + [group_a] + covariates; the group term has one degree of freedom, so its
    # type-II (= type-III) F is the drop in residual SS without it over the residual mean square.
    indicator = in_a.astype(float)
    full = np.column_stack([np.ones(n), indicator, design.matrix.to_numpy(float)])
    if np.linalg.matrix_rank(full) < full.shape[1]:
        notes.append("group and covariates are collinear in this sample (for example every "
                     "participant of one group has the same sex): the group effect cannot be "
                     "separated from the covariates")
        row["note"] = "; ".join(notes)
        return row
    fit = sm.OLS(y.to_numpy(), full).fit()
    reduced = sm.OLS(y.to_numpy(), np.delete(full, 1, axis=1)).fit()
    ss_resid = float(fit.ssr)
    ss_group = float(reduced.ssr - fit.ssr)
    if ss_resid <= 1e-30 * max(1.0, float(np.sum(y.to_numpy() ** 2))) or fit.df_resid < 1:
        notes.append("the model fits every value exactly (no residual variance)")
        row["note"] = "; ".join(notes)
        return row
    f_value = ss_group / (ss_resid / fit.df_resid)
    row["F"] = float(f_value)
    row["p"] = float(stats.f.sf(f_value, 1, fit.df_resid))
    row["partial_eta2"] = float(ss_group / (ss_group + ss_resid))
    difference = float(fit.params[1])
    half_width = float(stats.t.ppf(0.5 + CONFIDENCE / 2, fit.df_resid) * fit.bse[1])
    row["diff"], row["diff_ci_low"], row["diff_ci_high"] = difference, difference - half_width, \
        difference + half_width
    for column in ("diff", "diff_ci_low", "diff_ci_high"):
        row[f"{column}_ppb"] = row[column] * PPB_PER_PPM
    # estimated marginal means: the model's prediction at the sample covariate means
    # (dummy columns at their observed proportions) with the group indicator set
    at_means = full.mean(axis=0)
    for value, key in ((1.0, "adj_mean_a"), (0.0, "adj_mean_b")):
        at_means[1] = value
        row[key] = float(at_means @ fit.params)
    row["note"] = "; ".join(notes)
    return row


def _mean(values: np.ndarray) -> float:
    return float(np.mean(values)) if values.size else float("nan")


def _sd(values: np.ndarray) -> float:
    return float(np.std(values, ddof=1)) if values.size > 1 else float("nan")
