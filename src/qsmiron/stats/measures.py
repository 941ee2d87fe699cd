"""A study over several measures: which are analysed, and one ``StudyResults`` from their analyses.

The regions table holds chi (under one or more references), R2*, chi+ and chi-
(:mod:`qsmiron.stats.regions`). The study file chooses ``measures`` (default: every measure
the table has, in the order chi, r2star, chi_para, chi_dia) and the ``reference`` of chi
(default ``whole_brain``). Each measure runs the whole analysis on its own
(:func:`qsmiron.stats.analysis.run_study`), so the false discovery rate is controlled within
each family of tests, analysis x measure, with the groupings of each analysis unchanged.

:func:`combine` stacks them into one ``StudyResults``: every results table gains ``measure``
and ``unit`` as its first columns, the curves are keyed ``(measure, region, hemisphere)``,
and exclusions and warnings that hold for every measure are given once (the others name their
measure). :func:`for_measure` gives back the results of one measure in the single-measure
form (curves keyed ``(region, hemisphere)``), which the report reads for chi.
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np
import pandas as pd

from qsmiron.errors import InputError
from qsmiron.records.regions import MEASURE_UNITS
from qsmiron.records.study import Exclusion
from qsmiron.stats.methods_text import quality_exclusion_of_measures, regional_value_text
from qsmiron.stats.regions import CHI, measures_of, select_session
from qsmiron.stats.results import StudyResults

TABLES = ("group_comparison", "associations", "relapse", "relapse_counts")
"""The results tables that are per measure (Table 1 describes the participants: once)."""

CURVES = ("roc_curves", "km_curves", "km_at_risk")

FDR_FIELDS = ("group_comparison_fdr", "associations_fdr", "relapse_fdr")


def analysed_measures(regions: pd.DataFrame, study, source: str | os.PathLike | None = None) -> list[str]:
    """The measures a study analyses: its ``measures``, or every measure of the (session's) table.

    Raises
    ------
    InputError
        A measure the study names is not in the regions table (those present are named).
    """
    present = measures_of(select_session(regions, study.session, source=source))
    if not study.measures:
        return present
    missing = [m for m in study.measures if m not in present]
    if missing:
        where = study.source or source
        raise InputError(f"measures {', '.join(repr(m) for m in missing)} are not in the regions table "
                         f"(measures present: {', '.join(present) or 'none'})", where)
    return list(dict.fromkeys(study.measures))


PPB_COLUMNS = ("diff_ppb", "diff_ci_low_ppb", "diff_ci_high_ppb")
"""Differences in ppb: only a measure in ppm has them (``diff`` holds every measure's, in its unit)."""


def _with_measure(frame: pd.DataFrame | None, measure: str) -> pd.DataFrame | None:
    if frame is None:
        return None
    frame = frame.copy()
    if MEASURE_UNITS[measure] != "ppm":
        frame.loc[:, [c for c in PPB_COLUMNS if c in frame.columns]] = np.nan
    frame.insert(0, "unit", MEASURE_UNITS[measure])
    frame.insert(0, "measure", measure)
    return frame


def _stack(tables: list[pd.DataFrame | None]) -> pd.DataFrame | None:
    present = [t for t in tables if t is not None]
    if not present:
        return None
    non_empty = [t for t in present if not t.empty]
    return pd.concat(non_empty, ignore_index=True) if non_empty else present[0]


def _exclusions(by_measure: dict[str, StudyResults]) -> list[Exclusion]:
    """Exclusions of every measure: once when every measure has it, else naming its measure.

    The analyses name a missing regional value ``chi_ppm``; for another measure
    the reason names that measure's value.
    """
    seen: dict[tuple[str, str, str], set[str]] = {}
    for measure, results in by_measure.items():
        for item in results.exclusions:
            reason = item.reason if measure == CHI else item.reason.replace(
                "chi_ppm", f"{measure} ({MEASURE_UNITS[measure]})")
            seen.setdefault((item.participant_id, item.analysis, reason), set()).add(measure)
    out = []
    for (pid, analysis, reason), measures in seen.items():
        if len(measures) < len(by_measure):
            analysis = f"{analysis} ({', '.join(m for m in by_measure if m in measures)})"
        out.append(Exclusion(participant_id=pid, analysis=analysis, reason=reason))
    return out


def _warnings(by_measure: dict[str, StudyResults]) -> list[str]:
    counts: dict[str, list[str]] = {}
    for measure, results in by_measure.items():
        for warning in results.warnings:
            counts.setdefault(warning, []).append(measure)
    return [warning if len(measures) == len(by_measure) else f"{', '.join(measures)}: {warning}"
            for warning, measures in counts.items()]


def combine(by_measure: dict[str, StudyResults], reference: str | None) -> StudyResults:
    """One ``StudyResults`` of several measures' analyses (in the order given)."""
    first = next(iter(by_measure.values()))
    methods = first.settings.methods
    if len(by_measure) > 1:
        methods = methods.model_copy(update={f: f"{getattr(methods, f)} (within each measure)" for f in FDR_FIELDS})
    statistics = {measure: r.settings.statistic for measure, r in by_measure.items()}
    if len(set(statistics.values())) > 1:  # each measure's own default (chi and R2* differ)
        methods = methods.model_copy(update={"regional_value": "; ".join(
            f"for {measure}, {regional_value_text(statistic)}" for measure, statistic in statistics.items())})
    methods = methods.model_copy(update={"quality_exclusion": quality_exclusion_of_measures(
        {measure: r.settings.methods.quality_exclusion for measure, r in by_measure.items()})})
    settings = first.settings.model_copy(update={"measures": list(by_measure), "reference": reference,
                                                 "methods": methods, "statistic_by_measure": statistics})
    tables = {name: _stack([_with_measure(getattr(r, name), m) for m, r in by_measure.items()]) for name in TABLES}
    curves = {name: {(m, *key): frame for m, r in by_measure.items() for key, frame in getattr(r, name).items()}
              for name in CURVES}
    exclusions = _exclusions(by_measure)
    counts: dict[str, set[str]] = {}
    for item in exclusions:
        counts.setdefault(item.analysis, set()).add(item.participant_id)
    return dataclasses.replace(first, settings=settings, **tables, **curves, exclusions=exclusions,
                               warnings=_warnings(by_measure),
                               exclusion_counts={analysis: len(ids) for analysis, ids in counts.items()})


def for_measure(results: StudyResults, measure: str = CHI) -> StudyResults:
    """The results of one measure, in the single-measure form (tables without ``measure`` and
    ``unit``, curves keyed ``(region, hemisphere)``)."""
    def rows(frame):
        if frame is None or "measure" not in frame.columns:
            return frame
        return frame[frame["measure"] == measure].drop(columns=["measure", "unit"]).reset_index(drop=True)

    curves = {name: {key[1:]: frame for key, frame in getattr(results, name).items() if key[0] == measure}
              for name in CURVES}
    return dataclasses.replace(results, **{name: rows(getattr(results, name)) for name in TABLES}, **curves)
