"""The study report: one self-contained HTML file a researcher can open offline.

Everything is inside the file: styles inline, figures and QC images as base64 ``data:``
addresses, no script, no font or stylesheet fetched from anywhere. The page is rendered by a
Jinja2 template with autoescaping on, so region names or clinical labels can never inject
markup. Sections carry stable ids (``summary``, ``settings``, ``table1``,
``group-comparison``, ``associations``, ``relapse``, ``figures``, ``qc``, ``exclusions``,
``methods``) that tests and links rely on.
"""

from __future__ import annotations

import base64
import datetime as _dt
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import pandas as pd

from qsmiron import __version__
from qsmiron.io.atomic import write_text_atomic
from qsmiron.report import figures as fig
from qsmiron.records.cohort import Provenance
from qsmiron.records.study import AnalysisSettings
from qsmiron.report.formatting import format_interval, format_number, format_p
from qsmiron.report.methods import methods_paragraph
from qsmiron.report.tables import (Row, Table, associations_table, generic_table, group_comparison_table,
                                   region_label, relapse_counts_table, relapse_table, table1_table,
                                   cell_text)
from qsmiron.stats.results import StudyResults

TEMPLATE_DIR = Path(__file__).parent / "templates"
TEMPLATE_NAME = "report.html.j2"

SECTION_IDS = ("summary", "settings", "table1", "group-comparison", "associations", "relapse",
               "figures", "qc", "exclusions", "methods")
"""Ids of the report's sections, in page order."""

QcItem = "tuple[str, str | os.PathLike] | str | os.PathLike"
"""A QC image: (title, path), or a path titled from its file name."""

N_TOP_SCATTER = 6
N_TOP_ROC = 6
N_TOP_KM = 4


@dataclass
class QcImage:
    title: str
    data_uri: str | None
    path: str
    problem: str | None = None


@dataclass
class Finding:
    analysis: str
    text: str


@dataclass
class ReportContext:
    """What the template receives (kept as one object so tests can inspect it)."""

    title: str
    created: str
    version: str
    summary: list[tuple[str, str]]
    findings: list[Finding]
    settings_rows: list[tuple[str, str]]
    table1: Table
    group_comparison: Table
    associations: Table
    relapse: Table
    relapse_counts: Table | None
    figures: list[fig.ReportFigure]
    figure_notes: list[str]
    qc_images: list[QcImage]
    warnings: list[str]
    exclusions: Table
    pipeline_problems: Table
    scan_warnings: list[tuple[str, int]]
    methods: list[str]
    alpha: float
    versions: list[tuple[str, str]] = field(default_factory=list)
    messages: dict[str, str] = field(default_factory=dict)


# --------------------------------------------------------------------------- settings helpers
def _flatten(settings: Mapping[str, Any], prefix: str = "") -> list[tuple[str, str]]:
    rows = []
    for key, value in settings.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            rows.extend(_flatten(value, name + "."))
        elif isinstance(value, (list, tuple)):
            rows.append((name, ", ".join(map(str, value)) if value else "(none)"))
        elif value is None:
            rows.append((name, "(not used)"))
        else:
            rows.append((name, str(value)))
    return rows


# --------------------------------------------------------------------------- findings summary
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
    return [Finding(kind, f"{text(r)}, p FDR = {format_p(r['p_fdr'])}")
            for kind, frame, text in describe for r in _significant_rows(frame, alpha)]


