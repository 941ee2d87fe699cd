"""The study file's optional regional analyses in the order the group level runs them.

``run_regional_extensions`` is the one call the group level makes before its usual statistics:

1. ``[harmonise]``: ComBat on the regions table, written as ``regions_harmonised.tsv`` and
   ``harmonise_site_effects.tsv``; the harmonised table is returned for everything after it
   (the group comparison, associations and relapse models included);
2. ``[longitudinal]``: mixed models per region over the sessions, ``longitudinal.tsv``;
3. ``[normative]``: z-scores against the reference group, ``normative.tsv`` (each session
   separately, with a ``session`` column, when the table has several).

The study's ``exclude_flagged`` rule (:mod:`qsmiron.stats.qc_exclusion`) is applied to the
regions table before the first of them. Sections absent from the study file are skipped. Names
come from ``qsmiron.io.derivatives.extension_paths``. Voxel-wise inference works on maps, not on the
regions table: see :func:`qsmiron.stats.voxelwise.run_voxelwise`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from qsmiron.io.derivatives import ExtensionPaths
from qsmiron.io.participants import ParticipantsTable, SessionsTable, participants_at_session
from qsmiron.records.extensions import HarmonisationRecord, LongitudinalRecord, NormativeRecord
from qsmiron.records.study import Exclusion
from qsmiron.stats.harmonise import harmonise_regions, write_harmonisation
from qsmiron.stats.longitudinal import longitudinal_models, write_longitudinal
from qsmiron.stats.normative import normative_scores, normative_statement
from qsmiron.stats.qc_exclusion import exclude_flagged_values
from qsmiron.stats.regions import sessions_of, validate_regions
from qsmiron.stats.results import StudyResults
from qsmiron.stats.study import Study, label_text


@dataclass
class RegionalExtensions:
    """What the optional sections produced; ``regions`` is the table the statistics should use.

    Attributes
    ----------
    regions : DataFrame
        The harmonised regions table with ``[harmonise]``, else the table given.
    regions_source : str or None
        The file ``regions`` was written to (``regions_harmonised.tsv``), else None.
    harmonisation, longitudinal, normative : record or None
    files : dict
        Role -> path written (``qsmiron.io.derivatives.ExtensionPaths`` roles).
    exclusions : dict
        Session (None: every session) -> participants left out of a section.
    warnings : list of str
    """

    regions: pd.DataFrame
    regions_source: str | None = None
    harmonisation: HarmonisationRecord | None = None
    longitudinal: LongitudinalRecord | None = None
    normative: NormativeRecord | None = None
    files: dict[str, Path] = field(default_factory=dict)
    exclusions: dict[str | None, list[Exclusion]] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def attach(self, results: StudyResults, session: str | None, folder: str | os.PathLike) -> None:
        """Put the sections into one analysis's results: the rows of its session, exclusions and
        warnings, and the files named relative to ``folder`` (where its ``results.json`` goes)."""
        def located(record):
            files = {role: Path(os.path.relpath(self.files[role], folder)).as_posix() for role in record.files}
            return record.model_copy(update={"files": files})

        if self.harmonisation is not None:
            harmonisation = located(self.harmonisation)
            if session is not None:
                harmonisation.site_effects = [row for row in harmonisation.site_effects if row.session == session]
            results.harmonisation = harmonisation
        if self.longitudinal is not None:
            results.longitudinal = located(self.longitudinal)
        if self.normative is not None:
            normative = located(self.normative)
            if session is not None:
                normative.sessions = [item for item in normative.sessions if item.session == session]
                normative.outliers = [item for item in normative.outliers if item.session == session]
            results.normative = normative
        results.add_exclusions([*self.exclusions.get(None, []), *self.exclusions.get(session, [])], self.warnings)


def run_regional_extensions(regions: pd.DataFrame, participants: ParticipantsTable, study: Study,
                            paths: ExtensionPaths, *, sessions: SessionsTable | None = None,
                            regions_source: str | None = None) -> RegionalExtensions:
    """Run the study's ``[harmonise]``, ``[longitudinal]`` and ``[normative]`` sections, writing ``paths``.

    Parameters
    ----------
    regions : DataFrame
        Long regions table (optionally with sessions).
    participants : ParticipantsTable
        From :func:`qsmiron.io.participants.read_participants`.
    study : Study
    paths : ExtensionPaths
        Where the tables go (``qsmiron.io.derivatives.extension_paths``).
    sessions : SessionsTable, optional
        The sessions tables (:func:`qsmiron.io.participants.read_bids_sessions`): each
        session's values (site, age) for harmonisation and normative scores, and the time of
        each session, which ``[longitudinal]`` needs.
    regions_source : str, optional
        The regions table's file, named in errors.

    Raises
    ------
    InputError
        From each section's checks (one line naming the file).
    """
    # The study's QC rule first, so that every section (and what follows them) sees the same values.
    result = RegionalExtensions(regions=exclude_flagged_values(validate_regions(regions), study.exclude_flagged))
    if study.harmonise is not None:
        harmonised = harmonise_regions(result.regions, participants, study, sessions=sessions)
        result.files.update(write_harmonisation(harmonised, paths))
        result.regions, result.regions_source = harmonised.regions, os.fspath(paths.regions_harmonised)
        result.harmonisation = harmonised.record
        result.warnings += harmonised.warnings
        for session, items in harmonised.exclusions.items():
            result.exclusions.setdefault(session, []).extend(items)
    if study.longitudinal is not None:
        longitudinal = longitudinal_models(result.regions, participants, sessions, study,
                                           regions_source=result.regions_source or regions_source)
        result.files["longitudinal"] = write_longitudinal(longitudinal, paths.longitudinal)
        result.longitudinal = longitudinal.record
        result.warnings += longitudinal.warnings
        result.exclusions.setdefault(None, []).extend(longitudinal.exclusions)
    if study.normative is not None:
        result.normative = _normative(result, participants, sessions, study, paths)
    return result


def _normative(result: RegionalExtensions, participants: ParticipantsTable, sessions: SessionsTable | None,
               study: Study, paths: ExtensionPaths) -> NormativeRecord:
    """Each session's z-scores into ``normative.tsv`` (a ``session`` column with sessions), and the record."""
    from qsmiron.io.atomic import write_tsv_atomic

    parts, summaries, outliers, terms = [], [], [], []
    for session in sessions_of(result.regions) or [None]:
        scored = normative_scores(result.regions, participants_at_session(participants, sessions, session), study,
                                  session=session)
        parts.append(scored.table if session is None else scored.table.assign(session=session))
        summaries.append(scored.summary)
        outliers += scored.outliers()
        terms = scored.terms
    paths.normative.parent.mkdir(parents=True, exist_ok=True)
    result.files["normative"] = write_tsv_atomic(paths.normative, pd.concat(parts, ignore_index=True))
    settings = study.normative
    return NormativeRecord(reference_group=label_text(settings.reference_group), group_column=study.groups.column,
                           covariates=list(settings.covariates), terms=terms, outlier_z=settings.outlier_z,
                           methods=normative_statement(study, summaries), sessions=summaries, outliers=outliers,
                           files={"normative": paths.normative.name})

