"""Minimal detectable effects against Cohen's tables, statsmodels and a simulation."""

import numpy as np
import pytest
import statsmodels.api as sm
from statsmodels.stats.power import TTestIndPower

from qsmiron.stats.power import min_detectable_d, min_detectable_odds_ratio, min_detectable_r


def test_min_detectable_d_reproduces_cohens_sample_sizes_for_80_percent_power():
    # Cohen (1988) Table 2.4.1, two-sided alpha 0.05, power 0.80: n = 64 per group detects
    # d = 0.5, n = 26 detects d = 0.8 (and one fewer does not)
    assert min_detectable_d(64, 64) <= 0.5 < min_detectable_d(63, 63)
    assert min_detectable_d(26, 26) <= 0.8 < min_detectable_d(25, 25)


def test_min_detectable_d_equals_statsmodels_solve_power_and_grows_with_covariates():
    for n_a, n_b in ((10, 10), (20, 30), (150, 100)):
        reference = TTestIndPower().solve_power(effect_size=None, nobs1=n_a, ratio=n_b / n_a,
                                                alpha=0.05, power=0.8)
        assert min_detectable_d(n_a, n_b) == pytest.approx(reference, rel=1e-6)
    assert min_detectable_d(10, 10, n_covariates=2) > min_detectable_d(10, 10)
    assert np.isnan(min_detectable_d(2, 1))


def test_min_detectable_r_reproduces_the_fisher_z_sample_size_table():
    # Hulley et al., Designing Clinical Research, Appendix 6C (Fisher z, two-sided alpha
    # 0.05, power 0.80): r = 0.10 needs 783, r = 0.30 needs 85, r = 0.50 needs 30
    for r, n in ((0.10, 783), (0.30, 85), (0.50, 30)):
        assert min_detectable_r(n) <= r < min_detectable_r(n - 1)
    assert min_detectable_r(20, n_covariates=2) > min_detectable_r(20)
    assert np.isnan(min_detectable_r(3))


def test_min_detectable_odds_ratio_gives_about_80_percent_power_in_simulation():
    # Hsieh et al. (1998): with the planned odds ratio per SD, a Wald test of logistic
    # regression should reject in about 80 % of simulated studies
    rng = np.random.default_rng(4)
    n, rate = 200, 0.4
    odds_ratio = min_detectable_odds_ratio(n, int(n * rate))
    b = np.log(odds_ratio)
    intercept = np.log(rate / (1 - rate))  # about 40 % events at chi = mean
    rejected = []
    for _ in range(300):
        z = rng.normal(size=n)
        y = (rng.random(n) < 1 / (1 + np.exp(-(intercept + b * z)))).astype(float)
        fit = sm.Logit(y, sm.add_constant(z)).fit(disp=0)
        rejected.append(fit.pvalues[1] < 0.05)
    assert np.mean(rejected) == pytest.approx(0.8, abs=0.07)
    assert np.isnan(min_detectable_odds_ratio(10, 0))
