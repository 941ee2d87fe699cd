"""The BIDS participants table: ``participants.tsv`` with its optional ``participants.json``.

What the reader guarantees to the statistics:

- ``participant_id`` in the ``sub-<label>`` form (a bare ``01`` becomes ``sub-01``), unique.
- ``n/a`` (the BIDS missing value) and empty cells are NaN.
- Columns whose every present value is a number are numeric; the others stay text.
- ``sex`` is normalised to ``"M"`` / ``"F"`` (``"O"`` for other), from any one of the
  codings M/F, male/female, man/woman (any case), or a numeric coding. A numeric coding is
  decided by the ``Levels`` of ``sex`` in ``participants.json`` when present (for example
  ``{"1": "male", "2": "female"}``); without Levels, 1/2 is read as ISO/IEC 5218
  (1 = male, 2 = female, 9 = not applicable) and the choice is recorded. Codings that
  cannot be decided (0/1 without Levels, letters mixed with numbers, unknown values) are an ``InputError``
  naming the file and the column.

The reader returns a ``ParticipantsTable``: the frame, and where it came from, its data
dictionary and the sex coding used, which the study results record for the report.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from qsmiron.errors import InputError

MISSING_VALUES = ("n/a", "N/A", "")
"""Cell values read as missing: BIDS ``n/a`` and an empty cell."""


@dataclass(frozen=True)
class ParticipantsTable:
    """A participants table and what the statistics record about it.

    Attributes
    ----------
    frame : DataFrame
        One row per participant (see :func:`read_participants`).
    source : str or None
        The file it was read from.
    data_dictionary : dict
        ``participants.json``.
    sex_coding : str or None
        How a numeric ``sex`` column was read.
    session : str or None
        The session whose values replaced the participants table's (``participants_at_session``).
    sessions_source : str or None
        The sessions table(s) those values came from.
    """

    frame: pd.DataFrame
    source: str | None = None
    data_dictionary: dict[str, Any] = field(default_factory=dict)
    sex_coding: str | None = None
    session: str | None = None
    sessions_source: str | None = None


@dataclass(frozen=True)
class SessionsTable:
    """Participants' values per session (BIDS sessions tables), and where they came from."""

    frame: pd.DataFrame
    source: str | None = None


