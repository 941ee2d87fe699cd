"""The report's figures, drawn with matplotlib's Agg canvas and embedded as base64 PNG.

No pyplot and no global state: each function builds a ``matplotlib.figure.Figure`` and
returns it (so tests can read what was drawn), and ``figure_to_data_uri`` turns it into a
``data:image/png;base64,...`` address the HTML embeds. Colours follow the Okabe-Ito palette,
which stays distinct for colour-blind readers, and a group has the same colour in every figure
(:func:`group_colours`); every panel also labels its groups in text. Figures are drawn at their
print size (at most ``PRINT_WIDTH_IN`` wide, text of at least 9 pt) and rendered at ``DPI``;
the page shows them at that size (``ReportFigure.width_in``), so print keeps the fonts readable.
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

from qsmiron.report.formatting import format_number, format_p, is_missing
from qsmiron.report.names import short_label, variable_short

PALETTE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442", "#000000")
"""Okabe-Ito colours, one per group (the first two are the compared groups)."""

OTHER_COLOURS = ("#009E73", "#CC79A7", "#E69F00", "#56B4E9")
"""Colours of things that are not groups (a fit, the low/high split of a Kaplan-Meier plot)."""

HEMISPHERE_ORDER = ("L", "R")
DPI = 150
PRINT_WIDTH_IN = 7.0
"""The widest figure: an A4 page's text width (186 mm at 12 mm margins) less a little."""
FONT = 10
SMALL_FONT = 9
"""Font sizes in points at print size (nothing smaller)."""


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
    width_in : float
        The figure's width in inches: the page shows it at this size.
    """

    id: str
    title: str
    caption: str
    data_uri: str
    alt: str
    width_in: float = PRINT_WIDTH_IN


def group_colours(groups: Sequence[str]) -> dict[str, str]:
    """One colour per group, the compared pair first: the same in every figure of the report."""
    return {str(g): PALETTE[i % len(PALETTE)] for i, g in enumerate(groups)}


def report_figure(figure_id: str, title: str, caption: str, figure: Figure, alt: str) -> "ReportFigure":
    """A drawn figure as the report shows it (PNG at ``DPI``, shown at its drawn width)."""
    return ReportFigure(figure_id, title, caption, figure_to_data_uri(figure), alt,
                        round(float(figure.get_figwidth()), 2))


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
    left_in, right_in, bottom_in, gap_w_in, gap_h_in = 0.75, 0.12, 0.6, 0.75, 1.0
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
                     regions: Sequence[str] | None = None, ncols: int = 3,
                     seed: int = 0, ylabel: str = "\u03c7 (ppm)") -> Figure | None:
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
    colours = group_colours(groups)
    figure, axes = _grid(len(regions), ncols, (PRINT_WIDTH_IN / max(1, min(ncols, len(regions))), 2.5), top_in=0.5)
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
                colour = colours[group]
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
        ax.set_xticks(ticks, tick_labels, fontsize=SMALL_FONT)
        ax.set_title(short_label(region), fontsize=FONT)
        ax.set_ylabel(ylabel, fontsize=SMALL_FONT)
        ax.tick_params(axis="y", labelsize=SMALL_FONT)
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
                      ncols=len(ordered), frameon=False, fontsize=FONT, markerscale=2.0)
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
                               ncols: int = 3, colours: Mapping[str, str] | None = None,
                               units: Mapping | None = None, ylabel: str = "\u03c7 (ppm)") -> Figure | None:
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
    figure, axes = _grid(len(panels), ncols, (PRINT_WIDTH_IN / max(1, min(ncols, len(panels))), 2.7),
                         top_in=0.8 if covariates else 0.6)
    for ax, (row, x, y) in zip(axes, panels):
        grid = np.linspace(x.min(), x.max(), 50)
        band = ols_fit_band(x, y, grid)
        ax.fill_between(band["x"], band["ci_low"], band["ci_high"], color="0.5", alpha=0.25,
                        linewidth=0, label="95 % CI of the fit")
        ax.plot(band["x"], band["fit"], color="0.15", linewidth=1.4, label="OLS fit")
        group = row.get("group")
        colour = (colours or {}).get(str(group), "0.3") if not is_missing(group) else "0.3"
        ax.scatter(x, y, s=16, color=colour, edgecolors="none", zorder=3, label="participants")
        method = str(row.get("method", "")).lower()
        symbol = "r\u209b" if method.startswith("spearman") else "r"
        group = row.get("group")
        where = "" if is_missing(group) else f" ({group})"
        ax.set_title(f"{short_label(row['region'], row.get('hemisphere'))}{where}\n"
                     f"{symbol} = {format_number(row.get('r'), 2)}, pFDR {format_p(row.get('p_fdr'))}",
                     fontsize=SMALL_FONT)
        ax.set_xlabel(variable_short(str(row["variable"]), units), fontsize=SMALL_FONT)
        ax.set_ylabel(ylabel, fontsize=SMALL_FONT)
        ax.tick_params(labelsize=SMALL_FONT)
    if covariates:
        figure.suptitle("r: partial correlation adjusted for " + ", ".join(map(str, covariates))
                        + "; line: unadjusted OLS fit", fontsize=SMALL_FONT, y=1 - 0.12 / figure.get_figheight())
    return figure
