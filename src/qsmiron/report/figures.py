"""The report's figures, drawn with matplotlib's Agg canvas and embedded as base64 PNG.

No pyplot and no global state: each function builds a ``matplotlib.figure.Figure`` and
returns it (so tests can read what was drawn), and ``figure_to_data_uri`` turns it into a
``data:image/png;base64,...`` address the HTML embeds. Colours follow the Okabe-Ito palette,
which stays distinct for colour-blind readers; every panel also labels its groups in text.
"""

from __future__ import annotations

import base64
import io
import math
from dataclasses import dataclass
from typing import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from qsmiron.report.formatting import format_interval, format_number, format_p, is_missing

PALETTE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442", "#000000")
"""Okabe-Ito colours, one per group (the first two are the compared groups)."""

HEMISPHERE_ORDER = ("L", "R")
DPI = 90


@dataclass(frozen=True)
class ReportFigure:
    """One figure as the report shows it.

    Attributes
    ----------
    id : str
        Stable HTML id of the figure element.
    title : str
    caption : str
        What is shown and how it was chosen (plain text, escaped by the template).
    data_uri : str
        ``data:image/png;base64,...``.
    alt : str
        Text alternative for screen readers.
    """

    id: str
    title: str
    caption: str
    data_uri: str
    alt: str


def figure_to_data_uri(figure: Figure, *, dpi: int = DPI) -> str:
    """Render ``figure`` to PNG and return it as a ``data:`` URI (no file is written)."""
    buffer = io.BytesIO()
    # No 'Software' entry: the bytes then depend only on what is drawn.
    figure.savefig(buffer, format="png", dpi=dpi, metadata={"Software": None})
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _grid(n_panels: int, ncols: int, panel_size: tuple[float, float], *,
          top_in: float = 0.55) -> tuple[Figure, list]:
    """A figure of ``n_panels`` axes in ``ncols`` columns with fixed margins in inches.

    Fixed margins instead of matplotlib's constrained layout: the layout solver doubles the
    drawing time and the panels here all have the same furniture (a two-line title, axis
    labels), so margins known in advance fit them.
    """
    ncols = max(1, min(ncols, n_panels))
    nrows = math.ceil(n_panels / ncols)
    width, height = panel_size[0] * ncols, panel_size[1] * nrows + top_in
    figure = Figure(figsize=(width, height))
    left_in, right_in, bottom_in, gap_w_in, gap_h_in = 0.65, 0.15, 0.55, 0.7, 0.95
    axes_w = (width - left_in - right_in - gap_w_in * (ncols - 1)) / ncols
    axes_h = (height - top_in - bottom_in - gap_h_in * (nrows - 1)) / nrows
    figure.subplots_adjust(left=left_in / width, right=1 - right_in / width,
                           bottom=bottom_in / height, top=1 - top_in / height,
                           wspace=gap_w_in / axes_w, hspace=gap_h_in / axes_h)
    axes = figure.subplots(nrows, ncols, squeeze=False).ravel().tolist()
    for ax in axes[n_panels:]:
        ax.set_visible(False)
    return figure, axes[:n_panels]


def _hemisphere_key(value) -> tuple[int, str]:
    text = "" if is_missing(value) else str(value)
    return (HEMISPHERE_ORDER.index(text) if text in HEMISPHERE_ORDER else len(HEMISPHERE_ORDER), text)


def _same_hemisphere(series: pd.Series, hemisphere) -> pd.Series:
    if is_missing(hemisphere):
        return series.isna()
    return series.astype(str) == str(hemisphere)


def _label(region, hemisphere) -> str:
    return str(region) if is_missing(hemisphere) else f"{region} {hemisphere}"


def cohort_values(regions: pd.DataFrame, participants: pd.DataFrame, group_column: str | None) -> pd.DataFrame:
    """Regional susceptibility joined to each participant's group (and every clinical column).

    Returns a long frame: participant_id, region, hemisphere, mean_ppm, the participants'
    columns; ``group`` holds the participant's group label as text, as the statistics
    spell it (missing when unknown). Participant ids are matched in their ``sub-`` form.
    """
    from qsmiron.io.participants import normalise_participant_id
    from qsmiron.stats.study import group_labels

    values = regions[["participant_id", "region", "hemisphere", "mean_ppm"]].copy()
    values["participant_id"] = values["participant_id"].map(normalise_participant_id)
    clinical = participants.copy()
    clinical["participant_id"] = clinical["participant_id"].map(normalise_participant_id)
    clinical = clinical.drop(columns=[c for c in ("region", "hemisphere", "mean_ppm", "group")
                                      if c in clinical and c != group_column])
    merged = values.merge(clinical, on="participant_id", how="left")
    # Group labels as the statistics compare them: 1, 1.0 and "1" are all "1".
    merged["group"] = group_labels(merged[group_column]) if group_column in merged else np.nan
    return merged


