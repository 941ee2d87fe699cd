"""Partial correlations against independent computations (textbook formula, OLS t-test)."""

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from scipy import stats

from qsmiron.stats.associations import associate, correlation_interval, partial_correlation
from qsmiron.stats.power import min_detectable_r


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


def test_pearson_ci_reproduces_r_cor_test_on_mtcars():
    # cor.test(mtcars$mpg, mtcars$wt): r = -0.8676594, 95 % CI -0.9338264 to -0.7440872
    mpg = [21.0, 21.0, 22.8, 21.4, 18.7, 18.1, 14.3, 24.4, 22.8, 19.2, 17.8, 16.4, 17.3, 15.2,
           10.4, 10.4, 14.7, 32.4, 30.4, 33.9, 21.5, 15.5, 15.2, 13.3, 19.2, 27.3, 26.0, 30.4,
           15.8, 19.7, 15.0, 21.4]
    wt = [2.620, 2.875, 2.320, 3.215, 3.440, 3.460, 3.570, 3.190, 3.150, 3.440, 3.440, 4.070,
          3.730, 3.780, 5.250, 5.424, 5.345, 2.200, 1.615, 1.835, 2.465, 3.520, 3.435, 3.840,
          3.845, 1.935, 2.140, 1.513, 3.170, 2.770, 3.570, 2.780]
    row = associate(pd.Series(mpg), pd.Series(wt, name="wt"), pd.DataFrame(index=range(32)),
                    method="pearson")
    assert row["r"] == pytest.approx(-0.8676594, abs=5e-8)
    assert row["r_ci_low"] == pytest.approx(-0.9338264, abs=5e-8)
    assert row["r_ci_high"] == pytest.approx(-0.7440872, abs=5e-8)
    assert row["min_detectable_r"] == pytest.approx(min_detectable_r(32), rel=1e-12)


def test_partial_spearman_ci_covers_the_true_rank_correlation_95_percent_of_the_time():
    # bivariate normal rho = 0.5 with an independent covariate: the population partial
    # Spearman correlation is the Spearman correlation (6 / pi) asin(rho / 2)
    rng = np.random.default_rng(8)
    rho, n = 0.5, 30
    truth = 6 / np.pi * np.arcsin(rho / 2)
    covered = []
    for _ in range(400):
        x = rng.normal(size=n)
        y = rho * x + np.sqrt(1 - rho ** 2) * rng.normal(size=n)
        r = partial_correlation(x, y, rng.normal(42, 9, (n, 1)))["r"]
        low, high = correlation_interval(r, n, n_covariates=1, method="spearman")
        covered.append(low <= truth <= high)
    assert np.mean(covered) == pytest.approx(0.95, abs=0.03)
