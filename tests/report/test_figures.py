"""The report's figures draw exactly the data they claim to, and encode to valid PNG."""

import base64
import io

import matplotlib.image
from matplotlib.collections import PathCollection
import numpy as np
import pandas as pd
import pytest
from scipy import stats

from qsmiron.report import figures as fig
from qsmiron.report import relapse_figures


@pytest.fixture(scope="module")
def values(cohort):
    regions, participants = cohort
    return fig.cohort_values(regions, participants, "group")


def _points(ax):
    """All scatter points of an axes as an (N, 2) array."""
    offsets = [c.get_offsets() for c in ax.collections if isinstance(c, PathCollection)]
    return np.concatenate(offsets) if offsets else np.empty((0, 2))


def test_ols_band_matches_the_textbook_confidence_interval_of_the_mean_within_1e_10():
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 15, 20)
    y = 0.08 - 0.003 * x + rng.normal(0, 0.01, 20)
    grid = np.linspace(-1, 16, 7)
    band = fig.ols_fit_band(x, y, grid)
    # Reference: closed-form simple regression (e.g. Draper & Smith, ch. 1).
    n, x_mean = x.size, x.mean()
    sxx = np.sum((x - x_mean) ** 2)
    slope = np.sum((x - x_mean) * (y - y.mean())) / sxx
    intercept = y.mean() - slope * x_mean
    s = np.sqrt(np.sum((y - intercept - slope * x) ** 2) / (n - 2))
    half = stats.t.ppf(0.975, n - 2) * s * np.sqrt(1 / n + (grid - x_mean) ** 2 / sxx)
    fit = intercept + slope * grid
    np.testing.assert_allclose(band["fit"], fit, rtol=0, atol=1e-10)
    np.testing.assert_allclose(band["ci_low"], fit - half, rtol=0, atol=1e-10)
    np.testing.assert_allclose(band["ci_high"], fit + half, rtol=0, atol=1e-10)


def test_box_figure_shows_every_participant_of_both_groups_in_every_panel(values, study_results):
    figure = fig.group_box_figure(values, ["MOH", "CM"], comparison=study_results.group_comparison)
    axes = [ax for ax in figure.axes if ax.get_visible()]
    assert [ax.get_title() for ax in axes] == ["Pu", "Ca", "GPe", "VeP"]
    for ax in axes:
        region = ax.get_title()
        expected = np.sort(values.loc[values["region"] == region, "mean_ppm"].to_numpy())
        np.testing.assert_allclose(np.sort(_points(ax)[:, 1]), expected)
        labels = [t.get_text() for t in ax.get_xticklabels()]
        assert labels[0].startswith("L") and labels[1].startswith("R")
        row = study_results.group_comparison.query("region == @region and hemisphere == 'L'").iloc[0]
        assert f"pFDR {fig.format_p(row['p_fdr'])}" in labels[0]
    legend_texts = [t.get_text() for t in figure.legends[0].get_texts()]
    assert legend_texts == ["MOH", "CM"]


def test_box_figure_is_reproducible_and_none_without_data(values):
    a = fig.figure_to_data_uri(fig.group_box_figure(values, ["MOH", "CM"]), dpi=30)
    b = fig.figure_to_data_uri(fig.group_box_figure(values, ["MOH", "CM"]), dpi=30)
    assert a == b
    assert fig.group_box_figure(values, ["HC", "XX"]) is None


def test_scatter_draws_the_strongest_associations_with_the_group_members_only(values, study_results):
    assoc = study_results.associations
    figure = fig.association_scatter_figure(values, assoc, n_top=3, covariates=["age", "sex"])
    axes = [ax for ax in figure.axes if ax.get_visible()]
    top = assoc.sort_values("p").head(3)
    assert len(axes) == 3
    for ax, (_, row) in zip(axes, top.iterrows()):
        assert ax.get_title().startswith(f"{row['region']} {row['hemisphere']} (MOH)")
        assert ax.get_xlabel() == row["variable"]
        subset = values[(values["region"] == row["region"]) & (values["hemisphere"] == row["hemisphere"])
                        & (values["group"] == "MOH")]
        points = _points(ax)
        assert len(points) == 12
        np.testing.assert_allclose(np.sort(points[:, 0]), np.sort(subset[row["variable"]].to_numpy(float)))
        # The drawn line is the OLS fit of these points.
        line = ax.lines[0]
        slope = np.polyfit(subset[row["variable"]].to_numpy(float), subset["mean_ppm"].to_numpy(), 1)[0]
        xs, ys = line.get_data()
        assert (ys[-1] - ys[0]) / (xs[-1] - xs[0]) == pytest.approx(slope, rel=1e-8)
    assert "partial correlation adjusted for age, sex" in figure.texts[0].get_text()


