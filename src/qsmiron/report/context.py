"""Everything the report template shows, built from the study results (:func:`build_context`).

The page opens with the study's answers (:mod:`qsmiron.report.opening`), then the tables with
their figures beside them, the other measures, the optional sections, quality control,
exclusions and warnings, the methods (prose, references, consensus checklist, copyable as
Markdown) and, last, the settings in plain words.
"""

from __future__ import annotations

import datetime as _dt
import os
from dataclasses import dataclass, field
from typing import Any, Sequence

import pandas as pd

from qsmiron import __version__
from qsmiron.records.cohort import Provenance
from qsmiron.report import figures as fig
from qsmiron.report.checklist import checklist_rows
from qsmiron.report.figure_set import association_figures, group_figures, relapse_figures
from qsmiron.report.formatting import format_interval, format_number, format_p
from qsmiron.report.images import QcImage, qc_images as load_qc_images
from qsmiron.report.measures_view import MeasureView, measure_views
from qsmiron.report.methods import methods_paragraph, method_references
from qsmiron.report.names import region_label, variable_short
from qsmiron.report.opening import Answer, study_answers
from qsmiron.report.qc_pages import qc_section_html
from qsmiron.report.references import CIT168, CONSENSUS, statistics_references
from qsmiron.report.sections import ExtraSection, extra_sections
from qsmiron.report.settings_text import settings_rows
from qsmiron.report.truth_section import truth_section_html
from qsmiron.report.tables import (Row, Table, associations_table, cell_text, generic_table, group_comparison_table,
                                   relapse_counts_table, relapse_table, survival_table, table1_table,
                                   with_download)
from qsmiron.stats.results import StudyResults

QcItem = "tuple[str, str | os.PathLike] | str | os.PathLike"
"""A QC image: (title, path), or a path titled from its file name."""


@dataclass
class Finding:
    analysis: str
    text: str


@dataclass
class Methods:
    paragraphs: list[str]
    references: list[str]
    checklist: list[tuple[str, str, str]]
    markdown: str
    download: str


@dataclass
class ReportContext:
    """What the template receives (kept as one object so tests can inspect it)."""

    title: str
    created: str
    version: str
    summary: list[tuple[str, str]]
    answers: list[Answer]
    findings: list[Finding]
    table1: Table
    group_comparison: Table
    group_figures: list[fig.ReportFigure]
    associations: Table
    association_figures: list[fig.ReportFigure]
    relapse: Table
    survival: Table | None
    relapse_counts: Table | None
    relapse_figures: list[fig.ReportFigure]
    measures: list[MeasureView]
    sections: list[ExtraSection]
    figure_notes: list[str]
    qc_images: list[QcImage]
    warnings: list[str]
    exclusions: Table
    pipeline_problems: Table
    scan_warnings: list[tuple[str, int]]
    methods: Methods
    settings_rows: list[tuple[str, str]]
    alpha: float
    versions: list[tuple[str, str]] = field(default_factory=list)
    messages: dict[str, str] = field(default_factory=dict)
    qc_cohort: str = ""
    """The cohort QC section's markup (``qsmiron.report.qc_pages.qc_section_html``)."""
    truth: str = ""
    """A simulated dataset's check against its truth (``qsmiron.report.truth_section``)."""


def now_text() -> str:
    """The local date and time a page is generated, with its time zone."""
    return _dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z").strip()


def _significant_rows(frame: pd.DataFrame | None, alpha: float) -> list[pd.Series]:
    """Rows with FDR-adjusted p below ``alpha``, most significant first."""
    if frame is None or frame.empty or "p_fdr" not in frame:
        return []
    return [row for _, row in frame[frame["p_fdr"] < alpha].sort_values("p_fdr", kind="mergesort").iterrows()]


