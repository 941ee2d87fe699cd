"""Records of a study's optional analyses: harmonisation, longitudinal and normative models,
voxel-wise inference.

Each is a field of ``StudyRecord`` (``results.json``) when its study-file section ran
(``harmonisation``, ``longitudinal``, ``normative``, ``voxelwise``; None otherwise), and
``VoxelwiseRecord`` is also written alone as ``voxelwise.json`` by ``qsmiron voxelwise``. Every
record carries the methods text of what ran and ``files``: role -> file, relative to the folder
of the record's ``results.json`` (or ``voxelwise.json``). The full tables are in those files;
the records hold what a report shows (summaries, outliers, clusters).
"""

from __future__ import annotations

from typing import Literal

from pydantic import AliasChoices, Field

from qsmiron.records.base import SCHEMA_VERSION, Exclusion, Record, utc_now
from qsmiron.records.regions import AtlasInfo
from qsmiron.stats.study_sections import VoxelwiseSettings


# ----------------------------------------------------------------------------- harmonisation
class SiteEffect(Record):
    """One site's values of one region and measure before and after harmonisation, and the
    region's site test.

    ``mean_*`` and ``sd_*`` are in the measure's ``unit`` (ppm for chi, s^-1 for R2*). ``F_*``
    and ``p_*``: type-II F test of site in OLS ``value ~ site + group + covariates`` (the same
    for every site of the region, measure and session); None when it cannot be computed.
    """

    session: str | None = None
    measure: str = "chi"
    reference: str | None = None
    unit: str = "ppm"
    region: str
    hemisphere: str
    site: str
    n: int
    mean_before: float | None
    sd_before: float | None
    mean_after: float | None
    sd_after: float | None
    F_before: float | None
    p_before: float | None
    F_after: float | None
    p_after: float | None


class HarmonisationRecord(Record):
    """ComBat harmonisation of the regional values (``[harmonise]``)."""

    method: Literal["combat"]
    batch: str
    """The participants-table (or sessions-table) column naming each site or scanner."""
    empirical_bayes: bool
    preserved: list[str]
    """The group column and the covariates kept in ComBat's model (their effects preserved)."""
    implementation: str
    """The package that ran ComBat, with its version."""
    sessions: list[str] = Field(default_factory=list)
    """Sessions harmonised (each separately); empty without sessions."""
    n_harmonised: int
    """Participant-sessions harmonised (site, group, covariates and at least one regional value)."""
    n_partial: int = 0
    """Of those, the ones missing some regional values, harmonised for the values they have with
    the estimates of the complete cases."""
    methods: str
    site_effects: list[SiteEffect] = Field(default_factory=list)
    files: dict[str, str] = Field(default_factory=dict)
    """``regions_harmonised`` and ``site_effects`` (``qsmiron.io.derivatives.ExtensionPaths``)."""


# ------------------------------------------------------------------------------ longitudinal
class LongitudinalTerm(Record):
    """One fixed effect of one region's mixed model (a row of ``longitudinal.tsv``)."""

    region: str
    hemisphere: str
    term: str
    """``intercept``, ``group``, ``time``, ``group:time`` (the slope difference, group_a minus
    group_b, per unit of time) or a covariate column."""
    estimate: float | None = None
    se: float | None = None
    p: float | None = None
    p_fdr: float | None = None
    n: int
    """Observations (participant-sessions)."""
    n_participants: int
    note: str = ""


class LongitudinalRecord(Record):
    """Per-region linear mixed models over the sessions (``[longitudinal]``)."""

    time: str
    """The sessions-table column holding each session's time."""
    group_column: str
    group_a: str
    group_b: str
    covariates: list[str]
    sessions: list[str]
    methods: str
    terms: list[LongitudinalTerm] = Field(default_factory=list)
    files: dict[str, str] = Field(default_factory=dict)

    @property
    def interactions(self) -> list[LongitudinalTerm]:
        """Each region's ``group:time`` row: the difference in slope, group_a minus group_b."""
        return [row for row in self.terms if row.term == "group:time"]


