"""The study file's optional regional analyses in the order the group level runs them.

``run_regional_extensions`` is the one call the group level makes before its usual statistics:

1. ``[harmonise]``: ComBat on the regions table, written as ``regions_harmonised.tsv`` and
   ``harmonise_site_effects.tsv``; the harmonised table is returned for everything after it
   (the group comparison, associations and relapse models included);
2. ``[longitudinal]``: mixed models per region over the sessions, ``longitudinal.tsv``;
3. ``[normative]``: z-scores against the reference group, ``normative.tsv`` (each session
   separately, with a ``session`` column, when the table has several).

Sections absent from the study file are skipped. Voxel-wise inference works on maps, not on
the regions table: see :func:`qsmiron.stats.voxelwise.run_voxelwise`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from qsmiron.stats.harmonise import Harmonisation, harmonise_regions, write_harmonisation
from qsmiron.stats.longitudinal import LongitudinalResults, longitudinal_models, write_longitudinal
from qsmiron.stats.normative import NORMATIVE_FILE, NormativeResults, normative_scores
from qsmiron.stats.regions import sessions_of, validate_regions
from qsmiron.stats.study import Study


@dataclass
class RegionalExtensions:
    """What the optional sections produced; ``regions`` is the table the statistics should use."""

    regions: pd.DataFrame
    harmonisation: Harmonisation | None = None
    longitudinal: LongitudinalResults | None = None
    normative: NormativeResults | None = None
    normative_table: pd.DataFrame | None = None
    files: dict[str, Path] = field(default_factory=dict)
    methods: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    exclusions: list[dict[str, Any]] = field(default_factory=list)


def run_regional_extensions(regions: pd.DataFrame, participants: pd.DataFrame, study: Study,
                            out_dir: str | os.PathLike, *, sessions: pd.DataFrame | None = None) -> RegionalExtensions:
    """Run the study's ``[harmonise]``, ``[longitudinal]`` and ``[normative]`` sections into ``out_dir``.

    Parameters
    ----------
    regions : DataFrame
        Long regions table (optionally with sessions).
    participants : DataFrame
        From :func:`qsmiron.io.participants.read_participants`.
    study : Study
    out_dir : path
    sessions : DataFrame, optional
        The sessions tables (:func:`qsmiron.io.participants.read_bids_sessions`); needed by
        ``[longitudinal]``.

    Raises
    ------
    InputError
        From each section's checks (one line naming the file).
    """
    from qsmiron.io.atomic import write_tsv_atomic

    out_dir = Path(out_dir)
    result = RegionalExtensions(regions=validate_regions(regions))
    if study.harmonise is not None:
        result.harmonisation = harmonise_regions(result.regions, participants, study)
        result.files.update(write_harmonisation(result.harmonisation, out_dir))
        result.regions = result.harmonisation.regions
        result.methods["harmonisation"] = result.harmonisation.settings["methods"]
        result.warnings += result.harmonisation.warnings
        result.exclusions += result.harmonisation.exclusions
    if study.longitudinal is not None:
        result.longitudinal = longitudinal_models(result.regions, participants, sessions, study)
        result.files["longitudinal"] = write_longitudinal(result.longitudinal, out_dir)
        result.methods["longitudinal"] = result.longitudinal.settings["methods"]
        result.warnings += result.longitudinal.warnings
        result.exclusions += result.longitudinal.exclusions
    if study.normative is not None:
        parts = []
        for session in sessions_of(result.regions) or [None]:
            scored = normative_scores(result.regions, participants, study, session=session)
            result.normative = scored
            parts.append(scored.table if session is None else scored.table.assign(session=session))
        result.normative_table = pd.concat(parts, ignore_index=True)
        out_dir.mkdir(parents=True, exist_ok=True)
        result.files["normative"] = write_tsv_atomic(out_dir / NORMATIVE_FILE, result.normative_table)
        result.methods["normative"] = result.normative.statement
    return result
