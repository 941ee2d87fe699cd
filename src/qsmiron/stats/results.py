"""What a study analysis produces: the contract between ``stats`` and ``report``."""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from qsmiron.records.study import AnalysisSettings, Exclusion


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
        ``associations <variable>``, ``relapse``, ``time_to_event``, ``relapse_count``).
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
