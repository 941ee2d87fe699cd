"""Outcome models against textbook values and independent fits (statsmodels, lifelines)."""

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from lifelines import CoxPHFitter
from sklearn.metrics import roc_auc_score

from qsmiron.stats.relapse import (
    count_rate_ratio, cox_hazard_ratio, delong_auc_variance, kaplan_meier_by_median,
    logistic_odds_ratio, roc_analysis)

# Hanley & McNeil (1982, Radiology 143:29, Table 1): CT ratings 1-5 of 58 normal and 51
# abnormal patients.
HM_NORMAL = [33, 6, 6, 11, 2]
HM_ABNORMAL = [3, 2, 2, 11, 33]


def hanley_mcneil():
    scores = np.concatenate([np.repeat(np.arange(1, 6), HM_NORMAL),
                             np.repeat(np.arange(1, 6), HM_ABNORMAL)]).astype(float)
    labels = np.concatenate([np.zeros(58), np.ones(51)])
    return scores, labels


def brute_force_delong(scores, labels):
    """DeLong et al. (1988) as written: O(m n) kernel psi, structural components, S10/m + S01/n."""
    x, y = scores[labels == 1], scores[labels == 0]
    psi = (x[:, None] > y[None, :]) + 0.5 * (x[:, None] == y[None, :])
    v10, v01 = psi.mean(axis=1), psi.mean(axis=0)
    return psi.mean(), v10.var(ddof=1) / x.size + v01.var(ddof=1) / y.size


def test_delong_reproduces_hanley_mcneil_example_as_reported_by_stata_roctab():
    # Stata [R] roctab, example 1 (hanley.dta, the Hanley & McNeil 1982 data), DeLong SE:
    # ROC area 0.8932, Std. Err. 0.0307, asymptotic 95 % CI 0.83295 to 0.95339.
    scores, labels = hanley_mcneil()
    auc, variance = delong_auc_variance(scores, labels)
    assert auc == pytest.approx(0.8932, abs=5e-5)
    assert np.sqrt(variance) == pytest.approx(0.0307, abs=5e-5)
    result = roc_analysis(scores, labels, direction="higher")
    assert result["auc_ci_low"] == pytest.approx(0.83295, abs=5e-5)
    assert result["auc_ci_high"] == pytest.approx(0.95339, abs=5e-5)


def test_fast_delong_equals_brute_force_definition_with_ties():
    rng = np.random.default_rng(3)
    scores = np.round(rng.normal(size=70), 1)  # many ties
    labels = (rng.random(70) < 0.4).astype(int)
    auc, variance = delong_auc_variance(scores, labels)
    auc_ref, variance_ref = brute_force_delong(scores, labels)
    assert auc == pytest.approx(auc_ref, rel=1e-12)
    assert variance == pytest.approx(variance_ref, rel=1e-10)
    assert auc == pytest.approx(roc_auc_score(labels, scores), rel=1e-12)


def test_delong_standard_error_agrees_with_bootstrap_within_15_percent():
    rng = np.random.default_rng(5)
    labels = np.r_[np.ones(40), np.zeros(60)]
    scores = rng.normal(size=100) + 0.8 * labels
    _, variance = delong_auc_variance(scores, labels)
    pos, neg = scores[labels == 1], scores[labels == 0]
    boot = []
    for _ in range(1500):  # stratified bootstrap, as pROC's
        p, n = rng.choice(pos, pos.size), rng.choice(neg, neg.size)
        boot.append((p[:, None] > n[None, :]).mean() + 0.5 * (p[:, None] == n[None, :]).mean())
    assert np.sqrt(variance) == pytest.approx(np.std(boot, ddof=1), rel=0.15)


def test_roc_direction_lower_reports_auc_of_minus_chi_and_a_usable_youden_rule():
    rng = np.random.default_rng(8)
    events = np.r_[np.ones(30), np.zeros(50)].astype(int)
    chi = 0.07 - 0.015 * events + rng.normal(0, 0.015, 80)  # lower chi -> event
    result = roc_analysis(chi, events)
    assert result["roc_direction"] == "lower"
    assert result["auc"] == pytest.approx(roc_auc_score(events, -chi), rel=1e-12)
    assert result["auc"] > 0.5
    rule = chi <= result["youden_threshold_ppm"]  # the documented rule for "lower"
    assert result["sensitivity"] == pytest.approx(rule[events == 1].mean())
    assert result["specificity"] == pytest.approx((~rule)[events == 0].mean())
    # the cut-off maximises Youden's J over every observed value
    best = max(((chi <= c)[events == 1].mean() + (chi > c)[events == 0].mean() - 1) for c in chi)
    assert result["sensitivity"] + result["specificity"] - 1 == pytest.approx(best)
    forced = roc_analysis(chi, events, direction="higher")
    assert forced["auc"] == pytest.approx(1 - result["auc"])


