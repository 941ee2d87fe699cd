"""The report's tables: each result frame turned into text cells, rows flagged significant.

Numbers are formatted by ``qsmiron.report.formatting``; the captions say which rows the false
discovery rate runs over, in the words of the statistics methods text. Every table carries its
full data (all columns, full precision) as a TSV ``data:`` URI that the page offers for
download; the shown table is the compact form a reader needs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import urllib.parse

import pandas as pd

from qsmiron.records.study import StatisticsMethods
from qsmiron.report.names import region_name, variable_short
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
    download: str | None = None
    """The table's full data as a ``data:text/tab-separated-values`` URI (None: nothing to download)."""
    download_name: str = ""

    def is_numeric(self, index: int) -> bool:
        return index >= self.numeric_from and index not in self.text_columns

    @property
    def n_significant(self) -> int:
        return sum(row.significant for row in self.rows)


def tsv_data_uri(frame: pd.DataFrame) -> str:
    """``frame`` as a TSV (``n/a`` for missing values, as BIDS writes them) in a ``data:`` URI."""
    text = frame.to_csv(sep="\t", index=False, na_rep=MISSING, lineterminator="\n")
    return "data:text/tab-separated-values;charset=utf-8," + urllib.parse.quote(text, safe="")


def with_download(table: Table, frame: pd.DataFrame | None, name: str) -> Table:
    """``table`` offering ``frame`` as the TSV ``name`` (nothing when the frame is empty)."""
    if frame is not None and not frame.empty:
        table.download, table.download_name = tsv_data_uri(frame), name
    return table


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


def table1_table(table1: pd.DataFrame | None, groups: Sequence[str], alpha: float,
                 units: Mapping[str, Any] | None = None) -> Table:
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
        rows.append(Row([variable_short(str(r.get("variable")), units), cell_text(r.get("kind")),
                         n_text(r.get("n_a"), r.get("missing_a")), cell_text(r.get("summary_a")),
                         n_text(r.get("n_b"), r.get("missing_b")), cell_text(r.get("summary_b")),
                         "" if is_missing(r.get("test")) else str(r.get("test")),
                         format_number(r.get("statistic"), 2), format_p(r.get("p"))]))
    text = _note_column(table1, headers, rows) | {3, 5, 6}
    return with_download(Table("table1-table", headers, rows, caption, "", 2, text), table1, "table1.tsv")


def fold_constant_columns(table: Table, names: Sequence[str]) -> Table:
    """Columns among ``names`` with one value in every row leave the table for its caption.

    The shown table gets narrower; the caption says ``n 20, events 7 in every row``.
    """
    if len(table.rows) < 2:
        return table
    folded = []
    for name in names:
        if name not in table.headers:
            continue
        index = table.headers.index(name)
        values = {row.cells[index] for row in table.rows}
        if len(values) != 1:
            continue
        value = values.pop().rstrip(".")
        if value:
            folded.append(f"{name} {value}")
        del table.headers[index]
        for row in table.rows:
            del row.cells[index]
        table.text_columns = {c - (c > index) for c in table.text_columns if c != index}
        if index < table.numeric_from:
            table.numeric_from -= 1
    if folded:
        table.caption += f" In every row: {', '.join(folded)}."
    return table


def _family_text(value: Any) -> str:
    return "" if is_missing(value) else {"primary": "primary", "exploratory": "exploratory"}.get(str(value), str(value))


