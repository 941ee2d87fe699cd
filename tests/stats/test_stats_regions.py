"""Regions table validation: the tidy long form (measure, reference), the earlier chi-only form,
hemispheres, values, duplicates, sessions."""

import numpy as np
import pandas as pd
import pytest

from qsmiron.errors import InputError
from qsmiron.stats.regions import (analysed_statistic, flagged_values_warning, measures_of, read_regions, references_of,
                                   region_keys, select_measure,
                                   select_session, sessions_of, upgrade_regions_table, validate_regions)

COLUMNS = ["participant_id", "region", "hemisphere", "measure", "reference", "mean"]


def write(tmp_path, text):
    path = tmp_path / "regions.tsv"
    path.write_text(text, encoding="utf-8")
    return path


def test_read_regions_normalises_ids_hemispheres_and_ignores_other_columns(tmp_path):
    path = write(tmp_path, "participant_id\tregion\themisphere\tmeasure\treference\tunit\tmean\tn_voxels\n"
                           "01\tVeP\tleft\tchi\twhole_brain\tppm\t0.05\t120\n"
                           "sub-01\tVeP\tR\tchi\twhole_brain\tppm\tn/a\t118\n"
                           "sub-02\tPu\tL\tchi\twhole_brain\tppm\t0.061\t900\n"
                           "sub-02\tPu\tL\tr2star\tn/a\ts^-1\t27.5\t900\n")
    frame = read_regions(path)
    assert list(frame.columns) == COLUMNS
    assert frame["participant_id"].tolist() == ["sub-01", "sub-01", "sub-02", "sub-02"]
    assert frame["hemisphere"].tolist() == ["L", "R", "L", "L"]
    assert np.isnan(frame.loc[1, "mean"]) and frame.loc[3, "reference"] is None
    assert region_keys(frame) == [("VeP", "L"), ("VeP", "R"), ("Pu", "L")]
    assert region_keys(frame, ["Pu"]) == [("Pu", "L")]
    assert measures_of(frame) == ["chi", "r2star"] and references_of(frame) == ["whole_brain"]


def test_a_table_of_the_earlier_form_reads_as_chi_under_the_whole_brain_reference(tmp_path):
    path = write(tmp_path, "participant_id\tregion\themisphere\tmean_ppm\tmedian_ppm\n"
                           "01\tVeP\tL\t0.05\t0.04\n")
    frame = read_regions(path)
    assert frame.iloc[0][["measure", "reference", "mean"]].tolist() == ["chi", "whole_brain", 0.05]
    upgraded = upgrade_regions_table(pd.read_csv(path, sep="\t"))
    assert list(upgraded.columns) == ["participant_id", "region", "hemisphere", "measure", "reference", "unit",
                                      "mean", "median"]


def test_read_regions_names_missing_columns(tmp_path):
    path = write(tmp_path, "participant_id\tregion\tmeasure\tmean\n01\tVeP\tchi\t0.05\n")
    with pytest.raises(InputError) as error:
        read_regions(path)
    assert "hemisphere, reference" in error.value.message and error.value.path == str(path)


HEADER = "participant_id\tregion\themisphere\tmeasure\treference\tmean\n"


@pytest.mark.parametrize("line, fragment", [
    ("sub-1\tVeP\tL\tchi\twhole_brain\tabc", "non-numeric"),
    ("sub-1\tVeP\tup\tchi\twhole_brain\t0.1", "'hemisphere' holds up"),
    ("sub-1\tVeP\tL\tchi\twhole_brain\t0.1\nsub-1\tVeP\tL\tchi\twhole_brain\t0.2", "more than once"),
    ("sub-1\tVeP\tL\tqsm\twhole_brain\t0.1", "'measure' holds 'qsm'"),
    ("sub-1\tVeP\tL\tchi\tcortex\t0.1", "'reference' holds cortex"),
    ("sub-1\tVeP\tL\tchi\tn/a\t0.1", "'reference' holds None"),
])
def test_read_regions_rejects_bad_rows(tmp_path, line, fragment):
    path = write(tmp_path, HEADER + line + "\n")
    with pytest.raises(InputError, match=fragment):
        read_regions(path)


