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
from qsmiron.report.formatting import (
    MISSING, SIGNIFICANCE_LEVEL, format_auto, format_count, format_interval, format_mean_sd,
    format_number, format_p, format_ppm, is_missing, is_significant,
)
from qsmiron.report.methods import methods_paragraph
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


# --------------------------------------------------------------------------- table model
@dataclass
class Row:
    cells: list[str]
    significant: bool = False


@dataclass
class Table:
    """A table as the template shows it: text cells, rows flagged significant."""

    id: str
    headers: list[str]
    rows: list[Row]
    caption: str = ""
    empty_message: str = "No rows."
    numeric_from: int = 0
    """Index of the first column that is right-aligned (numbers)."""
    text_columns: set[int] = field(default_factory=set)
    """Columns at or after ``numeric_from`` that hold text (left-aligned)."""

    def is_numeric(self, index: int) -> bool:
        return index >= self.numeric_from and index not in self.text_columns

    @property
    def n_significant(self) -> int:
        return sum(row.significant for row in self.rows)


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
def _settings(results: StudyResults) -> dict[str, Any]:
    settings = results.settings
    if hasattr(settings, "model_dump"):
        settings = settings.model_dump(mode="json")
    return dict(settings or {})


def _groups(settings: Mapping[str, Any], comparison: pd.DataFrame) -> list[str]:
    groups = settings.get("groups") or {}
    compare = groups.get("compare") or [groups.get("group_a"), groups.get("group_b")]
    compare = [str(g) for g in compare if g is not None]
    if len(compare) == 2:
        return compare
    if comparison is not None and not comparison.empty and {"group_a", "group_b"} <= set(comparison):
        return [str(comparison["group_a"].iloc[0]), str(comparison["group_b"].iloc[0])]
    return compare


def _alpha(settings: Mapping[str, Any]) -> float:
    value = settings.get("alpha")
    return float(value) if value is not None and not is_missing(value) else SIGNIFICANCE_LEVEL


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


def _label(region: Any, hemisphere: Any) -> str:
    return str(region) if is_missing(hemisphere) else f"{region} {hemisphere}"


def _text(value: Any) -> str:
    return MISSING if is_missing(value) else str(value)


# --------------------------------------------------------------------------- tables
def _generic_table(frame: pd.DataFrame | None, table_id: str, alpha: float, *, caption: str = "",
                   empty_message: str = "No rows.", numeric_from: int = 1) -> Table:
    """Any frame, each value formatted by its column name; rows with ``*p_fdr`` < alpha marked."""
    if frame is None or frame.empty:
        return Table(table_id, [], [], caption, empty_message)
    fdr_columns = [c for c in frame.columns if str(c).lower().endswith("p_fdr")]
    rows = []
    for _, record in frame.iterrows():
        cells = [format_auto(str(column), record[column]) for column in frame.columns]
        rows.append(Row(cells, any(is_significant(record[c], alpha) for c in fdr_columns)))
    text = {i for i, column in enumerate(frame.columns) if not pd.api.types.is_numeric_dtype(frame[column])}
    return Table(table_id, [str(c) for c in frame.columns], rows, caption, empty_message, numeric_from, text)


def _note_column(frame: pd.DataFrame, headers: list[str], rows: list[Row]) -> set[int]:
    """Append the ``note`` column (why a row has no statistics) when any row has one.

    Returns the set of text column indices the caller passes on to its table (the note).
    """
    if "note" not in frame.columns:
        return set()
    notes = ["" if is_missing(n) else str(n) for n in frame["note"]]
    if not any(notes):
        return set()
    headers.append("note")
    for row, note in zip(rows, notes):
        row.cells.append(note)
    return {len(headers) - 1}


TABLE1_CURATED = {"variable", "kind", "n_a", "n_b", "summary_a", "summary_b", "test", "statistic", "p"}


