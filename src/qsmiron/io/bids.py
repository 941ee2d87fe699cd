"""BIDS discovery and dataset-level validation of multi-echo GRE inputs.

A dataset holds, per subject and optionally per session,
``sub-<label>/[ses-<label>/]anat/sub-<label>[_ses-<label>]_echo-<n>_part-<mag|phase>_MEGRE.nii[.gz]``
with JSON sidecars giving ``EchoTime`` (s) and ``MagneticFieldStrength`` (T), a
``participants.tsv`` at the top and optionally a T1w image. Sidecar values follow the BIDS
inheritance principle: a JSON file higher in the tree (``echo-1_part-mag_MEGRE.json`` at the
top, say) applies to every image whose entities include its own, and the sidecar next to the
image wins.

``discover_bids`` lists what is there without judging it; ``validate_dataset`` then lists
every problem of the whole dataset at once (missing echoes, magnitude and phase echo sets
that differ, inconsistent echo times, missing sidecar fields, no phase, unreadable files) so
that a user fixes them in one go, and the pipeline carries on with the subjects that have
none (``valid_subjects``).
"""

from __future__ import annotations

import csv
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from qsmiron.errors import InputError
from qsmiron.io.nifti import NIFTI_SUFFIXES, check_geometry, open_image, strip_nifti_suffix

MEGRE_SUFFIX = "MEGRE"
REQUIRED_SIDECAR_FIELDS = ("EchoTime", "MagneticFieldStrength")
ECHO_TIME_MATCH_TOL_S = 1e-6
"""Magnitude and phase of one echo must agree on EchoTime to within this (s)."""
FIELD_STRENGTH_MATCH_TOL_T = 0.01
MAX_PLAUSIBLE_ECHO_TIME_S = 1.0
"""A larger EchoTime is almost surely in milliseconds, not seconds as BIDS requires."""

_ENTITY = re.compile(r"^([a-zA-Z0-9]+)-([a-zA-Z0-9]+)$")


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the dataset.

    Attributes
    ----------
    participant_id : str or None
        ``sub-<label>``; None for a problem of the whole dataset.
    path : Path or None
        The file or folder the problem is in.
    message : str
        What is wrong, in one sentence.
    fatal : bool
        True when the subject cannot be processed; False for a warning (for example a subject
        missing from ``participants.tsv``: its maps are made, the group analysis leaves it out).
    session : str or None
        ``ses-<label>`` when the dataset has sessions.
    """

    participant_id: str | None
    path: Path | None
    message: str
    fatal: bool = True
    session: str | None = None

    def one_line(self) -> str:
        where = self.participant_id or "dataset"
        if self.session:
            where = f"{where} {self.session}"
        location = f" ({self.path})" if self.path is not None else ""
        kind = "error" if self.fatal else "warning"
        return f"{where}: {kind}: {self.message}{location}"


@dataclass
class SubjectInputs:
    """The multi-echo GRE inputs of one subject (and session) as found on disk.

    Attributes
    ----------
    participant_id : str
        ``sub-<label>``.
    session : str or None
        ``ses-<label>``, or None in a dataset without sessions.
    anat_dir : Path
    magnitude_echoes, phase_echoes : dict of int to Path
        Echo number -> image.
    metadata : dict of Path to dict
        The resolved JSON sidecar (inheritance applied) of every image.
    sidecar_files : dict of Path to list of Path
        The JSON files each image's metadata came from, top of the tree first.
    t1w : Path or None
    discovery_problems : list of Problem
        What was already wrong while listing files (bad names, unreadable JSON, ...).
    """

    participant_id: str
    session: str | None
    anat_dir: Path
    magnitude_echoes: dict[int, Path] = field(default_factory=dict)
    phase_echoes: dict[int, Path] = field(default_factory=dict)
    metadata: dict[Path, dict[str, Any]] = field(default_factory=dict)
    sidecar_files: dict[Path, list[Path]] = field(default_factory=dict)
    t1w: Path | None = None
    discovery_problems: list[Problem] = field(default_factory=list)

    @property
    def label(self) -> str:
        """``sub-01`` or ``sub-01_ses-1``: the prefix of this unit's file names."""
        return self.participant_id if self.session is None else f"{self.participant_id}_{self.session}"

    @property
    def relative_dir(self) -> Path:
        """``sub-01`` or ``sub-01/ses-1``: where this unit lives in a BIDS tree."""
        return Path(self.participant_id) if self.session is None else Path(self.participant_id, self.session)

    @property
    def echo_numbers(self) -> list[int]:
        return sorted(self.magnitude_echoes)

    @property
    def magnitude(self) -> list[Path]:
        return [self.magnitude_echoes[n] for n in sorted(self.magnitude_echoes)]

    @property
    def phase(self) -> list[Path]:
        return [self.phase_echoes[n] for n in sorted(self.phase_echoes)]

    @property
    def echo_times_s(self) -> list[float | None]:
        """EchoTime of each magnitude echo (None where the sidecars do not give it)."""
        return [_as_float(self.metadata.get(path, {}).get("EchoTime")) for path in self.magnitude]

    @property
    def field_strength_t(self) -> float | None:
        """MagneticFieldStrength of the first image that gives it."""
        for path in self.magnitude + self.phase:
            value = _as_float(self.metadata.get(path, {}).get("MagneticFieldStrength"))
            if value is not None:
                return value
        return None

    def input_files(self) -> list[Path]:
        """Every file whose content the results depend on (images and JSON sidecars)."""
        files: list[Path] = []
        for path in self.magnitude + self.phase:
            files.append(path)
            files.extend(self.sidecar_files.get(path, []))
        seen: set[Path] = set()
        return [p for p in files if not (p in seen or seen.add(p))]


