"""The study's three answers, as the report opens with them, and the association heatmap.

:func:`study_answers` reads a finished :class:`~qsmiron.stats.results.StudyResults` and
returns :class:`StudyAnswers`:

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
of the rows whose FDR-adjusted p (within their family) is below the study's alpha.
:class:`AssociationMatrix` is the region x variable matrix of r, p and FDR p for a heatmap.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd


@dataclass
class Estimate:
    """One forest-plot row: an effect with its 95 % CI in one region and hemisphere."""

    region: str
    hemisphere: str
    estimate: float
    ci_low: float
    ci_high: float
    p: float = float("nan")
    p_fdr: float = float("nan")
    family: str = ""
    n: int | None = None
    variable: str | None = None
    method: str = ""
    note: str = ""

    @property
    def label(self) -> str:
        return f"{self.region} {self.hemisphere}"


@dataclass
class AucEstimate:
    """The AUC of chi alone in one region: apparent (DeLong CI), corrected, and its cut-off."""

    region: str
    hemisphere: str
    auc: float
    ci_low: float
    ci_high: float
    auc_corrected: float
    direction: str
    cutoff_ppm: float
    sensitivity_cv: float
    specificity_cv: float
    note: str = ""


@dataclass
class GroupDifferenceAnswer:
    """Answer 1: do the groups differ in the primary regions?"""

    group_a: str
    group_b: str
    covariates: list[str]
    confirmatory: bool
    difference_ppb: list[Estimate]
    """Adjusted mean difference group_a - group_b, ppb; p and p_fdr of the ANCOVA F test."""
    cohen_d: list[Estimate]
    """Cohen's d (raw means, pooled SD) with the noncentral-t CI."""
    n_a: int
    n_b: int
    min_detectable_d: float
    significant: list[str] = field(default_factory=list)


@dataclass
class AssociationAnswer:
    """Answer 2: does chi in the primary regions go with the primary clinical variables?"""

    group: str
    method: str
    variables: list[str]
    covariates: list[str]
    confirmatory: bool
    correlations: list[Estimate]
    n: int
    min_detectable_r: float
    significant: list[str] = field(default_factory=list)


@dataclass
class RelapseAnswer:
    """Answer 3: does chi in the primary regions predict relapse?"""

    outcome: str
    group: str
    covariates: list[str]
    confirmatory: bool
    odds_ratio: list[Estimate]
    """Per SD of chi; ``method`` names the model (Firth or maximum likelihood)."""
    auc: list[AucEstimate]
    n: int
    n_events: int
    min_detectable_odds_ratio: float
    too_few_events: str = ""
    """Why no outcome model was fitted (empty when the models ran)."""
    significant: list[str] = field(default_factory=list)


@dataclass
class AssociationMatrix:
    """Region x variable matrices (rows: region and hemisphere) for a heatmap."""

    group: str
    method: str
    regions: list[str]
    hemispheres: list[str]
    variables: list[str]
    r: list[list[float]]
    p: list[list[float]]
    p_fdr: list[list[float]]
    family: list[list[str]]


@dataclass
class StudyAnswers:
    """What the report opens with."""

    alpha: float
    primary_regions: list[str]
    fdr_families: str
    group_difference: GroupDifferenceAnswer | None = None
    association: AssociationAnswer | None = None
    relapse: RelapseAnswer | None = None
    association_matrix: AssociationMatrix | None = None


def study_answers(results: Any) -> StudyAnswers:
    """The three answers and the association matrix of a study's results."""
    settings = results.settings
    primary = list(settings.get("primary_regions") or [])
    answers = StudyAnswers(alpha=float(settings.get("alpha", 0.05)), primary_regions=primary,
                           fdr_families=str(settings.get("fdr_families", "")))
    answers.group_difference = _group_answer(results.group_comparison, settings, answers.alpha)
    answers.association = _association_answer(results.associations, settings, answers.alpha)
    answers.relapse = _relapse_answer(results.relapse, settings, answers.alpha)
    answers.association_matrix = association_matrix(results.associations)
    return answers


# ---------------------------------------------------------------------------------------


def _answered(frame: pd.DataFrame, primary: list[str]) -> pd.DataFrame:
    return frame[frame["region"].isin(primary)] if primary else frame