def test_validate_regions_accepts_a_dataframe_and_keeps_inputs_unchanged():
    frame = pd.DataFrame({"participant_id": ["1"], "region": ["VeP"], "hemisphere": ["L"],
                          "mean_ppm": ["0.05"]})
    before = frame.copy()
    out = validate_regions(frame)
    assert out["mean"].iloc[0] == 0.05
    pd.testing.assert_frame_equal(frame, before)


def test_one_measure_and_reference_is_selected_and_an_absent_one_is_named(tmp_path):
    path = write(tmp_path, HEADER + "sub-1\tVeP\tL\tchi\twhole_brain\t0.05\nsub-1\tVeP\tL\tchi\tcsf\t0.08\n"
                                    "sub-1\tVeP\tL\tr2star\tn/a\t30\n")
    regions = read_regions(path)
    assert select_measure(regions, "chi", "csf")["value"].tolist() == [0.08]
    assert select_measure(regions, "r2star", None)["value"].tolist() == [30.0]
    assert list(select_measure(regions).columns) == ["participant_id", "region", "hemisphere", "value"]
    with pytest.raises(InputError, match=r"'chi_para' is not in the regions table \(measures present: chi, r2star\)"):
        select_measure(regions, "chi_para")
    with pytest.raises(InputError, match=r"reference 'mask' .*references present: whole_brain, csf"):
        select_measure(regions, "chi", "mask")


# --------------------------------------------------------------------------------------------
# Longitudinal tables: a session column


def test_a_session_column_is_kept_normalised_and_sessions_may_repeat_a_participant(tmp_path):
    path = write(tmp_path, "participant_id\tsession\tregion\themisphere\tmean_ppm\n"
                           "sub-01\tses-1\tVeP\tL\t0.07\nsub-01\t2\tVeP\tL\t0.05\n"
                           "sub-02\tses-1\tVeP\tL\t0.06\n")
    regions = read_regions(path)
    assert list(regions.columns) == COLUMNS + ["session"]
    assert list(regions.session) == ["ses-1", "ses-2", "ses-1"]
    assert sessions_of(regions) == ["ses-1", "ses-2"]
    second = select_session(regions, "2")
    assert "session" not in second.columns
    assert second.participant_id.tolist() == ["sub-01"] and second["mean"].tolist() == [0.05]
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
    with pytest.raises(InputError, match="sub-01 VeP L chi whole_brain ses-1 appears more than once"):
        read_regions(within)
    without = write(tmp_path, "participant_id\tregion\themisphere\tmean_ppm\n"
                              "sub-01\tVeP\tL\t0.07\nsub-01\tVeP\tL\t0.05\n")
    with pytest.raises(InputError, match="needs a 'session' column"):
        read_regions(without)


def test_the_default_summary_is_the_first_the_table_has_for_every_value(tmp_path):
    both = read_regions(write(tmp_path, HEADER.rstrip("\n") + "\tmedian\n"
                              "sub-1\tVeP\tL\tchi\twhole_brain\t0.05\t0.07\n"
                              "sub-2\tVeP\tL\tchi\twhole_brain\t0.04\t0.06\n"))
    assert analysed_statistic(both, None) == "median" and analysed_statistic(both, "mean") == "mean"
    median = select_measure(both, statistic="median")
    assert list(median.columns) == ["participant_id", "region", "hemisphere", "value"]
    assert median["value"].tolist() == [0.07, 0.06]
    assert select_measure(both, statistic="mean")["value"].tolist() == [0.05, 0.04]

    three = read_regions(write(tmp_path, HEADER.rstrip("\n") + "\tmedian\tinterior_median\n"
                               "sub-1\tVeP\tL\tchi\twhole_brain\t0.05\t0.07\t0.08\n"
                               "sub-2\tVeP\tL\tchi\twhole_brain\tn/a\tn/a\tn/a\n"))
    assert analysed_statistic(three, None) == "interior_median"  # an empty region has none of them
    assert select_measure(three)["value"].iloc[0] == 0.08

    # A summary missing where the mean is known (tables of two versions joined) is not the default:
    # its missing values would drop participants.
    partial = read_regions(write(tmp_path, HEADER.rstrip("\n") + "\tmedian\tinterior_median\n"
                                 "sub-1\tVeP\tL\tchi\twhole_brain\t0.05\t0.07\t0.08\n"
                                 "sub-2\tVeP\tL\tchi\twhole_brain\t0.04\t0.06\tn/a\n"))
    assert analysed_statistic(partial, None) == "median"
    assert np.isnan(select_measure(partial, statistic="interior_median")["value"].iloc[1])  # when asked for

    means_only = read_regions(write(tmp_path, HEADER + "sub-1\tVeP\tL\tchi\twhole_brain\t0.05\n"))
    assert analysed_statistic(means_only, None) == "mean"
    with pytest.raises(InputError, match="no 'median' values"):
        analysed_statistic(means_only, "median", source="regions.tsv")
    with pytest.raises(InputError, match="interior-weighted median .* no 'interior_median' values"):
        analysed_statistic(both, "interior_median", source="regions.tsv")


