"""Units and descriptions of the participants table's columns, from ``participants.json``.

BIDS describes each column of ``participants.tsv`` in the data dictionary beside it:
``LongName``, ``Description``, ``Units`` (and ``Levels`` for codes). The statistics carry
these for every column they use, so that the report labels a time as "months" and a score
by its name. Nothing is guessed: a column without ``Units`` has ``units = None`` and is
reported as having no unit given (a score usually has none; a time should have one).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import pandas as pd


@dataclass
class ColumnInfo:
    """What ``participants.json`` says about one column (None where it says nothing)."""

    name: str
    long_name: str | None = None
    description: str | None = None
    units: str | None = None


def column_info(participants: pd.DataFrame, columns: Iterable[str | None]) -> dict[str, ColumnInfo]:
    """The data-dictionary entries of ``columns`` (None and repeats skipped).

    Parameters
    ----------
    participants : DataFrame
        As from :func:`qsmiron.io.participants.read_participants` (the dictionary is in
        ``attrs["data_dictionary"]``; an empty dictionary gives entries with only the name).
    columns : iterable of str or None
    """
    dictionary: dict[str, Any] = participants.attrs.get("data_dictionary") or {}
    out: dict[str, ColumnInfo] = {}
    for name in columns:
        if name is None or name in out:
            continue
        entry = dictionary.get(name)
        entry = entry if isinstance(entry, dict) else {}
        out[name] = ColumnInfo(name, _text(entry.get("LongName")), _text(entry.get("Description")),
                               _text(entry.get("Units")))
    return out


def _text(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None
