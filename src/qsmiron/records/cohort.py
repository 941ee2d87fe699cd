"""A cohort's records: the done-marker of a subject, and the provenance the report reads."""

from __future__ import annotations

from pydantic import Field

from qsmiron.records.base import SCHEMA_VERSION, Record, utc_now
from qsmiron.records.recon import ReconRecord
from qsmiron.records.regions import RegionsRecord


class MarkerFile(Record):
    """One output of a subject: its file (relative to the subject's folder) and size."""

    file: str
    size: int


class DoneMarker(Record):
    """Written last into a subject's folder: what made its outputs, and what they are.

    A later run reuses the subject only when both hashes match and every file still has its
    size (``qsmiron.pipeline.cache``).
    """

    schema_version: int = SCHEMA_VERSION
    participant_id: str
    session: str | None = None
    inputs_hash: str
    config_hash: str
    outputs: dict[str, MarkerFile]
    """Role (``qsmiron.io.derivatives``) -> file."""
    step_seconds: dict[str, float] = Field(default_factory=dict)
    finished: str = Field(default_factory=utc_now)


class SubjectProblem(Record):
    """A subject the pipeline could not process or left out, and why."""

    participant_id: str
    session: str | None = None
    step: str | None = None
    reason: str | None = None


class PipelineSummary(Record):
    """What the participant level did, for the report's exclusions and methods."""

    n_subjects: int
    failed: list[SubjectProblem] = Field(default_factory=list)
    excluded: list[SubjectProblem] = Field(default_factory=list)
    derivatives: str | None = None


class ScanRecords(Record):
    """The records of one scan (a participant, or a participant's session)."""

    participant_id: str
    session: str | None = None
    recon: ReconRecord | None = None
    regions: RegionsRecord | None = None
    qc_images: list[str] = Field(default_factory=list)
    outputs: dict[str, str] = Field(default_factory=dict)
    """Role (``qsmiron.io.derivatives``) -> path of every file its done-marker lists: the QC
    figures and the mask its QC page reads."""


class Provenance(Record):
    """Everything the report says about how the regional values were made.

    Built by the group level from each scan's records; ``methods_paragraph`` reads it.
    """

    scans: list[ScanRecords] = Field(default_factory=list)
    pipeline: PipelineSummary | None = None

    @property
    def recon_records(self) -> list[ReconRecord]:
        return [scan.recon for scan in self.scans if scan.recon is not None]

    @property
    def regions_records(self) -> list[RegionsRecord]:
        return [scan.regions for scan in self.scans if scan.regions is not None]

    def for_session(self, session: str, n_subjects: int | None = None) -> "Provenance":
        """The scans and pipeline problems of one session (items without a session belong to all)."""
        def mine(item) -> bool:
            return item.session in (None, session)

        pipeline = None
        if self.pipeline is not None:
            failed = [p for p in self.pipeline.failed if mine(p)]
            pipeline = self.pipeline.model_copy(update={
                "failed": failed, "excluded": [p for p in self.pipeline.excluded if mine(p)],
                "n_subjects": self.pipeline.n_subjects if n_subjects is None else n_subjects + len(failed)})
        return Provenance(scans=[scan for scan in self.scans if mine(scan)], pipeline=pipeline)
