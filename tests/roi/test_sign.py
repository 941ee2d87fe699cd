"""The sign check: iron-rich nuclei that read negative point at an inverted phase."""

import warnings

import numpy as np
import pandas as pd
import pytest

from qsmiron.roi.sign import NEGATE_SETTING, iron_sign_check


def _table(values: dict[str, float], **columns) -> pd.DataFrame:
    rows = []
    for region, chi in values.items():
        for hemisphere in ("L", "R"):
            rows.append({"region": region, "hemisphere": hemisphere, "measure": "chi", "reference": "whole_brain",
                         "mean": chi, "n_voxels": 100, "flag_small": False, "flag_partial_coverage": False})
            rows.append({**rows[-1], "reference": "csf", "mean": chi + 0.5})
    return pd.DataFrame(rows).assign(**columns)


ADULT = {"GPe": 0.14, "GPi": 0.13, "SNr": 0.13, "RN": 0.10, "Pu": 0.06, "Thal": 0.0}


def test_an_adult_map_passes_and_an_inverted_one_is_named_with_the_setting_that_reverses_it():
    check, warning = iron_sign_check(_table(ADULT))
    assert warning is None and check.checked and not check.reversed
    assert check.regions == ["GPe", "GPi", "RN", "SNr"]
    assert check.mean_ppm == pytest.approx(np.mean([0.14, 0.13, 0.13, 0.10]))
    inverted, warning = iron_sign_check(_table({k: -v for k, v in ADULT.items()}))
    assert inverted.mean_ppm == pytest.approx(-0.125) and inverted.reversed
    assert "-0.125 ppm" in warning and f"{NEGATE_SETTING} = true" in warning


def test_weights_are_the_voxels_and_flagged_or_other_reference_rows_do_not_count():
    table = _table({"GPe": 0.14, "RN": -0.4})
    table.loc[table["region"] == "RN", "n_voxels"] = 10  # a small, badly measured nucleus weighs little
    assert iron_sign_check(table)[0].mean_ppm == pytest.approx((0.14 * 100 - 0.4 * 10) / 110, abs=1e-4)
    table.loc[table["region"] == "RN", "flag_small"] = True
    assert iron_sign_check(table)[0].mean_ppm == pytest.approx(0.14)


def test_an_atlas_without_those_nuclei_is_not_checked_and_says_why():
    check, warning = iron_sign_check(_table({"Pu": -0.2, "Thal": -0.1}))
    assert warning is None and check.checked is False and not check.reversed
    assert "GPe, GPi, SNr, RN" in check.reason


def test_roi_from_files_passes_the_record_warnings_on(monkeypatch, tmp_path):
    from types import SimpleNamespace

    import qsmiron.roi.api as api

    fake = SimpleNamespace(table=pd.DataFrame(), record=SimpleNamespace(warnings=["the iron-rich nuclei read -0.1"]))
    monkeypatch.setattr(api, "measure_subject", lambda *args, **kwargs: fake)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        api.roi_from_files("chi.nii.gz", "mag.nii.gz", tmp_path / "out.tsv", settings=object())
    assert [str(w.message) for w in caught] == ["the iron-rich nuclei read -0.1"]