def _number(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")


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


def _largest(frame: pd.DataFrame, size: pd.Series, column: str) -> float:
    """``column`` of the row analysing the most participants (the study's full sample)."""
    if frame.empty or size.isna().all():
        return float("nan")
    return _number(frame.loc[size.astype(float).idxmax(), column])


def _group_answer(frame, settings, alpha) -> GroupDifferenceAnswer | None:
    if frame is None or frame.empty:
        return None
    primary = list(settings.get("primary_regions") or [])
    rows = _answered(frame, primary)
    groups = settings.get("groups", {})
    size = frame["n_a"].astype(float) + frame["n_b"].astype(float)
    largest = size.idxmax() if size.notna().any() else frame.index[0]
    return GroupDifferenceAnswer(
        group_a=str(groups.get("group_a", frame["group_a"].iloc[0])),
        group_b=str(groups.get("group_b", frame["group_b"].iloc[0])),
        covariates=list(settings.get("covariates") or []), confirmatory=bool(primary),
        difference_ppb=_estimates(rows, "diff_ppb", "diff_ci_low_ppb", "diff_ci_high_ppb"),
        cohen_d=_estimates(rows, "cohen_d", "cohen_d_ci_low", "cohen_d_ci_high"),
        n_a=int(frame.loc[largest, "n_a"]), n_b=int(frame.loc[largest, "n_b"]),
        min_detectable_d=_largest(frame, size, "min_detectable_d"),
        significant=_significant(rows, alpha))


def _association_answer(frame, settings, alpha) -> AssociationAnswer | None:
    if frame is None or frame.empty:
        return None
    primary = list(settings.get("primary_regions") or [])
    assoc = settings.get("associations", {})
    variables = list(assoc.get("primary_variables") or assoc.get("variables") or [])
    rows = _answered(frame, primary)
    rows = rows[rows["variable"].isin(variables)]
    return AssociationAnswer(
        group=str(assoc.get("group", frame["group"].iloc[0])),
        method=str(assoc.get("method", frame["method"].iloc[0])), variables=variables,
        covariates=list(assoc.get("covariates") or []), confirmatory=bool(primary),
        correlations=_estimates(rows, "r", "r_ci_low", "r_ci_high", n="n", variable=True),
        n=int(frame["n"].max()), min_detectable_r=_largest(frame, frame["n"], "min_detectable_r"),
        significant=_significant(rows, alpha, "variable"))


def _relapse_answer(frame, settings, alpha) -> RelapseAnswer | None:
    relapse = settings.get("relapse", {})
    if frame is None or frame.empty or not relapse.get("outcome") or "n" not in frame:
        return None
    primary = list(settings.get("primary_regions") or [])
    rows = _answered(frame, primary)
    auc = [AucEstimate(
        region=str(row["region"]), hemisphere=str(row["hemisphere"]), auc=_number(row["auc"]),
        ci_low=_number(row["auc_ci_low"]), ci_high=_number(row["auc_ci_high"]),
        auc_corrected=_number(row["auc_corrected"]), direction=_text(row["roc_direction"]),
        cutoff_ppm=_number(row["youden_threshold_ppm"]),
        sensitivity_cv=_number(row["sensitivity_cv"]),
        specificity_cv=_number(row["specificity_cv"]), note=_text(row["note"]))
        for _, row in rows.iterrows()]
    size = frame["n"].astype(float)
    largest = size.idxmax() if size.notna().any() else frame.index[0]
    return RelapseAnswer(
        outcome=str(relapse["outcome"]), group=str(relapse.get("group", "")),
        covariates=list(relapse.get("covariates") or []), confirmatory=bool(primary),
        odds_ratio=_estimates(rows, "odds_ratio", "or_ci_low", "or_ci_high", n="n",
                              method="logistic_model"),
        auc=auc, n=int(_number(frame.loc[largest, "n"]) if size.notna().any() else 0),
        n_events=int(_number(frame.loc[largest, "n_events"]) if size.notna().any() else 0),
        min_detectable_odds_ratio=_largest(frame, size, "min_detectable_or"),
        too_few_events=_too_few_events(frame.loc[largest], relapse),
        significant=_significant(rows, alpha))


def _too_few_events(row: pd.Series, relapse: dict[str, Any]) -> str:
    """Why the full relapse sample supports no outcome model (empty when it does)."""
    from qsmiron.stats.relapse import binary_outcome_problem

    if pd.isna(row.get("n_events")):
        return ""
    events = np.r_[np.ones(int(row["n_events"])), np.zeros(int(row["n"]) - int(row["n_events"]))]
    problem = binary_outcome_problem(events, int(relapse.get("min_events", 5)))
    if problem:
        return f"{problem}: too few for any outcome model"
    epv, min_epv = _number(row.get("epv")), float(relapse.get("min_epv", 2.0))
    if epv < min_epv:
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
        p_fdr=grid("p_fdr", _number), family=grid("family", str))
