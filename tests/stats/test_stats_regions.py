"""Regions table validation: required columns, hemispheres, values, duplicates."""

import numpy as np
import pandas as pd
import pytest

from qsmiron.errors import InputError
from qsmiron.stats.regions import read_regions, region_keys, validate_regions


def write(tmp_path, text):
    path = tmp_path / "regions.tsv"
    path.write_text(text, encoding="utf-8")
    return path


def test_read_regions_normalises_ids_hemispheres_and_ignores_other_columns(tmp_path):
    path = write(tmp_path, "participant_id\tregion\themisphere\tmean_ppm\tn_voxels\n"
                           "01\tVeP\tleft\t0.05\t120\n"
                           "sub-01\tVeP\tR\tn/a\t118\n"
                           "sub-02\tPu\tL\t0.061\t900\n")
    frame = read_regions(path)
    assert list(frame.columns) == ["participant_id", "region", "hemisphere", "mean_ppm"]
    assert frame["participant_id"].tolist() == ["sub-01", "sub-01", "sub-02"]
    assert frame["hemisphere"].tolist() == ["L", "R", "L"]
    assert np.isnan(frame.loc[1, "mean_ppm"])
    assert region_keys(frame) == [("VeP", "L"), ("VeP", "R"), ("Pu", "L")]
    assert region_keys(frame, ["Pu"]) == [("Pu", "L")]


def test_read_regions_names_missing_columns(tmp_path):
    path = write(tmp_path, "participant_id\tregion\tmean\n01\tVeP\t0.05\n")
    with pytest.raises(InputError) as error:
        read_regions(path)
    assert "hemisphere, mean_ppm" in error.value.message and error.value.path == str(path)


@pytest.mark.parametrize("line, fragment", [
    ("sub-1\tVeP\tL\tabc", "non-numeric"),
    ("sub-1\tVeP\tup\t0.1", "'hemisphere' holds up"),
    ("sub-1\tVeP\tL\t0.1\nsub-1\tVeP\tL\t0.2", "more than once"),
])
def test_read_regions_rejects_bad_rows(tmp_path, line, fragment):
    path = write(tmp_path, "participant_id\tregion\themisphere\tmean_ppm\n" + line + "\n")
    with pytest.raises(InputError, match=fragment):
        read_regions(path)


def test_validate_regions_accepts_a_dataframe_and_keeps_inputs_unchanged():
    frame = pd.DataFrame({"participant_id": ["1"], "region": ["VeP"], "hemisphere": ["L"],
                          "mean_ppm": ["0.05"]})
    before = frame.copy()
    out = validate_regions(frame)
    assert out["mean_ppm"].iloc[0] == 0.05
    pd.testing.assert_frame_equal(frame, before)
