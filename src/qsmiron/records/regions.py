"""The region-measurement record (``OUT.json`` beside ``qsmiron roi -o OUT.tsv``;
``sub-X_atlas-<atlas>_desc-regions_qsm.json`` in a run)."""

from __future__ import annotations

from pydantic import Field

from qsmiron.config import QsmironConfig
from qsmiron.records.base import SCHEMA_VERSION, Record, StepInfo, utc_now

MEASURE_UNITS = {"chi": "ppm", "r2star": "s^-1", "chi_para": "ppm", "chi_dia": "ppm"}
"""The measures of a regional table (its ``measure`` column) and their units (``unit``):
susceptibility, R2*, and the paramagnetic and diamagnetic susceptibility of chi-separation
(non-negative magnitudes)."""

REFERENCES = ("whole_brain", "csf", "mask")
"""The references a chi value can be given under (the table's ``reference`` column; the other
measures are absolute and carry ``n/a``): the whole brain mask, the CSF of the lateral
ventricles, a user's mask."""


class AtlasInfo(Record):
    """The atlas measured with and the template it is defined on."""

    name: str
    space: str
    source: str
    template: str | None = None
    n_labels: int
    hemisphere_sources: list[str]


class RegistrationQuality(Record):
    """Similarity of the subject warped to the template, whether it is an outlier, and whether
    it is a head at all (``qsmiron.roi.subject.check_head``; records written before the head
    check have None there)."""

    nmi: float | None
    """Normalised mutual information inside the template brain (recorded, not judged: it
    depends on the scan's contrast)."""
    brain_dice: float | None
    min_brain_dice: float
    outlier: bool
    outlier_reasons: list[str] = Field(default_factory=list)
    residual_shift_mm: float | None = None
    """Residual misalignment by block matching (``qsmiron.roi.qc.residual_shift``, median over
    the blocks, mm); None in records written before it was measured."""
    max_residual_shift_mm: float | None = None
    """Its threshold in force (``registration.max_residual_shift_mm``)."""
    residual_shift_region: str | None = None
    """Where it was measured: the SyN domain (the atlas regions plus a margin) or the template
    brain; None in records written before the region was recorded (the template brain)."""
    min_nmi: float | None = None
    """The NMI threshold of records written before the residual shift replaced it (None since)."""
    core_correlation: float | None = None
    """Absolute Pearson correlation of the warped magnitude with the template 10 mm inside the
    template brain (None when too few voxels overlap there)."""
    core_nmi: float | None = None
    """Normalised mutual information on the same voxels (recorded, not used: biased upwards
    on the few voxels a thin object covers)."""
    core_voxels: int | None = None
    """Template voxels in the core that the subject covers."""
    head_min_correlation: float | None = None
    """The threshold in force (``registration.head_min_correlation``; 0: check off)."""
    head_like: bool | None = None
    """``core_correlation`` reached the threshold (a scan that did not is not measured); None
    when the check is off."""


class RegistrationInfo(Record):
    """How the subject was normalised to the template."""

    tool: str
    """The software (``ANTs``)."""
    method: str
    """The declared registration method (``qsmiron.register.normalise.METHOD``)."""
    transforms: list[str]
    """In order, e.g. ``["rigid", "affine", "SyN"]``."""
    metric: str
    """Similarity metric(s), in words."""
    domain: str
    """Where the deformable stage worked (``atlas`` box or whole ``brain``)."""
    subject_image: str
    subject_mask: str
    """Where the brain mask of the subject's magnitude came from."""
    reused_transforms: bool
    fingerprint: str
    label_interpolation: str
    grids: dict = Field(default_factory=dict)
    """Registration grids and CPU seconds of each ANTs run."""
    quality: RegistrationQuality


class MeasurementInfo(Record):
    """How regional susceptibility was measured."""

    space: str
    mask: str
    erode_voxels: int
    min_voxels: int
    min_coverage: float
    flagged: dict[str, int]
    """Flag column -> number of regions flagged."""


