"""The figures of the report's opening answers: forest plots and the association heatmap.

Drawn at their print size (at most ``figures.PRINT_WIDTH_IN`` wide) with text of at least
9 pt, so that the page shows them at 100 % and print keeps the fonts readable. Rows of the
primary (confirmatory) family are drawn filled, exploratory rows open; the family is also
written beside each row, so the figure does not depend on colour.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
from matplotlib.figure import Figure

from qsmiron.records.answers import AssociationMatrix, Estimate
from qsmiron.report.figures import FONT, PALETTE, PRINT_WIDTH_IN, SMALL_FONT
from qsmiron.report.formatting import format_interval, format_p
from qsmiron.report.names import short_label


def _finite(value) -> bool:
    return value is not None and math.isfinite(float(value))


def forest_figure(rows: Sequence[Estimate], *, xlabel: str, null: float = 0.0, log_scale: bool = False,
                  alpha: float = 0.05, label_variable: bool = False, width_in: float = PRINT_WIDTH_IN,
                  colour: str = PALETTE[2]) -> Figure | None:
    """One line per estimate: point and 95 % CI, the null as a dashed line, the numbers on the right.

    Parameters
    ----------
    rows : sequence of Estimate
        Drawn top to bottom in the given order; rows without an estimate are listed with
        their note instead of a point.
    xlabel : str
        The effect and its unit (``Cohen's d``, ``odds ratio per SD of χ``).
    null : float
        The value of no effect (0, or 1 for ratios).
    log_scale : bool
        A logarithmic axis (ratios).
    label_variable : bool
        Add the row's clinical variable to its label.

    Returns
    -------
    Figure or None
        None when there are no rows.
    """
    if not rows:
        return None
    height = 0.95 + 0.3 * len(rows)
    figure = Figure(figsize=(width_in, height))
    left, right = 1.55 if not label_variable else 2.0, 2.35
    ax = figure.add_axes((left / width_in, 0.62 / height, 1 - (left + right) / width_in, 1 - 0.75 / height))
    y = np.arange(len(rows))[::-1]
    finite = [r for r in rows if _finite(r.estimate)]
    bounds = [v for r in finite for v in (r.estimate, r.ci_low, r.ci_high) if _finite(v)] + [null]
    if log_scale:
        bounds = [v for v in bounds if v > 0]
    for position, row in zip(y, rows):
        primary = row.family != "exploratory"
        if _finite(row.estimate) and _finite(row.ci_low) and _finite(row.ci_high):
            ax.plot([row.ci_low, row.ci_high], [position, position], color=colour, linewidth=1.6)
        if _finite(row.estimate):
            ax.plot([row.estimate], [position], marker="s", markersize=6, color=colour,
                    markerfacecolor=colour if primary else "white", linestyle="none")
        significant = row.p_fdr is not None and row.p_fdr < alpha
        text = (format_interval(row.estimate, row.ci_low, row.ci_high) + f"  pFDR {format_p(row.p_fdr)}"
                + (" *" if significant else "")) if _finite(row.estimate) else (row.note or "not estimated")[:38]
        ax.annotate(text, xy=(1.0, position), xycoords=("axes fraction", "data"), xytext=(6, 0),
                    textcoords="offset points", va="center", fontsize=SMALL_FONT)
    labels = [short_label(r.region, r.hemisphere) + (f" \u00d7 {r.variable}" if label_variable and r.variable else "")
              + ("" if r.family != "exploratory" else " (expl.)") for r in rows]
    ax.set_yticks(y, labels, fontsize=FONT)
    ax.set_ylim(-0.7, len(rows) - 0.3)
    ax.axvline(null, color="0.45", linestyle="--", linewidth=0.9)
    if log_scale:
        from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator

        ax.set_xscale("log")
        ax.xaxis.set_major_locator(FixedLocator([0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 50, 100]))
        ax.xaxis.set_minor_locator(NullLocator())
        ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    if bounds:
        low, high = min(bounds), max(bounds)
        if log_scale:
            low, high = max(low / 1.3, high / 1e4), high * 1.3
        else:
            pad = 0.08 * (high - low or 1.0)
            low, high = low - pad, high + pad
        ax.set_xlim(low, high)
    ax.set_xlabel(xlabel, fontsize=FONT)
    ax.tick_params(axis="x", labelsize=SMALL_FONT)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    return figure


def heatmap_figure(matrix: AssociationMatrix, *, alpha: float = 0.05,
                   variable_labels: Sequence[str] | None = None) -> Figure | None:
    """Region x variable heatmap of r (diverging, -1 to 1) with r written in each cell.

    ``*`` marks FDR-adjusted p < alpha (within the row's family), ``°`` an unadjusted p <
    alpha that does not survive the FDR; primary-family rows have their labels in bold.
    """
    if matrix is None or not matrix.regions or not matrix.variables:
        return None
    n_rows, n_cols = len(matrix.regions), len(matrix.variables)
    r = np.array([[np.nan if v is None else v for v in row] for row in matrix.r], float)
    labels = list(variable_labels or matrix.variables)
    rotated = max(map(len, labels)) > 6
    cell_w = min(1.05, (PRINT_WIDTH_IN - 3.0) / n_cols)
    top = 1.1 if rotated else 0.5
    width, height = 1.7 + cell_w * n_cols + 1.2, top + 0.35 + 0.27 * n_rows
    figure = Figure(figsize=(width, height))
    ax = figure.add_axes((1.7 / width, 0.35 / height, cell_w * n_cols / width, 0.27 * n_rows / height))
    image = ax.imshow(np.ma.masked_invalid(r), cmap="PuOr_r", vmin=-1, vmax=1, aspect="auto")
    for i in range(n_rows):
        for j in range(n_cols):
            if not np.isfinite(r[i, j]):
                ax.text(j, i, "n/a", ha="center", va="center", fontsize=SMALL_FONT, color="0.4")
                continue
            p_fdr, p = matrix.p_fdr[i][j], matrix.p[i][j]
            mark = "*" if p_fdr is not None and p_fdr < alpha else ("\u00b0" if p is not None and p < alpha else "")
            ax.text(j, i, f"{r[i, j]:.2f}{mark}", ha="center", va="center", fontsize=SMALL_FONT,
                    color="white" if abs(r[i, j]) > 0.55 else "black")
    ax.set_xticks(range(n_cols), labels, fontsize=FONT, rotation=35 if rotated else 0,
                  ha="left" if rotated else "center", rotation_mode="anchor")
    ax.xaxis.tick_top()
    row_labels = [short_label(reg, hem) for reg, hem in zip(matrix.regions, matrix.hemispheres)]
    ax.set_yticks(range(n_rows), row_labels, fontsize=FONT)
    for tick, families in zip(ax.get_yticklabels(), matrix.family):
        if "primary" in families:
            tick.set_fontweight("bold")
    ax.tick_params(length=0)
    bar_ax = figure.add_axes(((1.7 + cell_w * n_cols + 0.2) / width, 0.35 / height, 0.15 / width,
                              0.27 * n_rows / height))
    bar = figure.colorbar(image, cax=bar_ax)
    bar.set_label("r" if matrix.method == "pearson" else "r\u209b (Spearman)", fontsize=FONT)
    bar.ax.tick_params(labelsize=SMALL_FONT)
    return figure
