"""BIDS discovery and dataset-level validation of multi-echo GRE inputs.

A dataset holds, per subject and optionally per session,
``sub-<label>/[ses-<label>/]anat/sub-<label>[_ses-<label>]_echo-<n>_part-<mag|phase>_MEGRE.nii[.gz]``
with JSON sidecars giving ``EchoTime`` (s) and ``MagneticFieldStrength`` (T), a
``participants.tsv`` at the top and optionally a T1w image. Sidecar values follow the BIDS
inheritance principle: a JSON file higher in the tree (``echo-1_part-mag_MEGRE.json`` at the
top, say) applies to every image whose entities include its own, and the sidecar next to the
image wins.

``discover_bids`` lists what is there without judging it; ``validate_dataset``
(``qsmiron.io.bids_validation``) then lists
every problem of the whole dataset at once (missing echoes, magnitude and phase echo sets
that differ, inconsistent echo times, missing sidecar fields, no phase, unreadable files) so
that a user fixes them in one go, and the pipeline carries on with the subjects that have
none (``valid_subjects``).
"""

from __future__ import annotations

import csv
import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from qsmiron.errors import InputError
from qsmiron.io.bids_filters import BidsFilters
from qsmiron.io.nifti import NIFTI_SUFFIXES

MEGRE_SUFFIX = "MEGRE"
REQUIRED_SIDECAR_FIELDS = ("EchoTime", "MagneticFieldStrength")
ECHO_TIME_MATCH_TOL_S = 1e-6
"""Magnitude and phase of one echo must agree on EchoTime to within this (s)."""
FIELD_STRENGTH_MATCH_TOL_T = 0.01
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
        return [as_float(self.metadata.get(path, {}).get("EchoTime")) for path in self.magnitude]

    @property
    def field_strength_t(self) -> float | None:
        """MagneticFieldStrength of the first image that gives it."""
        for path in self.magnitude + self.phase:
            value = as_float(self.metadata.get(path, {}).get("MagneticFieldStrength"))
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


def as_float(value: Any) -> float | None:
    """A sidecar's number as a float; None when it is not one, or not finite (JSON readers take
    ``NaN`` and ``Infinity``, which then passed every range check)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)) and math.isfinite(value):
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


def dataset_subject_folders(bids_dir: Path, participant_labels: Iterable[str] | None = None, *,
                            session_labels: Iterable[str] | None = None) -> list[Path]:
    """The ``sub-*`` folders of a dataset (only the requested ones), after the dataset-level checks.

    Cheap enough to run before anything is written, so that a wrong folder is refused before
    the output folder is made.

    Raises
    ------
    InputError
        When the folder does not exist, its ``dataset_description.json`` is missing or invalid,
        it has no ``sub-*`` folder, or a requested label is absent (a session label: from every
        requested subject).
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
        missing = sorted(wanted - {folder.name for folder in folders})
        if missing:
            raise InputError(f"no folder for participant(s) {', '.join(missing)}", bids_dir)
        folders = [folder for folder in folders if folder.name in wanted]
    if session_labels is not None:
        sessions = {label if label.startswith("ses-") else f"ses-{label}" for label in session_labels}
        if not any((folder / session).is_dir() for folder in folders for session in sessions):
            raise InputError(f"no subject has session(s) {', '.join(sorted(sessions))}", bids_dir)
    return folders


def check_outside_dataset(bids_dir: str | os.PathLike, folder: str | os.PathLike, role: str) -> None:
    """Refuse a folder a run writes into (``role``: output folder, work folder) that lies inside the
    BIDS dataset but not in its ``derivatives`` folder, where BIDS keeps processed data: anywhere
    else (a subject's ``anat``, say) the run would modify the input dataset.

    Raises
    ------
    InputError
        Naming ``folder``.
    """
    bids, target = Path(bids_dir).resolve(), Path(folder).resolve()
    if target.is_relative_to(bids) and not target.is_relative_to(bids / "derivatives"):
        raise InputError(f"the {role} lies inside the BIDS folder {bids_dir} (outside its derivatives folder), "
                         "and inputs are never modified: use BIDS_DIR/derivatives or a folder outside the dataset",
                         folder)


def discover_bids(bids_dir: str | os.PathLike, participant_labels: Iterable[str] | None = None, *,
                  session_labels: Iterable[str] | None = None, filters: BidsFilters | None = None
                  ) -> list[SubjectInputs]:
    """List the multi-echo GRE inputs of every subject (and session) of a BIDS dataset.

    Nothing is judged here beyond what is needed to list files: problems met on the way are
    kept in ``SubjectInputs.discovery_problems`` and reported by ``validate_dataset``.

    Parameters
    ----------
    bids_dir : str or PathLike
        The dataset's top folder (holding ``sub-*`` folders and ``participants.tsv``).
    participant_labels : iterable of str, optional
        Only these subjects (``01`` or ``sub-01``).
    session_labels : iterable of str, optional
        Only these sessions (``1`` or ``ses-1``); subjects without them are left out.
    filters : BidsFilters, optional
        Only the files these filters accept (``--bids-filter-file``, ``qsmiron.io.bids_filters``).

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
    folders = dataset_subject_folders(bids_dir, participant_labels, session_labels=session_labels)

    wanted_sessions = None if session_labels is None else \
        {label if label.startswith("ses-") else f"ses-{label}" for label in session_labels}
    units: list[SubjectInputs] = []
    filters = filters or BidsFilters()
    for subject_dir in folders:
        sessions = sorted(p for p in subject_dir.glob("ses-*") if p.is_dir())
        if wanted_sessions is not None:
            sessions = [p for p in sessions if p.name in wanted_sessions]
            if not sessions:
                continue
        if sessions:
            for session_dir in sessions:
                units.append(_discover_unit(bids_dir, subject_dir.name, session_dir.name, session_dir / "anat",
                                            filters))
        else:
            units.append(_discover_unit(bids_dir, subject_dir.name, None, subject_dir / "anat", filters))
    return units


def _discover_unit(bids_dir: Path, participant_id: str, session: str | None, anat_dir: Path,
                   filters: BidsFilters) -> SubjectInputs:
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
        if not filters.accepts(suffix, entities):
            continue
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