class ReferenceRegion(Record):
    """One reference region of a subject's chi values, or why it is missing.

    Attributes
    ----------
    name : str
        One of ``REFERENCES``.
    method : str
        The declared reference method (``qsmiron.roi.references.REFERENCE_METHODS``).
    available : bool
        False when the region could not be made (``reason`` says why); its rows are then
        left out of the table.
    reason : str or None
    n_voxels : int
    volume_ml : float or None
    offset_ppm : float or None
        Mean of the measured chi map over the region: a value under this reference is the
        measured value minus this offset.
    parameters : dict
        Every parameter of the method (the CSF cleaning's thresholds).
    voxels_after_step : dict
        For the CSF: voxels left after each cleaning step.
    note : str or None
        What else the method did (the CSF kept uneroded at coarse voxels).
    """

    name: str
    method: str
    available: bool
    reason: str | None = None
    n_voxels: int = 0
    volume_ml: float | None = None
    offset_ppm: float | None = None
    parameters: dict = Field(default_factory=dict)
    voxels_after_step: dict[str, int] = Field(default_factory=dict)
    note: str | None = None


class MeasureInfo(Record):
    """One measure of the table: its map, unit, where it was measured, under which references."""

    measure: str
    """A key of ``MEASURE_UNITS``."""
    unit: str
    source: str
    """The map's file."""
    mask: str
    """Where it was measured, in words."""
    references: list[str] = Field(default_factory=list)
    """The references its rows carry (chi only)."""


class RegionsInputs(Record):
    chi: str
    magnitude: str
    mask: str | None = None
    matrix: list[int]
    voxel_size_mm: list[float]
    r2star: str | None = None
    r2star_mask: str | None = None
    paramagnetic: str | None = None
    diamagnetic: str | None = None
    reference_mask: str | None = None


class SignCheckInfo(Record):
    """Whether the iron-rich nuclei read positive (``qsmiron.roi.sign``): an inverted phase reads negative.

    Attributes
    ----------
    checked : bool
        False when the atlas or the references hold none of the nuclei (``reason`` says so).
    regions : list of str
        The nuclei measured (CIT168 names).
    mean_ppm : float or None
        Their voxel-weighted mean chi against the whole brain.
    min_mean_ppm : float
        It must exceed this; else ``reversed`` is True.
    """

    checked: bool
    reason: str | None = None
    regions: list[str] = Field(default_factory=list)
    mean_ppm: float | None = None
    min_mean_ppm: float = 0.0

    @property
    def reversed(self) -> bool:
        return bool(self.checked and self.mean_ppm is not None and self.mean_ppm <= self.min_mean_ppm)


class RegionsRecord(Record):
    """One regional measurement: inputs, atlas, registration, measurement, steps, outputs.

    Attributes
    ----------
    steps : list of StepInfo
        ``load``, ``prepare_subject``, ``registration``, ``head_check``, ``labels_to_subject``,
        ``reference_regions``, ``measurement``, ``qc``, ``sign_check`` (and ``chi_to_template``
        when asked): method, parameters, wall and CPU time.
    sign_check : SignCheckInfo or None
        The iron-rich nuclei's sign (None in records made before the check).
    measures : list of MeasureInfo
        The measures of the table (chi always; R2*, chi+ and chi- when their maps were given).
    references : list of ReferenceRegion
        Every reference region tried, with its size and offset, or why it is missing.
    outputs : dict
        Role -> file (``qsmiron.io.derivatives.RegionsPaths.files``), only files written.
    """

    schema_version: int = SCHEMA_VERSION
    qsmiron_version: str
    created: str = Field(default_factory=utc_now)
    inputs: RegionsInputs
    atlas: AtlasInfo
    registration: RegistrationInfo
    measurement: MeasurementInfo
    steps: list[StepInfo]
    measures: list[MeasureInfo] = Field(default_factory=list)
    references: list[ReferenceRegion] = Field(default_factory=list)
    sign_check: SignCheckInfo | None = None
    outputs: dict[str, str]
    warnings: list[str] = Field(default_factory=list)
    config: QsmironConfig
    versions: dict[str, str | None]

    def step(self, name: str) -> StepInfo | None:
        return next((step for step in self.steps if step.step == name), None)