def read_text_table(path: str | os.PathLike, what: str) -> pd.DataFrame:
    """A BIDS-style TSV as text columns, ``n/a`` and empty cells as missing.

    Every cell stays a string (ids such as ``001`` keep their zeros); callers convert the
    columns they use. ``what`` names the table in the error of a missing file.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{what} not found", path)
    try:
        return pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False,
                           na_values=list(MISSING_VALUES))
    except (OSError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise InputError(f"cannot be read as a tab-separated table ({exc})", path) from None


_SEX_WORDS = {
    "m": "M", "male": "M", "man": "M",
    "f": "F", "female": "F", "woman": "F",
    "o": "O", "other": "O",
}
ISO_5218_SEX = {"1": "M", "2": "F"}
"""ISO/IEC 5218 codes used for a numeric sex column without ``Levels``."""
_ISO_5218_UNKNOWN = {"9"}
# ISO/IEC 5218 also has 0 = "not known", but a 0 next to 1 far more often means a 0/1 coding
# whose direction cannot be told: 0 without Levels is an error.

_LABEL = re.compile(r"^[A-Za-z0-9]+$")


def normalise_participant_id(value: Any) -> str | None:
    """``"01"`` or ``"sub-01"`` -> ``"sub-01"``; missing -> None; surrounding spaces removed.

    Numbers read as floats (``1.0``) are written back as integers (``sub-1``).
    """
    return _bids_entity(value, "sub-")


def normalise_session_id(value: Any) -> str | None:
    """``"1"`` or ``"ses-1"`` -> ``"ses-1"``; missing -> None; as :func:`normalise_participant_id`."""
    return _bids_entity(value, "ses-")


def _bids_entity(value: Any, prefix: str) -> str | None:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        value = int(value)
    text = str(value).strip()
    if text in MISSING_VALUES:
        return None
    return text if text.startswith(prefix) else f"{prefix}{text}"


def participants_json_path(tsv_path: str | os.PathLike) -> Path:
    """The BIDS data dictionary beside a participants table (same stem, ``.json``)."""
    path = Path(tsv_path)
    return path.with_suffix(".json")


def read_participants(path: str | os.PathLike) -> ParticipantsTable:
    """Read a BIDS participants table and validate it.

    Parameters
    ----------
    path : str or path-like
        ``participants.tsv``; a ``participants.json`` beside it (same stem) is read when
        present.

    Returns
    -------
    ParticipantsTable
        ``frame``: one row per participant, default integer index, ``participant_id`` first.
        Missing values are NaN, numeric columns are float or int, ``sex`` (when present)
        holds ``"M"``, ``"F"``, ``"O"`` or NaN.

    Raises
    ------
    InputError
        The file is missing or unreadable, has no ``participant_id`` column, has missing or
        duplicated ids, or a sex coding that cannot be decided.
    """
    path = Path(path)
    frame = read_text_table(path, "participants table")
    frame.columns = [str(column).strip() for column in frame.columns]
    if "participant_id" not in frame.columns:
        found = ", ".join(frame.columns) or "none"
        raise InputError(f"has no 'participant_id' column (columns found: {found}); "
                         "is it tab-separated?", path)
    if frame.columns.duplicated().any():
        repeated = sorted(set(frame.columns[frame.columns.duplicated()]))
        raise InputError(f"repeats the column(s) {', '.join(repeated)}", path)
    dictionary = _read_data_dictionary(participants_json_path(path))

    frame = frame.apply(_strip_missing)
    ids = frame["participant_id"].map(normalise_participant_id)
    if ids.isna().any():
        rows = [int(i) + 2 for i in np.flatnonzero(ids.isna())]
        raise InputError(f"column 'participant_id' is empty on line(s) {_first(rows)}", path)
    bad = [value for value in ids if not _LABEL.match(value[4:])]
    if bad:
        raise InputError(f"column 'participant_id' holds labels that are not alphanumeric "
                         f"(BIDS): {_first(bad)}", path)
    duplicated = sorted(set(ids[ids.duplicated()]))
    if duplicated:
        raise InputError(f"column 'participant_id' repeats {_first(duplicated)}", path)
    frame["participant_id"] = ids

    sex_coding = None
    for column in frame.columns:
        if column == "participant_id":
            continue
        if column == "sex":
            levels = (dictionary.get("sex") or {}).get("Levels") if isinstance(
                dictionary.get("sex"), dict) else None
            if levels is not None and not isinstance(levels, dict):  # read as code -> description
                raise InputError(f"the Levels of 'sex' must map each code to its meaning (e.g. {{\"1\": "
                                 f"\"male\", \"2\": \"female\"}}), got {levels!r}", participants_json_path(path))
            frame[column], sex_coding = normalise_sex(frame[column], levels=levels, path=path)
        else:
            frame[column] = _maybe_numeric(frame[column])
    return ParticipantsTable(frame, os.fspath(path), dictionary, sex_coding)


SESSION_ID = "session_id"
_NOT_VARIABLES = ("participant_id", SESSION_ID, "acq_time")
"""Columns of a sessions table that identify a row or a time of day, not a participant's value."""


def read_sessions(path: str | os.PathLike, *, participant_id: str | None = None) -> SessionsTable:
    """Read a BIDS sessions table: the participant's values at each session.

    Parameters
    ----------
    path : path-like
        ``sub-<label>/sub-<label>_sessions.tsv`` (one participant; give ``participant_id``) or
        a long table with a ``participant_id`` column (several participants).
    participant_id : str, optional
        The participant of a per-subject table.

    Returns
    -------
    SessionsTable
        ``frame``: ``participant_id`` (``sub-`` form), ``session_id`` (``ses-`` form) and the
        other columns, numeric where every present value is a number; ``sex``, when present,
        normalised as in :func:`read_participants`.

    Raises
    ------
    InputError
        No ``session_id`` column, no participant column and no ``participant_id`` given,
        an empty id, or the same participant and session twice.
    """
    path = Path(path)
    frame = read_text_table(path, "sessions table")
    frame.columns = [str(column).strip() for column in frame.columns]
    if SESSION_ID not in frame.columns:
        raise InputError(f"has no '{SESSION_ID}' column (columns found: {', '.join(frame.columns) or 'none'})",
                         path)
    frame = frame.apply(_strip_missing)
    if "participant_id" not in frame.columns:
        if participant_id is None:
            raise InputError("has no 'participant_id' column, and its participant is not known", path)
        frame.insert(0, "participant_id", participant_id)
    frame["participant_id"] = frame["participant_id"].map(normalise_participant_id)
    frame[SESSION_ID] = frame[SESSION_ID].map(normalise_session_id)
    if frame["participant_id"].isna().any() or frame[SESSION_ID].isna().any():
        raise InputError(f"'participant_id' or '{SESSION_ID}' is empty on some row(s)", path)
    repeated = frame[frame.duplicated(["participant_id", SESSION_ID])]
    if not repeated.empty:
        row = repeated.iloc[0]
        raise InputError(f"repeats {row['participant_id']} {row[SESSION_ID]}", path)
    for column in frame.columns:
        if column == "sex":
            frame[column], _ = normalise_sex(frame[column], path=path)
        elif column not in _NOT_VARIABLES:
            frame[column] = _maybe_numeric(frame[column])
    return SessionsTable(frame, os.fspath(path))


