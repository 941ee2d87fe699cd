"""Which figures each section of the report shows, with captions that say how they were chosen.

The group comparison shows box plots of the primary regions (else the smallest p); the
associations the region x variable heatmap and the strongest scatter plots; relapse the ROC
and Kaplan-Meier curves. A figure that cannot be drawn leaves a note saying why.
"""

from __future__ import annotations

import pandas as pd

from qsmiron.report import figures as fig
from qsmiron.report.answer_figures import heatmap_figure
from qsmiron.report.names import variable_name, variable_short
from qsmiron.report.relapse_figures import km_figure, roc_figure
from qsmiron.stats.regions import CHI, STATISTIC_NAMES
from qsmiron.stats.results import StudyResults

N_BOX = 6
N_TOP_SCATTER = 6
N_TOP_ROC = 6
N_TOP_KM = 4


def _values(results: StudyResults, regions: pd.DataFrame, participants: pd.DataFrame, notes: list[str]):
    try:
        return fig.cohort_values(regions, participants, results.settings.groups.column)
    except KeyError as error:
        notes.append(f"Figures need the regions and participants tables ({error} missing).")
        return None


def _box_regions(results: StudyResults) -> list[str]:
    """The primary regions, then the regions with the smallest p, up to ``N_BOX``."""
    chosen = list(results.settings.primary_regions)
    frame = results.group_comparison
    if frame is not None and not frame.empty and "p" in frame:
        for region in frame.sort_values("p", kind="mergesort")["region"].astype(str):
            if len(chosen) >= N_BOX:
                break
            if region not in chosen:
                chosen.append(region)
    return chosen or list(results.settings.regions)[:N_BOX]


def group_figures(results: StudyResults, regions: pd.DataFrame, participants: pd.DataFrame,
                  notes: list[str]) -> list[fig.ReportFigure]:
    settings = results.settings
    groups = [settings.group_a, settings.group_b]
    values = _values(results, regions, participants, notes)
    if values is None:
        return []
    shown = _box_regions(results)
    box = fig.group_box_figure(values, groups, comparison=results.group_comparison, regions=shown)
    if box is None:
        notes.append("No group figure: no participant of the compared groups has regional values.")
        return []
    why = ("the primary regions" + (" and then" if len(shown) > len(settings.primary_regions) else "")
           if settings.primary_regions else "")
    why += " the regions with the smallest ANCOVA p" if len(shown) > len(settings.primary_regions) else ""
    return [fig.report_figure(
        "fig-groups", "Regional susceptibility by group",
        f"Box plots (median, quartiles, whiskers to 1.5 IQR) of each participant's regional "
        f"{STATISTIC_NAMES.get(settings.statistic_by_measure.get(CHI, settings.statistic) or 'mean')} "
        f"susceptibility of {why.strip()}, per "
        f"hemisphere, for {' and '.join(groups)}, every participant a point; under each box the FDR-adjusted "
        "ANCOVA p (within its family). Every region is in the table.",
        box, "Box plots of susceptibility per region and group")]


def association_figures(results: StudyResults, regions: pd.DataFrame, participants: pd.DataFrame,
                        notes: list[str]) -> list[fig.ReportFigure]:
    settings = results.settings
    units = results.units or {}
    out = []
    matrix = results.answers.association_matrix if results.answers is not None else None
    heatmap = heatmap_figure(matrix, alpha=settings.alpha)
    if heatmap is not None:
        out.append(fig.report_figure(
            "fig-heatmap", "Associations: region x clinical variable",
            f"{matrix.method.capitalize()} (partial) correlation of regional susceptibility with each clinical "
            f"variable within {matrix.group}: * FDR-adjusted p < {settings.alpha:g} within its family, \u00b0 "
            f"unadjusted p < {settings.alpha:g} only; primary regions in bold. "
            + _glossary(results.associations, units),
            heatmap, "Heatmap of correlations between regions and clinical variables"))
    values = _values(results, regions, participants, notes)
    covariates = list(settings.covariates or []) if settings.associations.covariates is None else \
        list(settings.associations.covariates)
    scatter = None if values is None else fig.association_scatter_figure(
        values, results.associations, n_top=N_TOP_SCATTER, covariates=covariates,
        colours=fig.group_colours([settings.group_a, settings.group_b]), units=units)
    if scatter is not None:
        n_rows = 0 if results.associations is None else len(results.associations)
        out.append(fig.report_figure(
            "fig-associations", "Strongest associations",
            f"The {min(N_TOP_SCATTER, n_rows)} region-variable pairs with the smallest p of {n_rows}: participants "
            "(in their group's colour), ordinary least-squares line and its 95 % confidence band. The r in each "
            "title is the table's correlation" + (" (partial, adjusted for " + ", ".join(covariates) + ")"
                                                   if covariates else "") + "; the line is not adjusted. "
            + _glossary(results.associations, units),
            scatter, "Scatter plots of susceptibility against clinical variables"))
    elif settings.associations.variables:
        notes.append("No association figure: no association rows with plottable data.")
    return out


def _glossary(associations: pd.DataFrame | None, units) -> str:
    """``sds = Severity of Dependence Scale, 0-15; ...`` for the variables the data dictionary names."""
    if associations is None or associations.empty:
        return ""
    named = [(v, variable_name(v, units)) for v in dict.fromkeys(associations["variable"].astype(str))]
    named = [f"{v} = {name}" for v, name in named if name != v]
    return ("Variables: " + "; ".join(named) + ".") if named else ""


def relapse_figures(results: StudyResults, notes: list[str]) -> list[fig.ReportFigure]:
    settings = results.settings
    units = results.units or {}
    out = []
    roc = roc_figure(results.roc_curves, results.relapse, n_top=N_TOP_ROC)
    if roc is not None:
        out.append(fig.report_figure(
            "fig-roc", "ROC curves for relapse",
            f"Receiver operating characteristic of susceptibility alone for relapse, for up to {N_TOP_ROC} regions "
            "with the smallest logistic-regression p; the dot marks the Youden cut-off at its apparent sensitivity "
            "and specificity (the table gives the cross-validated ones); 'corrected' is the bootstrap "
            "optimism-corrected AUC.", roc, "ROC curves of susceptibility for relapse"))
    elif settings.relapse.outcome:
        notes.append("No ROC figure: no ROC curves were computed.")
    time_label = variable_short(settings.relapse.time, units) if settings.relapse.time else "time"
    km = km_figure(results.km_curves, results.relapse, n_top=N_TOP_KM, time_label=time_label,
                   at_risk=results.km_at_risk)
    if km is not None:
        out.append(fig.report_figure(
            "fig-km", "Kaplan-Meier curves",
            f"Relapse-free survival over {time_label} for participants below "
            f"(low) and above (high) the median susceptibility, with 95 % confidence bands, for up to {N_TOP_KM} "
            "regions with the smallest Cox p; the numbers at risk are under each plot.",
            km, "Kaplan-Meier curves split at median susceptibility, with numbers at risk"))
    elif settings.relapse.time:
        notes.append("No Kaplan-Meier figure: no time-to-event data.")
    return out
