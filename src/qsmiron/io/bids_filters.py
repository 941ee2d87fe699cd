"""``--bids-filter-file``: which files of a BIDS dataset a run takes, as fMRIPrep reads it.

The file is a JSON object with one entry per kind of input, each an object of BIDS entities
and the values a file must have::

    {"megre": {"acquisition": "wholebrain", "run": 1},
     "t1w": {"reconstruction": null}}

``megre`` selects the multi-echo GRE series (useful when a session holds several), ``t1w`` the
T1-weighted image. Entities may be given by their long (``acquisition``) or short (``acq``)
names; a value matches the file's label (numbers compare as numbers: ``run: 1`` matches
``run-01``), a list matches any of its values, and ``null`` means the file must not have the
entity. The subject and session are chosen with ``--participant-label`` and
``--session-label`` instead.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from qsmiron.errors import InputError

QUERIES = {"megre": "MEGRE", "t1w": "T1w"}
"""Filter key -> the BIDS suffix it selects."""

LONG_NAMES = {"acquisition": "acq", "reconstruction": "rec", "run": "run", "direction": "dir", "ceagent": "ce",
              "chunk": "chunk", "inversion": "inv", "flip": "flip", "mtransfer": "mt", "processing": "proc",
              "echo": "echo", "part": "part", "task": "task", "session": "ses", "subject": "sub"}
"""Long entity name -> the key in file names."""


def _same(label: str, wanted: Any) -> bool:
    if isinstance(wanted, bool):
        return False
    if isinstance(wanted, int) or (isinstance(wanted, str) and wanted.isdigit()):
        return label.isdigit() and int(label) == int(wanted)
    return label == str(wanted)


@dataclass(frozen=True)
class BidsFilters:
    """Per suffix, entity -> wanted value(s) or None (the entity must be absent)."""

    by_suffix: dict[str, dict[str, Any]] = field(default_factory=dict)

    def accepts(self, suffix: str, entities: dict[str, str]) -> bool:
        """Whether a file with these entities (short keys) and this suffix passes the filters."""
        for entity, wanted in self.by_suffix.get(suffix, {}).items():
            label = entities.get(entity)
            if wanted is None:
                if label is not None:
                    return False
            elif label is None:
                return False
            elif not any(_same(label, value) for value in (wanted if isinstance(wanted, list) else [wanted])):
                return False
        return True


def parse_bids_filters(payload: Any, source: str | os.PathLike | None = None) -> BidsFilters:
    """``BidsFilters`` from the JSON object of a filter file; an ``InputError`` naming what is wrong."""
    if not isinstance(payload, dict):
        raise InputError("a BIDS filter file holds a JSON object ({\"megre\": {...}, \"t1w\": {...}})", source)
    by_suffix: dict[str, dict[str, Any]] = {}
    for query, entities in payload.items():
        if query not in QUERIES:
            raise InputError(f"unknown filter {query!r}; use {', '.join(QUERIES)}", source)
        if not isinstance(entities, dict):
            raise InputError(f"filter {query!r} must be an object of entity: value", source)
        short = {}
        for name, value in entities.items():
            key = LONG_NAMES.get(name, name)
            if key not in LONG_NAMES.values():
                raise InputError(f"filter {query!r}: unknown BIDS entity {name!r}", source)
            if key in ("sub", "ses"):
                raise InputError(f"filter {query!r}: choose subjects and sessions with --participant-label and "
                                 "--session-label", source)
            short[key] = value
        by_suffix[QUERIES[query]] = short
    return BidsFilters(by_suffix)


def load_bids_filters(path: str | os.PathLike) -> BidsFilters:
    """Read a ``--bids-filter-file``."""
    path = Path(path)
    try:
        payload = json.loads(path.read_text())
    except FileNotFoundError:
        raise InputError("BIDS filter file not found", path) from None
    except (OSError, ValueError) as error:
        raise InputError(f"not a readable JSON file ({error})", path) from None
    return parse_bids_filters(payload, path)
