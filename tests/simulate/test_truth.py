"""The demo's check against the planted truth: recovery per region and the planted effect in the CI."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from qsmiron.simulate.cohort import SIMULATION_RECORD, TRUTH_DIR
from qsmiron.simulate.truth import compare_with_truth, truth_dir_of


def _truth(tmp_path, n: int = 12):
    """A truth folder: Pu and VeP in both hemispheres for ``n`` subjects, MOH 10 ppb lower in VeP."""
    rng = np.random.default_rng(4)
    truth = tmp_path / "bids" / TRUTH_DIR
    truth.mkdir(parents=True)
    (truth / SIMULATION_RECORD).write_text("{}")
    groups = ["MOH" if i % 2 else "CM" for i in range(n)]
    rows = []
    for i, group in enumerate(groups):
        for region, base in (("Pu", 0.06), ("VeP", 0.075)):
            for hemisphere in ("L", "R"):
                shift = -0.010 if (region == "VeP" and group == "MOH") else 0.0
                value = base + shift + rng.normal(0, 0.01)
                rows.append({"participant_id": f"sub-{i + 1:02d}", "region": region, "hemisphere": hemisphere,
                             "mean_ppm": value, "mean_ppm_grid": 0.9 * value})
    pd.DataFrame(rows).to_csv(truth / "regions_truth.tsv", sep="\t", index=False)
    planted = {"group_difference": {"column": "group", "compare": ["MOH", "CM"], "hemispheres": ["L", "R"],
                                    "regions": {"VeP": {"cohen_d": -1.0, "delta_ppm": -0.010, "sd_ppm": 0.01}}}}
    (truth / "planted_effects.json").write_text(json.dumps(planted))
    participants = pd.DataFrame({"participant_id": [f"sub-{i + 1:02d}" for i in range(n)], "group": groups})
    return truth, pd.DataFrame(rows), participants


def test_recovery_r_bias_and_rmse_match_a_known_distortion(tmp_path):
    truth, rows, participants = _truth(tmp_path)
    recovered = rows.rename(columns={"mean_ppm": "mean"})
    recovered["mean"] = 0.8 * recovered["mean"] - 0.003  # attenuated and shifted, perfectly correlated
    comparison = pd.DataFrame([{"region": "VeP", "hemisphere": h, "diff_ppb": -9.0, "diff_ci_low_ppb": -15.0,
                                "diff_ci_high_ppb": -3.0, "p": 0.004, "p_fdr": 0.008, "cohen_d": -1.1,
                                "cohen_d_ci_low": -2.0, "cohen_d_ci_high": -0.2} for h in ("L", "R")])
    result = compare_with_truth(truth, recovered, comparison, participants)
    agreement = result.regions.set_index(["region", "hemisphere"])
    assert agreement["r"].to_numpy() == pytest.approx(1.0)
    assert agreement["slope"].to_numpy() == pytest.approx(0.8)  # the attenuation of 0.8 x true - 0.003
    for (region, hemisphere), row in agreement.iterrows():
        true = rows[(rows.region == region) & (rows.hemisphere == hemisphere)]["mean_ppm"].to_numpy()
        assert row["bias_ppb"] == pytest.approx(1000 * np.mean(-0.2 * true - 0.003))
        assert row["rmse_ppb"] == pytest.approx(1000 * np.sqrt(np.mean((-0.2 * true - 0.003) ** 2)))
        assert row["bias_grid_ppb"] == pytest.approx(1000 * np.mean(-0.1 * true - 0.003))
        assert row["n"] == 12
    effects = result.effects.set_index("hemisphere")
    assert effects["planted_diff_ppb"].to_numpy() == pytest.approx(-10.0)
    assert effects["planted_in_ci"].all()
    realised = rows[rows.region == "VeP"].merge(participants, on="participant_id")
    left = realised[realised.hemisphere == "L"].groupby("group")["mean_ppm"].mean()
    assert effects.loc["L", "realised_diff_ppb"] == pytest.approx(1000 * (left["MOH"] - left["CM"]))
    assert any("planted effect inside the CI" in line for line in result.summary_lines())


def test_a_planted_effect_outside_the_ci_is_reported_as_such(tmp_path):
    truth, rows, participants = _truth(tmp_path)
    comparison = pd.DataFrame([{"region": "VeP", "hemisphere": h, "diff_ppb": 1.0, "diff_ci_low_ppb": -2.0,
                                "diff_ci_high_ppb": 4.0, "p": 0.6, "p_fdr": 0.7, "cohen_d": 0.1,
                                "cohen_d_ci_low": -0.7, "cohen_d_ci_high": 0.9} for h in ("L", "R")])
    result = compare_with_truth(truth, rows, comparison, participants)
    assert not result.effects["planted_in_ci"].any()
    assert sum("OUTSIDE the CI" in line for line in result.summary_lines()) == 2


def test_the_truth_is_found_from_any_file_of_the_simulated_dataset(tmp_path):
    truth, _, _ = _truth(tmp_path)
    scan = tmp_path / "bids" / "sub-01" / "anat" / "sub-01_echo-1_part-mag_MEGRE.nii.gz"
    scan.parent.mkdir(parents=True)
    scan.write_bytes(b"")
    assert truth_dir_of([tmp_path / "elsewhere.nii.gz", scan]) == truth
    assert truth_dir_of([tmp_path / "elsewhere.nii.gz"]) is None


def test_a_truth_without_the_scan_grid_column_gives_no_grid_bias(tmp_path):
    truth, rows, participants = _truth(tmp_path)
    rows.drop(columns="mean_ppm_grid").to_csv(truth / "regions_truth.tsv", sep="\t", index=False)
    comparison = pd.DataFrame([{"region": "VeP", "hemisphere": h, "diff_ppb": -9.0, "diff_ci_low_ppb": -15.0,
                                "diff_ci_high_ppb": -3.0, "p": 0.004, "p_fdr": 0.008, "cohen_d": -1.1}
                               for h in ("L", "R")])
    result = compare_with_truth(truth, rows.drop(columns="mean_ppm_grid"), comparison, participants)
    assert result.regions["bias_grid_ppb"].isna().all()
    assert result.regions["bias_ppb"].abs().max() < 1e-9
