"""The report's opening: the study's three answers, each with its effect size, CI and forest plot.

Read from ``StudyResults.answers`` (:class:`~qsmiron.records.answers.StudyAnswers`, built by the
statistics): the group difference in the primary regions, the association with the primary
clinical variable (dependence severity in the reference study) and relapse prediction. Each
answer says whether it is confirmatory (primary regions declared; FDR within that family) or
exploratory, gives the minimal detectable effect of the sample, and warns when the events are
too few for an outcome model.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Sequence

from qsmiron.records.answers import AssociationAnswer, GroupDifferenceAnswer, RelapseAnswer, StudyAnswers
from qsmiron.report.answer_figures import forest_figure
from qsmiron.report.figures import ReportFigure, report_figure
from qsmiron.report.formatting import format_interval, format_number, format_p, format_ppm
from qsmiron.report.names import region_label, region_name, variable_name


@dataclass
class Answer:
    """One answer as the template shows it."""

    id: str
    question: str
    verdict: str
    """One sentence: what the data say, with the family (confirmatory or exploratory)."""
    details: list[str] = field(default_factory=list)
    figure: ReportFigure | None = None
    warnings: list[str] = field(default_factory=list)


def _family(confirmatory: bool, primary: Sequence[str]) -> str:
    if confirmatory:
        return ("Confirmatory: the primary regions " + ", ".join(region_name(r) for r in primary)
                + ", FDR within the primary family")
    return "Exploratory: no primary regions declared, so every region is answered and FDR runs over all of them"


def _significance(labels: list[str], alpha: float) -> str:
    if labels:
        return f"FDR-adjusted p < {alpha:g} in " + "; ".join(labels) + "."
    return f"No row reached FDR-adjusted p < {alpha:g}."


def group_answer(answer: GroupDifferenceAnswer, alpha: float, primary: Sequence[str]) -> Answer:
    adjusted = ("adjusted for " + ", ".join(answer.covariates)) if answer.covariates else "no covariates"
    details = []
    for diff, d in zip(answer.difference_ppb, answer.cohen_d):
        details.append(f"{region_label(diff.region, diff.hemisphere)}: difference "
                       f"{format_interval(diff.estimate, diff.ci_low, diff.ci_high, 1)} ppb, Cohen's d "
                       f"{format_interval(d.estimate, d.ci_low, d.ci_high)}, p {format_p(diff.p)}, "
                       f"p FDR {format_p(diff.p_fdr)} ({diff.family or 'all rows'})")
    if answer.min_detectable_d is not None:
        details.append(f"With {answer.n_a} {answer.group_a} and {answer.n_b} {answer.group_b}, the smallest |d| "
                       f"detectable with 80 % power at two-sided \u03b1 0.05 is {answer.min_detectable_d:.2f} "
                       "(minimal detectable effect, not post-hoc power).")
    figure = forest_figure(answer.cohen_d, xlabel=f"Cohen's d, {answer.group_a} \u2212 {answer.group_b} (95 % CI)",
                           alpha=alpha, colour="#333333")
    return Answer(
        "answer-group", f"Does susceptibility differ between {answer.group_a} and {answer.group_b}?",
        _verdict(answer.confirmatory, primary, f"ANCOVA {adjusted}", answer.significant, alpha), details,
        _shown(figure, "fig-forest-group", "Group difference", "Cohen's d with its 95 % CI (noncentral t) per "
               "region and hemisphere; filled squares: primary family, open: exploratory; the p FDR is within the "
               f"row's family; * p FDR < {alpha:g}.", "Forest plot of Cohen's d per region"))


def association_answer(answer: AssociationAnswer, alpha: float, primary: Sequence[str],
                       units: Mapping) -> Answer:
    names = ", ".join(variable_name(v, units) for v in answer.variables)
    where = "in all participants" if answer.group == "all" else f"within {answer.group}"
    adjusted = ("partial, controlling " + ", ".join(answer.covariates)) if answer.covariates else "no covariates"
    details = [f"{region_label(e.region, e.hemisphere)} with {e.variable}: r {format_interval(e.estimate, e.ci_low, e.ci_high)}"
               f" (n {e.n}), p {format_p(e.p)}, p FDR {format_p(e.p_fdr)}" for e in answer.correlations]
    if answer.min_detectable_r is not None:
        details.append(f"With n = {answer.n}, the smallest |r| detectable with 80 % power at two-sided \u03b1 0.05 "
                       f"is {answer.min_detectable_r:.2f}.")
    figure = forest_figure(answer.correlations, xlabel=f"{answer.method.capitalize()} r (95 % CI)", alpha=alpha,
                           label_variable=len(answer.variables) > 1, colour="#333333")
    return Answer(
        "answer-association", f"Does susceptibility go with {names}?",
        _verdict(answer.confirmatory, primary, f"{answer.method.capitalize()} correlation {where} ({adjusted})",
                 answer.significant, alpha), details,
        _shown(figure, "fig-forest-association", "Association", "Correlation with its 95 % CI (Fisher z) per "
               f"region; filled squares: primary family; * p FDR < {alpha:g}.",
               "Forest plot of correlations per region"))


def relapse_answer(answer: RelapseAnswer, alpha: float, primary: Sequence[str], units: Mapping) -> Answer:
    where = "in all participants" if answer.group in ("", "all") else f"within {answer.group}"
    warnings = []
    if answer.too_few_events:
        warnings.append(f"Too few events: {answer.too_few_events}. Odds ratios are not reported where a model "
                        "cannot be trusted; the AUC is a description only.")
    models = sorted({e.method for e in answer.odds_ratio if e.method})
    details = []
    for odds, auc in zip(answer.odds_ratio, answer.auc):
        text = (f"{region_label(odds.region, odds.hemisphere)}: odds ratio per SD "
                f"{format_interval(odds.estimate, odds.ci_low, odds.ci_high)}"
                + (f" ({odds.method})" if odds.method else "") + f", p FDR {format_p(odds.p_fdr)}; "
                f"AUC {format_interval(auc.auc, auc.ci_low, auc.ci_high)}")
        if auc.auc_corrected is not None:
            text += f", optimism-corrected {auc.auc_corrected:.2f}"
        if auc.cutoff_ppm is not None:
            side = "<" if auc.direction == "lower" else "\u2265"
            text += (f"; cut-off \u03c7 {side} {format_ppm(auc.cutoff_ppm)} ppm, cross-validated sensitivity "
                     f"{format_number(auc.sensitivity_cv)} and specificity {format_number(auc.specificity_cv)}")
        if odds.note or auc.note:
            text += f" ({odds.note or auc.note})"
        details.append(text)
    if answer.min_detectable_odds_ratio is not None:
        details.append(f"With {answer.n_events} events in {answer.n}, the smallest odds ratio per SD detectable with "
                       f"80 % power at two-sided \u03b1 0.05 is {answer.min_detectable_odds_ratio:.2f} (or its inverse).")
    figure = forest_figure(answer.odds_ratio, xlabel="odds ratio of relapse per SD of \u03c7 (95 % CI)", null=1.0,
                           log_scale=True, alpha=alpha, colour="#333333")
    return Answer(
        "answer-relapse", f"Does susceptibility predict {answer.outcome.replace('_', ' ')}?",
        _verdict(answer.confirmatory, primary, f"logistic regression {where}, {answer.n_events} events in "
                 f"{answer.n} participants" + (f" ({' and '.join(models)})" if models else ""),
                 answer.significant, alpha),
        details,
        None if figure is None or not any(e.estimate is not None for e in answer.odds_ratio) else report_figure(
            "fig-forest-relapse", "Relapse prediction", "Odds ratio per SD of \u03c7 with its profile-likelihood "
            "95 % CI (log scale); filled squares: primary family; * p FDR < " + f"{alpha:g}.", figure,
            "Forest plot of odds ratios of relapse per region"),
        warnings)


def _verdict(confirmatory: bool, primary: Sequence[str], analysis: str, significant: list[str], alpha: float) -> str:
    return (f"{_family(confirmatory, primary)}; {analysis}. "
            + _significance([_readable(s) for s in significant], alpha))


def _shown(figure, figure_id: str, title: str, caption: str, alt: str) -> ReportFigure | None:
    return None if figure is None else report_figure(figure_id, title, caption, figure, alt)


def _readable(label: str) -> str:
    """``VeP L sds`` -> ``ventral pallidum (VeP), left, sds``."""
    parts = label.split(" ")
    if len(parts) >= 2:
        return region_label(parts[0], parts[1]) + ("".join(f", {p}" for p in parts[2:]))
    return region_name(label)


def study_answers(answers: StudyAnswers | None, units: Mapping) -> list[Answer]:
    """The answers of the study, in the order the report shows them (none without answers)."""
    if answers is None:
        return []
    alpha, primary = answers.alpha, answers.primary_regions
    out = []
    if answers.group_difference is not None:
        out.append(group_answer(answers.group_difference, alpha, primary))
    if answers.association is not None and answers.association.correlations:
        out.append(association_answer(answers.association, alpha, primary, units))
    if answers.relapse is not None:
        out.append(relapse_answer(answers.relapse, alpha, primary, units))
    return out