def test_scatter_skips_rows_it_cannot_draw(values):
    rows = pd.DataFrame([{"region": "Pu", "hemisphere": "L", "group": "MOH", "variable": "not_a_column",
                          "method": "spearman", "r": 0.1, "p": 0.01, "p_fdr": 0.02}])
    assert fig.association_scatter_figure(values, rows) is None
    assert fig.association_scatter_figure(values, pd.DataFrame()) is None


def test_roc_panels_follow_the_relapse_p_order_and_mark_the_youden_point(study_results):
    figure = relapse_figures.roc_figure(study_results.roc_curves, study_results.relapse, n_top=3)
    axes = [ax for ax in figure.axes if ax.get_visible()]
    order = study_results.relapse.sort_values("p", kind="mergesort").head(3)
    for ax, (_, row) in zip(axes, order.iterrows()):
        key = (row["region"], row["hemisphere"])
        assert ax.get_title().startswith(f"{key[0]} {key[1]}\nAUC ")
        curve = study_results.roc_curves[key].sort_values(["fpr", "tpr"], kind="mergesort")
        xs, ys = ax.lines[0].get_data()
        np.testing.assert_allclose(xs, curve["fpr"])
        np.testing.assert_allclose(ys, curve["tpr"])
        np.testing.assert_allclose(_points(ax)[0], [1 - row["specificity"], row["sensitivity"]])
    assert relapse_figures.roc_figure({}, study_results.relapse) is None


def test_km_panels_draw_both_median_split_curves_and_the_numbers_at_risk_under_them(study_results):
    first = study_results.relapse.sort_values("hr_p", kind="mergesort").iloc[0]
    key = (first["region"], first["hemisphere"])
    at_risk = pd.DataFrame({"group": ["low", "low", "high", "high"], "time": [0.0, 6.0, 0.0, 6.0],
                            "at_risk": [6, 4, 6, 5]})
    figure = relapse_figures.km_figure(study_results.km_curves, study_results.relapse, n_top=2,
                                       time_label="months", at_risk={key: at_risk})
    axes = [ax for ax in figure.axes if ax.get_visible()]
    assert len(axes) == 2
    assert axes[0].get_title().startswith(f"{key[0]} {key[1]}\nHR per SD ")
    texts = [t.get_text() for t in axes[0].texts]
    assert "at risk" in texts and texts.count("6") == 2 and "4" in texts and "5" in texts
    assert list(axes[0].get_xticks()) == [0.0, 6.0]
    assert "at risk" not in [t.get_text() for t in axes[1].texts]  # no at-risk table given for it
    curves = study_results.km_curves[key]
    for line, (name, curve) in zip(axes[0].lines, curves.groupby("group", sort=False)):
        xs, ys = line.get_data()
        np.testing.assert_allclose(ys, curve.sort_values("time")["survival"])
        assert line.get_label() == f"{name} \u03c7"
    assert axes[0].get_xlabel() == "months"


def test_forest_plot_draws_each_estimate_and_interval_with_the_null_line():
    from qsmiron.records.answers import Estimate
    from qsmiron.report.answer_figures import forest_figure

    rows = [Estimate(region="VeP", hemisphere="L", estimate=-0.9, ci_low=-1.5, ci_high=-0.3, p_fdr=0.01,
                     family="primary"),
            Estimate(region="Pu", hemisphere="R", estimate=None, ci_low=None, ci_high=None, family="exploratory",
                     note="too few events")]
    figure = forest_figure(rows, xlabel="Cohen's d", null=0.0)
    ax = figure.axes[0]
    xs = [tuple(line.get_xdata()) for line in ax.lines]
    assert (-1.5, -0.3) in xs and (-0.9,) in xs and (0, 0) in xs
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert labels == ["VeP L", "Pu R (expl.)"]
    notes = [t.get_text() for t in ax.texts]
    assert any(n.startswith("-0.90 (-1.50 to -0.30)") and n.endswith("*") for n in notes)
    assert "too few events" in notes
    assert figure.get_figwidth() <= fig.PRINT_WIDTH_IN
    assert forest_figure([], xlabel="d") is None