def table1_table(table1: pd.DataFrame | None, groups: Sequence[str], alpha: float) -> Table:
    caption = ("Participant characteristics per group: continuous variables as mean \u00b1 SD or median "
               "[IQR], categorical as counts; n = participants with a value (missing in brackets).")
    if table1 is None or table1.empty:
        return Table("table1-table", [], [], caption, "Table 1 was not computed.")
    if not TABLE1_CURATED <= set(table1.columns):
        return _generic_table(table1, "table1-table", alpha, caption=caption)
    a, b = list(groups)[:2] if len(groups) >= 2 else (
        str(table1["group_a"].iloc[0]) if "group_a" in table1 else "group A",
        str(table1["group_b"].iloc[0]) if "group_b" in table1 else "group B")
    headers = ["variable", "kind", f"{a} n", f"{a}", f"{b} n", f"{b}", "test", "statistic", "p"]
    rows = []
    for _, r in table1.iterrows():
        def n_text(n, missing):
            text = format_count(n)
            return text + (f" ({format_count(missing)})" if not is_missing(missing) and float(missing) > 0 else "")
        rows.append(Row([_text(r.get("variable")), _text(r.get("kind")),
                         n_text(r.get("n_a"), r.get("missing_a")), _text(r.get("summary_a")),
                         n_text(r.get("n_b"), r.get("missing_b")), _text(r.get("summary_b")),
                         "" if is_missing(r.get("test")) else str(r.get("test")),
                         format_number(r.get("statistic"), 2), format_p(r.get("p"))]))
    text = _note_column(table1, headers, rows) | {3, 5, 6}
    return Table("table1-table", headers, rows, caption, "", 2, text)


def group_comparison_table(frame: pd.DataFrame | None, groups: Sequence[str], alpha: float,
                           covariates: Sequence[str]) -> Table:
    a, b = list(groups)[:2] if len(groups) >= 2 else ("group A", "group B")
    headers = ["region", "hemisphere", f"n {a} / {b}", f"{a} mean \u00b1 SD (ppm)",
               f"{b} mean \u00b1 SD (ppm)", f"{a} adjusted mean (ppm)", f"{b} adjusted mean (ppm)",
               "F", "p", "p FDR", "partial \u03b7\u00b2", "Cohen's d", "Mann-Whitney p"]
    adjusted = ("adjusted for " + ", ".join(covariates)) if covariates else "no covariates"
    caption = (f"ANCOVA of regional susceptibility on group ({adjusted}); FDR over all region-hemisphere "
               f"rows. Rows with p FDR < {alpha:g} are marked *.")
    if frame is None or frame.empty:
        return Table("group-comparison-table", headers, [], caption, "No group comparison rows.", 2)
    rows = []
    for _, r in frame.iterrows():
        cells = [_text(r.get("region")), _text(r.get("hemisphere")),
                 f"{format_count(r.get('n_a'))} / {format_count(r.get('n_b'))}",
                 format_mean_sd(r.get("mean_a"), r.get("sd_a")), format_mean_sd(r.get("mean_b"), r.get("sd_b")),
                 format_ppm(r.get("adj_mean_a")), format_ppm(r.get("adj_mean_b")),
                 format_number(r.get("F"), 2), format_p(r.get("p")), format_p(r.get("p_fdr")),
                 format_number(r.get("partial_eta2"), 3), format_number(r.get("cohen_d"), 2),
                 format_p(r.get("mwu_p"))]
        rows.append(Row(cells, is_significant(r.get("p_fdr"), alpha)))
    return Table("group-comparison-table", headers, rows, caption, "", 2, _note_column(frame, headers, rows))


def associations_table(frame: pd.DataFrame | None, alpha: float, covariates: Sequence[str]) -> Table:
    headers = ["region", "hemisphere", "group", "variable", "method", "n", "r", "p", "p FDR"]
    adjusted = ("partial, controlling " + ", ".join(covariates)) if covariates else "no covariates"
    caption = (f"Correlation of regional susceptibility with clinical variables ({adjusted}); FDR over all "
               f"region \u00d7 variable rows within a group. Rows with p FDR < {alpha:g} are marked *.")
    if frame is None or frame.empty:
        return Table("associations-table", headers, [], caption, "No association rows.", 5)
    rows = []
    for _, r in frame.iterrows():
        cells = [_text(r.get("region")), _text(r.get("hemisphere")), _text(r.get("group")),
                 _text(r.get("variable")), _text(r.get("method")), format_count(r.get("n")),
                 format_number(r.get("r"), 3), format_p(r.get("p")), format_p(r.get("p_fdr"))]
        rows.append(Row(cells, is_significant(r.get("p_fdr"), alpha)))
    return Table("associations-table", headers, rows, caption, "", 5, _note_column(frame, headers, rows))


