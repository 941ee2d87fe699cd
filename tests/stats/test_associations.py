"""Partial correlations against independent computations (textbook formula, OLS t-test)."""

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from scipy import stats

from qsmiron.stats.associations import associate, partial_correlation


@pytest.fixture
def fixed_data():
    rng = np.random.default_rng(11)
    n = 35
    age = rng.normal(42, 9, n)
    male = (rng.random(n) < 0.4).astype(float)
    chi = 0.07 + 0.0008 * (age - 42) + rng.normal(0, 0.02, n)
    sds = 5 - 40 * (chi - 0.07) + 0.05 * age + rng.normal(0, 1.5, n)
    return chi, sds, age, male


def residualise(values, covariates):
    basis = np.column_stack([np.ones(len(values)), covariates])
    return values - basis @ np.linalg.lstsq(basis, values, rcond=None)[0]


def test_pearson_partial_correlation_matches_textbook_formula_with_one_covariate(fixed_data):
    chi, sds, age, _ = fixed_data
    r_xy, r_xz, r_yz = (np.corrcoef(a, b)[0, 1] for a, b in ((chi, sds), (chi, age), (sds, age)))
    expected = (r_xy - r_xz * r_yz) / np.sqrt((1 - r_xz ** 2) * (1 - r_yz ** 2))
    result = partial_correlation(chi, sds, age[:, None], method="pearson")
    assert result["r"] == pytest.approx(expected, rel=1e-10)
    assert result["df"] == len(chi) - 3


def test_partial_correlation_p_equals_ols_t_test_of_the_same_coefficient(fixed_data):
    # t of x in y ~ x + Z has n - 2 - k df and equals the partial-correlation t
    chi, sds, age, male = fixed_data
    covariates = np.column_stack([age, male])
    result = partial_correlation(chi, sds, covariates, method="pearson")
    fit = sm.OLS(sds, sm.add_constant(np.column_stack([chi, covariates]))).fit()
    assert result["p"] == pytest.approx(fit.pvalues[1], rel=1e-8)
    assert np.sign(result["r"]) == np.sign(fit.params[1])


def test_spearman_is_pearson_partial_correlation_of_ranks(fixed_data):
    chi, sds, age, male = fixed_data
    ranks = [stats.rankdata(v) for v in (chi, sds, age, male)]
    rx = residualise(ranks[0], np.column_stack(ranks[2:]))
    ry = residualise(ranks[1], np.column_stack(ranks[2:]))
    expected_r = stats.pearsonr(rx, ry).statistic
    df = len(chi) - 2 - 2
    t = expected_r * np.sqrt(df / (1 - expected_r ** 2))
    result = partial_correlation(chi, sds, np.column_stack([age, male]), method="spearman")
    assert result["r"] == pytest.approx(expected_r, rel=1e-10)
    assert result["p"] == pytest.approx(2 * stats.t.sf(abs(t), df), rel=1e-8)


def test_spearman_without_covariates_equals_scipy_spearmanr(fixed_data):
    chi, sds, _, _ = fixed_data
    result = partial_correlation(chi, sds, None, method="spearman")
    reference = stats.spearmanr(chi, sds)
    assert result["r"] == pytest.approx(reference.statistic, rel=1e-10)
    assert result["p"] == pytest.approx(reference.pvalue, rel=1e-8)


def test_associate_turns_text_covariates_into_dummies_and_reports_constants(fixed_data):
    chi, sds, age, male = fixed_data
    index = [f"sub-{i}" for i in range(len(chi))]
    covariates = pd.DataFrame({"age": age, "sex": np.where(male == 1, "M", "F")}, index=index)
    row = associate(pd.Series(chi, index), pd.Series(sds, index, name="sds"), covariates)
    expected = partial_correlation(chi, sds, np.column_stack([age, male]))
    assert row["r"] == pytest.approx(expected["r"]) and row["note"] == ""
    constant = associate(pd.Series(chi, index), pd.Series(3.0, index, name="sds"), covariates)
    assert np.isnan(constant["r"]) and "sds is the same for every participant" in constant["note"]
    tiny = associate(pd.Series(chi[:4], index[:4]), pd.Series(sds[:4], index[:4], name="sds"),
                     covariates.iloc[:4])
    assert np.isnan(tiny["p"]) and "degrees of freedom" in tiny["note"]
