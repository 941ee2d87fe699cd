"""Per-region statistics against numpy on hand-made label maps, and the flags."""

import numpy as np
import pandas as pd

from qsmiron.roi.measure import erode_labels, measure_regions

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
