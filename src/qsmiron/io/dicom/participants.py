"""``participants.tsv``/``.json`` and per-subject ``sessions.tsv`` written by ``qsmiron convert``.

Columns: ``participant_id``, ``age`` (years, at the first visit converted), ``sex`` (M/F/O),
``group`` (from the mapping file); ``n/a`` where the DICOM (or the mapping file) does not say.
An existing ``participants.tsv`` keeps its rows, values and columns; new subjects are added
and new columns filled with ``n/a`` for the old rows. A subject with sessions also gets
``sub-<label>/sub-<label>_sessions.tsv`` with the age at each visit.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from qsmiron.errors import InputError
from qsmiron.io.atomic import write_json_atomic, write_tsv_atomic

PARTICIPANTS_JSON = {
    "participant_id": {"Description": "BIDS subject label (sub-<label>)"},
    "age": {"Description": "age at the first converted visit, from the DICOM PatientAge, else from "
                           "PatientBirthDate and StudyDate (whole years from one year on)",
            "Units": "year"},
    "sex": {"Description": "sex as recorded in the DICOM PatientSex",
            "Levels": {"M": "male", "F": "female", "O": "other"}},
    "group": {"Description": "study group, from the mapping file given to qsmiron convert"},
}
SESSIONS_JSON = {
    "session_id": {"Description": "BIDS session label (ses-<label>): the study date, YYYYMMDD"},
    "age": {"Description": "age at this visit (see participants.json)", "Units": "year"},
}


@dataclass
class ParticipantInfo:
    """What the DICOM and the mapping file say about one subject."""

    participant_id: str
    group: str | None
    sessions: dict[str | None, tuple[str, float | None]] = field(default_factory=dict)
    sex: str | None = None

    def add_session(self, session: str | None, study_date: str, age: float | None, sex: str | None) -> None:
        self.sessions.setdefault(session, (study_date, age))
        self.sex = self.sex or sex

    @property
    def age(self) -> float | None:
        """Age at the earliest visit that gives one."""
        dated = sorted(self.sessions.values(), key=lambda item: item[0])
        return next((age for _, age in dated if age is not None), None)


def _cell(value) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


@dataclass
class ExistingTables:
    """The participant files a BIDS folder already holds, as read before any conversion.

    Read first so that an unreadable one stops ``qsmiron convert`` before it writes an image:
    found only after the images, it left them converted but missing from ``participants.tsv``,
    and the next run skipped them as already converted.
    """

    participants: pd.DataFrame | None = None
    dictionary: dict = field(default_factory=dict)
    sessions: dict[str, pd.DataFrame] = field(default_factory=dict)


def _json_object(path: Path) -> dict:
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"cannot be read as JSON ({exc})", path) from None
    if not isinstance(payload, dict):
        raise InputError("is not a JSON object (a data dictionary maps column names to descriptions)", path)
    return payload


def read_existing_tables(bids_dir: Path, participant_ids=()) -> ExistingTables:
    """``participants.tsv``, ``participants.json`` and the sessions tables of ``participant_ids``
    (``sub-<label>``) already in ``bids_dir`` (none when it is new).

    Raises
    ------
    InputError
        One of them cannot be read, or ``participants.tsv`` has no ``participant_id`` column.
    """
    from qsmiron.io.participants import read_text_table

    existing = ExistingTables()
    path = bids_dir / "participants.tsv"
    if path.exists():
        existing.participants = read_text_table(path, "participants.tsv").fillna("n/a")
        if "participant_id" not in existing.participants.columns:
            raise InputError("has no participant_id column", path)
    if (bids_dir / "participants.json").exists():
        existing.dictionary = _json_object(bids_dir / "participants.json")
    for participant_id in sorted(participant_ids):
        sessions = bids_dir / participant_id / f"{participant_id}_sessions.tsv"
        if sessions.exists():
            existing.sessions[participant_id] = read_text_table(sessions, "sessions table").fillna("n/a")
    return existing


def write_participant_files(bids_dir: Path, infos: list[ParticipantInfo],
                            existing: ExistingTables | None = None) -> None:
    """Add the subjects to ``participants.tsv`` (+ ``.json``) and write their sessions tables.

    ``existing``: the folder's tables as :func:`read_existing_tables` read them (default: read now).
    """
    if existing is None:
        existing = read_existing_tables(bids_dir, [info.participant_id for info in infos])
    path = bids_dir / "participants.tsv"
    new = pd.DataFrame([{"participant_id": info.participant_id, "age": _cell(info.age), "sex": _cell(info.sex),
                         "group": _cell(info.group)} for info in infos], dtype=str)
    if existing.participants is not None:
        old = existing.participants
        new = new[~new["participant_id"].isin(old["participant_id"])]
        columns = list(old.columns) + [c for c in new.columns if c not in old.columns]
        table = pd.concat([old, new], ignore_index=True).reindex(columns=columns).fillna("n/a")
    else:
        table = new
    write_tsv_atomic(path, table)
    dictionary = dict(existing.dictionary)
    for column in table.columns:
        if column in PARTICIPANTS_JSON and column not in dictionary:
            dictionary[column] = PARTICIPANTS_JSON[column]
    write_json_atomic(bids_dir / "participants.json", dictionary)
    with_sessions = [info for info in infos if any(s is not None for s in info.sessions)]
    for info in with_sessions:
        _write_sessions(bids_dir / info.participant_id, info, existing.sessions.get(info.participant_id))
    if with_sessions and not (bids_dir / "sessions.json").exists():
        write_json_atomic(bids_dir / "sessions.json", SESSIONS_JSON)


def _write_sessions(subject_dir: Path, info: ParticipantInfo, old: pd.DataFrame | None) -> None:
    path = subject_dir / f"{info.participant_id}_sessions.tsv"
    rows = {f"ses-{s}": _cell(age) for s, (_, age) in info.sessions.items() if s is not None}
    if old is not None:
        for _, row in old.iterrows():
            rows.setdefault(str(row.get("session_id")), str(row.get("age", "n/a")))
    table = pd.DataFrame({"session_id": sorted(rows), "age": [rows[k] for k in sorted(rows)]}, dtype=str)
    write_tsv_atomic(path, table)
