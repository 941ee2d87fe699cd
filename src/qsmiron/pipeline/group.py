"""Group level of a study: regions + participants tables -> statistics, tables, report.

Longitudinal datasets. The statistics compare participants, so each analysis uses one session
(time point). When the regions table holds several sessions:

- the study file's ``session`` (or ``session=`` here, ``--session`` on the command line)
  picks the one analysed, written to ``out_dir`` as for a single-session dataset;
- without that choice, every session is analysed separately into ``out_dir/ses-<label>/``
  (tables, ``results.json``, ``report.html``), ``out_dir/sessions.tsv`` lists them (session,
  participants, outcome) and ``out_dir/report.html`` is an index linking the session reports.
  Pooling sessions would count a participant twice; a session that cannot be analysed (too
  few participants, say) is listed with the reason and the others are still written.

Values that change between visits (age at the scan, a score at that visit) come from the
BIDS sessions tables (``sub-<label>/sub-<label>_sessions.tsv``) and replace the
participants table's values for that session.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import pandas as pd

from qsmiron.errors import InputError
from qsmiron.io.atomic import check_writable_dir
from qsmiron.io.participants import (normalise_session_id, participants_at_session, read_participants,
                                     read_sessions)
from qsmiron.stats.analysis import run_study
from qsmiron.stats.regions import read_regions, select_session, sessions_of
from qsmiron.stats.study import Study, load_study
from qsmiron.stats.write import write_results

SESSIONS_TSV = "sessions.tsv"


@dataclass
class SessionAnalysis:
    """One session's analysis in a dataset with several: where its report is, or why there is none."""

    session: str
    n_participants: int
    report: Path | None = None
    reason: str | None = None


def run_group_analysis(regions_tsv: str | os.PathLike, participants_tsv: str | os.PathLike,
                       out_dir: str | os.PathLike, *, study_path: str | os.PathLike | None = None,
                       session: str | None = None,
                       sessions: pd.DataFrame | str | os.PathLike | None = None,
                       qc_images: Iterable[str | os.PathLike] = (),
                       provenance: dict[str, Any] | None = None) -> Path:
    """Run every statistic of the study and write the tables, ``results.json`` and the report.

    Parameters
    ----------
    regions_tsv : path
        Long regions table (participant_id, region, hemisphere, mean_ppm, optionally session).
    participants_tsv : path
        BIDS participants.tsv (participants.json beside it is read when present).
    out_dir : path
        Receives group_comparison.tsv, associations.tsv, relapse.tsv, table1.tsv,
        results.json (see :mod:`qsmiron.stats.write`) and report.html; with several sessions
        and none chosen, one such folder per session (see the module docstring).
    study_path : path, optional
        Study file (TOML); defaults decided from the data when None.
    session : str, optional
        The session analysed (``ses-<label>`` or ``<label>``); overrides the study file's.
    sessions : DataFrame or path, optional
        Per-session participant values: a long table with ``participant_id`` and
        ``session_id`` (:func:`qsmiron.io.participants.read_sessions`), or such a TSV.
    qc_images : iterable of paths
        QC images (QSM, atlas overlays) to embed in the report; with sessions, each report
        embeds the images whose file name carries its ``_ses-<label>_`` entity.
    provenance : dict, optional
        Per-subject recon/roi records and pipeline facts for the methods paragraph; records
        and pipeline items with a ``session`` key go to that session's report.

    Returns
    -------
    Path
        The report written (``out_dir / "report.html"``; the index of the session reports
        when every session was analysed separately).

    Raises
    ------
    InputError
        Any problem with the inputs, as one line naming the file; nothing is written then.
        With several sessions analysed separately, only when no session could be analysed.
    """
    check_writable_dir(out_dir)
    participants = read_participants(participants_tsv)
    regions = read_regions(regions_tsv)
    study = load_study(study_path)
    if session is not None:
        study = study.model_copy(deep=True)
        study.session = normalise_session_id(session)
    if sessions is not None and not isinstance(sessions, pd.DataFrame):
        sessions = read_sessions(sessions)
    out_dir = Path(out_dir)
    qc_images = [Path(image) for image in qc_images]
    present = sessions_of(regions)

    if study.session is not None or len(present) <= 1:
        chosen = study.session or (present[0] if present else None)
        return _analyse(regions, participants, sessions, study, chosen, out_dir, qc_images, provenance)

    analyses = []
    for label in present:
        at_session = study.model_copy(deep=True)
        at_session.session = label
        n = int(select_session(regions, label)["participant_id"].nunique())
        try:
            report = _analyse(regions, participants, sessions, at_session, label, out_dir / label, qc_images,
                              provenance)
            analyses.append(SessionAnalysis(label, n, report=report))
        except InputError as exc:
            analyses.append(SessionAnalysis(label, n, reason=str(exc)))
    if not any(a.report for a in analyses):
        raise InputError("no session could be analysed: " + "; ".join(f"{a.session}: {a.reason}" for a in analyses),
                         regions_tsv)
    from qsmiron.io.atomic import write_tsv_atomic
    from qsmiron.report.html import write_session_index

    write_tsv_atomic(out_dir / SESSIONS_TSV, pd.DataFrame(
        [{"session": a.session, "n_participants": a.n_participants,
          "status": "analysed" if a.report else "failed",
          "report": a.report.relative_to(out_dir).as_posix() if a.report else None, "reason": a.reason}
         for a in analyses], columns=["session", "n_participants", "status", "report", "reason"]))
    return write_session_index(out_dir / "report.html", analyses, regions_table=regions.attrs.get("source"))


def _analyse(regions: pd.DataFrame, participants: pd.DataFrame, sessions: pd.DataFrame | None, study: Study,
             session: str | None, out_dir: Path, qc_images: list[Path],
             provenance: dict[str, Any] | None) -> Path:
    """One analysis (one session, or a dataset without sessions) into ``out_dir``."""
    at_session = participants_at_session(participants, sessions, session)
    results = run_study(regions, at_session, study)
    if session is not None:
        qc_images = [image for image in qc_images if f"_{session}_" in image.name] or qc_images
        provenance = _provenance_of_session(provenance, session, results)
    write_results(results, out_dir)
    # The HTML report is rendered by qsmiron.report (another area); imported here so that the
    # statistics above never depend on it.
    from qsmiron.report.html import write_report

    return Path(write_report(results, out_dir / "report.html", regions=select_session(regions, session),
                             participants=at_session, qc_images=tuple(qc_images), provenance=provenance))


def _provenance_of_session(provenance: dict[str, Any] | None, session: str, results) -> dict[str, Any] | None:
    """The records and pipeline facts of one session (items without a session belong to all)."""
    if not provenance:
        return provenance

    def mine(item: Any) -> bool:
        return not isinstance(item, dict) or item.get("session") in (None, session)

    kept = {key: ([item for item in value if mine(item)] if isinstance(value, list) else value)
            for key, value in provenance.items()}
    pipeline = dict(kept.get("pipeline") or {})
    if pipeline:
        for key in ("failed", "excluded"):
            if isinstance(pipeline.get(key), list):
                pipeline[key] = [item for item in pipeline[key] if mine(item)]
        analysed = (results.settings.get("n_participants") or {}).get("regions_table")
        if analysed is not None:
            pipeline["n_subjects"] = int(analysed) + len(pipeline.get("failed") or [])
        kept["pipeline"] = pipeline
    return kept
