"""Benjamini-Hochberg adjustment: the textbook step-up definition, NaN rows left out."""

import numpy as np
import pytest

from qsmiron.stats.multiple import fdr_bh, fdr_bh_within, fdr_families, families_statement


def step_up(p):
    """BH by its definition: p_(i) m / i, then the running minimum from the largest down."""
    p = np.asarray(p, float)
    order = np.argsort(p)
    m = p.size
    scaled = p[order] * m / np.arange(1, m + 1)
    adjusted = np.minimum.accumulate(scaled[::-1])[::-1]
    out = np.empty(m)
    out[order] = np.minimum(adjusted, 1.0)
    return out


def test_fdr_bh_matches_step_up_definition():
    p = np.array([0.001, 0.008, 0.039, 0.041, 0.042, 0.06, 0.074, 0.205, 0.212, 0.216])
    assert fdr_bh(p) == pytest.approx(step_up(p), rel=1e-12)


def test_fdr_bh_leaves_nan_rows_out_of_the_family():
    p = np.array([0.01, np.nan, 0.04, 0.03])
    adjusted = fdr_bh(p)
    assert np.isnan(adjusted[1])
    assert adjusted[[0, 2, 3]] == pytest.approx(step_up([0.01, 0.04, 0.03]))
    assert np.all(np.isnan(fdr_bh([np.nan, np.nan])))


def test_fdr_within_families_equals_statsmodels_multipletests_on_each_family():
    from statsmodels.stats.multitest import multipletests

    rng = np.random.default_rng(1)
    regions = ["VeP", "VeP", "Pu", "Pu", "GPe", "GPe", "Ca", "Ca", "RN", "RN"]
    p = rng.uniform(0, 0.2, 10)
    p[7] = np.nan  # a row without statistics stays out of its family
    families = fdr_families(regions, ["VeP", "Pu"])
    assert families.tolist() == ["primary"] * 4 + ["exploratory"] * 6
    adjusted = fdr_bh_within(p, families)
    primary = families == "primary"
    assert adjusted[primary] == pytest.approx(multipletests(p[primary], method="fdr_bh")[1])
    explored = ~primary & np.isfinite(p)
    assert adjusted[explored] == pytest.approx(multipletests(p[explored], method="fdr_bh")[1])
    assert np.isnan(adjusted[7])


def test_without_primary_regions_every_row_is_one_exploratory_family_and_it_is_said():
    p = np.array([0.001, 0.02, 0.03, 0.2])
    families = fdr_families(["VeP", "VeP", "Pu", "Pu"], [])
    assert set(families) == {"exploratory"}
    assert fdr_bh_within(p, families) == pytest.approx(fdr_bh(p))
    assert "no primary regions" in families_statement([])
    assert "both hemispheres" in families_statement(["VeP", "Pu"])


def test_association_primary_family_is_primary_regions_times_primary_variables():
    families = fdr_families(["VeP", "VeP", "Pu", "GPe"], ["VeP", "Pu"],
                            variables=["sds", "hit6", "sds", "sds"], primary_variables=["sds"])
    assert families.tolist() == ["primary", "exploratory", "primary", "exploratory"]
    every = fdr_families(["VeP", "GPe"], ["VeP"], variables=["sds", "sds"],
                         primary_variables=None)
    assert every.tolist() == ["primary", "exploratory"]


def test_fdr_within_groups_and_families_adjusts_each_combination_separately():
    p = np.array([0.01, 0.02, 0.03, 0.04])
    adjusted = fdr_bh_within(p, ["MOH", "MOH", "all", "all"], ["primary"] * 4)
    assert adjusted == pytest.approx(np.r_[fdr_bh(p[:2]), fdr_bh(p[2:])])
