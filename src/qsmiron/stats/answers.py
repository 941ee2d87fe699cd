"""The study's three answers, as the report opens with them, and the association heatmap.

:func:`study_answers` reads a finished :class:`~qsmiron.stats.results.StudyResults` and
returns a :class:`~qsmiron.records.answers.StudyAnswers` record (written into
``results.json`` as ``answers``):

1. **group difference** in the primary regions: the ANCOVA's adjusted mean difference
   (group_a - group_b) in ppb with its 95 % CI and Cohen's d with its noncentral-t 95 % CI,
   one :class:`Estimate` per region and hemisphere (the rows of a forest plot);
2. **association** of the primary regions with the primary clinical variables (the
   dependence-severity score the study file names in ``associations.primary_variables``):
   partial r with its Fisher-z 95 % CI;
3. **relapse prediction** in the primary regions: odds ratio per SD of chi with its
   profile-likelihood CI (Firth or maximum likelihood, as the row says), and the AUC of chi
   alone with its DeLong CI, the optimism-corrected AUC and the cross-validated cut-off.

Without declared primary regions the answers cover every analysed region and say that they
are exploratory (``confirmatory = False``). Each answer also carries the minimal detectable
effect of its analysis at the full sample (two-sided alpha 0.05, 80 % power) and the labels
of the rows whose FDR-adjusted p (within their family) is below the study's alpha. A number
that could not be estimated is None. :class:`~qsmiron.records.answers.AssociationMatrix` is the region x variable matrix of r, p and FDR p for a heatmap.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from qsmiron.records.answers import (AssociationAnswer, AssociationMatrix, AucEstimate, Estimate,
                                     GroupDifferenceAnswer, RelapseAnswer, StudyAnswers)
from qsmiron.records.study import AnalysisSettings
from qsmiron.stats.relapse import binary_outcome_problem


def study_answers(results: Any) -> StudyAnswers:
    """The three answers and the association matrix of a study's results.

    Parameters
    ----------
    results : StudyResults
        Its ``settings`` (the resolved study) and its tables.
    """
    settings: AnalysisSettings = results.settings
    alpha = float(settings.alpha)
    return StudyAnswers(
        alpha=alpha, primary_regions=list(settings.primary_regions),
        group_difference=_group_answer(results.group_comparison, settings, alpha),
        association=_association_answer(results.associations, settings, alpha),
        relapse=_relapse_answer(results.relapse, settings, alpha),
        association_matrix=association_matrix(results.associations))


# ---------------------------------------------------------------------------------------


def _answered(frame: pd.DataFrame, primary: list[str]) -> pd.DataFrame:
    return frame[frame["region"].isin(primary)] if primary else frame


def _number(value: Any) -> float | None:
    """A table cell as a finite float; None when missing or not finite."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if np.isfinite(number) else None


def _text(value: Any) -> str:
    """A table cell as text: missing (None or NaN) is empty."""
    return "" if value is None or (isinstance(value, float) and np.isnan(value)) else str(value)


def _estimates(frame: pd.DataFrame, estimate: str, low: str, high: str, *, p: str = "p",
               p_fdr: str = "p_fdr", n: str | None = None, variable: bool = False,
               method: str | None = None) -> list[Estimate]:
    out = []
    for _, row in frame.iterrows():
        out.append(Estimate(
            region=str(row["region"]), hemisphere=str(row["hemisphere"]),
            estimate=_number(row.get(estimate)), ci_low=_number(row.get(low)),
            ci_high=_number(row.get(high)), p=_number(row.get(p)),
            p_fdr=_number(row.get(p_fdr)), family=_text(row.get("family")),
            n=None if n is None or pd.isna(row.get(n)) else int(row[n]),
            variable=str(row["variable"]) if variable else None,
            method=_text(row.get(method)) if method else "", note=_text(row.get("note"))))
    return out


def _significant(frame: pd.DataFrame, alpha: float, extra: str | None = None) -> list[str]:
    chosen = frame[frame["p_fdr"].astype(float) < alpha]
    return [" ".join(str(row[c]) for c in ("region", "hemisphere", *([extra] if extra else [])))
            for _, row in chosen.iterrows()]


def _largest_row(frame: pd.DataFrame, size: pd.Series) -> Any:
    """The index of the row analysing the most participants (the study's full sample)."""
    size = size.astype(float)
    return size.idxmax() if size.notna().any() else frame.index[0]


def _group_answer(frame: pd.DataFrame | None, settings: AnalysisSettings, alpha: float
                  ) -> GroupDifferenceAnswer | None:
    if frame is None or frame.empty:
        return None
    primary = list(settings.primary_regions)
    rows = _answered(frame, primary)
    largest = _largest_row(frame, frame["n_a"].astype(float) + frame["n_b"].astype(float))
    return GroupDifferenceAnswer(
        group_a=settings.group_a, group_b=settings.group_b,
        covariates=list(settings.covariates or []), confirmatory=bool(primary),
        difference_ppb=_estimates(rows, "diff_ppb", "diff_ci_low_ppb", "diff_ci_high_ppb"),
        cohen_d=_estimates(rows, "cohen_d", "cohen_d_ci_low", "cohen_d_ci_high"),
        n_a=_count(frame.loc[largest, "n_a"]), n_b=_count(frame.loc[largest, "n_b"]),
        min_detectable_d=_number(frame.loc[largest, "min_detectable_d"]),
        significant=_significant(rows, alpha))