# --------------------------------------------------------------------------- group comparison
def group_box_figure(values: pd.DataFrame, groups: Sequence[str], *,
                     comparison: pd.DataFrame | None = None,
                     regions: Sequence[str] | None = None, ncols: int = 4,
                     seed: int = 0) -> Figure | None:
    """Box plots of regional susceptibility per group, one panel per region, with every subject.

    Parameters
    ----------
    values : DataFrame
        From :func:`cohort_values`: region, hemisphere, mean_ppm, group.
    groups : sequence of str
        The groups to show, in order (the compared pair).
    comparison : DataFrame, optional
        The group-comparison table; its FDR-adjusted p-value is printed under each
        hemisphere.
    regions : sequence of str, optional
        Regions to draw, in order (default: all, in table order).
    seed : int
        Seed of the horizontal jitter of the points (the figure is reproducible).

    Returns
    -------
    Figure or None
        None when no subject of ``groups`` has a value.
    """
    groups = [str(g) for g in groups]
    data = values[values["group"].isin(groups) & values["mean_ppm"].notna()]
    if data.empty:
        return None
    if regions is None:
        regions = list(dict.fromkeys(data["region"].astype(str)))
    regions = [r for r in regions if (data["region"].astype(str) == r).any()]
    if not regions:
        return None
    rng = np.random.default_rng(seed)
    figure, axes = _grid(len(regions), ncols, (3.1, 2.6), top_in=0.45)
    width = 0.7
    for ax, region in zip(axes, regions):
        in_region = data[data["region"].astype(str) == region]
        hemispheres = sorted(in_region["hemisphere"].drop_duplicates().tolist(), key=_hemisphere_key)
        ticks, tick_labels = [], []
        for h_index, hemisphere in enumerate(hemispheres):
            in_hemisphere = in_region[_same_hemisphere(in_region["hemisphere"], hemisphere)]
            base = h_index * (len(groups) + 1)
            for g_index, group in enumerate(groups):
                y = in_hemisphere.loc[in_hemisphere["group"] == group, "mean_ppm"].to_numpy(float)
                if y.size == 0:
                    continue
                position = base + g_index
                colour = PALETTE[g_index % len(PALETTE)]
                box = ax.boxplot([y], positions=[position], widths=width, patch_artist=True,
                                 showfliers=False, manage_ticks=False,
                                 medianprops={"color": "black", "linewidth": 1.2})
                for patch in box["boxes"]:
                    patch.set_facecolor(colour)
                    patch.set_alpha(0.35)
                jitter = rng.uniform(-width / 4, width / 4, size=y.size)
                ax.scatter(position + jitter, y, s=10, color=colour, edgecolors="none",
                           alpha=0.9, zorder=3, label=group if (h_index == 0) else None)
            ticks.append(base + (len(groups) - 1) / 2)
            label = "" if is_missing(hemisphere) else str(hemisphere)
            if comparison is not None and not comparison.empty:
                row = comparison[(comparison["region"].astype(str) == region)
                                 & _same_hemisphere(comparison["hemisphere"], hemisphere)]
                if not row.empty and "p_fdr" in row:
                    label += f"\npFDR {format_p(row['p_fdr'].iloc[0])}"
            tick_labels.append(label)
        ax.set_xticks(ticks, tick_labels, fontsize=8)
        ax.set_title(region, fontsize=10)
        ax.set_ylabel("\u03c7 (ppm)", fontsize=8)
        ax.tick_params(axis="y", labelsize=7)
        ax.axhline(0.0, color="0.8", linewidth=0.6, zorder=0)
    handles = {}
    for ax in axes:
        for collection in ax.collections:
            label = collection.get_label()
            if label in groups and label not in handles:
                handles[label] = collection
    if handles:
        ordered = [handles[g] for g in groups if g in handles]
        figure.legend(handles=ordered, labels=[h.get_label() for h in ordered], loc="upper center",
                      ncols=len(ordered), frameon=False, fontsize=9)
    return figure