def _findings(results: StudyResults, alpha: float) -> list[Finding]:
    def where(r) -> str:
        return region_label(r["region"], r.get("hemisphere"))

    describe = (
        ("group comparison", results.group_comparison,
         lambda r: f"{where(r)}: {r.get('group_a', 'A')} vs {r.get('group_b', 'B')}, "
                   f"Cohen's d = {format_number(r.get('cohen_d'), 2)}"),
        ("association", results.associations,
         lambda r: f"{where(r)} with {r.get('variable')} ({r.get('group')}): r = {format_number(r.get('r'), 2)}"),
        ("relapse", results.relapse,
         lambda r: f"{where(r)}: OR per SD "
                   f"{format_interval(r.get('odds_ratio'), r.get('or_ci_low'), r.get('or_ci_high'))}, "
                   f"AUC {format_number(r.get('auc'), 2)}"),
    )
    out = []
    for kind, frame, text in describe:
        for r in _significant_rows(frame, alpha):
            family = r.get("family")
            tag = kind + (f", {family}" if isinstance(family, str) and family else "")
            out.append(Finding(tag, f"{text(r)}, p FDR = {format_p(r['p_fdr'])}"))
    return out


def _summary(results: StudyResults, regions: pd.DataFrame, participants: pd.DataFrame) -> list[tuple[str, str]]:
    settings = results.settings
    rows = [("Participants", f"{len(participants)} in the participants table"
             + (f", {regions['participant_id'].nunique()} with regional values" if "participant_id" in regions else ""))]
    group_column = settings.groups.column
    if group_column in participants:
        from qsmiron.stats.study import group_labels

        counts = group_labels(participants[group_column]).dropna().value_counts()
        rows.append(("Groups", ", ".join(f"{g}: {n}" for g, n in counts.items())
                     + f" ({settings.group_a} compared with {settings.group_b})"))
    rows.append(("Regions", f"{len(settings.regions)} analysed, each hemisphere separately"
                 + (f"; primary: {', '.join(settings.primary_regions)}" if settings.primary_regions else "")))
    if settings.session:
        others = [str(s) for s in settings.sessions_in_regions_table if s != settings.session]
        rows.append(("Session", str(settings.session) + (f" (also in the data: {', '.join(others)}, analysed "
                                                         "separately)" if others else "")))
    rows.append(("Covariates", ", ".join(settings.covariates) if settings.covariates else "none"))
    return rows


def _pipeline_table(provenance: Provenance) -> Table:
    rows = []
    pipeline = provenance.pipeline
    for kind, items in (("failed", pipeline.failed if pipeline else []),
                        ("excluded", pipeline.excluded if pipeline else [])):
        for item in items:
            who = " ".join(text for text in (item.participant_id, item.session) if text)
            rows.append(Row([kind, cell_text(who or None), cell_text(item.step), cell_text(item.reason)]))
    table = Table("pipeline-problems-table", ["status", "participant", "step", "reason"], rows,
                  "Subjects the pipeline could not process or left out.",
                  "No subject failed or was excluded by the pipeline.", 4)
    frame = pd.DataFrame([row.cells for row in rows], columns=table.headers)
    return with_download(table, frame, "pipeline_problems.tsv")


def _scan_warnings(provenance: Provenance) -> list[tuple[str, int]]:
    counts: dict[str, int] = {}
    for record in [*provenance.recon_records, *provenance.regions_records]:
        for warning in record.warnings:
            counts[warning] = counts.get(warning, 0) + 1
    return sorted(counts.items(), key=lambda item: -item[1])


def _methods(results: StudyResults, provenance: Provenance, n_qc_images: int) -> Methods:
    import urllib.parse

    text = methods_paragraph(provenance, results.settings, results=results, n_qc_images=n_qc_images,
                             with_references=False)
    paragraphs = [p for p in text.split("\n\n") if p.strip()]
    paragraphs += [record.methods for record in (results.harmonisation, results.longitudinal, results.normative,
                                                 results.voxelwise) if record is not None and record.methods]
    references = method_references(provenance) + statistics_references(results)
    atlas_names = {r.atlas.name.lower() for r in provenance.regions_records}
    if not provenance.regions_records or any("cit168" in name for name in atlas_names):
        references.append(CIT168)
    references = list(dict.fromkeys(references + [CONSENSUS]))
    checklist = checklist_rows(provenance, results)
    markdown = "\n\n".join(["## Methods", *paragraphs, "### References",
                            "\n".join(f"{i}. {ref}" for i, ref in enumerate(references, 1))]) + "\n"
    download = "data:text/markdown;charset=utf-8," + urllib.parse.quote(markdown, safe="")
    return Methods(paragraphs, references, checklist, markdown, download)