def group_comparison_table(frame: pd.DataFrame | None, groups: Sequence[str], alpha: float,
                           covariates: Sequence[str], methods: StatisticsMethods, *, unit: str = "ppm",
                           table_id: str = "group-comparison-table") -> Table:
    a, b = list(groups)[:2] if len(groups) >= 2 else ("group A", "group B")
    small = "ppb" if unit == "ppm" else unit
    headers = ["region", "side", "family", f"n {a} / {b}", f"{a} mean \u00b1 SD ({unit})",
               f"{b} mean \u00b1 SD ({unit})", f"adjusted difference ({small}, 95 % CI)", "Cohen's d (95 % CI)",
               "p", "p FDR", "Mann-Whitney p"]
    adjusted = ("adjusted for " + ", ".join(covariates)) if covariates else "no covariates"
    caption = (f"ANCOVA on group ({adjusted}): adjusted mean difference {a} \u2212 {b} and Cohen's d with 95 % CI; "
               f"FDR {methods.group_comparison_fdr}. Rows with p FDR < {alpha:g} are marked *. F, partial "
               "\u03b7\u00b2 and the adjusted means are in the TSV.")
    if frame is None or frame.empty:
        return Table(table_id, headers, [], caption, "No group comparison rows.", 3)
    rows = []
    decimals = 4 if unit == "ppm" else 2
    for _, r in frame.iterrows():
        # chi's difference in ppb; the other measures' in their own unit.
        columns = ("diff_ppb", "diff_ci_low_ppb", "diff_ci_high_ppb") if unit == "ppm" else \
            ("diff", "diff_ci_low", "diff_ci_high")
        diff = tuple(None if is_missing(r.get(c)) else float(r.get(c)) for c in columns)
        cells = [region_name(r.get("region")), cell_text(r.get("hemisphere")), _family_text(r.get("family")),
                 f"{format_count(r.get('n_a'))} / {format_count(r.get('n_b'))}",
                 format_mean_sd(r.get("mean_a"), r.get("sd_a"), decimals),
                 format_mean_sd(r.get("mean_b"), r.get("sd_b"), decimals),
                 format_interval(*diff, decimals=1 if unit == "ppm" else 2),
                 format_interval(r.get("cohen_d"), r.get("cohen_d_ci_low"), r.get("cohen_d_ci_high")),
                 format_p(r.get("p")), format_p(r.get("p_fdr")), format_p(r.get("mwu_p"))]
        rows.append(Row(cells, is_significant(r.get("p_fdr"), alpha)))
    table = Table(table_id, headers, rows, caption, "", 3, _note_column(frame, headers, rows))
    fold_constant_columns(table, [f"n {a} / {b}", "family"])
    return with_download(table, frame, table_id.removesuffix("-table").replace("-", "_") + ".tsv")


def associations_table(frame: pd.DataFrame | None, alpha: float, covariates: Sequence[str],
                       methods: StatisticsMethods, *, table_id: str = "associations-table") -> Table:
    headers = ["region", "side", "variable", "family", "n", "r (95 % CI)", "p", "p FDR"]
    adjusted = ("partial, controlling " + ", ".join(covariates)) if covariates else "no covariates"
    where = ""
    if frame is not None and not frame.empty and "group" in frame:
        groups = ", ".join(dict.fromkeys(frame["group"].astype(str)))
        methods_used = ", ".join(dict.fromkeys(frame["method"].astype(str))) if "method" in frame else ""
        where = f" {methods_used.capitalize()} correlation within {groups}."
    caption = (f"Correlation of the regional value with clinical variables ({adjusted}).{where} FDR "
               f"{methods.associations_fdr}. Rows with p FDR < {alpha:g} are marked *.")
    if frame is None or frame.empty:
        return Table(table_id, headers, [], caption, "No association rows.", 4)
    rows = []
    for _, r in frame.iterrows():
        cells = [region_name(r.get("region")), cell_text(r.get("hemisphere")), cell_text(r.get("variable")),
                 _family_text(r.get("family")), format_count(r.get("n")),
                 format_interval(r.get("r"), r.get("r_ci_low"), r.get("r_ci_high")),
                 format_p(r.get("p")), format_p(r.get("p_fdr"))]
        rows.append(Row(cells, is_significant(r.get("p_fdr"), alpha)))
    table = Table(table_id, headers, rows, caption, "", 4, _note_column(frame, headers, rows))
    fold_constant_columns(table, ["n", "family"])
    return with_download(table, frame, "associations.tsv")