def _as_float(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    return None


def parse_bids_name(name: str) -> tuple[dict[str, str], str, str] | None:
    """Split a BIDS file name into (entities, suffix, extension); None when it is not one.

    >>> parse_bids_name("sub-01_echo-2_part-phase_MEGRE.nii.gz")
    ({'sub': '01', 'echo': '2', 'part': 'phase'}, 'MEGRE', '.nii.gz')
    """
    extension = ""
    for candidate in NIFTI_SUFFIXES + (".json", ".tsv"):
        if name.endswith(candidate):
            extension = candidate
            break
    if not extension:
        return None
    parts = name[: -len(extension)].split("_")
    if not parts:
        return None
    suffix = parts[-1]
    entities: dict[str, str] = {}
    for part in parts[:-1]:
        match = _ENTITY.match(part)
        if match is None:
            return None
        entities[match.group(1)] = match.group(2)
    if not suffix.isalnum():
        return None
    return entities, suffix, extension


def _applicable_sidecars(image: Path, bids_root: Path) -> list[Path]:
    """JSON files that apply to ``image`` under BIDS inheritance, least specific first."""
    parsed = parse_bids_name(image.name)
    if parsed is None:
        return []
    entities, suffix, _ = parsed
    folders = [bids_root]
    relative = image.parent.relative_to(bids_root)
    for part in relative.parts:
        folders.append(folders[-1] / part)
    found: list[tuple[int, int, Path]] = []
    for depth, folder in enumerate(folders):
        if not folder.is_dir():
            continue
        for candidate in folder.glob(f"*{suffix}.json"):
            parsed_json = parse_bids_name(candidate.name)
            if parsed_json is None or parsed_json[1] != suffix:
                continue
            json_entities = parsed_json[0]
            if all(entities.get(key) == value for key, value in json_entities.items()):
                found.append((depth, len(json_entities), candidate))
    found.sort(key=lambda item: (item[0], item[1], item[2].name))
    return [path for _, _, path in found]


def _read_json(path: Path) -> dict[str, Any]:
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"the JSON sidecar cannot be read ({exc})", path) from None
    if not isinstance(payload, dict):
        raise InputError("the JSON sidecar is not a JSON object", path)
    return payload


