"""Regions table validation: required columns, hemispheres, values, duplicates."""

import numpy as np
import pandas as pd
import pytest

from qsmiron.errors import InputError
from qsmiron.stats.regions import read_regions, region_keys, select_session, sessions_of, validate_regions


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


# --------------------------------------------------------------------------------------------
# Longitudinal tables: a session column


def test_a_session_column_is_kept_normalised_and_sessions_may_repeat_a_participant(tmp_path):
    path = write(tmp_path, "participant_id\tsession\tregion\themisphere\tmean_ppm\n"
                           "sub-01\tses-1\tVeP\tL\t0.07\nsub-01\t2\tVeP\tL\t0.05\n"
                           "sub-02\tses-1\tVeP\tL\t0.06\n")
    regions = read_regions(path)
    assert list(regions.columns) == ["participant_id", "region", "hemisphere", "mean_ppm", "session"]
    assert list(regions.session) == ["ses-1", "ses-2", "ses-1"]
    assert sessions_of(regions) == ["ses-1", "ses-2"]
    second = select_session(regions, "2")
    assert "session" not in second.columns
    assert second.participant_id.tolist() == ["sub-01"] and second.mean_ppm.tolist() == [0.05]
    assert select_session(regions, "ses-1").participant_id.tolist() == ["sub-01", "sub-02"]


def test_several_sessions_need_a_choice_and_an_absent_session_is_named(tmp_path):
    path = write(tmp_path, "participant_id\tsession\tregion\themisphere\tmean_ppm\n"
                           "sub-01\tses-pre\tVeP\tL\t0.07\nsub-01\tses-post\tVeP\tL\t0.05\n")
    regions = read_regions(path)
    with pytest.raises(InputError, match=r"2 sessions \(ses-post, ses-pre\).*session = ") as error:
        select_session(regions, None, source=path)
    assert str(path) in str(error.value)
    with pytest.raises(InputError, match=r"'ses-followup' is not in the regions table \(sessions present: "
                                         r"ses-post, ses-pre\)"):
        select_session(regions, "followup")


def test_repeated_rows_within_a_session_and_sessions_without_a_column_are_errors(tmp_path):
    within = write(tmp_path, "participant_id\tsession\tregion\themisphere\tmean_ppm\n"
                             "sub-01\tses-1\tVeP\tL\t0.07\nsub-01\tses-1\tVeP\tL\t0.05\n")
    with pytest.raises(InputError, match="sub-01 VeP L ses-1 appears more than once"):
        read_regions(within)
    without = write(tmp_path, "participant_id\tregion\themisphere\tmean_ppm\n"
                              "sub-01\tVeP\tL\t0.07\nsub-01\tVeP\tL\t0.05\n")
    with pytest.raises(InputError, match="needs a 'session' column"):
        read_regions(without)