def test_logistic_odds_ratio_is_per_sd_and_matches_a_raw_scale_fit():
    rng = np.random.default_rng(2)
    n = 120
    chi = rng.normal(0.07, 0.02, n)
    age = rng.normal(42, 9, n)
    events = (rng.random(n) < 1 / (1 + np.exp(-(-0.5 - 40 * (chi - 0.07))))).astype(int)
    covariates = pd.DataFrame({"age": age})
    result = logistic_odds_ratio(events, chi, covariates)
    raw = sm.Logit(events, sm.add_constant(np.column_stack([chi, age]))).fit(disp=0)
    sd = chi.std(ddof=1)
    assert result["odds_ratio"] == pytest.approx(np.exp(raw.params[1] * sd), rel=1e-6)
    low, high = np.exp(raw.conf_int()[1] * sd)
    assert result["or_ci_low"] == pytest.approx(low, rel=1e-6)
    assert result["or_ci_high"] == pytest.approx(high, rel=1e-6)
    assert result["p"] == pytest.approx(raw.pvalues[1], rel=1e-6)


def test_logistic_with_perfect_separation_reports_it_instead_of_an_infinite_ratio():
    chi = np.linspace(0.0, 0.1, 20)
    events = (chi > 0.05).astype(int)
    result = logistic_odds_ratio(events, chi, pd.DataFrame(index=range(20)))
    assert np.isnan(result["odds_ratio"]) and "separat" in result["note"]


def test_cox_hazard_ratio_per_sd_matches_lifelines_on_raw_chi():
    rng = np.random.default_rng(4)
    n = 90
    chi = rng.normal(0.07, 0.02, n)
    age = rng.normal(42, 9, n)
    time = rng.exponential(1 / (0.05 * np.exp(-30 * (chi - 0.07))))
    events = (time < 12).astype(int)
    time = np.minimum(time, 12)
    result = cox_hazard_ratio(time, events, chi, pd.DataFrame({"age": age}))
    reference = CoxPHFitter().fit(pd.DataFrame({"t": time, "e": events, "chi": chi, "age": age}),
                                  "t", "e")
    coef = reference.params_["chi"] * chi.std(ddof=1)
    assert result["hr"] == pytest.approx(np.exp(coef), rel=1e-4)
    assert result["hr_p"] == pytest.approx(reference.summary.loc["chi", "p"], rel=1e-3)
    assert result["hr"] < 1 and result["hr_ci_low"] < result["hr"] < result["hr_ci_high"]


def test_kaplan_meier_split_at_median_starts_at_one_and_never_rises():
    rng = np.random.default_rng(6)
    chi = rng.normal(size=40)
    time = rng.exponential(10, 40)
    events = (rng.random(40) < 0.7).astype(int)
    curves, p = kaplan_meier_by_median(time, events, chi)
    assert set(curves["group"]) == {"low", "high"}
    for _, curve in curves.groupby("group"):
        assert curve["survival"].iloc[0] == 1.0
        assert np.all(np.diff(curve["survival"].to_numpy()) <= 0)
        assert np.all(curve["ci_low"] <= curve["survival"] + 1e-12)
    assert 0 <= p <= 1


def test_count_model_is_poisson_without_overdispersion_and_nb_with_it():
    rng = np.random.default_rng(9)
    n = 150
    chi = rng.normal(0.07, 0.02, n)
    mu = np.exp(0.5 - 15 * (chi - 0.07))
    empty = pd.DataFrame(index=range(n))
    poisson_counts = rng.poisson(mu)
    result = count_rate_ratio(poisson_counts, chi, empty)
    reference = sm.GLM(poisson_counts, sm.add_constant(chi), family=sm.families.Poisson()).fit()
    assert result["model"] == "poisson"
    assert result["rate_ratio"] == pytest.approx(np.exp(reference.params[1] * chi.std(ddof=1)),
                                                 rel=1e-5)
    # Cameron-Trivedi auxiliary regression by hand: the one-sided p is from its t statistic
    m = reference.fittedvalues
    aux = sm.OLS(((poisson_counts - m) ** 2 - poisson_counts) / m, m[:, None]).fit()
    from scipy import stats
    assert result["overdispersion_p"] == pytest.approx(stats.norm.sf(aux.tvalues[0]), rel=1e-6)

    nb_counts = rng.negative_binomial(1.0, 1.0 / (1.0 + mu))  # alpha = 1
    result = count_rate_ratio(nb_counts, chi, empty)
    assert result["model"] == "negative_binomial" and result["overdispersion_p"] < 0.05
    reference = sm.NegativeBinomial(nb_counts, sm.add_constant(chi)).fit(disp=0)
    assert result["rate_ratio"] == pytest.approx(np.exp(reference.params[1] * chi.std(ddof=1)),
                                                 rel=1e-4)
    assert result["alpha"] == pytest.approx(reference.params[-1], rel=1e-4)


def test_cox_that_cannot_converge_reports_why_instead_of_a_zero_hazard_ratio():
    chi = np.linspace(0.0, 0.1, 12)
    time = np.linspace(1, 12, 12)
    events = (chi > 0.05).astype(int)  # every event has a higher chi than every non-event
    result = cox_hazard_ratio(time[::-1], events, chi, pd.DataFrame(index=range(12)))
    assert np.isnan(result["hr"]) and np.isnan(result["hr_p"])
    assert "did not converge" in result["note"]
