"""Per-scan QC measures of a cohort and their outlier flags (``qsmiron.report.qc_pages``)."""

from __future__ import annotations

from pydantic import Field

from qsmiron.records.base import Record

OUTLIER_Z = 3.0
"""A measure is flagged when its robust z (median-centred, MAD-scaled) exceeds this in magnitude."""


class QcMeasure(Record):
    """One QC measure of one scan, and whether it stands out from the cohort.

    Attributes
    ----------
    key : str
        ``inversion_iterations``, ``inversion_residual``, ``mask_volume_ml``,
        ``residual_shift_mm``, ``nmi``, ``brain_dice``, ``core_correlation``.
    value : float or None
        None when the records do not hold it.
    robust_z : float or None
        ``(value - median) / (1.4826 MAD)`` over the cohort's scans with a value.
    flagged : bool
        ``|robust_z| > OUTLIER_Z``, or the record's own flag (a registration outlier, a scan
        that is not head-like).
    """

    key: str
    value: float | None = None
    robust_z: float | None = None
    flagged: bool = False


class ScanQc(Record):
    """The QC of one scan: where its figures are, what its records say, what is flagged.

    Attributes
    ----------
    participant_id, session : str
    label : str
        ``sub-X[_ses-Y]``.
    inversion_method : str or None
    inversion_converged : bool or None
        None when the inversion does not report it.
    readout : str or None
        What the reconstruction's readout check found (``qsmiron.recon.bipolar``), in words;
        None in records made before it.
    measures : dict
        Key -> QcMeasure (``QC_MEASURES`` of ``qsmiron.report.qc_pages``).
    figures : dict
        Role (``qsmiron.io.derivatives.QC_ROLES``) -> path of each QC figure written.
    reasons : list of str
        Why the scan is flagged, in words (empty: nothing stands out).
    page : str or None
        Its QC page relative to the report (``qsmiron.io.derivatives.qc_page_link``).
    """

    participant_id: str
    session: str | None = None
    label: str
    inversion_method: str | None = None
    inversion_converged: bool | None = None
    readout: str | None = None
    measures: dict[str, QcMeasure] = Field(default_factory=dict)
    figures: dict[str, str] = Field(default_factory=dict)
    reasons: list[str] = Field(default_factory=list)
    page: str | None = None

    @property
    def flagged(self) -> bool:
        return bool(self.reasons)