def relapse_table(frame: pd.DataFrame | None, alpha: float) -> Table:
    has_hr = frame is not None and "hr" in frame.columns
    has_hr_fdr = frame is not None and "hr_p_fdr" in frame.columns
    headers = ["region", "hemisphere", "n", "events", "OR per SD (95 % CI)", "p", "p FDR",
               "AUC (95 % CI)", "Youden cut-off (ppm)", "sensitivity", "specificity"]
    has_direction = frame is not None and "roc_direction" in frame.columns
    has_logrank = frame is not None and "km_logrank_p" in frame.columns
    if has_direction:
        headers.insert(8, "ROC direction")
    if has_hr:
        headers += ["HR per SD (95 % CI)", "HR p"] + (["HR p FDR"] if has_hr_fdr else [])
        headers += ["log-rank p"] if has_logrank else []
    caption = ("Logistic regression of relapse on susceptibility (odds ratio per SD, Wald CI); ROC AUC of "
               "susceptibility alone (DeLong CI) with the Youden cut-off"
               + ("; Cox proportional hazards (hazard ratio per SD)" if has_hr else "")
               + f". FDR over regions; rows with p FDR < {alpha:g} are marked *.")
    if frame is None or frame.empty:
        return Table("relapse-table", headers, [], caption, "No relapse rows.", 2)
    rows = []
    for _, r in frame.iterrows():
        cells = [_text(r.get("region")), _text(r.get("hemisphere")), format_count(r.get("n")),
                 format_count(r.get("n_events")),
                 format_interval(r.get("odds_ratio"), r.get("or_ci_low"), r.get("or_ci_high")),
                 format_p(r.get("p")), format_p(r.get("p_fdr")),
                 format_interval(r.get("auc"), r.get("auc_ci_low"), r.get("auc_ci_high"))]
        if has_direction:
            cells.append(_text(r.get("roc_direction")))
        cells += [format_ppm(r.get("youden_threshold_ppm")), format_number(r.get("sensitivity"), 2),
                 format_number(r.get("specificity"), 2)]
        if has_hr:
            cells += [format_interval(r.get("hr"), r.get("hr_ci_low"), r.get("hr_ci_high")),
                      format_p(r.get("hr_p"))] + ([format_p(r.get("hr_p_fdr"))] if has_hr_fdr else [])
            cells += [format_p(r.get("km_logrank_p"))] if has_logrank else []
        significant = is_significant(r.get("p_fdr"), alpha) or (has_hr_fdr and is_significant(r.get("hr_p_fdr"), alpha))
        rows.append(Row(cells, significant))
    text = _note_column(frame, headers, rows) | ({headers.index("ROC direction")} if has_direction else set())
    return Table("relapse-table", headers, rows, caption, "", 2, text)


COUNT_CURATED = {"region", "hemisphere", "n", "rate_ratio", "rr_ci_low", "rr_ci_high", "p", "p_fdr"}


def relapse_counts_table(frame: pd.DataFrame | None, alpha: float) -> Table | None:
    """Count regression per region (rate ratio per SD); None when there is no count model."""
    if frame is None or frame.empty:
        return None
    caption = (f"Regression of relapse counts on susceptibility (rate ratio per SD). FDR over regions; rows "
               f"with p FDR < {alpha:g} are marked *.")
    if not COUNT_CURATED <= set(frame.columns):
        return _generic_table(frame, "relapse-counts-table", alpha, caption=caption, numeric_from=2)
    headers = ["region", "hemisphere", "n", "model", "rate ratio per SD (95 % CI)", "p", "p FDR",
               "overdispersion p", "NB \u03b1"]
    rows = []
    for _, r in frame.iterrows():
        rows.append(Row([_text(r.get("region")), _text(r.get("hemisphere")), format_count(r.get("n")),
                         _text(r.get("model")),
                         format_interval(r.get("rate_ratio"), r.get("rr_ci_low"), r.get("rr_ci_high")),
                         format_p(r.get("p")), format_p(r.get("p_fdr")), format_p(r.get("overdispersion_p")),
                         format_number(r.get("alpha"), 3)], is_significant(r.get("p_fdr"), alpha)))
    return Table("relapse-counts-table", headers, rows, caption, "", 2, _note_column(frame, headers, rows) | {3})


# --------------------------------------------------------------------------- findings summary
def _significant_rows(frame: pd.DataFrame | None, alpha: float) -> list[pd.Series]:
    """Rows with FDR-adjusted p below ``alpha``, most significant first."""
    if frame is None or frame.empty or "p_fdr" not in frame:
        return []
    return [row for _, row in frame[frame["p_fdr"] < alpha].sort_values("p_fdr", kind="mergesort").iterrows()]