def relapse_table(frame: pd.DataFrame | None, alpha: float, methods: StatisticsMethods, *,
                  unit: str = "ppm") -> Table:
    """Logistic regression and ROC per region (the Cox model: :func:`survival_table`)."""
    headers = ["region", "side", "family", "n", "events", "model", "OR per SD (95 % CI)", "p", "p FDR",
               "AUC (95 % CI)", "AUC corrected", f"cut-off ({unit})", "sensitivity (CV)", "specificity (CV)"]
    caption = ("Logistic regression of relapse on the regional value (odds ratio per SD, profile-likelihood CI; "
               "model: Firth's penalised or maximum likelihood); ROC AUC of the value alone (DeLong CI) and its "
               "bootstrap optimism-corrected AUC; Youden cut-off chosen on all participants, its sensitivity and "
               "specificity estimated by repeated cross-validation (CV), not on the data that chose it. "
               f"FDR {methods.relapse_fdr}; rows with p FDR < {alpha:g} are marked *.")
    if frame is None or frame.empty:
        return Table("relapse-table", headers, [], caption, "No relapse rows.", 3)
    rows = []
    for _, r in frame.iterrows():
        side = {"lower": "< ", "higher": "\u2265 "}.get(str(r.get("roc_direction")), "")
        cutoff = r.get("youden_threshold_ppm")
        cells = [region_name(r.get("region")), cell_text(r.get("hemisphere")), _family_text(r.get("family")),
                 format_count(r.get("n")), format_count(r.get("n_events")), cell_text(r.get("logistic_model")),
                 format_interval(r.get("odds_ratio"), r.get("or_ci_low"), r.get("or_ci_high")),
                 format_p(r.get("p")), format_p(r.get("p_fdr")),
                 format_interval(r.get("auc"), r.get("auc_ci_low"), r.get("auc_ci_high")),
                 format_number(r.get("auc_corrected"), 2),
                 MISSING if is_missing(cutoff) else side + (format_ppm(cutoff) if unit == "ppm" else format_number(cutoff, 1)),
                 format_number(r.get("sensitivity_cv", r.get("sensitivity")), 2),
                 format_number(r.get("specificity_cv", r.get("specificity")), 2)]
        rows.append(Row(cells, is_significant(r.get("p_fdr"), alpha)))
    table = Table("relapse-table", headers, rows, caption, "", 3, _note_column(frame, headers, rows) | {5})
    fold_constant_columns(table, ["n", "events", "model", "family"])
    return with_download(table, frame, "relapse.tsv")


def survival_table(frame: pd.DataFrame | None, alpha: float, methods: StatisticsMethods,
                   time_label: str) -> Table | None:
    """Cox model per region (hazard ratio per SD) and the log-rank test of the median split."""
    if frame is None or frame.empty or "hr" not in frame.columns:
        return None
    headers = ["region", "side", "family", "n", "events", "HR per SD (95 % CI)", "p", "p FDR", "log-rank p"]
    caption = (f"Cox proportional hazards of relapse over {time_label} on the regional value (hazard ratio per SD, "
               f"Wald CI) and the log-rank test of the median split. FDR {methods.relapse_fdr}; rows with p FDR < "
               f"{alpha:g} are marked *.")
    rows = [Row([region_name(r.get("region")), cell_text(r.get("hemisphere")), _family_text(r.get("family")),
                 format_count(r.get("hr_n", r.get("n"))), format_count(r.get("hr_events", r.get("n_events"))),
                 format_interval(r.get("hr"), r.get("hr_ci_low"), r.get("hr_ci_high")), format_p(r.get("hr_p")),
                 format_p(r.get("hr_p_fdr")), format_p(r.get("km_logrank_p"))], is_significant(r.get("hr_p_fdr"), alpha))
            for _, r in frame.iterrows()]
    table = fold_constant_columns(Table("survival-table", headers, rows, caption, "", 3), ["n", "events", "family"])
    return with_download(table, frame, "relapse.tsv")


COUNT_CURATED = {"region", "hemisphere", "n", "rate_ratio", "rr_ci_low", "rr_ci_high", "p", "p_fdr"}


def relapse_counts_table(frame: pd.DataFrame | None, alpha: float, methods: StatisticsMethods) -> Table | None:
    """Count regression per region (rate ratio per SD); None when there is no count model."""
    if frame is None or frame.empty:
        return None
    caption = (f"Regression of relapse counts on susceptibility (rate ratio per SD). FDR {methods.relapse_fdr}; "
               f"rows with p FDR < {alpha:g} are marked *.")
    if not COUNT_CURATED <= set(frame.columns):
        return generic_table(frame, "relapse-counts-table", alpha, caption=caption, numeric_from=2)
    headers = ["region", "side", "n", "model", "rate ratio per SD (95 % CI)", "p", "p FDR",
               "overdispersion p", "NB \u03b1"]
    rows = []
    for _, r in frame.iterrows():
        rows.append(Row([region_name(r.get("region")), cell_text(r.get("hemisphere")), format_count(r.get("n")),
                         cell_text(r.get("model")),
                         format_interval(r.get("rate_ratio"), r.get("rr_ci_low"), r.get("rr_ci_high")),
                         format_p(r.get("p")), format_p(r.get("p_fdr")), format_p(r.get("overdispersion_p")),
                         format_number(r.get("alpha"), 3)], is_significant(r.get("p_fdr"), alpha)))
    table = Table("relapse-counts-table", headers, rows, caption, "", 2, _note_column(frame, headers, rows) | {3})
    return with_download(table, frame, "relapse_counts.tsv")