def read_dataset_description(bids_dir: str | os.PathLike) -> dict[str, Any] | None:
    """The dataset's ``dataset_description.json``; None when the dataset has none.

    Raises
    ------
    InputError
        When the file is not valid JSON, not a JSON object, or has no ``Name`` (BIDS requires
        one): a broken description is a sign of a broken copy, not something to ignore.
    """
    path = Path(bids_dir) / "dataset_description.json"
    if not path.exists():
        return None
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"is not valid JSON ({exc})", path) from None
    if not isinstance(payload, dict):
        raise InputError("must hold a JSON object", path)
    if not isinstance(payload.get("Name"), str) or not payload["Name"].strip():
        raise InputError("has no Name, which BIDS requires", path)
    return payload


def _subject_folders(bids_dir: Path) -> list[Path]:
    return sorted(p for p in bids_dir.glob("sub-*") if p.is_dir())


def discover_bids(bids_dir: str | os.PathLike, participant_labels: Iterable[str] | None = None) -> list[SubjectInputs]:
    """List the multi-echo GRE inputs of every subject (and session) of a BIDS dataset.

    Nothing is judged here beyond what is needed to list files: problems met on the way are
    kept in ``SubjectInputs.discovery_problems`` and reported by ``validate_dataset``.

    Parameters
    ----------
    bids_dir : str or PathLike
        The dataset's top folder (holding ``sub-*`` folders and ``participants.tsv``).
    participant_labels : iterable of str, optional
        Only these subjects (``01`` or ``sub-01``).

    Returns
    -------
    list of SubjectInputs
        One per subject, or per subject and session, sorted by label.

    Raises
    ------
    InputError
        When the folder does not exist, has no ``sub-*`` folder, or a requested label is absent.
    """
    bids_dir = Path(bids_dir)
    if not bids_dir.is_dir():
        raise InputError("BIDS folder not found", bids_dir)
    read_dataset_description(bids_dir)
    folders = _subject_folders(bids_dir)
    if not folders:
        raise InputError("no sub-* folder: not a BIDS dataset", bids_dir)
    if participant_labels is not None:
        wanted = {label if label.startswith("sub-") else f"sub-{label}" for label in participant_labels}
        present = {folder.name for folder in folders}
        missing = sorted(wanted - present)
        if missing:
            raise InputError(f"no folder for participant(s) {', '.join(missing)}", bids_dir)
        folders = [folder for folder in folders if folder.name in wanted]

    units: list[SubjectInputs] = []
    for subject_dir in folders:
        sessions = sorted(p for p in subject_dir.glob("ses-*") if p.is_dir())
        if sessions:
            for session_dir in sessions:
                units.append(_discover_unit(bids_dir, subject_dir.name, session_dir.name, session_dir / "anat"))
        else:
            units.append(_discover_unit(bids_dir, subject_dir.name, None, subject_dir / "anat"))
    return units


