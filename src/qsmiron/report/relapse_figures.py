"""The relapse figures: ROC curves and Kaplan-Meier curves with the numbers at risk.

Drawn at print size like every report figure (:mod:`qsmiron.report.figures`). The Kaplan-Meier
panels split participants at the median of the measure (low and high: not the study's groups,
so they get colours no group has) and list the numbers at risk under the time axis, at the
times of the statistics' at-risk table (``StudyResults.km_at_risk``); the time axis carries the
time column's unit from ``participants.json``.
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence

import pandas as pd
from matplotlib.figure import Figure

from qsmiron.report.figures import FONT, OTHER_COLOURS, PRINT_WIDTH_IN, SMALL_FONT, _grid, _same_hemisphere, strongest
from qsmiron.report.formatting import format_interval, format_p, is_missing
from qsmiron.report.names import short_label


def _relapse_row(relapse: pd.DataFrame | None, key: tuple) -> pd.Series | None:
    if relapse is None or relapse.empty:
        return None
    row = relapse[(relapse["region"].astype(str) == str(key[0]))
                  & _same_hemisphere(relapse["hemisphere"], key[1])]
    return None if row.empty else row.iloc[0]


def _curve_keys(curves: Mapping[tuple, pd.DataFrame], relapse: pd.DataFrame | None, n_top: int,
                by: Sequence[str]) -> list[tuple]:
    keys = [key for key, frame in curves.items() if frame is not None and not frame.empty]
    if relapse is not None and not relapse.empty:
        ordered = strongest(relapse, len(relapse), by=by)
        rank = {(str(r), None if is_missing(h) else str(h)): i
                for i, (r, h) in enumerate(zip(ordered["region"], ordered["hemisphere"]))}
        keys.sort(key=lambda k: rank.get((str(k[0]), None if is_missing(k[1]) else str(k[1])), len(rank)))
    return keys[:n_top]


def roc_figure(roc_curves: Mapping[tuple, pd.DataFrame], relapse: pd.DataFrame | None = None, *,
               n_top: int = 6, ncols: int = 3) -> Figure | None:
    """ROC curves of the measure alone for relapse, for the regions with the smallest p.

    Each panel shows the curve, the chance diagonal and the Youden point at its apparent
    sensitivity and specificity (the cut-off chosen on all participants), titled with the
    AUC and its DeLong 95 % CI and the optimism-corrected AUC when the table has it.
    """
    keys = _curve_keys(roc_curves, relapse, n_top, by=("p",))
    if not keys:
        return None
    side = PRINT_WIDTH_IN / max(1, min(ncols, len(keys)))
    figure, axes = _grid(len(keys), ncols, (side, side + 0.25), top_in=1.05)
    for ax, key in zip(axes, keys):
        curve = roc_curves[key].sort_values(["fpr", "tpr"], kind="mergesort")
        ax.plot(curve["fpr"], curve["tpr"], color="0.1", linewidth=1.6, drawstyle="steps-post", label="ROC")
        ax.plot([0, 1], [0, 1], color="0.6", linewidth=0.8, linestyle="--", label="chance")
        row = _relapse_row(relapse, key)
        title = short_label(*key)
        if row is not None:
            title += "\nAUC " + format_interval(row.get("auc"), row.get("auc_ci_low"), row.get("auc_ci_high"))
            if not is_missing(row.get("auc_corrected")):
                title += f"\ncorrected {float(row['auc_corrected']):.2f}"
            sens = row.get("sensitivity_apparent", row.get("sensitivity"))
            spec = row.get("specificity_apparent", row.get("specificity"))
            if not is_missing(sens) and not is_missing(spec):
                ax.scatter([1 - float(spec)], [float(sens)], s=30, color=OTHER_COLOURS[0], zorder=3,
                           label="Youden cut-off")
        ax.set_title(title, fontsize=SMALL_FONT)
        ax.set_xlim(-0.02, 1.02)
        ax.set_ylim(-0.02, 1.02)
        ax.set_aspect("equal")
        ax.set_xlabel("1 \u2212 specificity", fontsize=SMALL_FONT)
        ax.set_ylabel("sensitivity", fontsize=SMALL_FONT)
        ax.tick_params(labelsize=SMALL_FONT)
    handles, labels = axes[0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="upper right", ncols=len(labels), fontsize=SMALL_FONT, frameon=False)
    return figure


def km_figure(km_curves: Mapping[tuple, pd.DataFrame], relapse: pd.DataFrame | None = None, *,
              n_top: int = 4, ncols: int = 2, time_label: str = "time",
              at_risk: Mapping[tuple, pd.DataFrame] | None = None, measure: str = "\u03c7") -> Figure | None:
    """Kaplan-Meier relapse-free survival split at the median of the measure, with 95 % bands.

    Panels for the ``n_top`` regions with the smallest Cox p (``hr_p``, else the logistic p),
    titled with the hazard ratio per SD when the relapse table has it; under each panel the
    numbers at risk of each curve at the times of ``at_risk`` (keyed as ``km_curves``).
    """
    keys = _curve_keys(km_curves, relapse, n_top, by=("hr_p", "p"))
    if not keys:
        return None
    ncols = max(1, min(ncols, len(keys)))
    nrows = math.ceil(len(keys) / ncols)
    panel_w, plot_h, risk_h, top_h, left, gap = PRINT_WIDTH_IN / ncols, 2.1, 0.95, 0.55, 0.95, 0.35
    height = nrows * (top_h + plot_h + risk_h)
    figure = Figure(figsize=(PRINT_WIDTH_IN, height))
    for index, key in enumerate(keys):
        column, line = index % ncols, index // ncols
        x0 = column * panel_w + left
        y0 = height - (line + 1) * (top_h + plot_h + risk_h) + risk_h
        ax = figure.add_axes((x0 / PRINT_WIDTH_IN, y0 / height, (panel_w - left - gap) / PRINT_WIDTH_IN,
                              plot_h / height))
        _km_panel(ax, km_curves[key], (at_risk or {}).get(key), measure)
        title = short_label(*key)
        row = _relapse_row(relapse, key)
        if row is not None and not is_missing(row.get("hr")):
            title += ("\nHR per SD " + format_interval(row.get("hr"), row.get("hr_ci_low"), row.get("hr_ci_high"))
                      + f", p {format_p(row.get('hr_p'))}")
        ax.set_title(title, fontsize=SMALL_FONT)
        ax.set_xlabel(time_label, fontsize=SMALL_FONT)
    return figure


def _km_panel(ax, curves: pd.DataFrame, at_risk: pd.DataFrame | None, measure: str) -> None:
    names = list(dict.fromkeys(curves["group"]))
    for index, name in enumerate(names):
        colour = OTHER_COLOURS[index % len(OTHER_COLOURS)]
        curve = curves[curves["group"] == name].sort_values("time", kind="mergesort")
        ax.step(curve["time"], curve["survival"], where="post", color=colour, linewidth=1.6,
                linestyle="-" if index == 0 else "--", label=f"{name} {measure}")
        if {"ci_low", "ci_high"} <= set(curve.columns):
            ax.fill_between(curve["time"], curve["ci_low"], curve["ci_high"], step="post",
                            color=colour, alpha=0.15, linewidth=0)
    ax.set_ylim(-0.02, 1.05)
    ax.set_ylabel("relapse-free", fontsize=SMALL_FONT)
    ax.tick_params(labelsize=SMALL_FONT)
    ax.legend(fontsize=SMALL_FONT, frameon=False, loc="lower left")
    if at_risk is None or at_risk.empty:
        return
    times = sorted(at_risk["time"].astype(float).unique())
    ax.set_xticks(times)
    ax.set_xlim(min(times[0], ax.get_xlim()[0]), max(times[-1], ax.get_xlim()[1]))
    ax.annotate("at risk", xy=(0, 0), xycoords="axes fraction", xytext=(-4, -42), textcoords="offset points",
                ha="right", fontsize=SMALL_FONT, style="italic")
    for index, name in enumerate(names):
        rows = at_risk[at_risk["group"] == name]
        ax.annotate(str(name), xy=(0, 0), xycoords="axes fraction", xytext=(-4, -55 - 12 * index),
                    textcoords="offset points", ha="right", fontsize=SMALL_FONT,
                    color=OTHER_COLOURS[index % len(OTHER_COLOURS)])
        for time, count in zip(rows["time"].astype(float), rows["at_risk"]):
            ax.annotate(f"{int(count)}", xy=(time, 0), xycoords=("data", "axes fraction"),
                        xytext=(0, -55 - 12 * index), textcoords="offset points", ha="center",
                        fontsize=SMALL_FONT, color=OTHER_COLOURS[index % len(OTHER_COLOURS)])
