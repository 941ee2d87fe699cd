"""Sort an export's headers into patients, visits, series and multi-echo GRE acquisitions.

A *series* is the files of one SeriesInstanceUID (SeriesNumber when the UID is missing) of
one patient and study. A series is kept as (part of) a multi-echo GRE when it is MR, a plain
gradient echo (not spin echo, inversion recovery or EPI), original (not SWI, minimum-intensity
projections or other derived maps), not a localizer, and has two echo times or more; every
other series is skipped with the reason.

An *acquisition* is the series that together hold magnitude and phase of every echo:

- one series holding both (Philips classic and enhanced: one series number, parts told
  apart by ImageType; GE: magnitude, phase, real and imaginary in one series);
- or a magnitude series and a phase series of the same study with the same echo times and
  geometry (Siemens: the phase series usually numbered next). Each magnitude series is paired
  with the closest phase series numbered after it, else before it.

Real and imaginary images stand in for magnitude and phase when an acquisition has no phase.
An acquisition whose parts or echoes have different numbers of slice files (files missing or
unreadable) is skipped: its volumes would not share a grid.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from qsmiron.io.dicom.headers import ImageHeader


@dataclass
class Series:
    """The files of one series, with what they hold."""

    patient_id: str
    study_uid: str
    series_uid: str
    number: int | None
    description: str
    headers: list[ImageHeader] = field(default_factory=list)

    @property
    def parts(self) -> set[str]:
        return set().union(*(h.parts for h in self.headers))

    @property
    def echo_times_ms(self) -> tuple[float, ...]:
        return tuple(sorted(set().union(*(h.echo_times_ms for h in self.headers))))

    @property
    def first(self) -> ImageHeader:
        return self.headers[0]

    @property
    def signature(self) -> tuple:
        """What a magnitude series and its phase series share: echo times and geometry."""
        return self.echo_times_ms, self.first.geometry

    @property
    def n_images(self) -> int:
        return sum(h.n_frames for h in self.headers)

    def name(self) -> str:
        number = "?" if self.number is None else str(self.number)
        return f"series {number} ({self.description})"


@dataclass
class Acquisition:
    """The series of one multi-echo GRE: magnitude and phase (or real and imaginary) of each echo."""

    series: list[Series]
    complex_parts: bool = False  # True: real/imaginary to be combined into magnitude and phase

    @property
    def first(self) -> ImageHeader:
        return self.series[0].first

    @property
    def echo_times_ms(self) -> tuple[float, ...]:
        return self.series[0].echo_times_ms

    @property
    def files(self) -> list[ImageHeader]:
        return [h for s in self.series for h in s.headers]

    def name(self) -> str:
        return " + ".join(s.name() for s in self.series)


@dataclass(frozen=True)
class Skip:
    """Something in the export that was not converted, and why."""

    what: str
    reason: str
    patient_id: str | None = None


def group_series(headers: list[ImageHeader]) -> list[Series]:
    """Files grouped by patient, study and series: patients, then visits by date, then series by number."""
    groups: dict[tuple, Series] = {}
    for header in headers:
        series_key = header.series_uid or f"number-{header.series_number}"
        key = (header.patient_id, header.study_uid, series_key)
        if key not in groups:
            groups[key] = Series(header.patient_id, header.study_uid, series_key, header.series_number,
                                 header.description)
        groups[key].headers.append(header)
    return sorted(groups.values(), key=lambda s: (s.patient_id, s.first.study_date, s.first.study_time, s.study_uid,
                                                   s.number if s.number is not None else -1, s.series_uid))


def why_not_megre(series: Series) -> str | None:
    """The reason a series cannot be (part of) a multi-echo GRE, or None when it can."""
    first = series.first
    if first.modality and first.modality != "MR":
        return f"not MR (modality {first.modality})"
    if any(h.localizer for h in series.headers):
        return "localizer"
    if any(h.derived for h in series.headers):
        return "derived image (" + "\\".join(first.image_type) + "), not the scanner's magnitude or phase"
    if not all(h.gradient_echo for h in series.headers):
        return f"not a gradient-echo sequence ({first.sequence})"
    echoes = series.echo_times_ms
    if len(echoes) < 2:
        return "single echo" if echoes else "no echo time in the header"
    return None


def find_acquisitions(series: list[Series]) -> tuple[list[Acquisition], list[Skip]]:
    """The multi-echo GRE acquisitions among the series of one study, and what was skipped."""
    skips: list[Skip] = []
    candidates: list[Series] = []
    for item in series:
        reason = why_not_megre(item)
        if reason is None:
            candidates.append(item)
        else:
            skips.append(Skip(item.name(), reason, item.patient_id))
    acquisitions: list[Acquisition] = []
    by_signature: dict[tuple, list[Series]] = {}
    for item in candidates:
        parts = item.parts
        if {"mag", "phase"} <= parts:
            acquisitions.append(Acquisition([item]))
        elif {"real", "imag"} <= parts:
            acquisitions.append(Acquisition([item], complex_parts=True))
        else:
            by_signature.setdefault(item.signature, []).append(item)
    for group in by_signature.values():
        paired, leftover = _pair_mag_phase(group)
        acquisitions.extend(paired)
        for item in leftover:
            parts = item.parts
            if "mag" in parts:
                reason = "magnitude without phase (no phase series with the same echo times and geometry)"
            elif "phase" in parts:
                reason = "phase without magnitude (no magnitude series with the same echo times and geometry)"
            else:
                reason = "only " + " and ".join(sorted(parts)) + " images, no magnitude and phase"
            skips.append(Skip(item.name(), reason, item.patient_id))
    complete = []
    for acquisition in acquisitions:
        reason = why_incomplete(acquisition)
        if reason is None:
            complete.append(acquisition)
        else:
            skips.append(Skip(acquisition.name(), reason, acquisition.first.patient_id))
    complete.sort(key=lambda a: min(s.number if s.number is not None else -1 for s in a.series))
    return complete, skips


def why_incomplete(acquisition: Acquisition) -> str | None:
    """Why the files of an acquisition cannot make volumes on one grid, or None.

    Each part of each echo of a single-frame export is one file per slice: a part or echo with
    fewer files lost some (missing or unreadable), and dcm2niix would write a shorter volume.
    Enhanced files hold all their frames and are compared after conversion.
    """
    counts: dict[tuple[str, float], int] = {}
    for header in acquisition.files:
        if not header.enhanced:
            for key in ((part, te) for part in header.parts for te in header.echo_times_ms):
                counts[key] = counts.get(key, 0) + 1
    if len(set(counts.values())) <= 1:
        return None
    most = max(counts.values())  # files go missing, never appear
    fewer = ", ".join(f"{part} at TE {te:g} ms {n}" for (part, te), n in sorted(counts.items()) if n < most)
    return f"unequal numbers of slices ({fewer}, the others {most}): DICOM files missing or unreadable"


def _pair_mag_phase(group: list[Series]) -> tuple[list[Acquisition], list[Series]]:
    """Magnitude series paired with the nearest phase series (after it first) of equal signature."""
    magnitudes = [s for s in group if s.parts == {"mag"}]
    phases = [s for s in group if s.parts == {"phase"}]
    others = [s for s in group if s not in magnitudes and s not in phases]
    paired: list[Acquisition] = []
    unused = list(phases)
    for magnitude in magnitudes:
        number = magnitude.number if magnitude.number is not None else 0

        def distance(phase: Series) -> tuple[int, int]:
            delta = (phase.number if phase.number is not None else 0) - number
            return (0 if delta > 0 else 1, abs(delta))

        if not unused:
            others.append(magnitude)
            continue
        phase = min(unused, key=distance)
        unused.remove(phase)
        paired.append(Acquisition([magnitude, phase]))
    return paired, others + unused
