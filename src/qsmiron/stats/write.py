"""Write a study's results: the TSV tables and ``results.json`` (each file atomically).

Files (in ``out_dir``):

- ``group_comparison.tsv``, ``associations.tsv``, ``relapse.tsv``, ``table1.tsv``: the tables
  of :class:`~qsmiron.stats.results.StudyResults` (all but Table 1 with ``measure`` and
  ``unit`` first), ``n/a`` for missing values, a last ``note`` column saying why a row has
  no statistics;
- ``relapse_counts.tsv`` when the study has a count column; ``roc_curves.tsv`` and
  ``km_curves.tsv`` (long form, one row per curve point) when there are curves, and
  ``km_at_risk.tsv`` (numbers at risk at the chosen times) with the Kaplan-Meier curves;
- ``results.json``: the ``StudyRecord`` of everything above plus the resolved settings with
  the methods text, the exclusions, the warnings, the package versions, the column
  ``units``, the study ``answers`` and the records of the study file's optional sections
  (``harmonisation``, ``longitudinal``, ``normative``, ``voxelwise``; their files, written by
  those analyses, are listed in ``files`` as ``<section>:<role>``, relative to this folder).
  Non-finite numbers are ``null``. Written last, so its presence means the set is complete;
  ``StudyRecord.read`` reads it back typed.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from qsmiron.io.atomic import write_json_atomic, write_tsv_atomic
from qsmiron.io.derivatives import study_paths
from qsmiron.records.study import Curve, StudyRecord
from qsmiron.stats.results import StudyResults


def write_results(results: StudyResults, out_dir: str | os.PathLike) -> dict[str, Path]:
    """Write every table and ``results.json`` into ``out_dir`` (created if needed).

    Returns
    -------
    dict
        File role -> path written (names from ``qsmiron.io.derivatives.study_paths``).
    """
    paths = study_paths(out_dir)
    paths.results.parent.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    for role in ("group_comparison", "associations", "relapse", "table1"):
        written[role] = write_tsv_atomic(getattr(paths, role), getattr(results, role))
    if results.relapse_counts is not None:
        written["relapse_counts"] = write_tsv_atomic(paths.relapse_counts, results.relapse_counts)
    if results.roc_curves:
        written["roc_curves"] = write_tsv_atomic(paths.roc_curves, _long_curves(results.roc_curves))
    if results.km_curves:
        written["km_curves"] = write_tsv_atomic(paths.km_curves, _long_curves(results.km_curves))
    if results.km_at_risk:
        written["km_at_risk"] = write_tsv_atomic(paths.km_at_risk, _long_curves(results.km_at_risk))
    written["results"] = paths.results
    files = {role: path.name for role, path in written.items()}
    for section in ("harmonisation", "longitudinal", "normative", "voxelwise"):
        record = getattr(results, section)
        if record is not None:
            files.update({f"{section}:{role}": name for role, name in record.files.items()})
    record = study_record(results, files=files)
    write_json_atomic(paths.results, record.to_json())
    return written


def study_record(results: StudyResults, files: dict[str, str] | None = None) -> StudyRecord:
    """``results.json`` as a record (NaN and infinities as None in the tables)."""
    from qsmiron import __version__

    return StudyRecord(
        qsmiron_version=__version__, settings=results.settings, versions=results.versions,
        warnings=list(results.warnings), exclusions=list(results.exclusions),
        exclusion_counts=dict(results.exclusion_counts), table1=_records(results.table1),
        group_comparison=_records(results.group_comparison), associations=_records(results.associations),
        relapse=_records(results.relapse),
        relapse_counts=None if results.relapse_counts is None else _records(results.relapse_counts),
        roc_curves=_curves(results.roc_curves), km_curves=_curves(results.km_curves),
        km_at_risk=_curves(results.km_at_risk), units=dict(results.units), answers=results.answers,
        harmonisation=results.harmonisation, longitudinal=results.longitudinal, normative=results.normative,
        voxelwise=results.voxelwise, files=files or {})


def _records(frame: pd.DataFrame | None) -> list[dict[str, Any]]:
    if frame is None:
        return []
    return plain_values([dict(zip(frame.columns, row)) for row in frame.itertuples(index=False, name=None)])


def _curve_key(key: tuple) -> tuple[str, str, str]:
    """``(measure, region, hemisphere)``; a ``(region, hemisphere)`` key is chi's."""
    return tuple(key) if len(key) == 3 else ("chi", *key)


def _curves(curves: dict[tuple, pd.DataFrame]) -> list[Curve]:
    return [Curve(measure=measure, region=region, hemisphere=hemisphere,
                  columns=plain_values({column: frame[column].tolist() for column in frame.columns}))
            for (measure, region, hemisphere), frame in ((_curve_key(k), f) for k, f in curves.items())]


def _long_curves(curves: dict[tuple, pd.DataFrame]) -> pd.DataFrame:
    frames = [frame.assign(measure=measure, region=region, hemisphere=hemisphere)
              for (measure, region, hemisphere), frame in ((_curve_key(k), f) for k, f in curves.items())]
    long = pd.concat(frames, ignore_index=True)
    first = ["measure", "region", "hemisphere"]
    return long[first + [c for c in long.columns if c not in first]]


def plain_values(value: Any) -> Any:
    """Replace NaN / inf by None and NumPy scalars by Python ones, recursively (JSON and record values)."""
    if isinstance(value, dict):
        return {str(k): plain_values(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain_values(v) for v in value]
    if isinstance(value, np.ndarray):
        return [plain_values(v) for v in value.tolist()]
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
