"""The report's tables: each result frame turned into text cells, rows flagged significant.

Numbers are formatted by ``qsmiron.report.formatting``; the captions say which rows the false
discovery rate runs over, in the words of the statistics methods text.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import pandas as pd

from qsmiron.records.study import StatisticsMethods
from qsmiron.report.formatting import (
    MISSING, format_auto, format_count, format_interval, format_mean_sd, format_number, format_p, format_ppm,
    is_missing, is_significant,
)


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


def region_label(region: Any, hemisphere: Any) -> str:
    return str(region) if is_missing(hemisphere) else f"{region} {hemisphere}"


def cell_text(value: Any) -> str:
    return MISSING if is_missing(value) else str(value)


def generic_table(frame: pd.DataFrame | None, table_id: str, alpha: float, *, caption: str = "",
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
        return generic_table(table1, "table1-table", alpha, caption=caption)
    a, b = list(groups)[:2] if len(groups) >= 2 else (
        str(table1["group_a"].iloc[0]) if "group_a" in table1 else "group A",
        str(table1["group_b"].iloc[0]) if "group_b" in table1 else "group B")
    headers = ["variable", "kind", f"{a} n", f"{a}", f"{b} n", f"{b}", "test", "statistic", "p"]
    rows = []
    for _, r in table1.iterrows():
        def n_text(n, missing):
            text = format_count(n)
            return text + (f" ({format_count(missing)})" if not is_missing(missing) and float(missing) > 0 else "")
        rows.append(Row([cell_text(r.get("variable")), cell_text(r.get("kind")),
                         n_text(r.get("n_a"), r.get("missing_a")), cell_text(r.get("summary_a")),
                         n_text(r.get("n_b"), r.get("missing_b")), cell_text(r.get("summary_b")),
                         "" if is_missing(r.get("test")) else str(r.get("test")),
                         format_number(r.get("statistic"), 2), format_p(r.get("p"))]))
    text = _note_column(table1, headers, rows) | {3, 5, 6}
    return Table("table1-table", headers, rows, caption, "", 2, text)


def group_comparison_table(frame: pd.DataFrame | None, groups: Sequence[str], alpha: float,
                           covariates: Sequence[str], methods: StatisticsMethods) -> Table:
    a, b = list(groups)[:2] if len(groups) >= 2 else ("group A", "group B")
    headers = ["region", "hemisphere", f"n {a} / {b}", f"{a} mean \u00b1 SD (ppm)",
               f"{b} mean \u00b1 SD (ppm)", f"{a} adjusted mean (ppm)", f"{b} adjusted mean (ppm)",
               "F", "p", "p FDR", "partial \u03b7\u00b2", "Cohen's d", "Mann-Whitney p"]
    adjusted = ("adjusted for " + ", ".join(covariates)) if covariates else "no covariates"
    caption = (f"ANCOVA of regional susceptibility on group ({adjusted}); FDR {methods.group_comparison_fdr}. "
               f"Rows with p FDR < {alpha:g} are marked *.")
    if frame is None or frame.empty:
        return Table("group-comparison-table", headers, [], caption, "No group comparison rows.", 2)
    rows = []
    for _, r in frame.iterrows():
        cells = [cell_text(r.get("region")), cell_text(r.get("hemisphere")),
                 f"{format_count(r.get('n_a'))} / {format_count(r.get('n_b'))}",
                 format_mean_sd(r.get("mean_a"), r.get("sd_a")), format_mean_sd(r.get("mean_b"), r.get("sd_b")),
                 format_ppm(r.get("adj_mean_a")), format_ppm(r.get("adj_mean_b")),
                 format_number(r.get("F"), 2), format_p(r.get("p")), format_p(r.get("p_fdr")),
                 format_number(r.get("partial_eta2"), 3), format_number(r.get("cohen_d"), 2),
                 format_p(r.get("mwu_p"))]
        rows.append(Row(cells, is_significant(r.get("p_fdr"), alpha)))
    return Table("group-comparison-table", headers, rows, caption, "", 2, _note_column(frame, headers, rows))


def associations_table(frame: pd.DataFrame | None, alpha: float, covariates: Sequence[str],
                       methods: StatisticsMethods) -> Table:
    headers = ["region", "hemisphere", "group", "variable", "method", "n", "r", "p", "p FDR"]
    adjusted = ("partial, controlling " + ", ".join(covariates)) if covariates else "no covariates"
    caption = (f"Correlation of regional susceptibility with clinical variables ({adjusted}); FDR "
               f"{methods.associations_fdr}. Rows with p FDR < {alpha:g} are marked *.")
    if frame is None or frame.empty:
        return Table("associations-table", headers, [], caption, "No association rows.", 5)
    rows = []
    for _, r in frame.iterrows():
        cells = [cell_text(r.get("region")), cell_text(r.get("hemisphere")), cell_text(r.get("group")),
                 cell_text(r.get("variable")), cell_text(r.get("method")), format_count(r.get("n")),
                 format_number(r.get("r"), 3), format_p(r.get("p")), format_p(r.get("p_fdr"))]
        rows.append(Row(cells, is_significant(r.get("p_fdr"), alpha)))
    return Table("associations-table", headers, rows, caption, "", 5, _note_column(frame, headers, rows))


def relapse_table(frame: pd.DataFrame | None, alpha: float, methods: StatisticsMethods) -> Table:
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
               + f". FDR {methods.relapse_fdr}; rows with p FDR < {alpha:g} are marked *.")
    if frame is None or frame.empty:
        return Table("relapse-table", headers, [], caption, "No relapse rows.", 2)
    rows = []
    for _, r in frame.iterrows():
        cells = [cell_text(r.get("region")), cell_text(r.get("hemisphere")), format_count(r.get("n")),
                 format_count(r.get("n_events")),
                 format_interval(r.get("odds_ratio"), r.get("or_ci_low"), r.get("or_ci_high")),
                 format_p(r.get("p")), format_p(r.get("p_fdr")),
                 format_interval(r.get("auc"), r.get("auc_ci_low"), r.get("auc_ci_high"))]
        if has_direction:
            cells.append(cell_text(r.get("roc_direction")))
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


def relapse_counts_table(frame: pd.DataFrame | None, alpha: float, methods: StatisticsMethods) -> Table | None:
    """Count regression per region (rate ratio per SD); None when there is no count model."""
    if frame is None or frame.empty:
        return None
    caption = (f"Regression of relapse counts on susceptibility (rate ratio per SD). FDR {methods.relapse_fdr}; "
               f"rows with p FDR < {alpha:g} are marked *.")
    if not COUNT_CURATED <= set(frame.columns):
        return generic_table(frame, "relapse-counts-table", alpha, caption=caption, numeric_from=2)
    headers = ["region", "hemisphere", "n", "model", "rate ratio per SD (95 % CI)", "p", "p FDR",
               "overdispersion p", "NB \u03b1"]
    rows = []
    for _, r in frame.iterrows():
        rows.append(Row([cell_text(r.get("region")), cell_text(r.get("hemisphere")), format_count(r.get("n")),
                         cell_text(r.get("model")),
                         format_interval(r.get("rate_ratio"), r.get("rr_ci_low"), r.get("rr_ci_high")),
                         format_p(r.get("p")), format_p(r.get("p_fdr")), format_p(r.get("overdispersion_p")),
                         format_number(r.get("alpha"), 3)], is_significant(r.get("p_fdr"), alpha)))
    return Table("relapse-counts-table", headers, rows, caption, "", 2, _note_column(frame, headers, rows) | {3})
