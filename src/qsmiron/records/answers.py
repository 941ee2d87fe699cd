"""The study's three answers, as the report opens with them (``StudyRecord.answers``).

Built by :func:`qsmiron.stats.answers.study_answers` from the finished tables; see that
module for what each answer holds. A number that could not be estimated is None (written
as ``null``), never NaN, so that the record reads back equal to what was written.
"""

from __future__ import annotations

from pydantic import Field

from qsmiron.records.base import Record


class Estimate(Record):
    """One forest-plot row: an effect with its 95 % CI in one region and hemisphere."""

    region: str
    hemisphere: str
    estimate: float | None
    ci_low: float | None
    ci_high: float | None
    p: float | None = None
    p_fdr: float | None = None
    family: str = ""
    """The FDR family of the row: ``primary`` or ``exploratory``."""
    n: int | None = None
    variable: str | None = None
    """The clinical variable (association rows only)."""
    method: str = ""
    """The model that gave the estimate when it can differ between rows (Firth or maximum
    likelihood for the odds ratio)."""
    note: str = ""

    @property
    def label(self) -> str:
        return f"{self.region} {self.hemisphere}"


class AucEstimate(Record):
    """The AUC of chi alone in one region: apparent (DeLong CI), corrected, and its cut-off."""

    region: str
    hemisphere: str
    auc: float | None
    ci_low: float | None
    ci_high: float | None
    auc_corrected: float | None
    """Harrell's bootstrap optimism-corrected AUC (None with too few events)."""
    direction: str
    """``higher`` or ``lower``: which chi values predict the outcome."""
    cutoff_ppm: float | None
    """The Youden cut-off chosen on all participants."""
    sensitivity_cv: float | None
    specificity_cv: float | None
    """Of the cut-off rule, by repeated stratified k-fold cross-validation."""
    note: str = ""


class GroupDifferenceAnswer(Record):
    """Answer 1: do the groups differ in the primary regions?"""

    group_a: str
    group_b: str
    covariates: list[str]
    confirmatory: bool
    """True when the study declared primary regions (the rows answer them), False when the
    answer covers every region and is exploratory."""
    difference_ppb: list[Estimate]
    """Adjusted mean difference group_a - group_b, ppb; p and p_fdr of the ANCOVA F test."""
    cohen_d: list[Estimate]
    """Cohen's d (raw means, pooled SD) with the noncentral-t CI."""
    n_a: int
    n_b: int
    min_detectable_d: float | None
    """Smallest |d| the full sample detects (two-sided alpha 0.05, 80 % power)."""
    significant: list[str] = Field(default_factory=list)
    """Labels (``region hemisphere``) of the answered rows with p_fdr < alpha."""


class AssociationAnswer(Record):
    """Answer 2: does chi in the primary regions go with the primary clinical variables?"""

    group: str
    method: str
    variables: list[str]
    covariates: list[str]
    confirmatory: bool
    correlations: list[Estimate]
    """Partial r with its Fisher-z 95 % CI, one per region, hemisphere and variable."""
    n: int
    min_detectable_r: float | None
    significant: list[str] = Field(default_factory=list)
    """Labels (``region hemisphere variable``) of the answered rows with p_fdr < alpha."""


class RelapseAnswer(Record):
    """Answer 3: does chi in the primary regions predict relapse?"""

    outcome: str
    group: str
    covariates: list[str]
    confirmatory: bool
    odds_ratio: list[Estimate]
    """Per SD of chi, profile-likelihood CI; ``method`` names the model (Firth or maximum
    likelihood)."""
    auc: list[AucEstimate]
    n: int
    n_events: int
    min_detectable_odds_ratio: float | None
    too_few_events: str = ""
    """Why the full sample supports no outcome model (empty when the models ran)."""
    significant: list[str] = Field(default_factory=list)


class AssociationMatrix(Record):
    """Region x variable matrices (rows: region and hemisphere) for a heatmap."""

    group: str
    method: str
    regions: list[str]
    hemispheres: list[str]
    variables: list[str]
    r: list[list[float | None]]
    p: list[list[float | None]]
    p_fdr: list[list[float | None]]
    family: list[list[str]]


class StudyAnswers(Record):
    """What the report opens with: the three answers and the association matrix.

    How the FDR families were formed is said once, in ``AnalysisSettings.methods.fdr_families``.
    """

    alpha: float
    primary_regions: list[str]
    group_difference: GroupDifferenceAnswer | None = None
    association: AssociationAnswer | None = None
    relapse: RelapseAnswer | None = None
    association_matrix: AssociationMatrix | None = None