def _findings(results: StudyResults, alpha: float) -> list[Finding]:
    def where(r) -> str:
        return _label(r["region"], r.get("hemisphere"))

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


# --------------------------------------------------------------------------- QC images
_MAGIC = ((b"\x89PNG\r\n\x1a\n", "image/png"), (b"\xff\xd8\xff", "image/jpeg"), (b"GIF8", "image/gif"))


def image_data_uri(path: str | os.PathLike) -> str:
    """A PNG, JPEG, GIF or SVG file as a ``data:`` URI; ValueError when it is none of them."""
    data = Path(path).read_bytes()
    for magic, mime in _MAGIC:
        if data.startswith(magic):
            break
    else:
        head = data[:512].lstrip().lower()
        if head.startswith(b"<svg") or (head.startswith(b"<?xml") and b"<svg" in data[:4096].lower()):
            mime = "image/svg+xml"
        else:
            raise ValueError("not a PNG, JPEG, GIF or SVG image")
    return f"data:{mime};base64," + base64.b64encode(data).decode("ascii")


def _qc_title(path: str | os.PathLike) -> str:
    """A readable title from a QC file name: ``sub-01_qc_atlas.png`` -> ``sub-01 qc atlas``."""
    name = Path(path).name
    for suffix in (".png", ".jpg", ".jpeg", ".gif", ".svg"):
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
    return name.replace("_", " ")


def _qc_images(qc_images: Sequence[tuple[str, str | os.PathLike] | str | os.PathLike]) -> list[QcImage]:
    images = []
    for item in qc_images or ():
        if isinstance(item, (str, os.PathLike)):
            title, path = _qc_title(item), item
        else:
            title, path = item
        try:
            images.append(QcImage(str(title), image_data_uri(path), os.fspath(path)))
        except FileNotFoundError:
            images.append(QcImage(str(title), None, os.fspath(path), "file not found"))
        except (OSError, ValueError) as error:
            images.append(QcImage(str(title), None, os.fspath(path), str(error)))
    return images


# --------------------------------------------------------------------------- figures
def _figures(results: StudyResults, regions: pd.DataFrame, participants: pd.DataFrame,
             settings: Mapping[str, Any], groups: Sequence[str]) -> tuple[list[fig.ReportFigure], list[str]]:
    figures, notes = [], []
    group_column = (settings.get("groups") or {}).get("column", "group")
    try:
        values = fig.cohort_values(regions, participants, group_column)
    except KeyError as error:
        return [], [f"Figures need the regions and participants tables ({error} missing)."]
    region_order = settings.get("regions") or None
    covariates = list(settings.get("covariates") or [])

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

    assoc_cov = (settings.get("associations") or {}).get("covariates")
    assoc_cov = covariates if assoc_cov is None else list(assoc_cov)
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

    time_label = (settings.get("relapse") or {}).get("time") or "time"
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
             settings: Mapping[str, Any], groups: Sequence[str]) -> list[tuple[str, str]]:
    rows = [("participants in the participants table", str(len(participants)))]
    if "participant_id" in regions:
        rows.append(("participants with regional values", str(regions["participant_id"].nunique())))
    group_column = (settings.get("groups") or {}).get("column", "group")
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
    if settings.get("session"):
        others = [str(s) for s in settings.get("sessions_in_regions_table") or [] if s != settings["session"]]
        rows.append(("session analysed", str(settings["session"])
                     + (f" (other sessions in the regions table: {', '.join(others)})" if others else "")))
    covariates = settings.get("covariates")
    rows.append(("covariates", ", ".join(covariates) if covariates else "none"))
    rows.append(("study file", str(settings.get("study_file") or "none (defaults resolved from the data)")))
    return rows


def _pipeline_table(provenance: Mapping[str, Any]) -> Table:
    pipeline = (provenance or {}).get("pipeline") or {}
    rows = []
    for kind in ("failed", "excluded"):
        for item in pipeline.get(kind) or []:
            item = item if isinstance(item, Mapping) else {"participant_id": item}
            who = " ".join(str(item[key]) for key in ("participant_id", "session") if item.get(key))
            rows.append(Row([kind, _text(who or None), _text(item.get("step")), _text(item.get("reason"))]))
    return Table("pipeline-problems-table", ["status", "participant", "step", "reason"], rows,
                 "Subjects the pipeline could not process or left out.",
                 "No subject failed or was excluded by the pipeline.", 4)


