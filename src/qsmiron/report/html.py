"""The study report: one self-contained HTML file a researcher can open offline.

Everything is inside the file: styles inline, figures and QC images as base64 ``data:``
addresses, tables and the methods as ``data:`` downloads, no script, no font or stylesheet
fetched from anywhere. The page is rendered by a Jinja2 template with autoescaping on, so
region names or clinical labels can never inject markup. Sections carry stable ids
(``SECTION_IDS``, and ``OPTIONAL_SECTION_IDS`` when their analysis ran) that tests and links
rely on. What the page shows is built by :func:`qsmiron.report.context.build_context`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

import pandas as pd

from qsmiron import __version__
from qsmiron.io.atomic import write_text_atomic
from qsmiron.records.cohort import Provenance
from qsmiron.report.context import Finding, QcItem, ReportContext, build_context, now_text
from qsmiron.report.images import QcImage, image_data_uri
from qsmiron.stats.results import StudyResults

__all__ = ["Finding", "QcImage", "QcItem", "ReportContext", "SECTION_IDS", "OPTIONAL_SECTION_IDS",
           "build_context", "image_data_uri", "render_context", "render_report", "write_report",
           "write_session_index"]

TEMPLATE_DIR = Path(__file__).parent / "templates"
TEMPLATE_NAME = "report.html.j2"

SECTION_IDS = ("summary", "answers", "table1", "group-comparison", "associations", "relapse", "qc",
               "exclusions", "methods", "settings")
"""Ids of the report's sections that every report has, in page order."""

OPTIONAL_SECTION_IDS = ("measures", "harmonisation", "longitudinal", "normative", "voxelwise")
"""Ids of the sections shown when their analysis ran (between relapse and QC)."""


def _environment():
    import jinja2

    return jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATE_DIR)), autoescape=True,
                              undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)


def render_report(results: StudyResults, *, regions: pd.DataFrame, participants: pd.DataFrame,
                  qc_images: Sequence[Any] = (), provenance: Provenance | None = None,
                  folder: str | os.PathLike | None = None) -> str:
    """The report as an HTML string (see :func:`write_report`)."""
    context = build_context(results, regions=regions, participants=participants,
                            qc_images=qc_images, provenance=provenance, folder=folder)
    return render_context(context)


def render_context(context: ReportContext) -> str:
    """The HTML of an already built :class:`ReportContext`."""
    return _environment().get_template(TEMPLATE_NAME).render(report=context, section_ids=SECTION_IDS)


def write_report(results: StudyResults, out_html: str | os.PathLike, *, regions: pd.DataFrame,
                 participants: pd.DataFrame, qc_images: Sequence[Any] = (),
                 provenance: Provenance | None = None) -> Path:
    """Write the self-contained HTML study report (atomically) and return its path.

    Parameters
    ----------
    results : StudyResults
        From :func:`qsmiron.stats.analysis.run_study` (every measure: chi in the main
        sections, the others in their own), with the optional sections' records attached.
    out_html : path
        The report to write; its folder is created. The files the optional sections name
        (voxel-wise figures) are read relative to it (the folder of ``results.json``).
    regions : DataFrame
        Long regional table of chi: participant_id, region, hemisphere, mean_ppm.
    participants : DataFrame
        The participants table (group and clinical columns), for the figures.
    qc_images : sequence of (title, path), or of paths
        QC images (PNG, JPEG, GIF or SVG) to embed; a bare path is titled from its file
        name. A missing or unreadable one is listed as such in the QC section and among the
        warnings.
    provenance : Provenance, optional
        Each scan's records and the pipeline summary, for the methods paragraph and the
        exclusions.

    Returns
    -------
    Path
    """
    html = render_report(results, regions=regions, participants=participants, qc_images=qc_images,
                         provenance=provenance, folder=Path(out_html).parent)
    return write_text_atomic(out_html, html)


def write_session_index(out_html: str | os.PathLike, analyses: Sequence[Any], *,
                        regions_table: str | os.PathLike | None = None) -> Path:
    """Write the index page of a dataset whose sessions were analysed separately.

    Parameters
    ----------
    out_html : path
        The page to write (atomically); reports are linked relative to its folder.
    analyses : sequence
        Items with ``session``, ``n_participants``, ``report`` (a path, or None when the
        session could not be analysed) and ``reason``.
    regions_table : path, optional
        Named on the page.

    Returns
    -------
    Path
    """
    out_html = Path(out_html)
    rows = [{"session": item.session, "n_participants": item.n_participants, "reason": item.reason,
             "report": (Path(os.path.relpath(item.report, out_html.parent)).as_posix() if item.report else None)}
            for item in analyses]
    index = {"title": "qsmiron study report: sessions analysed separately", "version": __version__,
             "created": now_text(),
             "rows": rows, "regions_table": None if regions_table is None else str(regions_table)}
    return write_text_atomic(out_html, _environment().get_template("sessions.html.j2").render(index=index))