def _discover_unit(bids_dir: Path, participant_id: str, session: str | None, anat_dir: Path) -> SubjectInputs:
    unit = SubjectInputs(participant_id=participant_id, session=session, anat_dir=anat_dir)

    def problem(message: str, path: Path | None, fatal: bool = True) -> None:
        unit.discovery_problems.append(Problem(participant_id, path, message, fatal, session))

    if not anat_dir.is_dir():
        return unit
    series: dict[str, list[Path]] = {}
    real_imag: list[Path] = []
    t1w: list[Path] = []
    for path in sorted(anat_dir.iterdir()):
        name = path.name
        if not any(name.endswith(s) for s in NIFTI_SUFFIXES):
            continue
        parsed = parse_bids_name(name)
        if parsed is None:
            if f"_{MEGRE_SUFFIX}." in name:
                problem("the file name is not a valid BIDS name", path)
            continue
        entities, suffix, _ = parsed
        if suffix == "T1w":
            t1w.append(path)
            continue
        if suffix != MEGRE_SUFFIX:
            continue
        if entities.get("sub") != participant_id[4:] or (session is not None and entities.get("ses") != session[4:]):
            problem("the sub-/ses- entities in the file name do not match its folder", path)
            continue
        part = entities.get("part", "mag")
        if part in ("real", "imag"):
            real_imag.append(path)
            continue
        if part not in ("mag", "phase"):
            problem(f"unknown part-{part}; expected part-mag or part-phase", path)
            continue
        if "echo" not in entities:
            problem("the file name has no echo-<n> entity; qsmiron expects one file per echo", path)
            continue
        if not entities["echo"].isdigit():
            problem(f"echo-{entities['echo']} is not an echo number", path)
            continue
        key = "_".join(f"{k}-{v}" for k, v in entities.items() if k not in ("echo", "part"))
        series.setdefault(key, []).append(path)

    if len(series) > 1:
        problem("several MEGRE series (" + ", ".join(sorted(series)) + "); keep one per subject and session "
                "or move the others out of anat/", anat_dir)
        return unit
    if real_imag and not series:
        problem("only real/imaginary MEGRE parts were found; convert them to magnitude and phase", anat_dir)
    unit.t1w = t1w[0] if t1w else None
    for path in next(iter(series.values()), []):
        entities = parse_bids_name(path.name)[0]
        echo = int(entities["echo"])
        target = unit.phase_echoes if entities.get("part", "mag") == "phase" else unit.magnitude_echoes
        if echo in target:
            problem(f"two files for echo {echo} ({target[echo].name} and {path.name})", path)
            continue
        target[echo] = path
        sources = _applicable_sidecars(path, bids_dir)
        merged: dict[str, Any] = {}
        for source in sources:
            try:
                merged.update(_read_json(source))
            except InputError as error:
                problem(error.message, source)
        unit.metadata[path] = merged
        unit.sidecar_files[path] = sources
    return unit


def read_participant_ids(path: str | os.PathLike) -> list[str]:
    """The ``participant_id`` column of a ``participants.tsv``."""
    path = Path(path)
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle, delimiter="\t")
            if reader.fieldnames is None or "participant_id" not in reader.fieldnames:
                raise InputError("has no participant_id column", path)
            return [row["participant_id"].strip() for row in reader if row.get("participant_id")]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise InputError(f"cannot be read ({exc})", path) from None


def validate_dataset(bids_dir: str | os.PathLike, subjects: list[SubjectInputs], *,
                     check_data: bool = True, check_participants: bool = True) -> list[Problem]:
    """Every problem of the dataset, listed before any heavy work.

    Parameters
    ----------
    bids_dir : str or PathLike
    subjects : list of SubjectInputs
        From ``discover_bids``.
    check_data : bool
        Also read every voxel of every image (catches truncated or corrupt files; about a
        tenth of a second per compressed 1 mm volume). Headers are always read.
    check_participants : bool
        Check ``participants.tsv`` against the subject folders (needed by the group level).

    Returns
    -------
    list of Problem
        Fatal problems exclude the subject; the others are warnings.
    """
    bids_dir = Path(bids_dir)
    problems: list[Problem] = []
    for unit in subjects:
        problems.extend(validate_subject(unit, check_data=check_data))
    if check_participants:
        problems.extend(_check_participants(bids_dir, subjects))
    return problems


def _check_participants(bids_dir: Path, subjects: list[SubjectInputs]) -> list[Problem]:
    path = bids_dir / "participants.tsv"
    if not path.exists():
        return [Problem(None, path, "participants.tsv is missing: the maps and regional tables are made, "
                                    "but the group analysis needs it", fatal=False)]
    try:
        listed = read_participant_ids(path)
    except InputError as error:
        return [Problem(None, path, error.message, fatal=False)]
    problems = []
    listed_set = set(listed)
    duplicates = sorted({pid for pid in listed if listed.count(pid) > 1})
    if duplicates:
        problems.append(Problem(None, path, f"participant_id repeated: {', '.join(duplicates)}", fatal=False))
    for participant_id in sorted({unit.participant_id for unit in subjects}):
        if participant_id not in listed_set:
            problems.append(Problem(participant_id, path, "not listed in participants.tsv: the group analysis "
                                                          "will leave it out", fatal=False))
    return problems


