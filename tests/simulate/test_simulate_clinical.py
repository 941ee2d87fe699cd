"""Participants: realistic ranges, planted group difference and associations, null cohorts."""

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from qsmiron.simulate.clinical import PARTICIPANT_COLUMNS, sample_cohort, subject_labels
from qsmiron.simulate.settings import SimulationSettings


def _wide(sample, region, hemisphere="L"):
    chi = sample.region_chi
    rows = chi[(chi["region"] == region) & (chi["hemisphere"] == hemisphere)]
    return sample.participants.merge(rows[["participant_id", "chi_ppm"]], on="participant_id")


def _cohen_d(table):
    a = table.loc[table["group"] == "MOH", "chi_ppm"]
    b = table.loc[table["group"] == "CM", "chi_ppm"]
    pooled = np.sqrt(((a.size - 1) * a.var() + (b.size - 1) * b.var()) / (a.size + b.size - 2))
    return (a.mean() - b.mean()) / pooled


@pytest.fixture(scope="module")
def large():
    return sample_cohort(3000, np.random.default_rng(11), SimulationSettings())


@pytest.fixture(scope="module")
def null():
    return sample_cohort(3000, np.random.default_rng(12), SimulationSettings(with_effects=False))


def test_clinical_variables_stay_in_their_published_ranges(large):
    p = large.participants
    assert list(p.columns) == list(PARTICIPANT_COLUMNS)
    ranges = {"age": (18, 70), "headache_days": (15, 30), "hit6": (36, 78), "midas": (0, 270),
              "vas": (0, 10), "sds": (0, 15), "ldq": (0, 30)}
    for column, (low, high) in ranges.items():
        assert p[column].between(low, high).all(), column
    assert (p["disease_duration"] >= 0).all() and (p["disease_duration"] <= p["age"] - 12 + 1e-9).all()
    assert set(p["sex"]) == {"F", "M"} and 0.75 < (p["sex"] == "F").mean() < 0.85
    assert abs(p["age"].mean() - 42) < 1.0 and abs(p["age"].std() - 9) < 1.0
    moh = p[p["group"] == "MOH"]
    cm = p[p["group"] == "CM"]
    assert abs(len(moh) - len(cm)) <= 1
    assert moh["sds"].mean() == pytest.approx(5.6, abs=0.5) and cm["sds"].mean() == pytest.approx(2.7, abs=0.5)
    assert moh["midas"].mean() == pytest.approx(109, abs=10)


def test_relapse_follow_up_exists_for_moh_only_with_a_30_to_45_percent_rate(large):
    p = large.participants
    moh, cm = p[p["group"] == "MOH"], p[p["group"] == "CM"]
    for column in ("relapse", "relapse_count", "followup_months", "time_to_relapse"):
        assert moh[column].notna().all() and cm[column].isna().all()
    assert 0.30 <= moh["relapse"].astype(float).mean() <= 0.45
    relapsed = moh[moh["relapse"] == 1]
    censored = moh[moh["relapse"] == 0]
    assert (relapsed["time_to_relapse"] <= relapsed["followup_months"]).all()
    assert (relapsed["relapse_count"] >= 1).all() and (censored["relapse_count"] == 0).all()
    assert (censored["time_to_relapse"] == censored["followup_months"]).all()


def test_planted_group_difference_has_the_planted_size_in_vep_and_putamen(large):
    for region in ("VeP", "Pu"):
        for hemisphere in ("L", "R"):
            # The age slope adds a little variance (expected d -0.69 VeP, -0.65 Pu); the
            # standard error of d with 1500 per group is 0.037: 4 SE tolerance.
            assert _cohen_d(_wide(large, region, hemisphere)) == pytest.approx(-0.67, abs=0.15)
    for region in ("Ca", "GPe", "RN"):
        assert abs(_cohen_d(_wide(large, region))) < 0.15


def test_planted_associations_within_moh_have_the_planted_size(large):
    for hemisphere in ("L", "R"):
        moh = _wide(large, "VeP", hemisphere).query("group == 'MOH'")
        r_sds = stats.pearsonr(moh["chi_ppm"], moh["sds"]).statistic
        r_relapse = stats.pearsonr(moh["chi_ppm"], moh["relapse"].astype(float)).statistic
        assert r_sds == pytest.approx(-0.35, abs=0.07)  # rounding/clipping of SDS attenuates a bit
        assert r_relapse == pytest.approx(-0.35, abs=0.07)
    # No other region inherits the association.
    moh = _wide(large, "Ca").query("group == 'MOH'")
    assert abs(stats.pearsonr(moh["chi_ppm"], moh["sds"]).statistic) < 0.08


def test_null_cohort_has_no_group_difference_and_no_association(null):
    for region in ("VeP", "Pu"):
        assert abs(_cohen_d(_wide(null, region))) < 0.15
    moh = _wide(null, "VeP").query("group == 'MOH'")
    assert abs(stats.pearsonr(moh["chi_ppm"], moh["sds"]).statistic) < 0.08
    assert abs(stats.pearsonr(moh["chi_ppm"], moh["relapse"].astype(float)).statistic) < 0.08


def test_forty_subjects_show_the_vep_difference_with_the_planted_sign():
    signs = []
    for seed in range(5):
        sample = sample_cohort(40, np.random.default_rng(seed), SimulationSettings())
        d = np.mean([_cohen_d(_wide(sample, "VeP", h)) for h in ("L", "R")])
        signs.append(d)
        assert -1.6 < d < 0.0
    assert np.mean(signs) == pytest.approx(-0.7, abs=0.3)


def test_susceptibility_rises_with_age_in_the_putamen(large):
    table = _wide(large, "Pu")
    cm = table[table["group"] == "CM"]
    slope = stats.linregress(cm["age"], cm["chi_ppm"]).slope * 1000  # ppb per year
    assert slope == pytest.approx(0.9, abs=0.25)


def test_subject_labels_are_zero_padded_bids_labels():
    assert subject_labels(3) == ["sub-01", "sub-02", "sub-03"]
    assert subject_labels(120)[0] == "sub-001"
