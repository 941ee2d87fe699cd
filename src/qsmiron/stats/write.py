"""Write a study's results: the TSV tables and ``results.json`` (each file atomically).

Files (in ``out_dir``):

- ``group_comparison.tsv``, ``associations.tsv``, ``relapse.tsv``, ``table1.tsv``: the tables
  of :class:`~qsmiron.stats.results.StudyResults`, ``n/a`` for missing values, a last
  ``note`` column saying why a row has no statistics;
- ``relapse_counts.tsv`` when the study has a count column; ``roc_curves.tsv`` and
  ``km_curves.tsv`` (long form, one row per curve point) when there are curves, and
  ``km_at_risk.tsv`` (numbers at risk at the chosen times) with the Kaplan-Meier curves;
- ``results.json``: everything above plus the resolved settings, the exclusions, the
  warnings, the package versions, the column ``units`` and the study ``answers``.
  Non-finite numbers are ``null``. Written last, so its presence means the set is complete.
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from qsmiron.io.atomic import write_json_atomic, write_tsv_atomic
from qsmiron.stats.results import StudyResults

TABLE_FILES = {
    "group_comparison": "group_comparison.tsv",
    "associations": "associations.tsv",
    "relapse": "relapse.tsv",
    "table1": "table1.tsv",
}


def write_results(results: StudyResults, out_dir: str | os.PathLike) -> dict[str, Path]:
    """Write every table and ``results.json`` into ``out_dir`` (created if needed).

    Returns
    -------
    dict
        File role -> path written.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    for name, filename in TABLE_FILES.items():
        written[name] = write_tsv_atomic(out_dir / filename, getattr(results, name))
    if results.relapse_counts is not None:
        written["relapse_counts"] = write_tsv_atomic(out_dir / "relapse_counts.tsv",
                                                     results.relapse_counts)
    if results.roc_curves:
        written["roc_curves"] = write_tsv_atomic(out_dir / "roc_curves.tsv",
                                                 _long_curves(results.roc_curves))
    if results.km_curves:
        written["km_curves"] = write_tsv_atomic(out_dir / "km_curves.tsv",
                                                _long_curves(results.km_curves))
    if results.km_at_risk:
        written["km_at_risk"] = write_tsv_atomic(out_dir / "km_at_risk.tsv",
                                                 _long_curves(results.km_at_risk))
    written["results"] = out_dir / "results.json"
    write_json_atomic(written["results"], results_payload(results, files={
        role: path.name for role, path in written.items()}))
    return written


def results_payload(results: StudyResults, files: dict[str, str] | None = None) -> dict[str, Any]:
    """``results.json`` as a dict of plain JSON values (NaN and infinities as None)."""
    from qsmiron import __version__

    payload = {
        "qsmiron_version": __version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "settings": results.settings,
        "versions": results.versions,
        "warnings": list(results.warnings),
        "exclusions": list(results.exclusions),
        "exclusion_counts": dict(getattr(results, "exclusion_counts", {}) or {}),
        "table1": _records(results.table1),
        "group_comparison": _records(results.group_comparison),
        "associations": _records(results.associations),
        "relapse": _records(results.relapse),
        "relapse_counts": None if results.relapse_counts is None else _records(results.relapse_counts),
        "roc_curves": _curves(results.roc_curves),
        "km_curves": _curves(results.km_curves),
        "km_at_risk": _curves(results.km_at_risk),
        "units": {name: asdict(info) for name, info in results.units.items()},
        "answers": None if results.answers is None else asdict(results.answers),
        "files": files or {},
    }
    return _clean(payload)


def _records(frame: pd.DataFrame | None) -> list[dict[str, Any]]:
    if frame is None:
        return []
    return [dict(zip(frame.columns, row)) for row in frame.itertuples(index=False, name=None)]


def _curves(curves: dict[tuple[str, str], pd.DataFrame]) -> list[dict[str, Any]]:
    return [{"region": region, "hemisphere": hemisphere,
             **{column: frame[column].tolist() for column in frame.columns}}
            for (region, hemisphere), frame in curves.items()]


def _long_curves(curves: dict[tuple[str, str], pd.DataFrame]) -> pd.DataFrame:
    frames = [frame.assign(region=region, hemisphere=hemisphere)
              for (region, hemisphere), frame in curves.items()]
    long = pd.concat(frames, ignore_index=True)
    first = ["region", "hemisphere"]
    return long[first + [c for c in long.columns if c not in first]]


def _clean(value: Any) -> Any:
    """Replace NaN / inf by None and NumPy scalars by Python ones, recursively."""
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, np.ndarray):
        return [_clean(v) for v in value.tolist()]
    if isinstance(value, (np.bool_,)):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, (float, np.floating)):
        value = float(value)
        return value if math.isfinite(value) else None
    if value is pd.NA or value is pd.NaT:
        return None
    return value
