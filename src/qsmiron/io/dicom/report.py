"""What ``qsmiron convert`` found, converted and skipped, and the summary it prints."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from qsmiron.io.dicom.sorting import Skip


@dataclass
class ConvertedAcquisition:
    """One multi-echo GRE written to the BIDS dataset."""

    participant_id: str
    session: str | None
    run: int | None
    source: str  # the series it came from
    manufacturer: str
    echo_times_s: list[float]
    phase_scaling: str
    files: list[Path] = field(default_factory=list)

    @property
    def label(self) -> str:
        parts = [self.participant_id] + ([f"ses-{self.session}"] if self.session else [])
        return " ".join(parts + ([f"run-{self.run}"] if self.run else []))


@dataclass
class ConversionReport:
    """The result of ``convert_dicom_to_bids``.

    Attributes
    ----------
    n_files, n_other_files : int
        DICOM images read; other files ignored.
    n_patients, n_studies, n_series : int
    converted : list of ConvertedAcquisition
    skipped : list of Skip
        Every series (or patient, or visit) not converted, and every DICOM file that cannot
        be read, with the reason.
    participants : list of str
        ``participant_id`` of the subjects written now.
    bids_dir : Path
    """

    bids_dir: Path
    n_files: int = 0
    n_other_files: int = 0
    n_patients: int = 0
    n_studies: int = 0
    n_series: int = 0
    converted: list[ConvertedAcquisition] = field(default_factory=list)
    skipped: list[Skip] = field(default_factory=list)
    participants: list[str] = field(default_factory=list)

    @property
    def written(self) -> list[Path]:
        """Every MEGRE image written, in conversion order."""
        return [path for item in self.converted for path in item.files]

    def summary(self) -> str:
        """The text ``qsmiron convert`` prints: found, converted, skipped (with reasons), written."""
        lines = [f"found: {self.n_files} DICOM files ({self.n_other_files} other files ignored), "
                 f"{self.n_patients} patients, {self.n_studies} studies, {self.n_series} series"]
        lines.append(f"converted: {len(self.converted)} multi-echo GRE acquisitions")
        for item in self.converted:
            times = ", ".join(f"{t * 1000:g}" for t in item.echo_times_s)
            lines.append(f"  {item.label}: {item.source}; {item.manufacturer or 'unknown vendor'}; "
                         f"{len(item.echo_times_s)} echoes (TE {times} ms); phase {item.phase_scaling}")
        lines.append(f"skipped: {len(self.skipped)}")
        for skip in self.skipped:
            who = f"patient {skip.patient_id}: " if skip.patient_id else ""
            lines.append(f"  {who}{skip.what}: {skip.reason}")
        if self.skipped:
            counts = Counter(_reason_kind(skip.reason) for skip in self.skipped)
            lines.append("skipped by reason: " + ", ".join(f"{kind} {n}" for kind, n in counts.most_common()))
        if self.participants:
            lines.append(f"written: {len(self.participants)} participants "
                         f"({', '.join(self.participants)}) into {self.bids_dir}")
        return "\n".join(lines)


def _reason_kind(reason: str) -> str:
    """The reason without its details in parentheses, for the counts line."""
    return reason.split(" (")[0].split(";")[0]