def test_a_non_numeric_median_is_named(tmp_path):
    path = write(tmp_path, HEADER.rstrip("\n") + "\tmedian\nsub-1\tVeP\tL\tchi\twhole_brain\t0.05\thigh\n")
    with pytest.raises(InputError, match=r"column 'median' holds non-numeric value\(s\) high"):
        read_regions(path)
    interior = write(tmp_path, HEADER.rstrip("\n") + "\tinterior_median\nsub-1\tVeP\tL\tchi\twhole_brain\t0.05\tx\n")
    with pytest.raises(InputError, match=r"column 'interior_median' holds non-numeric value\(s\) x"):
        read_regions(interior)


def test_flagged_values_are_kept_and_counted_per_region(tmp_path):
    header = HEADER.rstrip("\n") + "\tmedian\tflag_small\tflag_partial_coverage\tsd\n"
    rows = ["sub-1\tNAC\tR\tchi\twhole_brain\t0.01\t0.01\tFalse\tTrue\t0.1",
            "sub-2\tNAC\tR\tchi\twhole_brain\t0.02\t0.02\tFalse\tTrue\t0.1",
            "sub-3\tNAC\tR\tchi\twhole_brain\t0.02\t0.02\tFalse\tFalse\t0.1",
            "sub-1\tVeP\tL\tchi\twhole_brain\t0.05\t0.05\tTrue\t\t0.1",
            "sub-2\tVeP\tL\tchi\twhole_brain\tn/a\tn/a\tTrue\tFalse\t0.1"]
    regions = read_regions(write(tmp_path, header + "\n".join(rows) + "\n"))
    assert "sd" not in regions.columns and regions["flag_partial_coverage"].tolist() == [True, True, False, False, False]
    chi = select_measure(regions, statistic="median")
    warning = flagged_values_warning(chi, ["sub-1", "sub-2", "sub-3"])
    # sub-2's VeP has no value, so only sub-1's counts; a participant not analysed does not count either.
    assert "1 measured from few voxels (flag_small: VeP L 1)" in warning
    assert "2 measured on part of the region (flag_partial_coverage: NAC R 2)" in warning
    assert "NAC R 1" in flagged_values_warning(chi, ["sub-1", "sub-3"])
    assert flagged_values_warning(chi, ["sub-3"]) is None


def test_a_flag_that_is_neither_true_nor_false_is_named(tmp_path):
    path = write(tmp_path, HEADER.rstrip("\n") + "\tflag_small\nsub-1\tVeP\tL\tchi\twhole_brain\t0.05\tmaybe\n")
    with pytest.raises(InputError, match=r"column 'flag_small' holds maybe; expected True or False"):
        read_regions(path)


def test_r2star_defaults_to_its_median_while_chi_takes_the_interior_median(tmp_path):
    table = read_regions(write(tmp_path, HEADER.rstrip("\n") + "\tmedian\tinterior_median\n"
                               "sub-1\tVeP\tL\tchi\twhole_brain\t0.05\t0.07\t0.08\n"
                               "sub-1\tVeP\tL\tr2star\tn/a\t30.0\t31.0\t33.0\n"))
    assert analysed_statistic(table, None) == "interior_median"
    assert analysed_statistic(table, None, measure="r2star") == "median"
    assert select_measure(table, "r2star", None)["value"].tolist() == [31.0]
    assert select_measure(table, "r2star", None, statistic="interior_median")["value"].tolist() == [33.0]
