"""Who and when: BIDS subject and session labels, and the participant columns from DICOM.

Subjects are named by a mapping file when given, else by their PatientID with everything
but letters and digits removed. A subject's visits (studies) become sessions when it has
several, named by study date (``ses-20240131``; the study time is appended when two studies
share a date); a subject with one study has no session unless the mapping file names one.

The mapping file is a TSV with the columns ``PatientID`` and ``participant_id`` (``sub-``
optional), and optionally ``session_id`` (``ses-`` optional), ``StudyDate`` (YYYYMMDD; the
row applies to that visit only) and ``group``. Patients not in a given mapping file are not
converted.
"""

from __future__ import annotations

import datetime as _dt
import os
import re
from dataclasses import dataclass
from pathlib import Path

from qsmiron.errors import InputError
from qsmiron.io.dicom.headers import ImageHeader

MAPPING_COLUMNS = ("PatientID", "participant_id", "session_id", "StudyDate", "group")
_DAYS_PER_YEAR = 365.2425


@dataclass(frozen=True)
class MappingRow:
    participant: str  # label without "sub-"
    session: str | None  # label without "ses-"
    study_date: str | None
    group: str | None


def _without_prefix(text: str) -> str:
    return re.sub(r"^(sub|ses)-", "", str(text).strip())


def _letters_and_digits(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]", "", text)


def bids_label(text: str, what: str) -> str:
    """A BIDS label (letters and digits only) made from ``text``; ``sub-``/``ses-`` prefixes dropped."""
    cleaned = _letters_and_digits(_without_prefix(text))
    if not cleaned:
        raise InputError(f"cannot make a BIDS {what} label from {text!r} (no letters or digits)")
    return cleaned


def given_label(text: str, what: str) -> str:
    """A label the user chose (``--subject``, ``--session``, the mapping file): kept as written,
    ``sub-``/``ses-`` prefix dropped, or refused when it is not a BIDS label.

    Not cleaned like a PatientID (``bids_label``): the clinical tables and study files name
    participants by the labels the user wrote, and a silently changed one would no longer join them.
    """
    label = _without_prefix(text)
    cleaned = _letters_and_digits(label)
    if not label or cleaned != label:
        raise InputError(f"{what} label {text!r} is not a BIDS label: letters and digits only"
                         + (f" (e.g. {cleaned})" if cleaned else ""))
    return label


def read_mapping(path: str | os.PathLike) -> dict[str, list[MappingRow]]:
    """The mapping file as PatientID -> its rows (one, or one per visit with ``StudyDate``).

    Raises
    ------
    InputError
        Missing file or columns, an empty label, or a PatientID mapped twice for one visit.
    """
    from qsmiron.io.participants import read_text_table

    path = Path(path)
    table = read_text_table(path, "mapping file")
    missing = [c for c in ("PatientID", "participant_id") if c not in table.columns]
    if missing:
        raise InputError(f"the mapping file has no {' or '.join(missing)} column (columns: "
                         f"{', '.join(table.columns)}; expected {', '.join(MAPPING_COLUMNS)})", path)
    rows: dict[str, list[MappingRow]] = {}
    for number, record in enumerate(table.to_dict("records"), start=2):
        patient = record.get("PatientID")
        label = record.get("participant_id")
        if not isinstance(patient, str) or not isinstance(label, str):
            raise InputError(f"line {number}: PatientID and participant_id must both be given", path)
        try:
            participant = given_label(label, "participant_id")
            session = record.get("session_id")
            session = given_label(session, "session_id") if isinstance(session, str) else None
        except InputError as error:
            raise InputError(f"line {number}: {error.message}", path) from None
        date = record.get("StudyDate")
        group = record.get("group")
        row = MappingRow(participant, session, date.strip() if isinstance(date, str) else None,
                         group.strip() if isinstance(group, str) else None)
        previous = rows.setdefault(patient.strip(), [])
        if any(p.study_date == row.study_date for p in previous):
            raise InputError(f"line {number}: PatientID {patient!r} is mapped twice"
                             + (f" for StudyDate {row.study_date}" if row.study_date else ""), path)
        previous.append(row)
    return rows


def mapping_row(rows: dict[str, list[MappingRow]], patient_id: str, study_date: str) -> MappingRow | None:
    """The row for this patient's visit: the one with its StudyDate, else the one without a date."""
    candidates = rows.get(patient_id.strip(), [])
    for row in candidates:
        if row.study_date == study_date:
            return row
    for row in candidates:
        if row.study_date is None:
            return row
    return None


def _date(text: str) -> _dt.date | None:
    try:
        return _dt.datetime.strptime(text.strip()[:8], "%Y%m%d").date()
    except (ValueError, AttributeError):
        return None


def age_years(header: ImageHeader) -> float | None:
    """Age at the study, years: PatientAge (``045Y``, ``030M``, ``012W``, ``090D``), else
    PatientBirthDate to StudyDate. Whole years from one year on (as PatientAge gives them);
    two decimals below."""
    match = re.fullmatch(r"(\d{1,3})([DWMY])", header.patient_age.strip().upper())
    if match:
        value, unit = int(match.group(1)), match.group(2)
        years = {"D": value / _DAYS_PER_YEAR, "W": 7 * value / _DAYS_PER_YEAR, "M": value / 12, "Y": value}[unit]
        if unit == "Y" and value == 0 and not header.patient_birth_date:
            return None  # "000Y" is how some scanners say "unknown"
    else:
        born, scanned = _date(header.patient_birth_date), _date(header.study_date)
        if born is None or scanned is None or scanned < born:
            return None
        years = (scanned - born).days / _DAYS_PER_YEAR
        if years >= 1:  # completed years, as on a birthday
            whole = scanned.year - born.year - ((scanned.month, scanned.day) < (born.month, born.day))
            return float(whole)
    return float(int(years)) if years >= 1 else round(years, 2)


def sex_code(header: ImageHeader) -> str | None:
    """``M``, ``F`` or ``O`` from PatientSex; None when absent."""
    value = header.patient_sex.strip().upper()
    return value if value in ("M", "F", "O") else None


def session_labels(studies: list[tuple[str, str, str]]) -> dict[str, str]:
    """Session label per study UID from (uid, StudyDate, StudyTime): the date, plus the time on a tie."""
    by_date: dict[str, list[tuple[str, str]]] = {}
    for uid, date, time in studies:
        by_date.setdefault(re.sub(r"\D", "", date) or "nodate", []).append((uid, re.sub(r"\D", "", time)))
    labels: dict[str, str] = {}
    for date, items in by_date.items():
        if len(items) == 1:
            labels[items[0][0]] = date
            continue
        for index, (uid, time) in enumerate(sorted(items, key=lambda item: item[1]), start=1):
            labels[uid] = f"{date}{time[:6] or index}"
    if len(set(labels.values())) != len(labels):  # same date and time: number them
        for index, uid in enumerate(sorted(labels, key=lambda u: labels[u]), start=1):
            labels[uid] = f"{labels[uid]}n{index}"
    return labels