def build_context(results: StudyResults, *, regions: pd.DataFrame, participants: pd.DataFrame,
                  qc_images: Sequence[Any] = (), provenance: Provenance | None = None,
                  folder: str | os.PathLike | None = None) -> ReportContext:
    """Everything the template shows, formatted (figures rendered to data URIs).

    ``results`` are those of the measures analysed (``measure`` column) or of chi alone; the
    main sections show chi, the measures section the others. ``folder`` is where the files
    of the optional sections are (the folder of ``results.json``).
    """
    from qsmiron.stats.measures import for_measure

    provenance = provenance or Provenance()
    everything = results
    if results.group_comparison is not None and "measure" in results.group_comparison.columns:
        results = for_measure(results, "chi")
    settings = results.settings
    alpha = settings.alpha
    groups = [settings.group_a, settings.group_b]
    covariates = list(settings.covariates or [])
    assoc_cov = covariates if settings.associations.covariates is None else list(settings.associations.covariates)
    units = results.units or {}

    notes: list[str] = []
    group_figs = group_figures(results, regions, participants, notes)
    assoc_figs = association_figures(results, regions, participants, notes)
    relapse_figs = relapse_figures(results, notes)
    qc = load_qc_images(qc_images)
    warnings = list(results.warnings or [])
    warnings += [f"QC image '{image.title}' could not be shown ({image.problem}): {image.path}"
                 for image in qc if image.problem]
    exclusions = pd.DataFrame([item.model_dump() for item in results.exclusions],
                              columns=["participant_id", "analysis", "reason"])
    time_label = variable_short(settings.relapse.time, units) if settings.relapse.time else "follow-up"
    messages = {
        "answers": "The statistics produced no answers (an analysis of an older version, or nothing to compare).",
        "associations": ("No clinical variables were named or found for the associations."
                         if not settings.associations.variables else
                         "No association rows (see exclusions and warnings)."),
        "relapse": ("No relapse outcome was named or found (column 'relapse'), so no relapse models were run."
                    if not settings.relapse.outcome else "No relapse rows (see exclusions and warnings)."),
    }
    versions = sorted((str(k), str(v)) for k, v in (results.versions or {}).items())
    session = settings.session
    return ReportContext(
        title="qsmiron study report" + (f", session {session}" if session else ""),
        created=now_text(),
        version=__version__,
        summary=_summary(results, regions, participants),
        answers=study_answers(results.answers, units),
        findings=_findings(results, alpha),
        table1=table1_table(results.table1, groups, alpha, units),
        group_comparison=group_comparison_table(results.group_comparison, groups, alpha, covariates, settings.methods),
        group_figures=group_figs,
        associations=associations_table(results.associations, alpha, assoc_cov, settings.methods),
        association_figures=assoc_figs,
        relapse=relapse_table(results.relapse, alpha, settings.methods),
        survival=survival_table(results.relapse, alpha, settings.methods, time_label),
        relapse_counts=relapse_counts_table(results.relapse_counts, alpha, settings.methods),
        relapse_figures=relapse_figs,
        measures=measure_views(everything, settings, provenance),
        sections=extra_sections(results, folder),
        figure_notes=notes,
        qc_images=qc,
        warnings=warnings,
        exclusions=with_download(generic_table(exclusions, "exclusions-table", alpha,
                                               caption="Participants left out of an analysis, and why.",
                                               empty_message="No participant was left out of any analysis.",
                                               numeric_from=99), exclusions, "exclusions.tsv"),
        pipeline_problems=_pipeline_table(provenance),
        scan_warnings=_scan_warnings(provenance),
        methods=_methods(results, provenance, sum(1 for image in qc if image.data_uri)),
        settings_rows=settings_rows(settings, units),
        alpha=alpha,
        versions=versions,
        messages=messages,
        qc_cohort=qc_section_html(provenance),
        truth=truth_section_html(provenance, regions, results.group_comparison, participants),
    )