# --------------------------------------------------------------------------- figures
def _figures(results: StudyResults, regions: pd.DataFrame, participants: pd.DataFrame,
             settings: AnalysisSettings, groups: Sequence[str]) -> tuple[list[fig.ReportFigure], list[str]]:
    figures, notes = [], []
    group_column = settings.groups.column
    try:
        values = fig.cohort_values(regions, participants, group_column)
    except KeyError as error:
        return [], [f"Figures need the regions and participants tables ({error} missing)."]
    region_order = settings.regions or None
    covariates = list(settings.covariates or [])

    box = fig.group_box_figure(values, groups, comparison=results.group_comparison, regions=region_order)
    if box is not None:
        figures.append(fig.ReportFigure(
            "fig-groups", "Regional susceptibility by group",
            f"Box plots (median, quartiles, whiskers to 1.5 IQR) of mean susceptibility per region and "
            f"hemisphere for {' and '.join(groups)}, with every participant as a point; the FDR-adjusted "
            "ANCOVA p-value is printed under each hemisphere.",
            fig.figure_to_data_uri(box), "Box plots of susceptibility per region and group"))
    else:
        notes.append("No group figure: no participant of the compared groups has regional values.")

    assoc_cov = covariates if settings.associations.covariates is None else list(settings.associations.covariates)
    scatter = fig.association_scatter_figure(values, results.associations, n_top=N_TOP_SCATTER,
                                             covariates=assoc_cov)
    if scatter is not None:
        n_rows = 0 if results.associations is None else len(results.associations)
        figures.append(fig.ReportFigure(
            "fig-associations", "Strongest associations",
            f"The {min(N_TOP_SCATTER, n_rows)} region-variable pairs with the smallest p of {n_rows}: "
            "participants, ordinary least-squares line and its 95 % confidence band. The r in each title "
            "is the table's correlation" + (" (partial, adjusted for " + ", ".join(assoc_cov) + ")" if assoc_cov else "")
            + "; the line is not adjusted.",
            fig.figure_to_data_uri(scatter), "Scatter plots of susceptibility against clinical variables"))
    else:
        notes.append("No association figure: no association rows with plottable data.")

    roc = fig.roc_figure(results.roc_curves, results.relapse, n_top=N_TOP_ROC)
    if roc is not None:
        figures.append(fig.ReportFigure(
            "fig-roc", "ROC curves for relapse",
            f"Receiver operating characteristic of susceptibility alone for relapse, for up to {N_TOP_ROC} "
            "regions with the smallest logistic-regression p; the dot marks the Youden cut-off.",
            fig.figure_to_data_uri(roc), "ROC curves of susceptibility for relapse"))
    else:
        notes.append("No ROC figure: no ROC curves were computed.")

    time_label = settings.relapse.time or "time"
    km = fig.km_figure(results.km_curves, results.relapse, n_top=N_TOP_KM, time_label=str(time_label))
    if km is not None:
        figures.append(fig.ReportFigure(
            "fig-km", "Kaplan-Meier curves",
            f"Relapse-free survival for participants below (low) and above (high) the median "
            f"susceptibility, with 95 % confidence bands, for up to {N_TOP_KM} regions with the smallest "
            "Cox p.",
            fig.figure_to_data_uri(km), "Kaplan-Meier curves split at median susceptibility"))
    else:
        notes.append("No Kaplan-Meier figure: no time-to-event data.")
    return figures, notes


# --------------------------------------------------------------------------- assembling
def _summary(results: StudyResults, regions: pd.DataFrame, participants: pd.DataFrame,
             settings: AnalysisSettings, groups: Sequence[str]) -> list[tuple[str, str]]:
    rows = [("participants in the participants table", str(len(participants)))]
    if "participant_id" in regions:
        rows.append(("participants with regional values", str(regions["participant_id"].nunique())))
    group_column = settings.groups.column
    if group_column in participants:
        from qsmiron.stats.study import group_labels

        counts = group_labels(participants[group_column]).dropna().value_counts()
        rows.append((f"per group ({group_column})", ", ".join(f"{g}: {n}" for g, n in counts.items())))
    if len(groups) == 2:
        rows.append(("groups compared", f"{groups[0]} vs {groups[1]}"))
    if "region" in regions:
        names = list(dict.fromkeys(regions["region"].astype(str)))
        hemis = sorted(regions["hemisphere"].dropna().astype(str).unique()) if "hemisphere" in regions else []
        rows.append(("regions", f"{len(names)} ({', '.join(names)})" + (f"; hemispheres {', '.join(hemis)}" if hemis else "")))
    if settings.session:
        others = [str(s) for s in settings.sessions_in_regions_table if s != settings.session]
        rows.append(("session analysed", str(settings.session)
                     + (f" (other sessions in the regions table: {', '.join(others)})" if others else "")))
    rows.append(("covariates", ", ".join(settings.covariates) if settings.covariates else "none"))
    rows.append(("study file", str(settings.study_file or "none (defaults resolved from the data)")))
    return rows


def _pipeline_table(provenance: Provenance) -> Table:
    rows = []
    pipeline = provenance.pipeline
    for kind, items in (("failed", pipeline.failed if pipeline else []),
                        ("excluded", pipeline.excluded if pipeline else [])):
        for item in items:
            who = " ".join(text for text in (item.participant_id, item.session) if text)
            rows.append(Row([kind, cell_text(who or None), cell_text(item.step), cell_text(item.reason)]))
    return Table("pipeline-problems-table", ["status", "participant", "step", "reason"], rows,
                 "Subjects the pipeline could not process or left out.",
                 "No subject failed or was excluded by the pipeline.", 4)