# --------------------------------------------------------------------------- associations
def ols_fit_band(x: Iterable[float], y: Iterable[float], x_grid: Iterable[float], *,
                 alpha: float = 0.05) -> pd.DataFrame:
    """Ordinary least-squares line of ``y`` on ``x`` and the (1 - alpha) band of its mean.

    Fitted with statsmodels; the band is the confidence interval of the fitted mean
    (``t * s * sqrt(1/n + (x0 - mean x)^2 / Sxx)``), not a prediction interval.

    Returns
    -------
    DataFrame
        Columns x, fit, ci_low, ci_high, one row per ``x_grid`` value.
    """
    import statsmodels.api as sm

    x = np.asarray(list(x), float)
    y = np.asarray(list(y), float)
    x_grid = np.asarray(list(x_grid), float)
    model = sm.OLS(y, sm.add_constant(x, has_constant="add")).fit()
    frame = model.get_prediction(sm.add_constant(x_grid, has_constant="add")).summary_frame(alpha=alpha)
    return pd.DataFrame({"x": x_grid, "fit": frame["mean"].to_numpy(),
                         "ci_low": frame["mean_ci_lower"].to_numpy(),
                         "ci_high": frame["mean_ci_upper"].to_numpy()})


def strongest(table: pd.DataFrame, n_top: int, *, by: Sequence[str] = ("p",)) -> pd.DataFrame:
    """The ``n_top`` rows with the smallest values of the first of ``by`` present (NaN last)."""
    if table is None or table.empty:
        return pd.DataFrame()
    for column in by:
        if column in table and table[column].notna().any():
            return table.sort_values(column, kind="mergesort", na_position="last").head(n_top)
    return table.head(n_top)


def association_scatter_figure(values: pd.DataFrame, associations: pd.DataFrame, *,
                               n_top: int = 6, covariates: Sequence[str] = (),
                               ncols: int = 3) -> Figure | None:
    """Scatter plots of susceptibility against a clinical variable for the strongest associations.

    The ``n_top`` rows of ``associations`` with the smallest p are drawn, each with the
    subjects of the row's group (all subjects for group ``all``), the OLS line and its 95 %
    confidence band. The panel title gives the table's (partial) correlation and FDR p.

    Returns None when no row can be drawn (variable missing or fewer than 3 subjects).
    """
    chosen = strongest(associations, n_top)
    panels = []
    for _, row in chosen.iterrows():
        variable = str(row["variable"])
        if variable not in values:
            continue
        subset = values[(values["region"].astype(str) == str(row["region"]))
                        & _same_hemisphere(values["hemisphere"], row.get("hemisphere"))]
        group = row.get("group")
        if not is_missing(group) and str(group).lower() != "all":
            subset = subset[subset["group"] == str(group)]
        x = pd.to_numeric(subset[variable], errors="coerce")
        y = subset["mean_ppm"]
        keep = x.notna() & y.notna()
        if keep.sum() < 3 or x[keep].nunique() < 2:
            continue
        panels.append((row, x[keep].to_numpy(float), y[keep].to_numpy(float)))
    if not panels:
        return None
    figure, axes = _grid(len(panels), ncols, (3.6, 3.0), top_in=0.75 if covariates else 0.55)
    for ax, (row, x, y) in zip(axes, panels):
        grid = np.linspace(x.min(), x.max(), 50)
        band = ols_fit_band(x, y, grid)
        ax.fill_between(band["x"], band["ci_low"], band["ci_high"], color=PALETTE[0], alpha=0.2,
                        linewidth=0, label="95 % CI of the fit")
        ax.plot(band["x"], band["fit"], color=PALETTE[0], linewidth=1.5, label="OLS fit")
        ax.scatter(x, y, s=14, color=PALETTE[1], edgecolors="none", zorder=3, label="participants")
        method = str(row.get("method", "")).lower()
        symbol = "r\u209b" if method.startswith("spearman") else "r"
        group = row.get("group")
        where = "" if is_missing(group) else f" ({group})"
        ax.set_title(f"{_label(row['region'], row.get('hemisphere'))}{where}\n"
                     f"{symbol} = {format_number(row.get('r'), 2)}, pFDR {format_p(row.get('p_fdr'))}",
                     fontsize=9)
        ax.set_xlabel(str(row["variable"]), fontsize=8)
        ax.set_ylabel("\u03c7 (ppm)", fontsize=8)
        ax.tick_params(labelsize=7)
    if covariates:
        figure.suptitle("r: partial correlation adjusted for " + ", ".join(map(str, covariates))
                        + "; line: unadjusted OLS fit", fontsize=8, y=1 - 0.12 / figure.get_figheight())
    return figure