def test_heatmap_writes_every_r_with_its_significance_mark():
    from qsmiron.records.answers import AssociationMatrix
    from qsmiron.report.answer_figures import heatmap_figure

    matrix = AssociationMatrix(group="MOH", method="spearman", regions=["VeP", "Pu"], hemispheres=["L", "L"],
                               variables=["sds", "ldq"], r=[[-0.6, 0.1], [0.3, None]],
                               p=[[0.001, 0.5], [0.03, None]], p_fdr=[[0.004, 0.6], [0.2, None]],
                               family=[["primary", "primary"], ["exploratory", "exploratory"]])
    figure = heatmap_figure(matrix)
    texts = [t.get_text() for t in figure.axes[0].texts]
    assert texts == ["-0.60*", "0.10", "0.30\u00b0", "n/a"]
    bold = [t.get_fontweight() for t in figure.axes[0].get_yticklabels()]
    assert bold[0] == "bold" and bold[1] != "bold"


def test_figures_are_drawn_at_print_size_with_fonts_of_at_least_9_points(values, study_results):
    from matplotlib.text import Text

    drawn = [fig.group_box_figure(values, ["MOH", "CM"], comparison=study_results.group_comparison),
             fig.association_scatter_figure(values, study_results.associations, covariates=["age"]),
             relapse_figures.roc_figure(study_results.roc_curves, study_results.relapse),
             relapse_figures.km_figure(study_results.km_curves, study_results.relapse)]
    for figure in drawn:
        assert figure.get_figwidth() <= fig.PRINT_WIDTH_IN + 1e-9
        sizes = [t.get_fontsize() for t in figure.findobj(Text) if t.get_text().strip()]
        assert sizes and min(sizes) >= 9
    assert fig.DPI >= 150


def test_a_group_has_the_same_colour_in_the_box_and_the_scatter_plots(values, study_results):
    from matplotlib.colors import to_hex

    colours = fig.group_colours(["MOH", "CM"])
    box = fig.group_box_figure(values, ["MOH", "CM"])
    for ax in box.axes:
        for collection in ax.collections:
            if collection.get_label() in colours:
                assert to_hex(collection.get_facecolor()[0]) == colours[collection.get_label()].lower()
    moh_rows = study_results.associations[study_results.associations["group"] == "MOH"]
    scatter = fig.association_scatter_figure(values, moh_rows, colours=colours)
    points = [c for ax in scatter.axes for c in ax.collections if c.get_label() == "participants"]
    assert points and all(to_hex(c.get_facecolor()[0]) == colours["MOH"].lower() for c in points)


def test_figures_encode_to_png_of_the_figure_size():
    figure, axes = fig._grid(5, 3, (2.0, 1.5))
    assert sum(ax.get_visible() for ax in figure.axes) == 5
    uri = fig.figure_to_data_uri(figure, dpi=50)
    assert uri.startswith("data:image/png;base64,")
    data = base64.b64decode(uri.split(",", 1)[1])
    image = matplotlib.image.imread(io.BytesIO(data), format="png")
    width, height = figure.get_size_inches() * 50
    assert abs(image.shape[0] - height) <= 1 and abs(image.shape[1] - width) <= 1


def test_cohort_values_match_ids_and_group_labels_as_the_statistics_do():
    regions = pd.DataFrame({"participant_id": ["01", "sub-02", "sub-03"], "region": "Pu", "hemisphere": "L",
                            "mean_ppm": [0.05, 0.06, 0.07]})
    participants = pd.DataFrame({"participant_id": ["sub-01", "02", "sub-03"], "dx": [1.0, 2.0, np.nan]})
    values = fig.cohort_values(regions, participants, "dx")
    assert values["participant_id"].tolist() == ["sub-01", "sub-02", "sub-03"]
    assert values["group"].iloc[:2].tolist() == ["1", "2"] and pd.isna(values["group"].iloc[2])
