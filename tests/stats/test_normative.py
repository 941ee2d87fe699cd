"""Normative z-scores: out-of-sample prediction errors against statsmodels, calibration, bad input."""

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from scipy import stats

from qsmiron.errors import InputError
from qsmiron.io.participants import ParticipantsTable
from qsmiron.stats.normative import NORMATIVE_COLUMNS, normative_scores, normative_statement
from qsmiron.stats.regions import validate_regions
from qsmiron.stats.study import study_from_dict

STUDY = study_from_dict({"normative": {"reference_group": "HC"}})


def _cohort(n_ref=12, n_patients=6, n_regions=1, seed=0, shift=0.0):
    rng = np.random.default_rng(seed)
    n = n_ref + n_patients
    ids = [f"sub-{i:03d}" for i in range(n)]
    group = np.array(["HC"] * n_ref + ["MOH"] * n_patients)
    age = rng.normal(42, 9, n).round(1)
    sex = np.where(rng.random(n) < 0.4, "M", "F")
    rows = []
    for r in range(n_regions):
        value = 0.07 + 0.0008 * (age - 42) + 0.005 * (sex == "M") + 0.02 * rng.normal(size=n)
        value = value + np.where(group == "MOH", shift, 0.0)
        rows += [{"participant_id": p, "region": f"R{r}", "hemisphere": "L", "mean_ppm": v} for p, v in zip(ids, value)]
    participants = pd.DataFrame({"participant_id": ids, "group": group, "age": age, "sex": sex})
    return validate_regions(pd.DataFrame(rows)), ParticipantsTable(participants, source="participants.tsv")


def _prediction_z(train: pd.DataFrame, person: pd.Series) -> float:
    """z from statsmodels: OLS on the reference (without the person), obs-level prediction SE."""
    def design(frame):
        return np.column_stack([np.ones(len(frame)), frame["age"].astype(float),
                                (frame["sex"] == "M").astype(float)])

    fit = sm.OLS(train["mean"].to_numpy(float), design(train)).fit()
    prediction = fit.get_prediction(design(person.to_frame().T))
    t = (float(person["mean"]) - prediction.predicted_mean[0]) / prediction.se_obs[0]
    return float(stats.norm.ppf(stats.t.cdf(t, fit.df_resid)))

def test_z_scores_equal_statsmodels_prediction_intervals_out_of_sample_for_the_reference():
    regions, participants = _cohort()
    result = normative_scores(regions, participants, STUDY)
    table = result.table
    assert list(table.columns) == NORMATIVE_COLUMNS
    merged = regions.merge(participants.frame, on="participant_id").set_index("participant_id")
    reference = merged[merged["group"] == "HC"]
    for pid in ("sub-000", "sub-005", "sub-015"):             # two reference members, one patient
        train = reference.drop(index=pid, errors="ignore")
        expected = _prediction_z(train, merged.loc[pid])
        row = table.set_index("participant_id").loc[pid]
        assert row["z"] == pytest.approx(expected, abs=1e-9)
        assert row["in_reference"] == (pid in reference.index)
        assert row["df"] == len(train) - 3
    assert result.summary.n_reference == 12 and result.summary.n_scored == 18
    statement = normative_statement(STUDY, [result.summary])
    assert "not population norms" in statement and "HC group (n = 12)" in statement


def test_z_of_new_participants_from_the_reference_distribution_exceed_2_5_at_the_nominal_rate():
    regions, participants = _cohort(n_ref=10, n_patients=20, n_regions=150, seed=1)
    z = normative_scores(regions, participants, STUDY).table
    patients = z[~z["in_reference"]]["z"].to_numpy()
    assert len(patients) == 3000
    assert 0.005 < np.mean(np.abs(patients) > 2.5) < 0.021       # nominal 2 * Phi(-2.5) = 0.0124
    members = z[z["in_reference"]]["z"].to_numpy()
    assert 0.002 < np.mean(np.abs(members) > 2.5) < 0.03


def test_outliers_are_flagged_beyond_2_5():
    regions, participants = _cohort(n_ref=30, n_patients=5, shift=-0.1, seed=2)
    result = normative_scores(regions, participants, STUDY)
    patients = result.table[~result.table["in_reference"]]
    assert patients["outlier"].all() and (patients["z"] < -2.5).all()
    outliers = result.outliers()
    assert {o.participant_id for o in outliers} >= set(patients["participant_id"])
    assert result.summary.n_outliers == len(outliers)
    assert [abs(o.z) for o in outliers] == sorted((abs(o.z) for o in outliers), reverse=True)


def test_a_reference_group_smaller_than_terms_plus_2_is_a_one_line_error():
    regions, participants = _cohort(n_ref=4)
    with pytest.raises(InputError, match="3 terms needs at least 5") as error:
        normative_scores(regions, participants, STUDY)
    assert error.value.path == "participants.tsv"
    with pytest.raises(InputError, match="'CTRL' is not a label"):
        normative_scores(regions, participants, study_from_dict({"normative": {"reference_group": "CTRL"}}))


def test_an_outlier_recorded_before_the_median_reads_with_its_value():
    from qsmiron.records.extensions import NormativeOutlier

    earlier = {"participant_id": "sub-01", "region": "VeP", "hemisphere": "L", "mean_ppm": 0.012,
               "expected_ppm": 0.07, "z": -3.4, "in_reference": False}
    outlier = NormativeOutlier.model_validate(earlier)
    assert outlier.chi_ppm == 0.012 and "mean_ppm" not in outlier.model_dump()