def read_bids_sessions(bids_dir: str | os.PathLike) -> SessionsTable | None:
    """Every ``sub-*/sub-*_sessions.tsv`` of a BIDS dataset as one long table (None when there is none)."""
    bids_dir = Path(bids_dir)
    frames = []
    for path in sorted(bids_dir.glob("sub-*/sub-*_sessions.tsv")):
        participant_id = path.parent.name
        if path.name != f"{participant_id}_sessions.tsv":
            continue
        frames.append(read_sessions(path, participant_id=participant_id).frame)
    if not frames:
        return None
    combined = pd.concat(frames, ignore_index=True)
    for column in combined.columns:
        if column not in _NOT_VARIABLES and column != "sex":
            combined[column] = _maybe_numeric(combined[column])
    return SessionsTable(combined, os.fspath(bids_dir / "sub-*" / "sub-*_sessions.tsv"))


def participants_at_session(participants: ParticipantsTable, sessions: SessionsTable | None,
                            session: str | None) -> ParticipantsTable:
    """The participants table with each participant's values at ``session``.

    A value in the sessions table (age at the scan, a score measured at that visit) replaces
    the participants table's value for that participant; a missing one leaves it; columns
    only in the sessions table are added. Participants absent from the participants table
    are not added: that table defines the cohort.

    Parameters
    ----------
    participants : ParticipantsTable
        From :func:`read_participants`.
    sessions : SessionsTable or None
        From :func:`read_sessions` or :func:`read_bids_sessions`; None returns
        ``participants`` unchanged.
    session : str or None
        ``ses-<label>`` (or a bare label).

    Returns
    -------
    ParticipantsTable
        A new table, with ``session`` and ``sessions_source`` set when values were taken from
        the sessions table.
    """
    if sessions is None or session is None:
        return participants
    session = normalise_session_id(session)
    table = sessions.frame
    rows = table[table[SESSION_ID] == session].drop(
        columns=[c for c in _NOT_VARIABLES if c != "participant_id" and c in table.columns])
    merged = participants.frame.copy()
    if rows.empty:
        return replace(participants, frame=merged)
    rows = rows.set_index("participant_id")
    index = merged["participant_id"]
    for column in rows.columns:
        at_session = index.map(rows[column])
        if column in merged.columns:
            combined = at_session.where(at_session.notna(), merged[column])
        else:
            combined = at_session
        merged[column] = combined if column == "sex" else _maybe_numeric(combined.astype(object))
    return replace(participants, frame=merged, session=session, sessions_source=sessions.source)