def validate_subject(unit: SubjectInputs, *, check_data: bool = True) -> list[Problem]:
    """The problems of one subject (see ``validate_dataset``)."""
    problems = list(unit.discovery_problems)

    def problem(message: str, path: Path | None) -> None:
        problems.append(Problem(unit.participant_id, path, message, True, unit.session))

    if any(p.fatal for p in unit.discovery_problems) and not (unit.magnitude_echoes or unit.phase_echoes):
        return problems
    if not unit.anat_dir.is_dir():
        problem("no anat/ folder", unit.anat_dir)
        return problems
    if not unit.magnitude_echoes and not unit.phase_echoes:
        problem("no multi-echo GRE images (*_echo-<n>_part-<mag|phase>_MEGRE.nii[.gz]) in anat/", unit.anat_dir)
        return problems
    if not unit.phase_echoes:
        problem("no phase images (*_part-phase_MEGRE): QSM needs the phase", unit.anat_dir)
    if not unit.magnitude_echoes:
        problem("no magnitude images (*_part-mag_MEGRE)", unit.anat_dir)

    mag_set, phase_set = set(unit.magnitude_echoes), set(unit.phase_echoes)
    if mag_set and phase_set and mag_set != phase_set:
        only_mag = sorted(mag_set - phase_set)
        only_phase = sorted(phase_set - mag_set)
        detail = []
        if only_mag:
            detail.append(f"echo {_join(only_mag)} has magnitude but no phase")
        if only_phase:
            detail.append(f"echo {_join(only_phase)} has phase but no magnitude")
        problem("magnitude and phase echo sets differ: " + "; ".join(detail), unit.anat_dir)
    all_echoes = mag_set | phase_set
    from qsmiron.io.gre import MIN_ECHOES

    if 0 < len(mag_set) < MIN_ECHOES:
        problem(f"{len(mag_set)} echo; QSM needs at least {MIN_ECHOES} to remove the phase offset", unit.anat_dir)
    if all_echoes:
        expected = set(range(1, max(all_echoes) + 1))
        missing = sorted(expected - all_echoes)
        if missing:
            problem(f"echo {_join(missing)} missing (found echoes {_join(sorted(all_echoes))})", unit.anat_dir)

    # Sidecar fields.
    images = [(n, "magnitude", p) for n, p in sorted(unit.magnitude_echoes.items())] + \
             [(n, "phase", p) for n, p in sorted(unit.phase_echoes.items())]
    echo_times: dict[str, dict[int, float]] = {"magnitude": {}, "phase": {}}
    field_strengths: dict[Path, float] = {}
    for echo, part, path in images:
        meta = unit.metadata.get(path, {})
        missing_fields = [name for name in REQUIRED_SIDECAR_FIELDS if name not in meta]
        if missing_fields:
            applicable = unit.sidecar_files.get(path)
            if applicable:
                problem(f"sidecar has no {' or '.join(missing_fields)}", applicable[-1])
            else:
                problem(f"has no JSON sidecar (expected {_own_sidecar(path).name}), so its "
                        f"{' and '.join(missing_fields)} are unknown", path)
        te = meta.get("EchoTime")
        if "EchoTime" in meta:
            value = _as_float(te)
            if value is None or value <= 0:
                problem(f"EchoTime {te!r} is not a positive number of seconds", _sidecar_of(unit, path))
            elif value > MAX_PLAUSIBLE_ECHO_TIME_S:
                problem(f"EchoTime {value:g} looks like milliseconds; BIDS wants seconds", _sidecar_of(unit, path))
            else:
                echo_times[part][echo] = value
        if "MagneticFieldStrength" in meta:
            value = _as_float(meta["MagneticFieldStrength"])
            if value is None or value <= 0 or value > 20:
                problem(f"MagneticFieldStrength {meta['MagneticFieldStrength']!r} is not a field in tesla",
                        _sidecar_of(unit, path))
            else:
                field_strengths[path] = value

    for part, times in echo_times.items():
        ordered = [times[n] for n in sorted(times)]
        if any(b <= a for a, b in zip(ordered, ordered[1:])):
            problem(f"{part} echo times do not increase with the echo number "
                    f"({', '.join(f'echo {n}: {times[n]:g} s' for n in sorted(times))})", unit.anat_dir)
    for echo in sorted(set(echo_times["magnitude"]) & set(echo_times["phase"])):
        te_mag, te_phase = echo_times["magnitude"][echo], echo_times["phase"][echo]
        if abs(te_mag - te_phase) > ECHO_TIME_MATCH_TOL_S:
            problem(f"echo {echo}: EchoTime differs between magnitude ({te_mag:g} s) and phase ({te_phase:g} s)",
                    unit.phase_echoes[echo])
    if field_strengths:
        values = sorted(set(field_strengths.values()))
        if values[-1] - values[0] > FIELD_STRENGTH_MATCH_TOL_T:
            problem(f"MagneticFieldStrength differs between images ({', '.join(f'{v:g}' for v in values)} T)",
                    unit.anat_dir)

    problems.extend(_check_images(unit, images, check_data))
    return problems