def _scan_warnings(provenance: Provenance) -> list[tuple[str, int]]:
    counts: dict[str, int] = {}
    for record in [*provenance.recon_records, *provenance.regions_records]:
        for warning in record.warnings:
            counts[warning] = counts.get(warning, 0) + 1
    return sorted(counts.items(), key=lambda item: -item[1])


def build_context(results: StudyResults, *, regions: pd.DataFrame, participants: pd.DataFrame,
                  qc_images: Sequence[QcItem] = (),
                  provenance: Provenance | None = None) -> ReportContext:
    """Everything the template shows, formatted (figures rendered to data URIs)."""
    provenance = provenance or Provenance()
    settings = results.settings
    alpha = settings.alpha
    groups = [settings.group_a, settings.group_b]
    covariates = list(settings.covariates or [])
    assoc_cov = covariates if settings.associations.covariates is None else list(settings.associations.covariates)

    figures, figure_notes = _figures(results, regions, participants, settings, groups)
    qc = _qc_images(qc_images)
    warnings = list(results.warnings or [])
    warnings += [f"QC image '{image.title}' could not be shown ({image.problem}): {image.path}"
                 for image in qc if image.problem]
    exclusions = pd.DataFrame([item.model_dump() for item in results.exclusions],
                              columns=["participant_id", "analysis", "reason"])
    # Long method descriptions go to the methods section, not the settings table.
    shown_settings = settings.model_dump(mode="json", exclude={"methods"})
    methods = methods_paragraph(provenance, settings, results=results,
                                n_qc_images=sum(1 for image in qc if image.data_uri))
    messages = {
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
        created=_now_text(),
        version=__version__,
        summary=_summary(results, regions, participants, settings, groups),
        findings=_findings(results, alpha),
        settings_rows=_flatten(shown_settings),
        table1=table1_table(results.table1, groups, alpha),
        group_comparison=group_comparison_table(results.group_comparison, groups, alpha, covariates, settings.methods),
        associations=associations_table(results.associations, alpha, assoc_cov, settings.methods),
        relapse=relapse_table(results.relapse, alpha, settings.methods),
        relapse_counts=relapse_counts_table(results.relapse_counts, alpha, settings.methods),
        figures=figures,
        figure_notes=figure_notes,
        qc_images=qc,
        warnings=warnings,
        exclusions=generic_table(exclusions, "exclusions-table", alpha,
                                  caption="Participants left out of an analysis, and why.",
                                  empty_message="No participant was left out of any analysis.", numeric_from=99),
        pipeline_problems=_pipeline_table(provenance),
        scan_warnings=_scan_warnings(provenance),
        methods=[p for p in methods.split("\n\n") if p.strip()],
        alpha=alpha,
        versions=versions,
        messages=messages,
    )


def _environment():
    import jinja2

    return jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATE_DIR)), autoescape=True,
                              undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)


def render_report(results: StudyResults, *, regions: pd.DataFrame, participants: pd.DataFrame,
                  qc_images: Sequence[QcItem] = (),
                  provenance: Provenance | None = None) -> str:
    """The report as an HTML string (see :func:`write_report`)."""
    context = build_context(results, regions=regions, participants=participants,
                            qc_images=qc_images, provenance=provenance)
    return render_context(context)


def render_context(context: ReportContext) -> str:
    """The HTML of an already built :class:`ReportContext`."""
    return _environment().get_template(TEMPLATE_NAME).render(report=context, section_ids=SECTION_IDS)


def write_report(results: StudyResults, out_html: str | os.PathLike, *, regions: pd.DataFrame,
                 participants: pd.DataFrame, qc_images: Sequence[QcItem] = (),
                 provenance: Provenance | None = None) -> Path:
    """Write the self-contained HTML study report (atomically) and return its path.

    Parameters
    ----------
    results : StudyResults
        From :func:`qsmiron.stats.analysis.run_study`.
    out_html : path
        The report to write; its folder is created.
    regions : DataFrame
        Long regional table: participant_id, region, hemisphere, mean_ppm.
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
    html = render_report(results, regions=regions, participants=participants,
                         qc_images=qc_images, provenance=provenance)
    return write_text_atomic(out_html, html)


def _now_text() -> str:
    """The local date and time a page is generated, with its time zone."""
    return _dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z").strip()


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
             "created": _now_text(),
             "rows": rows, "regions_table": None if regions_table is None else str(regions_table)}
    return write_text_atomic(out_html, _environment().get_template("sessions.html.j2").render(index=index))