def normalise_sex(values: pd.Series, *, levels: dict | None = None,
                  path: str | os.PathLike | None = None, column: str = "sex"
                  ) -> tuple[pd.Series, str | None]:
    """Map a sex column to ``"M"`` / ``"F"`` / ``"O"`` (NaN stays NaN).

    Parameters
    ----------
    values : Series of str
    levels : dict, optional
        ``Levels`` of the column in ``participants.json``: code -> description. When given,
        every code is decided by its description (male/man/m, female/woman/f, other).
    path : path-like, optional
        Named in errors.

    Returns
    -------
    (Series, str or None)
        The normalised column and a one-line description of the coding that was read.
    """
    present = values.dropna().astype(str).str.strip()
    if present.empty:
        return pd.Series(np.nan, index=values.index, dtype=object), None
    codes = sorted(set(present))
    if levels:
        mapping: dict[str, str] = {}
        for code, description in levels.items():
            meaning = _sex_description(str(description)) or _sex_word(str(code))
            if meaning is None:
                raise InputError(f"column '{column}': participants.json Levels entry "
                                 f"{code!r}: {description!r} is not male, female or other",
                                 path)
            mapping[str(code).strip().lower()] = meaning
        unknown = [code for code in codes if code.lower() not in mapping]
        if unknown:
            raise InputError(f"column '{column}' holds {_first(unknown)}, not among the Levels "
                             f"of participants.json ({', '.join(map(str, levels))})", path)
        coding = "participants.json Levels: " + ", ".join(
            f"{code}={mapping[str(code).strip().lower()]}" for code in levels)
        return values.map(lambda v: mapping[str(v).strip().lower()] if pd.notna(v) else np.nan), coding

    numeric = [code for code in codes if _is_number(code)]
    if numeric and len(numeric) != len(codes):
        raise InputError(f"column '{column}' mixes numeric and text codes "
                         f"({', '.join(codes)}); use one coding (M/F) or describe the codes "
                         "with Levels in participants.json", path)
    if numeric:
        canonical = {code: _integer_text(code) for code in codes}
        unknown = [code for code, value in canonical.items()
                   if value not in ISO_5218_SEX and value not in _ISO_5218_UNKNOWN]
        if unknown or not set(canonical.values()) & set(ISO_5218_SEX):
            raise InputError(f"column '{column}' is coded {', '.join(codes)}, which is ambiguous "
                             "without participants.json Levels (only ISO/IEC 5218 1=male, "
                             "2=female is assumed); add Levels or use M/F", path)

        def iso(value: Any) -> Any:
            if pd.isna(value):
                return np.nan
            return ISO_5218_SEX.get(_integer_text(str(value).strip()), np.nan)

        return values.map(iso), "ISO/IEC 5218 (1=M, 2=F, 9=not applicable); no Levels in participants.json"

    unknown = [code for code in codes if _sex_word(code) is None]
    if unknown:
        raise InputError(f"column '{column}' holds {_first(unknown)}; expected M/F, male/female "
                         "or other (or describe the codes with Levels in participants.json)", path)
    coding = "text (" + ", ".join(codes) + ")"
    return values.map(lambda v: _sex_word(str(v)) if pd.notna(v) else np.nan), coding


def _sex_word(text: str) -> str | None:
    return _SEX_WORDS.get(text.strip().lower())


def _sex_description(text: str) -> str | None:
    """A Levels description such as ``"male"`` or ``"Female participant"`` -> M/F/O."""
    whole = _sex_word(text)
    if whole is not None:
        return whole
    words = set(re.findall(r"[a-z]+", text.lower()))
    found = {_SEX_WORDS[word] for word in words & {"male", "man", "female", "woman", "other"}}
    return found.pop() if len(found) == 1 else None


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _integer_text(text: str) -> str:
    number = float(text)
    return str(int(number)) if number.is_integer() else text


def _strip_missing(column: pd.Series) -> pd.Series:
    """Cells stripped of surrounding spaces; ``n/a`` and empty cells as NaN."""
    text = column.astype(object).where(column.notna())
    text = text.map(lambda value: value.strip() if isinstance(value, str) else value)
    return text.where(~text.isin(MISSING_VALUES), np.nan)


def _maybe_numeric(column: pd.Series) -> pd.Series:
    """The column as numbers when every present value is one; otherwise unchanged."""
    present = column.dropna()
    if present.empty:
        return column.astype(float)
    converted = pd.to_numeric(column, errors="coerce")
    if converted.notna().sum() != len(present):
        return column
    if np.all(np.mod(converted.dropna(), 1) == 0) and converted.notna().all():
        return converted.astype(np.int64)
    return converted.astype(float)


def _read_data_dictionary(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"cannot be parsed as JSON ({exc})", path) from None
    if not isinstance(payload, dict):
        raise InputError("must hold an object of column descriptions", path)
    return payload


def _first(items: list, limit: int = 5) -> str:
    shown = ", ".join(str(item) for item in items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")
