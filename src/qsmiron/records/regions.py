"""The region-measurement record (the ROI JSON beside each regional table)."""

from __future__ import annotations

from pydantic import Field

from qsmiron.config import QsmironConfig
from qsmiron.records.base import SCHEMA_VERSION, Record, StepInfo, utc_now


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
    brain_dice: float | None
    min_nmi: float
    min_brain_dice: float
    outlier: bool
    outlier_reasons: list[str] = Field(default_factory=list)
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


class RegionsInputs(Record):
    chi: str
    magnitude: str
    mask: str | None = None
    matrix: list[int]
    voxel_size_mm: list[float]


class RegionsRecord(Record):
    """One regional measurement: inputs, atlas, registration, measurement, steps, outputs.

    Attributes
    ----------
    steps : list of StepInfo
        ``load``, ``prepare_subject``, ``registration``, ``head_check``, ``labels_to_subject``,
        ``measurement``, ``qc`` (and ``chi_to_template`` when asked): method, parameters, wall
        and CPU time.
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
    outputs: dict[str, str]
    warnings: list[str] = Field(default_factory=list)
    config: QsmironConfig
    versions: dict[str, str | None]

    def step(self, name: str) -> StepInfo | None:
        return next((step for step in self.steps if step.step == name), None)