# -------------------------------------------------------------------------------- normative
class NormativeOutlier(Record):
    """A regional value beyond ``outlier_z`` from the reference group's model."""

    participant_id: str
    session: str | None = None
    group: str | None = None
    region: str
    hemisphere: str
    chi_ppm: float = Field(validation_alias=AliasChoices("chi_ppm", "mean_ppm"))
    """The participant's regional value (the summary analysed, ``Study.statistic``); records
    written before the summary could be the median name it ``mean_ppm``."""
    expected_ppm: float
    z: float
    in_reference: bool


class NormativeSession(Record):
    """How many were scored at one session (None: a dataset without sessions)."""

    session: str | None = None
    n_reference: int
    """Reference-group participants with complete covariates (the model's sample)."""
    n_scored: int
    n_outliers: int


class NormativeRecord(Record):
    """z-scores against the study's own reference group (``[normative]``)."""

    reference_group: str
    group_column: str
    covariates: list[str]
    terms: list[str]
    outlier_z: float
    methods: str
    """Says that the reference is the study's own group, not a population norm."""
    sessions: list[NormativeSession] = Field(default_factory=list)
    outliers: list[NormativeOutlier] = Field(default_factory=list)
    files: dict[str, str] = Field(default_factory=dict)


# -------------------------------------------------------------------------------- voxel-wise
class VoxelwiseContrast(Record):
    """One tested regressor (a row of ``voxelwise_contrasts.tsv``); maps and figure as file names."""

    contrast: str
    key: str
    """The contrast's part of its file names (``group-MOHvsCM``, ``assoc-sds-MOH``)."""
    kind: Literal["group", "association"]
    sample: str
    n: int
    n_a: int | None = None
    n_b: int | None = None
    covariates: list[str] = Field(default_factory=list)
    n_voxels: int
    max_abs_t: float | None = None
    min_p_fwe: float | None = None
    n_clusters: int | None = None
    t_map: str | None = None
    logp_map: str | None = None
    figure: str | None = None
    note: str = ""
    """Why the contrast was not analysed (empty when it was)."""


class VoxelwiseCluster(Record):
    """A cluster of face-connected voxels of one sign with p_FWE < alpha (a row of ``voxelwise_clusters.tsv``)."""

    contrast: str
    cluster_id: int
    n_voxels: int
    peak_x_mm: float
    peak_y_mm: float
    peak_z_mm: float
    peak_t: float
    p_fwe: float
    label: str
    """The atlas region holding most of the cluster's voxels (``outside atlas regions`` included)."""


class VoxelwiseRecord(Record):
    """A voxel-wise analysis (``voxelwise.json``; ``StudyRecord.voxelwise`` in a group level)."""

    schema_version: int = SCHEMA_VERSION
    qsmiron_version: str
    created: str = Field(default_factory=utc_now)
    settings: VoxelwiseSettings
    session: str | None = None
    mask: str
    """The analysis mask in words, with its size."""
    n_voxels: int
    """Voxels analysed: in the mask, covered by every map and not constant."""
    space: str
    grid: str
    group_column: str
    groups: list[str]
    covariates: list[str]
    association_group: str
    association_variables: list[str]
    atlas: AtlasInfo
    study_file: str | None = None
    derivatives_dir: str
    participants_table: str | None = None
    methods: str
    contrasts: list[VoxelwiseContrast] = Field(default_factory=list)
    clusters: list[VoxelwiseCluster] = Field(default_factory=list)
    exclusions: list[Exclusion] = Field(default_factory=list)
    warnings: list[str] = Field(default_factory=list)
    seconds: float = 0.0
    cpu_seconds: float = 0.0
    versions: dict[str, str | None] = Field(default_factory=dict)
    files: dict[str, str] = Field(default_factory=dict)
    """``clusters``, ``contrasts``, ``mask``, ``record`` and each contrast's ``t_map:<key>``,
    ``logp_map:<key>`` and ``figure:<key>``."""
