"""Outcome models of one region: logistic regression (maximum likelihood or Firth) and counts.

Definitions (participants of the relapse group with every value of the model present):

- **Logistic regression** of the 0/1 outcome on z = (chi - mean) / SD (ddof 1, in the
  analysed sample) and the covariates, so the odds ratio exp(b_z) is per 1 SD of chi. Fitted
  by firthmodels' ``FirthLogisticRegression`` (MIT; the algorithm of R's logistf): with
  Firth's penalty (Firth 1993, Biometrika 80:27; Heinze & Schemper 2002, Stat Med 21:2409)
  or without it (penalty weight 0: ordinary maximum likelihood). In both cases the 95 % CI
  is the **profile (penalised) likelihood** interval (Venzon & Moolgavkar 1988) and p is
  the (penalised) likelihood-ratio test of b_z = 0, as logistf reports them. Wald
  intervals are not used: with few events they are far too wide or far too narrow.
- **Which logistic model** (``relapse.logistic``, default ``auto``): the events per
  variable EPV = min(events, non-events) / parameters (z plus the covariate columns;
  Peduzzi et al. 1996, J Clin Epidemiol 49:1373). ``auto`` uses Firth when EPV <
  ``relapse.firth_below_epv`` (default 10) or when the data are separated (linear
  programme of Konis 2007, firthmodels ``detect_separation``: the maximum-likelihood odds
  ratio is then infinite), maximum likelihood otherwise; ``firth`` and ``ml`` force one.
- **Too few events for any model**: fewer than ``relapse.min_events`` (default 5) events or
  non-events, or EPV < ``relapse.min_epv`` (default 2): no odds ratio is estimated and the
  row says why (the analysis also leaves out the cross-validated cut-off and the corrected
  AUC, and warns). With 10 participants and 4 relapses this is what happens.
- **Counts**: Poisson regression ``count ~ z + covariates`` (statsmodels ``Poisson``, log
  link, offset log(exposure) when a follow-up column is given); overdispersion by the
  Cameron & Trivedi (1990) auxiliary regression ((y - mu)^2 - y) / mu = alpha mu + e
  (statsmodels ``test_dispersion`` "CT nb2"), one-sided p of alpha > 0; when p < 0.05 the
  model is negative binomial NB2 (statsmodels ``NegativeBinomial``, alpha by maximum
  likelihood) instead. Rate ratio per 1 SD of chi with Wald 95 % CI and p.

ROC analysis is in :mod:`qsmiron.stats.roc`, time to event in :mod:`qsmiron.stats.survival`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import statsmodels.api as sm
from scipy import stats
from threadpoolctl import threadpool_limits

from qsmiron.stats._design import design_with_z, fit_quietly, is_constant, standardise
from qsmiron.stats.power import min_detectable_odds_ratio
from qsmiron.stats.roc import cross_validated_cutoff, optimism_corrected_auc, roc_analysis
from qsmiron.stats.study import RelapseSettings

RELAPSE_COLUMNS = ["region", "hemisphere", "n", "n_events", "odds_ratio", "or_ci_low",
                   "or_ci_high", "p", "p_fdr", "auc", "auc_ci_low", "auc_ci_high",
                   "youden_threshold_ppm", "sensitivity_cv", "specificity_cv", "roc_direction",
                   "family", "logistic_model", "epv", "auc_corrected", "sensitivity_apparent",
                   "specificity_apparent", "min_detectable_or"]
"""Columns of ``relapse.tsv`` before the time-to-event columns and ``note``."""
HAZARD_COLUMNS = ["hr", "hr_ci_low", "hr_ci_high", "hr_p", "hr_p_fdr", "hr_n", "hr_events",
                  "km_logrank_p"]
"""Added to ``relapse.tsv`` when the study has time-to-event columns."""
COUNT_COLUMNS = ["region", "hemisphere", "n", "model", "rate_ratio", "rr_ci_low", "rr_ci_high",
                 "p", "p_fdr", "overdispersion_p", "alpha", "family", "note"]
"""Columns of ``relapse_counts.tsv``."""

LOGISTIC_METHODS = ("auto", "firth", "ml")
MODEL_NAMES = {"firth": "Firth", "ml": "maximum likelihood"}


def relapse_columns(with_time: bool) -> list[str]:
    """Columns of ``relapse.tsv``: the hazard columns only with time-to-event data."""
    return RELAPSE_COLUMNS + (HAZARD_COLUMNS if with_time else []) + ["note"]


Z_95 = float(stats.norm.ppf(0.975))
OVERDISPERSION_ALPHA = 0.05
FIT_TOLERANCE = 1e-6


# ---------------------------------------------------------------------------------------
# Regression models


def events_per_variable(events, n_parameters: int) -> float:
    """min(events, non-events) / parameters (the intercept not counted)."""
    y = np.asarray(events, int)
    return float(min(y.sum(), y.size - y.sum()) / max(n_parameters, 1))


def choose_logistic_model(method: str, epv: float, separated: bool, *,
                          firth_below_epv: float) -> str:
    """``"firth"`` or ``"ml"`` by the rule of the module docstring."""
    if method not in LOGISTIC_METHODS:
        raise ValueError(f"logistic method must be one of {LOGISTIC_METHODS}, got {method!r}")
    if method != "auto":
        return method
    return "firth" if separated or epv < firth_below_epv else "ml"


def _penalised_fit(X: np.ndarray, y: np.ndarray, firth: bool):
    from firthmodels import FirthLogisticRegression

    # the NumPy path: numba's compilation costs a minute and gains nothing at these sizes
    model = FirthLogisticRegression(backend="numpy", max_iter=100, gtol=FIT_TOLERANCE,
                                    xtol=FIT_TOLERANCE, penalty_weight=0.5 if firth else 0.0)
    return model.fit(X, y)


def logistic_odds_ratio(events, chi_ppm, covariates: pd.DataFrame, *, method: str = "auto",
                        firth_below_epv: float = 10.0, min_epv: float = 2.0) -> dict[str, Any]:
    """Odds ratio per 1 SD of chi, profile-likelihood 95 % CI and likelihood-ratio p.

    Parameters
    ----------
    events : array-like of {0, 1}
    chi_ppm : array-like
    covariates : DataFrame
        Numeric or text covariates (same rows); may have no columns.
    method : {"auto", "firth", "ml"}
    firth_below_epv, min_epv : float
        See the module docstring.

    Returns
    -------
    dict
        ``odds_ratio``, ``or_ci_low``, ``or_ci_high``, ``p``, ``logistic_model`` ("Firth" or
        "maximum likelihood"; empty when nothing was fitted), ``epv`` and ``note``.
    """
    from firthmodels import detect_separation

    y = np.asarray(events, dtype=float)
    exog, notes = design_with_z(standardise(chi_ppm), covariates)
    X = exog.drop(columns="const").to_numpy(float)
    # covariates centred and scaled: the same model (both likelihoods are invariant to
    # linear changes of a covariate) with better-conditioned iterations (raw ages of ~40
    # stall the constrained fit of the likelihood-ratio test at tight tolerances)
    spread = X[:, 1:].std(axis=0)
    X[:, 1:] = (X[:, 1:] - X[:, 1:].mean(axis=0)) / np.where(spread > 0, spread, 1.0)
    epv = events_per_variable(y, X.shape[1])
    out = {"odds_ratio": np.nan, "or_ci_low": np.nan, "or_ci_high": np.nan, "p": np.nan,
           "logistic_model": "", "epv": epv, "note": ""}

    def stop(reason: str) -> dict[str, Any]:
        out["note"] = "; ".join(notes + [reason])
        return out

    if epv < min_epv:
        return stop(f"{int(min(y.sum(), y.size - y.sum()))} events or non-events for "
                    f"{X.shape[1]} model parameter(s) (EPV {epv:.1f} < {min_epv:g}): too few "
                    "for any logistic model with these covariates")
    if np.linalg.matrix_rank(exog.to_numpy(float)) < exog.shape[1]:
        return stop("chi and the covariates are collinear in this sample")
    separated = bool(detect_separation(X, y).separation)
    model = choose_logistic_model(method, epv, separated, firth_below_epv=firth_below_epv)
    if model == "ml" and separated:
        return stop("the outcome is separated by the predictors: the maximum-likelihood odds "
                    "ratio is infinite (Firth's method, relapse.logistic = 'auto' or 'firth', "
                    "gives a finite one)")
    try:
        with threadpool_limits(limits=1, user_api="blas"):
            fit, messages, bounds, lrt_messages = _fit_with_profile(X, y, model == "firth")
    except (np.linalg.LinAlgError, ValueError) as exc:
        return stop(f"logistic model could not be fitted ({str(exc).splitlines()[0]})")
    if not fit.converged_:
        return stop(f"the {MODEL_NAMES[model]} logistic model did not converge")
    missing = [side for side, bound in zip(("lower", "upper"), bounds) if not np.isfinite(bound)]
    if missing:
        messages.append(f"the profile-likelihood {' and '.join(missing)} CI bound did not "
                        "converge")
    out.update(odds_ratio=float(np.exp(fit.coef_[0])), or_ci_low=float(np.exp(bounds[0])),
               or_ci_high=float(np.exp(bounds[1])), p=float(fit.lrt_pvalues_[0]),
               logistic_model=MODEL_NAMES[model],
               note="; ".join(dict.fromkeys(notes + messages + lrt_messages)))
    return out


def _fit_with_profile(X: np.ndarray, y: np.ndarray, firth: bool):
    """The fit, its profile-likelihood bounds of b_z and the likelihood-ratio test of b_z = 0.

    Returns (fitted model, fit notes, (lower, upper) log-odds bounds, test notes); the
    bounds and the test are not computed when the fit did not converge.
    """
    fit, messages = fit_quietly(lambda: _penalised_fit(X, y, firth))
    if not fit.converged_:
        return fit, messages, (np.nan, np.nan), []
    # a bound that does not converge is NaN (and said by the caller, once)
    bounds, _ = fit_quietly(lambda: fit.conf_int(method="pl", features=0, tol=FIT_TOLERANCE,
                                                 max_iter=100)[0])
    _, lrt_messages = fit_quietly(lambda: fit.lrt(0))
    if not np.isfinite(fit.lrt_pvalues_[0]):
        # from a start already at the optimum firthmodels 0.8 can report a failed
        # step-halving instead of convergence: start the constrained fit afresh
        _, lrt_messages = fit_quietly(lambda: fit.lrt(0, warm_start=False))
    return fit, messages, bounds, lrt_messages


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
    exog, notes = design_with_z(standardise(chi_ppm), covariates)
    offset = None if exposure is None else np.log(np.asarray(exposure, float))
    if len(y) - exog.shape[1] < 2:
        out["note"] = "; ".join(notes + [f"{len(y)} participants cannot fit the count model"])
        return out
    if np.all(y == 0):
        out["note"] = "; ".join(notes + ["every count is 0"])
        return out
    try:
        poisson, messages = fit_quietly(
            lambda: sm.Poisson(y, exog, offset=offset).fit(disp=0, maxiter=100))
        if not poisson.mle_retvals.get("converged", True):
            out["note"] = "; ".join(notes + ["the Poisson model did not converge"])
            return out
        dispersion_p = overdispersion_test(poisson)
        out["overdispersion_p"] = dispersion_p
        result, model = poisson, "poisson"
        if dispersion_p < OVERDISPERSION_ALPHA:
            result, more = fit_quietly(lambda: sm.NegativeBinomial(
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
    return "chi_ppm is the same for every participant" if is_constant(chi_ppm) else ""


def binary_outcome_row(events, chi_ppm, covariates: pd.DataFrame, settings: RelapseSettings, *,
                       min_group_size: int, seed: int
                       ) -> tuple[dict[str, Any], pd.DataFrame | None]:
    """Every number of a region's 0/1-outcome columns in ``relapse.tsv``, and its ROC curve.

    - fewer than ``min_group_size`` events or non-events, or constant chi: nothing but the
      counts and the reason;
    - fewer than ``settings.min_events`` of either: the apparent AUC with its DeLong CI
      (descriptive), and a note that the events are too few for any outcome model: no odds
      ratio, no cut-off, no corrected AUC;
    - otherwise also the logistic model (:func:`logistic_odds_ratio`), the Youden cut-off with
      its cross-validated sensitivity and specificity and the optimism-corrected AUC
      (:mod:`qsmiron.stats.roc`), all draws from ``seed``.

    Returns
    -------
    (dict, DataFrame or None)
        Keys among :data:`RELAPSE_COLUMNS` plus ``note``; the ROC curve when an AUC was computed.
    """
    y = np.asarray(events, int)
    chi = np.asarray(chi_ppm, float)
    row: dict[str, Any] = {"n": int(y.size), "n_events": int(y.sum()),
                           "min_detectable_or": min_detectable_odds_ratio(y.size, int(y.sum()))}
    problem = binary_outcome_problem(y, min_group_size) or chi_problem(chi)
    if problem:
        return {**row, "note": problem}, None
    roc = roc_analysis(chi, y, direction=settings.roc_direction)
    curve = roc.pop("curve")
    row.update(auc=roc["auc"], auc_ci_low=roc["auc_ci_low"], auc_ci_high=roc["auc_ci_high"],
               roc_direction=roc["roc_direction"])
    too_few = binary_outcome_problem(y, settings.min_events)
    if too_few:
        return {**row, "note": f"{too_few}: too few for any outcome model, so no odds ratio, "
                               "cut-off or corrected AUC (the AUC is descriptive only)"}, curve
    row.update({key: roc[key] for key in ("youden_threshold_ppm", "sensitivity_apparent",
                                          "specificity_apparent")})
    logistic = logistic_odds_ratio(y, chi, covariates, method=settings.logistic,
                                   firth_below_epv=settings.firth_below_epv,
                                   min_epv=settings.min_epv)
    notes = [logistic.pop("note")]
    row.update(logistic)
    validated = cross_validated_cutoff(chi, y, direction=settings.roc_direction,
                                       folds=settings.cv_folds, repeats=settings.cv_repeats,
                                       seed=seed)
    if validated["cv_folds"] < settings.cv_folds:
        notes.append(f"cut-off cross-validated with {validated['cv_folds']} folds (the smaller "
                     "outcome class)")
    row.update(sensitivity_cv=validated["sensitivity_cv"],
               specificity_cv=validated["specificity_cv"])
    row["auc_corrected"] = optimism_corrected_auc(chi, y, direction=settings.roc_direction,
                                                  n_bootstrap=settings.bootstrap,
                                                  seed=seed)["auc_corrected"]
    row["note"] = "; ".join(n for n in notes if n)
    return row, curve
