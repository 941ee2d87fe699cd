"""The report's section on the measures beside chi: R2*, and chi+ / chi- when separated.

Each measure was analysed on its own, with the FDR within its own families
(:mod:`qsmiron.stats.measures`); the section shows each compactly: the group comparison in
its unit, and one line each for its significant associations and relapse models. Chi+ and
chi- computed without a measured R2 map are labelled an approximation.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from qsmiron.records.cohort import Provenance
from qsmiron.records.study import AnalysisSettings
from qsmiron.report.formatting import format_interval, format_p
from qsmiron.report.names import MEASURE_NAMES, MEASURE_UNITS, region_label
from qsmiron.report.tables import Table, group_comparison_table

OTHER_MEASURES = ("r2star", "chi_para", "chi_dia")


@dataclass
class MeasureView:
    measure: str
    title: str
    notes: list[str] = field(default_factory=list)
    table: Table | None = None


def _rows(frame: pd.DataFrame | None, measure: str) -> pd.DataFrame | None:
    if frame is None or frame.empty or "measure" not in frame.columns:
        return None
    part = frame[frame["measure"] == measure]
    return part.drop(columns=[c for c in ("measure", "unit") if c in part]).reset_index(drop=True)


def _approximated(provenance: Provenance | None) -> bool:
    infos = [r.chi_separation for r in (provenance.recon_records if provenance else []) if r.chi_separation]
    return any(i.approximation for i in infos if i.skipped is None)


def _significant_lines(frame: pd.DataFrame | None, alpha: float, what: str, estimate: tuple[str, str, str],
                       label: str) -> str:
    if frame is None or frame.empty or "p_fdr" not in frame:
        return ""
    hits = frame[frame["p_fdr"].astype(float) < alpha].sort_values("p_fdr", kind="mergesort")
    if hits.empty:
        return f"{what}: no row reached FDR-adjusted p < {alpha:g} ({len(frame)} tested)."
    parts = [f"{region_label(r['region'], r['hemisphere'])}"
             + (f" with {r['variable']}" if "variable" in r and not pd.isna(r.get("variable")) else "")
             + f": {label} {format_interval(r.get(estimate[0]), r.get(estimate[1]), r.get(estimate[2]))}, "
               f"p FDR {format_p(r['p_fdr'])}" for _, r in hits.head(6).iterrows()]
    more = f" (and {len(hits) - 6} more)" if len(hits) > 6 else ""
    return f"{what}: " + "; ".join(parts) + more + "."


def measure_views(results, settings: AnalysisSettings, provenance: Provenance | None = None) -> list[MeasureView]:
    """One view per analysed measure other than chi (none for a chi-only study)."""
    measures = [m for m in (settings.measures or []) if m in OTHER_MEASURES]
    alpha = settings.alpha
    views = []
    for measure in measures:
        unit = MEASURE_UNITS[measure]
        group = _rows(results.group_comparison, measure)
        title = MEASURE_NAMES[measure] + f" ({unit})"
        notes = []
        if measure in ("chi_para", "chi_dia") and _approximated(provenance):
            title += ": approximation"
            notes.append("No measured R2 map was available: R2 was approximated from R2*, so these values are an "
                         "approximation (valid for iron-dominated grey matter at 3 T), not a measurement.")
        table = group_comparison_table(group, [settings.group_a, settings.group_b], alpha,
                                       list(settings.covariates or []), settings.methods, unit=unit,
                                       table_id=f"group-comparison-{measure.replace('_', '-')}-table")
        notes.append(_significant_lines(_rows(results.associations, measure), alpha, "Associations",
                                        ("r", "r_ci_low", "r_ci_high"), "r"))
        notes.append(_significant_lines(_rows(results.relapse, measure), alpha, "Relapse (logistic)",
                                        ("odds_ratio", "or_ci_low", "or_ci_high"), "OR per SD"))
        views.append(MeasureView(measure, title, [n for n in notes if n], table))
    return views