def _scan_warnings(provenance: Mapping[str, Any]) -> list[tuple[str, int]]:
    counts: dict[str, int] = {}
    for kind in ("recon", "roi"):
        for record in (provenance or {}).get(kind) or []:
            for warning in (record or {}).get("warnings") or []:
                counts[str(warning)] = counts.get(str(warning), 0) + 1
    return sorted(counts.items(), key=lambda item: -item[1])


def build_context(results: StudyResults, *, regions: pd.DataFrame, participants: pd.DataFrame,
                  qc_images: Sequence[QcItem] = (),
                  provenance: Mapping[str, Any] | None = None) -> ReportContext:
    """Everything the template shows, formatted (figures rendered to data URIs)."""
    provenance = dict(provenance or {})
    settings = _settings(results)
    alpha = _alpha(settings)
    groups = _groups(settings, results.group_comparison)
    covariates = list(settings.get("covariates") or [])
    assoc_cov = (settings.get("associations") or {}).get("covariates")
    assoc_cov = covariates if assoc_cov is None else list(assoc_cov)

    figures, figure_notes = _figures(results, regions, participants, settings, groups)
    qc = _qc_images(qc_images)
    warnings = list(results.warnings or [])
    warnings += [f"QC image '{image.title}' could not be shown ({image.problem}): {image.path}"
                 for image in qc if image.problem]
    exclusions = pd.DataFrame(results.exclusions or [])
    if not exclusions.empty:
        exclusions = exclusions[[c for c in ("participant_id", "analysis", "reason") if c in exclusions]
                                + [c for c in exclusions.columns if c not in ("participant_id", "analysis", "reason")]]
    counts_frame = results.relapse_counts
    # Long method descriptions go to the methods section, not the settings table.
    shown_settings = {k: v for k, v in settings.items() if k != "methods"}
    methods = methods_paragraph(provenance, settings, results=results,
                                n_qc_images=sum(1 for image in qc if image.data_uri))
    relapse_settings = settings.get("relapse") or {}
    messages = {
        "associations": ("No clinical variables were named or found for the associations."
                         if not (settings.get("associations") or {}).get("variables") else
                         "No association rows (see exclusions and warnings)."),
        "relapse": ("No relapse outcome was named or found (column 'relapse'), so no relapse models were run."
                    if not relapse_settings.get("outcome") else "No relapse rows (see exclusions and warnings)."),
    }
    versions = sorted((str(k), str(v)) for k, v in (results.versions or {}).items())
    session = settings.get("session")
    return ReportContext(
        title="qsmiron study report" + (f", session {session}" if session else ""),
        created=_now_text(),
        version=__version__,
        summary=_summary(results, regions, participants, settings, groups),
        findings=_findings(results, alpha),
        settings_rows=_flatten(shown_settings),
        table1=table1_table(results.table1, groups, alpha),
        group_comparison=group_comparison_table(results.group_comparison, groups, alpha, covariates),
        associations=associations_table(results.associations, alpha, assoc_cov),
        relapse=relapse_table(results.relapse, alpha),
        relapse_counts=relapse_counts_table(counts_frame, alpha),
        figures=figures,
        figure_notes=figure_notes,
        qc_images=qc,
        warnings=warnings,
        exclusions=_generic_table(exclusions, "exclusions-table", alpha,
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
                  provenance: Mapping[str, Any] | None = None) -> str:
    """The report as an HTML string (see :func:`write_report`)."""
    context = build_context(results, regions=regions, participants=participants,
                            qc_images=qc_images, provenance=provenance)
    return render_context(context)


def render_context(context: ReportContext) -> str:
    """The HTML of an already built :class:`ReportContext`."""
    return _environment().get_template(TEMPLATE_NAME).render(report=context, section_ids=SECTION_IDS)


def write_report(results: StudyResults, out_html: str | os.PathLike, *, regions: pd.DataFrame,
                 participants: pd.DataFrame, qc_images: Sequence[QcItem] = (),
                 provenance: Mapping[str, Any] | None = None) -> Path:
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
    provenance : dict, optional
        ``{"recon": [...], "roi": [...], "pipeline": {...}}`` for the methods paragraph and
        the exclusions; every key optional.

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