def _check_images(unit: SubjectInputs, images, check_data: bool) -> list[Problem]:
    import nibabel as nib
    import numpy as np

    problems: list[Problem] = []
    reference = None
    for echo, part, path in images:
        try:
            # With the data checked, the whole file is read (gzip CRC included); otherwise
            # only the header, whose geometry is checked either way.
            image = open_image(path) if check_data else nib.load(str(path))
            shape = tuple(int(n) for n in image.shape)
            affine = np.asarray(image.affine, dtype=float)
            check_geometry(affine, path)
        except InputError as error:
            problems.append(Problem(unit.participant_id, path, error.message, True, unit.session))
            continue
        except Exception as exc:  # nibabel raises many types for a corrupt header
            problems.append(Problem(unit.participant_id, path, f"not a readable NIfTI image ({type(exc).__name__}: "
                                                               f"{_short(exc)})", True, unit.session))
            continue
        if len(shape) != 3 and not (len(shape) == 4 and shape[3] == 1):
            problems.append(Problem(unit.participant_id, path, f"expected one 3D volume per echo, got shape {shape}",
                                    True, unit.session))
            continue
        if reference is None:
            reference = (path, shape[:3], affine)
        elif shape[:3] != reference[1] or not np.allclose(affine, reference[2], atol=1e-3):
            problems.append(Problem(unit.participant_id, path, f"grid differs from {reference[0].name} "
                                                               f"(shape {shape[:3]} vs {reference[1]} or a different "
                                                               "affine)", True, unit.session))
            continue
        if check_data:
            try:
                data = np.asanyarray(image.dataobj)
            except Exception as exc:
                problems.append(Problem(unit.participant_id, path, f"the image data cannot be read "
                                                                   f"({type(exc).__name__}: {_short(exc)})",
                                        True, unit.session))
                continue
            if data.dtype.kind == "f" and not np.all(np.isfinite(data)):
                problems.append(Problem(unit.participant_id, path, "the image holds NaN or infinite values",
                                        True, unit.session))
            del data
    return problems


def _short(exc: Exception, limit: int = 160) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _own_sidecar(path: Path) -> Path:
    base = strip_nifti_suffix(path)
    return base.with_name(base.name + ".json")


def _sidecar_of(unit: SubjectInputs, path: Path) -> Path:
    sources = unit.sidecar_files.get(path)
    return sources[-1] if sources else _own_sidecar(path)


def _join(numbers: list[int]) -> str:
    return ", ".join(str(n) for n in numbers)


def valid_subjects(subjects: list[SubjectInputs], problems: list[Problem]) -> list[SubjectInputs]:
    """The subjects (and sessions) that no fatal problem excludes."""
    bad = {(p.participant_id, p.session) for p in problems if p.fatal and p.participant_id is not None}
    return [unit for unit in subjects if (unit.participant_id, unit.session) not in bad]


def format_problems(problems: list[Problem]) -> str:
    """All problems, one per line, fatal ones first."""
    ordered = sorted(problems, key=lambda p: (not p.fatal, p.participant_id or "", p.session or ""))
    return "\n".join(p.one_line() for p in ordered)
