"""The study-results record: the resolved design, the methods text and every table (``results.json``)."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from qsmiron.records.answers import StudyAnswers
from qsmiron.records.base import SCHEMA_VERSION, Exclusion, Record, utc_now
from qsmiron.records.extensions import HarmonisationRecord, LongitudinalRecord, NormativeRecord, VoxelwiseRecord
from qsmiron.stats.study import Study


class StatisticsMethods(Record):
    """What each analysis runs, in words, with the thresholds of the study analysed
    (``qsmiron.stats.methods_text.statistics_methods``)."""

    group_comparison: str
    group_comparison_fdr: str
    """Which rows the false discovery rate runs over (completes "FDR ...")."""
    associations: str
    associations_fdr: str
    relapse: str
    relapse_fdr: str
    missing_values: str
    table1: str
    fdr_families: str = ""
    """How the primary and exploratory FDR families were formed (a clause)."""
    minimal_detectable_effects: str = ""
    """How each row's minimal detectable effect is computed."""
    regional_value: str = ""
    """Which summary of a region's voxels the analyses take (``Study.statistic``), a clause."""
    quality_exclusion: str = ""
    """The QC rule on flagged regional values (``Study.exclude_flagged``) and how many it left out,
    a clause; empty when there is no rule (flagged values analysed as measured)."""

    @property
    def multiple_comparisons(self) -> str:
        """The false discovery rate sentence for every analysis."""
        return self.multiple_comparisons_of(associations=True, relapse=True)

    def multiple_comparisons_of(self, *, associations: bool, relapse: bool) -> str:
        """The false discovery rate sentence for the analyses that ran."""
        parts = [f"{self.group_comparison_fdr} of the group comparison"]
        if associations:
            parts.append(f"{self.associations_fdr} of the associations")
        if relapse:
            parts.append(f"{self.relapse_fdr} of the relapse analyses")
        text = "Benjamini-Hochberg false discovery rate " + ", ".join(parts)
        return f"{text}; {self.fdr_families}" if self.fdr_families else text


class ColumnInfo(Record):
    """What ``participants.json`` says about one column used (None where it says nothing)."""

    name: str
    long_name: str | None = None
    description: str | None = None
    units: str | None = None
    """``Units`` of the data dictionary; None: no unit given (a time should have one)."""


class ParticipantCounts(Record):
    regions_table: int
    participants_table: int
    both: int
    per_group: dict[str, int]


class AnalysisSettings(Study):
    """The study as analysed: every default resolved from the data, and where the data came from.

    The fields of ``Study`` (groups, covariates, regions, associations, relapse, session, ...)
    with no None left where the data decided, plus the facts below; the report reads them.
    """

    study_file: str | None = None
    methods: StatisticsMethods
    participants_table: str | None = None
    regions_table: str | None = None
    sessions_in_regions_table: list[str] = Field(default_factory=list)
    sessions_table: str | None = None
    sex_coding: str | None = None
    n_participants: ParticipantCounts
    statistic_by_measure: dict[str, str] = Field(
        default_factory=dict, description="the summary of each region's voxels analysed for each measure "
        "(``statistic`` is the first measure's)")

    @property
    def group_a(self) -> str:
        return self.groups.compare[0]

    @property
    def group_b(self) -> str:
        return self.groups.compare[1]


class Curve(Record):
    """One region's curve (ROC, Kaplan-Meier) or at-risk table, column -> values."""

    measure: str = "chi"
    region: str
    hemisphere: str
    columns: dict[str, list[Any]]


class StudyRecord(Record):
    """``results.json``: everything of a study analysis, written last (its presence means complete)."""

    schema_version: int = SCHEMA_VERSION
    qsmiron_version: str
    created: str = Field(default_factory=utc_now)
    settings: AnalysisSettings
    versions: dict[str, str | None]
    warnings: list[str] = Field(default_factory=list)
    exclusions: list[Exclusion] = Field(default_factory=list)
    exclusion_counts: dict[str, int] = Field(default_factory=dict)
    table1: list[dict[str, Any]]
    group_comparison: list[dict[str, Any]]
    associations: list[dict[str, Any]]
    relapse: list[dict[str, Any]]
    relapse_counts: list[dict[str, Any]] | None = None
    roc_curves: list[Curve] = Field(default_factory=list)
    km_curves: list[Curve] = Field(default_factory=list)
    km_at_risk: list[Curve] = Field(default_factory=list)
    """Per region: numbers at risk, cumulative events and censorings and S(t) under the
    Kaplan-Meier curves (columns group, time, at_risk, events, censored, survival)."""
    units: dict[str, ColumnInfo] = Field(default_factory=dict)
    """Column name -> its ``participants.json`` entry, for every column an analysis used."""
    answers: StudyAnswers | None = None
    """The three headline answers and the association matrix."""
    harmonisation: HarmonisationRecord | None = None
    longitudinal: LongitudinalRecord | None = None
    normative: NormativeRecord | None = None
    voxelwise: VoxelwiseRecord | None = None
    """The study file's optional sections, each None when absent (``qsmiron.records.extensions``)."""
    files: dict[str, str] = Field(default_factory=dict)
