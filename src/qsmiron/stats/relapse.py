"""Outcome models of one region: logistic regression, ROC, Cox, Kaplan-Meier, counts.

Definitions (participants of the relapse group with every value of the model present):

- **Logistic regression** (statsmodels ``Logit``): ``outcome ~ z + covariates`` with
  z = (chi - mean) / SD (ddof 1) in the analysed sample, so the odds ratio exp(b_z) is per
  1 SD of chi; Wald 95 % CI exp(b_z +- 1.96 se) and Wald p.
- **ROC** of chi alone: AUC = P(chi of an event > chi of a non-event) + 1/2 P(tie), in the
  direction ``roc_direction``: ``higher`` (higher chi predicts the event), ``lower`` (lower chi
  predicts it; the AUC is then that of -chi) or ``auto`` (the direction whose AUC is >= 0.5,
  as pROC's ``direction = "auto"``; note that choosing the direction from the data makes the
  AUC optimistic, most of all near 0.5: give the direction in the study file when it is
  known in advance). 95 % CI from DeLong's variance (DeLong, DeLong & Clarke-Pearson 1988,
  Biometrics 44:837) with the O(n log n) midrank algorithm of Sun & Xu (2014, IEEE Signal
  Process. Lett. 21:1389), clipped to [0, 1]. The **Youden cut-off** maximises
  sensitivity + specificity - 1 over the observed values (the most specific one on ties);
  the rule is "event predicted when chi >= cut-off" (higher) or "chi <= cut-off" (lower),
  and the cut-off is an observed chi value in ppm.
- **Cox proportional hazards** (lifelines ``CoxPHFitter``, Efron ties): hazard ratio per
  1 SD of chi with its 95 % CI and Wald p, covariates as in the logistic model.
- **Kaplan-Meier** curves (lifelines) for chi at or below the sample median ("low") and
  above it ("high"), with log-rank p.
- **Counts**: Poisson regression ``count ~ z + covariates`` (statsmodels ``Poisson``, log
  link, offset log(exposure) when a follow-up column is given); overdispersion by the
  Cameron & Trivedi (1990) auxiliary regression ((y - mu)^2 - y) / mu = alpha mu + e
  (statsmodels ``test_dispersion`` "CT nb2"), one-sided p of alpha > 0; when p < 0.05 the
  model is negative binomial NB2 (statsmodels ``NegativeBinomial``, alpha by maximum
  likelihood) instead. Rate ratio per 1 SD of chi with Wald 95 % CI and p.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pandas as pd
import statsmodels.api as sm
from scipy import stats
from sklearn.metrics import roc_curve

from qsmiron.stats._design import covariate_design, is_constant

RELAPSE_COLUMNS = ["region", "hemisphere", "n", "n_events", "odds_ratio", "or_ci_low",
                   "or_ci_high", "p", "p_fdr", "auc", "auc_ci_low", "auc_ci_high",
                   "youden_threshold_ppm", "sensitivity", "specificity", "roc_direction"]
"""Columns of ``relapse.tsv`` before the time-to-event columns and ``note``."""
HAZARD_COLUMNS = ["hr", "hr_ci_low", "hr_ci_high", "hr_p", "hr_p_fdr", "hr_n", "hr_events",
                  "km_logrank_p"]
"""Added to ``relapse.tsv`` when the study has time-to-event columns."""
COUNT_COLUMNS = ["region", "hemisphere", "n", "model", "rate_ratio", "rr_ci_low", "rr_ci_high",
                 "p", "p_fdr", "overdispersion_p", "alpha", "note"]
"""Columns of ``relapse_counts.tsv``."""


def relapse_columns(with_time: bool) -> list[str]:
    """Columns of ``relapse.tsv``: the hazard columns only with time-to-event data."""
    return RELAPSE_COLUMNS + (HAZARD_COLUMNS if with_time else []) + ["note"]


Z_95 = float(stats.norm.ppf(0.975))
OVERDISPERSION_ALPHA = 0.05


# ---------------------------------------------------------------------------------------
# ROC


def delong_auc_variance(scores, labels) -> tuple[float, float]:
    """AUC and its DeLong variance, by the fast midrank algorithm (Sun & Xu 2014).

    Parameters
    ----------
    scores : array-like, shape (n,)
        Higher scores should mean "event".
    labels : array-like of {0, 1}, shape (n,)

    Returns
    -------
    auc : float
        Mann-Whitney estimate, ties counted 1/2.
    variance : float
        DeLong's variance S10/m + S01/n of the structural components (ddof 1).
    """
    scores = np.asarray(scores, dtype=float)
    labels = np.asarray(labels).astype(bool)
    positive, negative = scores[labels], scores[~labels]
    m, n = positive.size, negative.size
    if m < 2 or n < 2:
        raise ValueError("DeLong's variance needs at least two events and two non-events")
    ranks_all = stats.rankdata(np.concatenate([positive, negative]))
    ranks_pos, ranks_neg = stats.rankdata(positive), stats.rankdata(negative)
    # placement values: share of non-events below each event, of events above each non-event
    v10 = (ranks_all[:m] - ranks_pos) / n
    v01 = 1.0 - (ranks_all[m:] - ranks_neg) / m
    auc = float((ranks_all[:m].sum() - m * (m + 1) / 2.0) / (m * n))
    variance = float(v10.var(ddof=1) / m + v01.var(ddof=1) / n)
    return auc, variance


def roc_analysis(chi_ppm, events, *, direction: str = "auto") -> dict[str, Any]:
    """AUC with DeLong 95 % CI, Youden cut-off, and the ROC curve of chi alone.

    Returns
    -------
    dict
        ``auc``, ``auc_ci_low``, ``auc_ci_high``, ``youden_threshold_ppm``, ``sensitivity``,
        ``specificity``, ``roc_direction`` and ``curve`` (DataFrame fpr, tpr, threshold_ppm;
        the first point's threshold is infinite: nothing called an event).
    """
    chi = np.asarray(chi_ppm, dtype=float)
    y = np.asarray(events).astype(int)
    auc_higher, variance = delong_auc_variance(chi, y)
    if direction == "auto":
        direction = "higher" if auc_higher >= 0.5 else "lower"
    if direction not in ("higher", "lower"):
        raise ValueError(f"direction must be auto, higher or lower, got {direction!r}")
    sign = 1.0 if direction == "higher" else -1.0
    auc = auc_higher if direction == "higher" else 1.0 - auc_higher
    se = np.sqrt(max(variance, 0.0))
    fpr, tpr, thresholds = roc_curve(y, sign * chi, drop_intermediate=False)
    youden = tpr - fpr
    best = int(np.argmax(youden))  # first maximum: the highest score cut-off, most specific
    threshold = sign * thresholds[best] if np.isfinite(thresholds[best]) else np.nan
    curve = pd.DataFrame({"fpr": fpr, "tpr": tpr, "threshold_ppm": sign * thresholds})
    return {
        "auc": float(auc),
        "auc_ci_low": float(max(0.0, auc - Z_95 * se)),
        "auc_ci_high": float(min(1.0, auc + Z_95 * se)),
        "youden_threshold_ppm": float(threshold),
        "sensitivity": float(tpr[best]),
        "specificity": float(1.0 - fpr[best]),
        "roc_direction": direction,
        "curve": curve,
    }


# ---------------------------------------------------------------------------------------
# Regression models


def standardise(chi_ppm) -> np.ndarray:
    """z-scores of chi in the analysed sample (ddof 1): model coefficients are per 1 SD."""
    chi = np.asarray(chi_ppm, dtype=float)
    return (chi - chi.mean()) / chi.std(ddof=1)


def _exog(z: np.ndarray, covariates: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    design = covariate_design(covariates, list(covariates.columns))
    exog = pd.DataFrame({"const": 1.0, "z": z}, index=covariates.index)
    for i, column in enumerate(design.matrix.columns):
        exog[f"x{i}"] = design.matrix[column].to_numpy()
    return exog, design.notes


def _fit_quietly(fit_function) -> tuple[Any, list[str]]:
    """Run a fit and turn its numerical warnings into notes."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = fit_function()
    messages = []
    for item in caught:
        text = str(item.message).split("\n")[0].strip()
        if text and text not in messages and not issubclass(item.category, (DeprecationWarning,
                                                                            FutureWarning)):
            messages.append(text)
    return result, messages


def logistic_odds_ratio(events, chi_ppm, covariates: pd.DataFrame) -> dict[str, Any]:
    """Odds ratio per 1 SD of chi from ``events ~ z + covariates`` (Wald CI and p)."""
    y = np.asarray(events, dtype=float)
    out = {"odds_ratio": np.nan, "or_ci_low": np.nan, "or_ci_high": np.nan, "p": np.nan,
           "note": ""}
    exog, notes = _exog(standardise(chi_ppm), covariates)
    if len(y) - exog.shape[1] < 1:
        out["note"] = "; ".join(notes + [f"{len(y)} participants cannot fit "
                                          f"{exog.shape[1]} parameters"])
        return out
    try:
        result, messages = _fit_quietly(lambda: sm.Logit(y, exog).fit(disp=0, maxiter=100))
    except (np.linalg.LinAlgError, ValueError) as exc:  # singular design
        out["note"] = "; ".join(notes + [f"logistic model could not be fitted ({exc})"])
        return out
    separation = any("separation" in m.lower() or "perfect" in m.lower() for m in messages)
    converged = bool(result.mle_retvals.get("converged", True))
    if separation or not converged or not np.isfinite(result.bse["z"]):
        reason = ("the outcome is perfectly separated by the predictors" if separation
                  else "the logistic model did not converge")
        out["note"] = "; ".join(notes + [reason])
        return out
    b, se = float(result.params["z"]), float(result.bse["z"])
    out.update(odds_ratio=float(np.exp(b)), or_ci_low=float(np.exp(b - Z_95 * se)),
               or_ci_high=float(np.exp(b + Z_95 * se)), p=float(result.pvalues["z"]),
               note="; ".join(notes + messages))
    return out


def cox_hazard_ratio(time, events, chi_ppm, covariates: pd.DataFrame) -> dict[str, Any]:
    """Hazard ratio per 1 SD of chi (lifelines Cox PH), 95 % CI and p."""
    from lifelines import CoxPHFitter
    from lifelines.exceptions import ConvergenceError

    out = {"hr": np.nan, "hr_ci_low": np.nan, "hr_ci_high": np.nan, "hr_p": np.nan, "note": ""}
    exog, notes = _exog(standardise(chi_ppm), covariates)
    data = exog.drop(columns="const").assign(_time=np.asarray(time, float),
                                             _event=np.asarray(events, int))
    try:
        fitter, messages = _fit_quietly(
            lambda: CoxPHFitter().fit(data, duration_col="_time", event_col="_event"))
    except (ConvergenceError, np.linalg.LinAlgError, ValueError) as exc:
        out["note"] = "; ".join(notes + ["Cox model could not be fitted ("
                                         + str(exc).split("\n")[0] + ")"])
        return out
    row = fitter.summary.loc["z"]
    values = [row["exp(coef)"], row["exp(coef) lower 95%"], row["exp(coef) upper 95%"]]
    failed = any("converge" in m.lower() for m in messages)
    if failed or not np.all(np.isfinite(values)) or min(values) <= 0:
        out["note"] = "; ".join(notes + ["the Cox model did not converge (too few events, or chi "
                                         "separates events from non-events)"])
        return out
    out.update(hr=float(values[0]), hr_ci_low=float(values[1]), hr_ci_high=float(values[2]),
               hr_p=float(row["p"]), note="; ".join(notes + messages))
    return out


def kaplan_meier_by_median(time, events, chi_ppm) -> tuple[pd.DataFrame, float]:
    """Kaplan-Meier curves of chi <= median ("low") and > median ("high") and log-rank p.

    Returns
    -------
    curves : DataFrame
        group ('low'/'high'), time, survival, ci_low, ci_high (lifelines' exponential
        Greenwood 95 % band), one row per time of the curve including time 0.
    logrank_p : float
    """
    from lifelines import KaplanMeierFitter
    from lifelines.statistics import logrank_test

    time = np.asarray(time, float)
    events = np.asarray(events, int)
    chi = np.asarray(chi_ppm, float)
    high = chi > np.median(chi)
    frames = []
    for label, members in (("low", ~high), ("high", high)):
        if not members.any():
            continue
        fitter = KaplanMeierFitter().fit(time[members], events[members])
        band = fitter.confidence_interval_survival_function_
        frames.append(pd.DataFrame({
            "group": label,
            "time": fitter.survival_function_.index.to_numpy(dtype=float),
            "survival": fitter.survival_function_.iloc[:, 0].to_numpy(),
            "ci_low": band.iloc[:, 0].to_numpy(),
            "ci_high": band.iloc[:, 1].to_numpy(),
        }))
    curves = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(
        columns=["group", "time", "survival", "ci_low", "ci_high"])
    p = np.nan
    if high.any() and (~high).any() and events.any():
        p = float(logrank_test(time[~high], time[high], events[~high], events[high]).p_value)
    return curves, p


def overdispersion_test(poisson_result) -> float:
    """One-sided p of Cameron & Trivedi's (1990) test of Var(y) = mu + alpha mu^2, alpha > 0.

    The statistic is statsmodels' ``test_dispersion`` "CT nb2" (the t-statistic of the
    auxiliary regression ((y - mu)^2 - y) / mu = alpha mu + e); the p-value is the upper tail
    of the standard normal, since only overdispersion (alpha > 0) changes the model.
    """
    dispersion = poisson_result.get_diagnostic().test_dispersion()
    statistic = float(np.asarray(dispersion.statistic)[list(dispersion.method).index("CT nb2")])
    return float(stats.norm.sf(statistic))


def count_rate_ratio(counts, chi_ppm, covariates: pd.DataFrame, exposure=None) -> dict[str, Any]:
    """Rate ratio per 1 SD of chi from a Poisson or (if overdispersed) NB2 count model."""
    y = np.asarray(counts, float)
    out = {"model": "", "rate_ratio": np.nan, "rr_ci_low": np.nan, "rr_ci_high": np.nan,
           "p": np.nan, "overdispersion_p": np.nan, "alpha": np.nan, "note": ""}
    exog, notes = _exog(standardise(chi_ppm), covariates)
    offset = None if exposure is None else np.log(np.asarray(exposure, float))
    if len(y) - exog.shape[1] < 2:
        out["note"] = "; ".join(notes + [f"{len(y)} participants cannot fit the count model"])
        return out
    if np.all(y == 0):
        out["note"] = "; ".join(notes + ["every count is 0"])
        return out
    try:
        poisson, messages = _fit_quietly(
            lambda: sm.Poisson(y, exog, offset=offset).fit(disp=0, maxiter=100))
        if not poisson.mle_retvals.get("converged", True):
            out["note"] = "; ".join(notes + ["the Poisson model did not converge"])
            return out
        dispersion_p = overdispersion_test(poisson)
        out["overdispersion_p"] = dispersion_p
        result, model = poisson, "poisson"
        if dispersion_p < OVERDISPERSION_ALPHA:
            result, more = _fit_quietly(lambda: sm.NegativeBinomial(
                y, exog, loglike_method="nb2", offset=offset).fit(disp=0, maxiter=200))
            messages += more
            model = "negative_binomial"
            out["alpha"] = float(result.params["alpha"])
            if not result.mle_retvals.get("converged", True):
                out["note"] = "; ".join(notes + ["the negative binomial model did not converge"])
                out["model"] = model
                return out
    except (np.linalg.LinAlgError, ValueError) as exc:
        out["note"] = "; ".join(notes + [f"count model could not be fitted ({exc})"])
        return out
    b, se = float(result.params["z"]), float(result.bse["z"])
    out.update(model=model, rate_ratio=float(np.exp(b)), rr_ci_low=float(np.exp(b - Z_95 * se)),
               rr_ci_high=float(np.exp(b + Z_95 * se)), p=float(result.pvalues["z"]),
               note="; ".join(notes + messages))
    return out


def binary_outcome_problem(events, min_per_class: int) -> str:
    """Why a 0/1 outcome cannot be modelled (empty string when it can)."""
    y = np.asarray(events, int)
    n_events, n_other = int(y.sum()), int((1 - y).sum())
    if n_events < min_per_class or n_other < min_per_class:
        return (f"{n_events} events and {n_other} non-events (at least {min_per_class} of each "
                "needed)")
    return ""


def chi_problem(chi_ppm) -> str:
    return "mean_ppm is the same for every participant" if is_constant(chi_ppm) else ""
