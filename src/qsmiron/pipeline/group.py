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

The study file's optional sections run here too. ``[harmonise]``, ``[longitudinal]`` and
``[normative]`` run first, once, on the whole regions table (:mod:`qsmiron.stats.extensions`;
their tables in ``out_dir``), and every analysis after them uses the harmonised values;
``[voxelwise]`` runs once per analysed session, beside that analysis's ``results.json``, on the
template-space chi maps under ``derivatives_dir`` (a participant without a map is left out and
listed). Each section's record goes into the ``results.json`` of every analysis
(``StudyRecord.harmonisation``, ``longitudinal``, ``normative``, ``voxelwise``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterable

import pandas as pd

from qsmiron.errors import InputError
from qsmiron.io.atomic import check_writable_dir
from qsmiron.io.derivatives import StudyPaths, extension_paths, study_paths
from qsmiron.io.participants import (ParticipantsTable, SessionsTable, normalise_session_id,
                                     participants_at_session, read_participants, read_sessions)
from qsmiron.records.cohort import Provenance
from qsmiron.stats.analysis import run_study
from qsmiron.stats.extensions import RegionalExtensions, run_regional_extensions
from qsmiron.stats.qc_exclusion import exclude_flagged_values
from qsmiron.stats.regions import CHI, VALUE, read_regions, select_measure, select_session, sessions_of
from qsmiron.stats.results import StudyResults
from qsmiron.stats.study import Study, load_study
from qsmiron.stats.write import write_results


@dataclass
class Sections:
    """What the study file's optional sections need in each analysis of a group level.

    Attributes
    ----------
    regional : RegionalExtensions or None
        The results of ``[harmonise]``, ``[longitudinal]`` and ``[normative]`` (run once).
    derivatives_dir : Path or None
        Where the template-space chi maps are, for ``[voxelwise]`` (None: it cannot run).
    atlas : str
        The atlas of the maps' regions (``roi.atlas``).
    regions : DataFrame or None
        The group level's regions table: which registrations ``qsmiron roi`` flagged, for the
        study's ``exclude_flagged`` rule on the maps.
    """

    regional: RegionalExtensions | None = None
    derivatives_dir: Path | None = None
    atlas: str = "cit168"
    regions: pd.DataFrame | None = None

    def add_to(self, results: StudyResults, participants: ParticipantsTable, study: Study, session: str | None,
               folder: Path) -> None:
        """Attach the regional sections' records to ``results`` and run ``[voxelwise]`` into ``folder``."""
        if self.regional is not None:
            self.regional.attach(results, session, folder)
        if study.voxelwise is None:
            return
        if self.derivatives_dir is None:
            results.add_exclusions([], ["[voxelwise] did not run: no derivatives folder with template-space chi "
                                        "maps was given (qsmiron run's group level runs it; or qsmiron voxelwise)"])
            return
        from qsmiron.report.voxelwise_figures import add_contrast_figures
        from qsmiron.stats.voxelwise import run_voxelwise

        analysis = run_voxelwise(self.derivatives_dir, participants, folder, study=study, session=session,
                                 atlas=self.atlas, missing_maps="exclude", regions=self.regions)
        add_contrast_figures(analysis, folder, atlas=self.atlas)
        voxelwise = analysis.record
        results.voxelwise = voxelwise
        notes = [f"voxel-wise: {text}" for text in voxelwise.warnings]
        if study.harmonise is not None:
            notes.append(f"voxel-wise: the maps are not harmonised across '{study.harmonise.batch}' (ComBat runs "
                         "on the regional values only)")
        results.add_exclusions(voxelwise.exclusions, notes)


@dataclass
class SessionAnalysis:
    """One session's analysis in a dataset with several: where its report is, or why there is none."""

    session: str
    n_participants: int
    report: Path | None = None
    reason: str | None = None


def _relative(path: str | os.PathLike, root: str | os.PathLike) -> str:
    """``path`` relative to ``root`` (``../../bids/participants.tsv``), as a record keeps it."""
    return Path(os.path.relpath(Path(path).resolve(), Path(root).resolve())).as_posix()


def run_group_analysis(regions_tsv: str | os.PathLike, participants_tsv: str | os.PathLike,
                       out_dir: str | os.PathLike, *, study_path: str | os.PathLike | None = None,
                       session: str | None = None,
                       sessions: SessionsTable | str | os.PathLike | None = None,
                       qc_images: Iterable[str | os.PathLike] = (),
                       provenance: Provenance | None = None, derivatives_dir: str | os.PathLike | None = None,
                       atlas: str = "cit168") -> Path:
    """Run every statistic of the study and write the tables, ``results.json`` and the report.

    Parameters
    ----------
    regions_tsv : path
        Long regions table (participant_id, region, hemisphere, measure, reference, mean, optionally
        session; see :mod:`qsmiron.stats.regions`).
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
    sessions : SessionsTable or path, optional
        Per-session participant values: a long table with ``participant_id`` and
        ``session_id`` (:func:`qsmiron.io.participants.read_sessions`), or such a TSV.
    qc_images : iterable of paths
        QC images (QSM, atlas overlays) to embed in the report; with sessions, each report
        embeds the images whose file name carries its ``_ses-<label>_`` entity.
    provenance : Provenance, optional
        Each scan's reconstruction and regions records and the pipeline's facts, for the
        methods paragraph; records and pipeline items of a session go to that session's report.
    derivatives_dir : path, optional
        The derivative dataset holding ``sub-*/[ses-*/]anat/*_space-<space>_Chimap.nii.gz``,
        for a study with ``[voxelwise]`` (without it that section does not run, with a warning).
    atlas : str
        The atlas the regions and the voxel-wise mask and labels come from.

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
    try:
        return _group_analysis(regions_tsv, participants_tsv, out_dir, study_path=study_path, session=session,
                               sessions=sessions, qc_images=qc_images, provenance=provenance,
                               derivatives_dir=derivatives_dir, atlas=atlas)
    except InputError as error:
        given = [regions_tsv, participants_tsv, sessions.source if isinstance(sessions, SessionsTable) else sessions]
        raise _naming_the_given_file(error, derivatives_dir, given) from None


def _naming_the_given_file(error: InputError, derivatives_dir, given) -> InputError:
    """``error`` naming the input as the user gave it. A run's group level names its inputs relative to
    the derivative dataset (``../../bids/participants.tsv``), as its records keep them, and an error
    naming a file so points nowhere from where the user is."""
    if derivatives_dir is None or error.path is None:
        return error
    as_given = {_relative(path, derivatives_dir): os.fspath(path) for path in given if path is not None}
    if error.path not in as_given:
        return error
    return InputError(error.message, as_given[error.path], step=error.step)


def _group_analysis(regions_tsv, participants_tsv, out_dir, *, study_path, session, sessions, qc_images, provenance,
                    derivatives_dir, atlas) -> Path:
    """``run_group_analysis``, its errors naming files as the records do."""
    check_writable_dir(out_dir)
    participants = read_participants(participants_tsv)
    regions = read_regions(regions_tsv)
    regions_source = os.fspath(regions_tsv)
    if derivatives_dir is not None:
        # A run's group level: results.json names its inputs relative to the derivative dataset.
        regions_source = _relative(regions_tsv, derivatives_dir)
        participants = replace(participants, source=_relative(participants_tsv, derivatives_dir))
    study = load_study(study_path)
    # The QC rule on flagged values, once, before anything reads the values (sections, statistics, figures).
    regions = exclude_flagged_values(regions, study.exclude_flagged)
    if session is not None:
        study = study.model_copy(deep=True)
        study.session = normalise_session_id(session)
    if sessions is not None and not isinstance(sessions, SessionsTable):
        sessions = read_sessions(sessions)
    if sessions is not None and derivatives_dir is not None and sessions.source:
        sessions = replace(sessions, source=_relative(sessions.source, derivatives_dir))
    paths = study_paths(out_dir)
    qc_images = [Path(image) for image in qc_images]
    present = sessions_of(regions)
    sections = Sections(derivatives_dir=None if derivatives_dir is None else Path(derivatives_dir), atlas=atlas,
                        regions=regions)
    if any(section is not None for section in (study.harmonise, study.longitudinal, study.normative)):
        sections.regional = run_regional_extensions(regions, participants, study, extension_paths(out_dir),
                                                    sessions=sessions, regions_source=regions_source)
        regions = sections.regional.regions
        regions_source = sections.regional.regions_source or regions_source

    if study.session is not None or len(present) <= 1:
        chosen = study.session or (present[0] if present else None)
        return _analyse(regions, regions_source, participants, sessions, study, chosen, paths, qc_images, provenance,
                        sections)

    analyses = []
    for label in present:
        at_session = study.model_copy(deep=True)
        at_session.session = label
        n = int(select_session(regions, label, source=regions_source)["participant_id"].nunique())
        try:
            report = _analyse(regions, regions_source, participants, sessions, at_session, label,
                              paths.session(label), qc_images, provenance, sections)
            analyses.append(SessionAnalysis(label, n, report=report))
        except InputError as exc:
            analyses.append(SessionAnalysis(label, n, reason=str(exc)))
    if not any(a.report for a in analyses):
        raise InputError("no session could be analysed: " + "; ".join(f"{a.session}: {a.reason}" for a in analyses),
                         regions_tsv)
    from qsmiron.io.atomic import write_tsv_atomic
    from qsmiron.report.html import write_session_index

    write_tsv_atomic(paths.sessions, pd.DataFrame(
        [{"session": a.session, "n_participants": a.n_participants,
          "status": "analysed" if a.report else "failed",
          "report": a.report.relative_to(paths.report.parent).as_posix() if a.report else None, "reason": a.reason}
         for a in analyses], columns=["session", "n_participants", "status", "report", "reason"]))
    return write_session_index(paths.report, analyses, regions_table=regions_source)


def _analyse(regions: pd.DataFrame, regions_source: str, participants: ParticipantsTable,
             sessions: SessionsTable | None, study: Study, session: str | None, paths: StudyPaths,
             qc_images: list[Path], provenance: Provenance | None, sections: Sections) -> Path:
    """One analysis (one session, or a dataset without sessions) into ``paths``."""
    at_session = participants_at_session(participants, sessions, session)
    results = run_study(regions, at_session, study, regions_source=regions_source)
    sections.add_to(results, at_session, study, session, paths.results.parent)
    if session is not None:
        qc_images = [image for image in qc_images if f"_{session}_" in image.name] or qc_images
        if provenance is not None:
            provenance = provenance.for_session(session, n_subjects=results.settings.n_participants.regions_table)
    write_results(results, paths.results.parent)
    from qsmiron.report.qc_pages import write_qc_pages

    write_qc_pages(provenance, paths)  # the scans' QC pages the report's QC table links
    # The HTML report is rendered by qsmiron.report (another area); imported here so that the
    # statistics above never depend on it.
    from qsmiron.report.html import write_report

    # The report shows chi (under the reference analysed, the summary analysed) in its main
    # sections, with its values in a table with ``mean_ppm``, and the other measures' results in
    # their own section.
    chi = select_measure(select_session(regions, session, source=regions_source), "chi", study.reference,
                         statistic=results.settings.statistic_by_measure.get(CHI), source=regions_source)
    return Path(write_report(results, paths.report, regions=chi.rename(columns={VALUE: "mean_ppm"}),
                             participants=at_session.frame, qc_images=tuple(qc_images), provenance=provenance))