def _association_answer(frame: pd.DataFrame | None, settings: AnalysisSettings, alpha: float
                        ) -> AssociationAnswer | None:
    if frame is None or frame.empty:
        return None
    primary = list(settings.primary_regions)
    assoc = settings.associations
    variables = list(assoc.primary_variables or assoc.variables or [])
    rows = _answered(frame, primary)
    rows = rows[rows["variable"].isin(variables)]
    largest = _largest_row(frame, frame["n"])
    return AssociationAnswer(
        group=str(assoc.group), method=assoc.method, variables=variables,
        covariates=list(assoc.covariates or []), confirmatory=bool(primary),
        correlations=_estimates(rows, "r", "r_ci_low", "r_ci_high", n="n", variable=True),
        n=_count(frame.loc[largest, "n"]), min_detectable_r=_number(frame.loc[largest, "min_detectable_r"]),
        significant=_significant(rows, alpha, "variable"))


def _relapse_answer(frame: pd.DataFrame | None, settings: AnalysisSettings, alpha: float
                    ) -> RelapseAnswer | None:
    relapse = settings.relapse
    if frame is None or frame.empty or not relapse.outcome or "n" not in frame:
        return None
    primary = list(settings.primary_regions)
    rows = _answered(frame, primary)
    auc = [AucEstimate(
        region=str(row["region"]), hemisphere=str(row["hemisphere"]), auc=_number(row["auc"]),
        ci_low=_number(row["auc_ci_low"]), ci_high=_number(row["auc_ci_high"]),
        auc_corrected=_number(row["auc_corrected"]), direction=_text(row["roc_direction"]),
        cutoff_ppm=_number(row["youden_threshold_ppm"]),
        sensitivity_cv=_number(row["sensitivity_cv"]),
        specificity_cv=_number(row["specificity_cv"]), note=_text(row["note"]))
        for _, row in rows.iterrows()]
    largest = frame.loc[_largest_row(frame, frame["n"])]
    return RelapseAnswer(
        outcome=relapse.outcome, group=str(relapse.group or ""),
        covariates=list(relapse.covariates or []), confirmatory=bool(primary),
        odds_ratio=_estimates(rows, "odds_ratio", "or_ci_low", "or_ci_high", n="n",
                              method="logistic_model"),
        auc=auc, n=_count(largest["n"]), n_events=_count(largest["n_events"]),
        min_detectable_odds_ratio=_number(largest["min_detectable_or"]),
        too_few_events=_too_few_events(largest, settings),
        significant=_significant(rows, alpha))


def _count(value: Any) -> int:
    number = _number(value)
    return 0 if number is None else int(number)


def _too_few_events(row: pd.Series, settings: AnalysisSettings) -> str:
    """Why the full relapse sample supports no outcome model (empty when it does)."""
    if pd.isna(row.get("n_events")):
        return ""
    n, n_events = int(row["n"]), int(row["n_events"])
    events = np.r_[np.ones(n_events), np.zeros(n - n_events)]
    problem = binary_outcome_problem(events, settings.relapse.min_events)
    if problem:
        return f"{problem}: too few for any outcome model"
    epv, min_epv = _number(row.get("epv")), settings.relapse.min_epv
    if epv is not None and epv < min_epv:
        return (f"{epv:.1f} events per model parameter (at least {min_epv:g} needed): too few "
                "for a logistic model with these covariates")
    return ""


def association_matrix(frame: pd.DataFrame | None) -> AssociationMatrix | None:
    """Region x variable matrices of r, p, FDR p and family, rows in table order.

    One matrix per association group: the study analyses one group, so the rows of the
    first group are used.
    """
    if frame is None or frame.empty:
        return None
    frame = frame[frame["group"] == frame["group"].iloc[0]]
    keys = list(dict.fromkeys(zip(frame["region"], frame["hemisphere"])))
    variables = list(dict.fromkeys(frame["variable"]))
    indexed = frame.set_index(["region", "hemisphere", "variable"])

    def grid(column: str, cast) -> list[list[Any]]:
        return [[cast(indexed[column].get((region, hemisphere, variable), np.nan))
                 for variable in variables] for region, hemisphere in keys]

    return AssociationMatrix(
        group=str(frame["group"].iloc[0]), method=str(frame["method"].iloc[0]),
        regions=[str(k[0]) for k in keys], hemispheres=[str(k[1]) for k in keys],
        variables=[str(v) for v in variables], r=grid("r", _number), p=grid("p", _number),
        p_fdr=grid("p_fdr", _number), family=grid("family", _text))
