"""What a study analysis produces: the contract between ``stats`` and ``report``."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Iterable

import pandas as pd

from qsmiron.records.answers import StudyAnswers
from qsmiron.records.extensions import HarmonisationRecord, LongitudinalRecord, NormativeRecord, VoxelwiseRecord
from qsmiron.records.study import AnalysisSettings, ColumnInfo, Exclusion


@dataclass
class StudyResults:
    """Every number of a study analysis, as tidy tables plus the settings that made them.

    Attributes
    ----------
    settings : AnalysisSettings
        The study as analysed, defaults resolved (groups compared, covariates, regions,
        association variables and group, relapse columns), the methods text and where the
        tables came from.
    table1 : DataFrame
        One row per participant characteristic: variable, kind (continuous/categorical),
        summary per group, test, statistic, p.
    group_comparison : DataFrame
        Columns as in ``group_comparison.tsv`` (see the stats command): ``measure`` and
        ``unit`` first (:mod:`qsmiron.stats.measures`), then one row per region and side.
    associations : DataFrame
        Columns as in ``associations.tsv``.
    relapse : DataFrame
        Columns as in ``relapse.tsv`` (hazard-ratio columns only with time-to-event data).
    relapse_counts : DataFrame or None
        Count regression per region (rate ratio per SD, CI, p, model) when a count column exists.
    roc_curves : dict
        ``(measure, region, hemisphere) -> DataFrame(fpr, tpr, threshold_ppm)`` (the threshold
        in the measure's unit); ``(region, hemisphere)`` in the results of one measure
        (:func:`qsmiron.stats.measures.for_measure`).
    km_curves : dict
        ``(measure, region, hemisphere) -> DataFrame(group ('low'/'high'), time, survival,
        ci_low, ci_high)``; keyed as ``roc_curves``.
    exclusions : list of Exclusion
        Every participant left out of an analysis, with the analysis and the reason.
    warnings : list of str
        Things the researcher should know (small groups, constant variables, ...).
    versions : dict
        Package versions used for the statistics.
    exclusion_counts : dict
        Number of distinct participants left out per analysis (``all``, ``group_comparison``,
    km_at_risk : dict
        ``(region, hemisphere) -> DataFrame(group, time, at_risk, events, censored, survival)``:
        the numbers at risk under the Kaplan-Meier curves (:mod:`qsmiron.stats.survival`).
    units : dict
        Column name -> :class:`~qsmiron.records.study.ColumnInfo` (LongName, Description,
        Units from ``participants.json``; None where it says nothing) for every column used.
    answers : StudyAnswers or None
        The three headline answers and the association matrix (:mod:`qsmiron.stats.answers`).
        ``associations <variable>``, ``relapse``, ``time_to_event``, ``relapse_count``, and
        ``harmonisation``, ``longitudinal``, ``voxelwise ...`` when those sections ran).
    harmonisation, longitudinal, normative, voxelwise : record or None
        The study file's optional sections (``qsmiron.records.extensions``), None when absent.
    """

    settings: AnalysisSettings
    table1: pd.DataFrame
    group_comparison: pd.DataFrame
    associations: pd.DataFrame
    relapse: pd.DataFrame
    relapse_counts: pd.DataFrame | None = None
    roc_curves: dict[tuple[str, str], pd.DataFrame] = field(default_factory=dict)
    km_curves: dict[tuple[str, str], pd.DataFrame] = field(default_factory=dict)
    exclusions: list[Exclusion] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    versions: dict[str, str | None] = field(default_factory=dict)
    exclusion_counts: dict[str, int] = field(default_factory=dict)
    km_at_risk: dict[tuple[str, str], pd.DataFrame] = field(default_factory=dict)
    units: dict[str, ColumnInfo] = field(default_factory=dict)
    answers: StudyAnswers | None = None
    harmonisation: HarmonisationRecord | None = None
    longitudinal: LongitudinalRecord | None = None
    normative: NormativeRecord | None = None
    voxelwise: VoxelwiseRecord | None = None

    def add_exclusions(self, exclusions: Iterable[Exclusion], warnings: Iterable[str] = ()) -> None:
        """Add another analysis's exclusions and warnings (the counts follow)."""
        self.exclusions.extend(exclusions)
        self.warnings.extend(warnings)
        self.exclusion_counts = exclusion_counts(self.exclusions)


def exclusion_counts(exclusions: Iterable[Exclusion]) -> dict[str, int]:
    """Distinct participants left out per analysis."""
    counts: dict[str, set[str]] = defaultdict(set)
    for item in exclusions:
        counts[item.analysis].add(item.participant_id)
    return {analysis: len(ids) for analysis, ids in counts.items()}


def exclusion_records(items: Iterable[dict[str, Any]]) -> list[Exclusion]:
    """Exclusions as records, one per participant, analysis and reason (the regions a reason
    applies to, ``where``, joined into it)."""
    places: dict[tuple[str, str, str], list[str]] = defaultdict(list)
    for item in items:
        places[(item["participant_id"], item["analysis"], item["reason"])].append(item.get("where"))
    return [Exclusion(participant_id=pid, analysis=analysis,
                      reason=reason + (f" ({', '.join(dict.fromkeys(w for w in where if w))})" if any(where) else ""))
            for (pid, analysis, reason), where in places.items()]
