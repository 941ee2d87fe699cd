"""Units and descriptions of the participants table's columns, from ``participants.json``.

BIDS describes each column of ``participants.tsv`` in the data dictionary beside it:
``LongName``, ``Description``, ``Units`` (and ``Levels`` for codes). The statistics carry
these for every column they use, so that the report labels a time as "months" and a score
by its name. Nothing is guessed: a column without ``Units`` has ``units = None`` and is
reported as having no unit given (a score usually has none; a time should have one).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from qsmiron.records.study import ColumnInfo


def column_info(data_dictionary: Mapping[str, Any], columns: Iterable[str | None]) -> dict[str, ColumnInfo]:
    """The data-dictionary entries of ``columns`` (None and repeats skipped).

    Parameters
    ----------
    data_dictionary : mapping
        ``participants.json`` (``ParticipantsTable.data_dictionary`` from
        :func:`qsmiron.io.participants.read_participants`); empty: entries with only the name.
    columns : iterable of str or None
    """
    out: dict[str, ColumnInfo] = {}
    for name in columns:
        if name is None or name in out:
            continue
        entry = data_dictionary.get(name)
        entry = entry if isinstance(entry, dict) else {}
        out[name] = ColumnInfo(name=name, long_name=_text(entry.get("LongName")),
                               description=_text(entry.get("Description")),
                               units=_text(entry.get("Units")))
    return out


def _text(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None
