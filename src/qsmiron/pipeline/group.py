"""Group level of a study: regions + participants tables -> statistics, tables, report."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterable

from qsmiron.io.participants import read_participants
from qsmiron.stats.analysis import run_study
from qsmiron.stats.regions import read_regions
from qsmiron.stats.study import load_study
from qsmiron.stats.write import write_results


def run_group_analysis(regions_tsv: str | os.PathLike, participants_tsv: str | os.PathLike,
                       out_dir: str | os.PathLike, *, study_path: str | os.PathLike | None = None,
                       qc_images: Iterable[str | os.PathLike] = (),
                       provenance: dict[str, Any] | None = None) -> Path:
    """Run every statistic of the study and write the tables, ``results.json`` and the report.

    Parameters
    ----------
    regions_tsv : path
        Long regions table (participant_id, region, hemisphere, mean_ppm).
    participants_tsv : path
        BIDS participants.tsv (participants.json beside it is read when present).
    out_dir : path
        Receives group_comparison.tsv, associations.tsv, relapse.tsv, table1.tsv,
        results.json (see :mod:`qsmiron.stats.write`) and report.html.
    study_path : path, optional
        Study file (TOML); defaults decided from the data when None.
    qc_images : iterable of paths
        QC images (QSM, atlas overlays) to embed in the report.
    provenance : dict, optional
        Per-subject recon/roi records and pipeline facts for the methods paragraph.

    Returns
    -------
    Path
        The report written (``out_dir / "report.html"``).

    Raises
    ------
    InputError
        Any problem with the inputs, as one line naming the file; nothing is written then.
    """
    participants = read_participants(participants_tsv)
    regions = read_regions(regions_tsv)
    study = load_study(study_path)
    results = run_study(regions, participants, study)
    out_dir = Path(out_dir)
    write_results(results, out_dir)
    # The HTML report is rendered by qsmiron.report (another area); imported here so that the
    # statistics above never depend on it.
    from qsmiron.report.html import write_report

    return Path(write_report(results, out_dir / "report.html", regions=regions,
                             participants=participants, qc_images=tuple(qc_images),
                             provenance=provenance))
