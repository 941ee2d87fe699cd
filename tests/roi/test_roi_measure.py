"""Per-region statistics against numpy on hand-made label maps, and the flags."""

import numpy as np
import pandas as pd

import pytest

from qsmiron.roi.measure import erode_labels, interior_weights, measure_regions, weighted_median

TABLE = pd.DataFrame({"index": [1, 2, 3], "region": ["A", "A", "B"], "hemisphere": ["L", "R", "L"]})


def _scene():
    rng = np.random.default_rng(0)
    chi = rng.normal(0.1, 0.02, (20, 20, 20))
    labels = np.zeros((20, 20, 20), int)
    labels[2:8, 2:8, 2:8] = 1
    labels[12:18, 12:18, 12:18] = 2
    mask = np.ones_like(labels, bool)
    return chi, mask, labels


def test_statistics_equal_numpy_on_the_label_voxels_without_interpolation():
    chi, mask, labels = _scene()
    table = measure_regions(chi, mask, labels, (1.0, 1.0, 2.0), TABLE)
    values = chi[labels == 1]
    row = table.iloc[0]
    assert row["mean"] == np.mean(values) and row["median"] == np.median(values)
    assert np.isclose(row["sd"], np.std(values, ddof=1))
    assert row.n_voxels == 216 and row.volume_mm3 == 432.0


def test_label_absent_after_warping_is_a_flagged_row_not_a_silent_nan():
    chi, mask, labels = _scene()
    table = measure_regions(chi, mask, labels, (1.0, 1.0, 1.0), TABLE)
    row = table.set_index("label").loc[3]
    assert row.flag_empty and row.n_voxels == 0 and np.isnan(row["mean"])
    assert not table.set_index("label").loc[1].flag_empty


def test_region_half_outside_the_chi_mask_is_flagged_partial_and_measured_inside_only():
    chi, mask, labels = _scene()
    mask[:, :, :5] = False
    table = measure_regions(chi, mask, labels, (1.0, 1.0, 1.0), TABLE).set_index("label")
    assert table.loc[1].flag_partial_coverage and np.isclose(table.loc[1].coverage, 0.5)
    assert table.loc[1].n_voxels == 108
    assert not table.loc[2].flag_partial_coverage


def test_field_of_view_fraction_enters_coverage():
    chi, mask, labels = _scene()
    table = measure_regions(chi, mask, labels, (1, 1, 1), TABLE, fov_fraction={2: 0.6}).set_index("label")
    assert table.loc[2].flag_partial_coverage and np.isclose(table.loc[2].coverage, 0.6)


def test_erosion_by_one_voxel_keeps_the_4_cubed_core_and_small_regions_are_flagged():
    chi, mask, labels = _scene()
    labels[10, 10, 10] = 3
    table = measure_regions(chi, mask, labels, (1, 1, 1), TABLE, erode_voxels=1, min_voxels=10).set_index("label")
    assert table.loc[1].n_voxels == 64
    assert np.isclose(table.loc[1, "mean"], chi[3:7, 3:7, 3:7].mean())
    # A one-voxel region would vanish: measured uneroded and flagged small.
    assert table.loc[3].n_voxels == 1 and table.loc[3].flag_small and not table.loc[3].flag_empty


def test_erode_labels_keeps_labels_apart():
    labels = np.zeros((10, 10, 10), int)
    labels[1:5, 1:5, 1:5] = 1
    labels[5:9, 1:5, 1:5] = 2
    eroded = erode_labels(labels, 1)
    assert (eroded == 1).sum() == 8 and (eroded == 2).sum() == 8


def test_interior_weights_are_the_squared_share_of_the_neighbourhood_inside_the_region():
    region = np.zeros((9, 9, 9), bool)
    region[2:7, 2:7, 2:7] = True  # a 5^3 cube: 27 interior, 54 face, 36 edge and 8 corner voxels
    weights = interior_weights(region)
    expected = {27 * 27: 27, 18 * 18: 54, 12 * 12: 36, 8 * 8: 8}
    counts = dict(zip(*np.unique(np.rint(weights * 729).astype(int), return_counts=True)))
    assert counts == expected and weights.size == 125
    # In the order of values[region], so that values and weights pair up.
    marked = np.zeros(region.shape)
    marked[4, 4, 4] = 1.0  # the centre: the only voxel of weight 1 with this value
    assert weights[np.flatnonzero(marked[region])[0]] == 1.0
    assert interior_weights(np.zeros((3, 3, 3), bool)).size == 0


def test_weighted_median_equals_numpys_weighted_quantile_and_the_median_for_odd_equal_weights():
    rng = np.random.default_rng(3)
    values, weights = rng.normal(size=501), rng.uniform(0.01, 1.0, 501)
    if tuple(int(p) for p in np.__version__.split(".")[:2]) < (2, 0):
        pytest.skip("numpy < 2.0 has no weighted quantile to compare with")
    assert weighted_median(values, weights) == np.quantile(values, 0.5, weights=weights, method="inverted_cdf")
    assert weighted_median(values, np.ones(501)) == np.median(values)
    assert weighted_median([0.0, 1.0, 2.0], [1.0, 0.0, 0.5]) == 0.0  # half the weight reached at 0
    assert np.isnan(weighted_median([], [])) and np.isnan(weighted_median([1.0], [0.0]))


def test_interior_median_follows_a_region_core_whose_rim_holds_other_tissue():
    # A 7^3 label whose one-voxel rim (218 voxels) holds tissue of 0 ppm around a 5^3 core at
    # 0.1 ppm, as a warped label's edge takes in its surroundings: the median is the rim's, the
    # interior weights (core 125, rim 6 x 25 x 0.444 + 12 x 5 x 0.198 + 8 x 0.088 = 79.3) give
    # the core's.
    labels = np.zeros((11, 11, 11), int)
    labels[2:9, 2:9, 2:9] = 1
    chi = np.zeros(labels.shape)
    chi[3:8, 3:8, 3:8] = 0.1
    table = measure_regions(chi, np.ones(labels.shape, bool), labels, (1.0, 1.0, 1.0), TABLE)
    row = table.set_index("label").loc[1]
    assert row["median"] == 0.0 and row["interior_median"] == 0.1
    assert np.isclose(row["mean"], 0.1 * 125 / 343)
    assert np.isnan(table.set_index("label").loc[3, "interior_median"])  # absent label
