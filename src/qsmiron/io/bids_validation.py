"""Validation of a BIDS dataset before any heavy work: every problem of every subject, listed.

Checks the participants table against the subject folders, each subject's echoes (both parts,
every echo number, the sidecar fields qsmiron needs, echo times increasing and in seconds,
one field strength) and its images (readable, one grid, finite values). A fatal problem
excludes the subject; a warning is reported and the subject goes ahead.
"""

from __future__ import annotations

import os
from pathlib import Path

from qsmiron.errors import InputError
from qsmiron.io.bids import (ECHO_TIME_MATCH_TOL_S, FIELD_STRENGTH_MATCH_TOL_T, REQUIRED_SIDECAR_FIELDS,
                             Problem, SubjectInputs, as_float, read_participant_ids)
from qsmiron.io.limits import ECHO_TIME_MS_THRESHOLD_S, FIELD_STRENGTH_RANGE_T, MIN_ECHOES
from qsmiron.io.nifti import open_header, open_image, strip_nifti_suffix
from qsmiron.io.participants import normalise_participant_id


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
        # A bare label (01) is sub-01 to the statistics, which read the table so.
        listed = [normalise_participant_id(pid) for pid in read_participant_ids(path)]
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
            problem(*_missing_fields_problem(unit, path, missing_fields))
        te = meta.get("EchoTime")
        if "EchoTime" in meta:
            value = as_float(te)
            if value is None or value <= 0:
                problem(f"EchoTime {te!r} is not a positive number of seconds", _sidecar_of(unit, path))
            elif value > ECHO_TIME_MS_THRESHOLD_S:
                problem(f"EchoTime {value:g} looks like milliseconds; BIDS wants seconds", _sidecar_of(unit, path))
            else:
                echo_times[part][echo] = value
        if "MagneticFieldStrength" in meta:
            value = as_float(meta["MagneticFieldStrength"])
            if value is None or not FIELD_STRENGTH_RANGE_T[0] <= value <= FIELD_STRENGTH_RANGE_T[1]:
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


def _missing_fields_problem(unit: SubjectInputs, path: Path, missing: list[str]) -> tuple[str, Path]:
    """What to say when required sidecar fields are missing: a JSON without them, or no JSON."""
    applicable = unit.sidecar_files.get(path)
    if applicable:
        return f"sidecar has no {' or '.join(missing)}", applicable[-1]
    return (f"has no JSON sidecar (expected {_own_sidecar(path).name}), so its "
            f"{' and '.join(missing)} are unknown", path)


def _check_images(unit: SubjectInputs, images, check_data: bool) -> list[Problem]:
    import numpy as np

    problems: list[Problem] = []
    reference = None
    for echo, part, path in images:
        try:
            # With the data checked, the whole file is read (gzip CRC included); otherwise
            # only the header, whose geometry is checked either way.
            image = open_image(path) if check_data else open_header(path)
            shape = tuple(int(n) for n in image.shape)
            affine = np.asarray(image.affine, dtype=float)
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