# --------------------------------------------------------------------------- relapse
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
    """ROC curves of susceptibility alone for relapse, for the regions with the smallest p.

    Each panel shows the curve, the chance diagonal, and the Youden point (1 - specificity,
    sensitivity) from the relapse table, titled with AUC and its DeLong 95 % CI.
    """
    keys = _curve_keys(roc_curves, relapse, n_top, by=("p",))
    if not keys:
        return None
    figure, axes = _grid(len(keys), ncols, (3.0, 3.0))
    for ax, key in zip(axes, keys):
        curve = roc_curves[key].sort_values(["fpr", "tpr"], kind="mergesort")
        ax.plot(curve["fpr"], curve["tpr"], color=PALETTE[0], linewidth=1.6, drawstyle="steps-post",
                label="ROC")
        ax.plot([0, 1], [0, 1], color="0.6", linewidth=0.8, linestyle="--", label="chance")
        row = _relapse_row(relapse, key)
        title = _label(*key)
        if row is not None:
            title += "\nAUC " + format_interval(row.get("auc"), row.get("auc_ci_low"), row.get("auc_ci_high"))
            if not is_missing(row.get("sensitivity")) and not is_missing(row.get("specificity")):
                ax.scatter([1 - float(row["specificity"])], [float(row["sensitivity"])], s=28,
                           color=PALETTE[1], zorder=3, label="Youden cut-off")
        ax.set_title(title, fontsize=9)
        ax.set_xlim(-0.02, 1.02)
        ax.set_ylim(-0.02, 1.02)
        ax.set_aspect("equal")
        ax.set_xlabel("1 \u2212 specificity", fontsize=8)
        ax.set_ylabel("sensitivity", fontsize=8)
        ax.tick_params(labelsize=7)
    axes[0].legend(fontsize=7, loc="lower right", frameon=False)
    return figure


def km_figure(km_curves: Mapping[tuple, pd.DataFrame], relapse: pd.DataFrame | None = None, *,
              n_top: int = 4, ncols: int = 2, time_label: str = "time") -> Figure | None:
    """Kaplan-Meier relapse-free survival split at the median susceptibility, with 95 % bands.

    Panels for the ``n_top`` regions with the smallest Cox p (``hr_p``, else the logistic p),
    titled with the hazard ratio per SD when the relapse table has it.
    """
    keys = _curve_keys(km_curves, relapse, n_top, by=("hr_p", "p"))
    if not keys:
        return None
    figure, axes = _grid(len(keys), ncols, (3.8, 2.9))
    for ax, key in zip(axes, keys):
        curves = km_curves[key]
        for index, (name, curve) in enumerate(curves.groupby("group", sort=False)):
            colour = PALETTE[index % len(PALETTE)]
            curve = curve.sort_values("time", kind="mergesort")
            ax.step(curve["time"], curve["survival"], where="post", color=colour, linewidth=1.5,
                    label=f"{name} \u03c7")
            if {"ci_low", "ci_high"} <= set(curve.columns):
                ax.fill_between(curve["time"], curve["ci_low"], curve["ci_high"], step="post",
                                color=colour, alpha=0.15, linewidth=0)
        title = _label(*key)
        row = _relapse_row(relapse, key)
        if row is not None and not is_missing(row.get("hr")):
            title += ("\nHR/SD " + format_interval(row.get("hr"), row.get("hr_ci_low"), row.get("hr_ci_high"))
                      + f", p {format_p(row.get('hr_p'))}")
        ax.set_title(title, fontsize=9)
        ax.set_ylim(-0.02, 1.02)
        ax.set_xlabel(time_label, fontsize=8)
        ax.set_ylabel("relapse-free", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=7, frameon=False, loc="lower left")
    return figure
