"""Outcome models against textbook values and independent fits (logistf, statsmodels)."""

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from scipy import optimize, stats

from qsmiron.stats.relapse import count_rate_ratio, logistic_odds_ratio


# The endometrial cancer data of Heinze & Schemper (2002, Stat Med 21:2409; Asseryanis et
# al.): neovasculation NV (0/1), pulsatility index PI, endometrium height EH, histology HG.
# NV = 1 only with HG = 1 (quasi-complete separation: the ML estimate of NV is infinite).
ENDOMETRIAL = (
    "0 13 1.64 0;0 16 2.26 0;0 8 3.14 0;0 34 2.68 0;0 20 1.28 0;0 5 2.31 0;0 17 1.8 0;"
    "0 10 1.68 0;0 26 1.56 0;0 17 2.31 0;0 8 2.01 0;0 7 1.89 0;0 20 3.15 0;0 10 1.23 0;"
    "0 18 1.27 0;0 16 1.76 0;0 18 2 0;0 8 2.64 1;0 29 0.88 1;0 12 1.27 1;0 20 1.37 1;"
    "1 38 0.97 1;1 22 1.14 1;1 7 0.88 1;1 25 0.91 1;1 15 0.58 1;0 7 0.97 1;0 28 1.5 0;"
    "0 11 1.33 0;0 19 2.37 0;0 10 1.82 0;0 10 3.13 0;0 18 1.31 0;0 14 1.92 0;0 21 1.64 0;"
    "0 11 2.01 0;0 17 1.88 0;0 25 1.93 0;0 16 2.11 0;0 19 1.29 0;0 15 1.72 0;0 33 0.75 0;"
    "0 24 1.92 0;0 48 1.84 1;0 12 1.11 1;0 19 1.61 1;0 2 1.18 1;1 22 1.44 1;1 40 1.18 1;"
    "1 5 0.93 1;1 0 1.17 1;0 21 1.19 1;0 15 1.06 1;0 29 2.02 0;0 15 2.29 0;0 12 2.33 0;"
    "0 3 2.9 0;0 20 1.7 0;0 23 1.41 0;0 12 2.25 0;0 22 1.54 0;0 42 1.97 0;0 15 1.75 0;"
    "0 13 2.16 0;0 14 2.57 0;0 19 1.37 0;0 12 3.61 0;0 13 2.04 0;0 10 2.17 0;0 12 1.69 1;"
    "1 49 0.27 1;0 6 1.84 1;0 5 1.3 1;0 17 0.96 1;1 11 1.01 1;1 21 0.98 1;0 5 0.35 1;"
    "1 19 1.02 1;0 33 0.85 1"
)
# R logistf (Heinze's package) on HG ~ NV + PI + EH: coefficients and profile penalised-
# likelihood 95 % limits, as recorded to 8 digits in firthlogist's test-suite (Heinze &
# Schemper 2002 print NV 2.93, 0.61 to 7.85).
LOGISTF_ENDOMETRIAL = {"NV": (2.92927330, 0.6097244, 7.85463171),
                       "PI": (-0.03475175, -0.1244587, 0.04045547),
                       "EH": (-2.60416387, -4.3651832, -1.23272106)}


def endometrial() -> pd.DataFrame:
    rows = [[float(v) for v in row.split()] for row in ENDOMETRIAL.split(";")]
    return pd.DataFrame(rows, columns=["NV", "PI", "EH", "HG"])


@pytest.mark.parametrize("term", ["NV", "EH"])
def test_firth_reproduces_logistf_estimate_and_profile_ci_on_the_endometrial_data(term):
    data = endometrial()
    assert len(data) == 79 and data["HG"].sum() == 30
    others = data[[c for c in ("NV", "PI", "EH") if c != term]]
    result = logistic_odds_ratio(data["HG"], data[term], others)
    # separation of NV makes 'auto' choose Firth (EPV = 30 / 3 = 10 is not below 10)
    assert result["logistic_model"] == "Firth" and result["epv"] == pytest.approx(10.0)
    # Firth's penalty is invariant to rescaling: per-SD log odds = raw coefficient x SD
    sd = data[term].std(ddof=1)
    b, low, high = LOGISTF_ENDOMETRIAL[term]
    assert np.log(result["odds_ratio"]) == pytest.approx(b * sd, rel=1e-6)
    assert np.log(result["or_ci_low"]) == pytest.approx(low * sd, rel=1e-5)
    assert np.log(result["or_ci_high"]) == pytest.approx(high * sd, rel=1e-5)


def _penalised_loglik(beta, X, y, firth=True):
    """Log-likelihood plus (for Firth) 1/2 log det of the Fisher information."""
    eta = X @ beta
    value = float(y @ eta - np.logaddexp(0.0, eta).sum())
    if firth:
        p = 1 / (1 + np.exp(-eta))
        value += 0.5 * np.linalg.slogdet(X.T @ (X * (p * (1 - p))[:, None]))[1]
    return value


def _profile(X, y, index, value, firth):
    """Maximum of the (penalised) log-likelihood with beta[index] held at ``value``."""
    free = [i for i in range(X.shape[1]) if i != index]

    def negative(b_free):
        beta = np.insert(b_free, index, value)
        return -_penalised_loglik(beta, X, y, firth)

    return -optimize.minimize(negative, np.zeros(len(free)), method="BFGS",
                              options={"gtol": 1e-10}).fun


@pytest.mark.parametrize("firth", [True, False])
def test_odds_ratio_ci_and_p_equal_an_independent_profile_likelihood_by_scipy(firth):
    # a small cohort: 40 participants, about 14 events, chi and age
    rng = np.random.default_rng(11)
    n = 40
    chi = rng.normal(0.07, 0.02, n)
    age = rng.normal(42, 9, n)
    events = (rng.random(n) < 1 / (1 + np.exp(-(-0.6 - 50 * (chi - 0.07))))).astype(int)
    result = logistic_odds_ratio(events, chi, pd.DataFrame({"age": age}),
                                 method="firth" if firth else "ml")
    assert result["logistic_model"] == ("Firth" if firth else "maximum likelihood")
    z = (chi - chi.mean()) / chi.std(ddof=1)
    X = np.column_stack([np.ones(n), z, age])
    best = optimize.minimize(lambda b: -_penalised_loglik(b, X, events, firth), np.zeros(3),
                             method="BFGS", options={"gtol": 1e-10})
    assert np.log(result["odds_ratio"]) == pytest.approx(best.x[1], abs=1e-5)
    limit = stats.chi2.ppf(0.95, 1) / 2

    def drop(value):
        return -best.fun - _profile(X, events, 1, value, firth) - limit

    low = optimize.brentq(drop, best.x[1] - 5, best.x[1])
    high = optimize.brentq(drop, best.x[1], best.x[1] + 5)
    assert np.log(result["or_ci_low"]) == pytest.approx(low, abs=1e-4)
    assert np.log(result["or_ci_high"]) == pytest.approx(high, abs=1e-4)
    statistic = 2 * (-best.fun - _profile(X, events, 1, 0.0, firth))
    assert result["p"] == pytest.approx(stats.chi2.sf(statistic, 1), rel=1e-4)
    if not firth:  # maximum likelihood is also statsmodels' Logit estimate
        reference = sm.Logit(events, X).fit(disp=0)
        assert np.log(result["odds_ratio"]) == pytest.approx(reference.params[1], abs=1e-6)


def test_auto_model_is_firth_below_ten_events_per_variable_and_ml_above():
    rng = np.random.default_rng(12)
    n = 200
    chi = rng.normal(size=n)
    events = (rng.random(n) < 1 / (1 + np.exp(-(-0.3 + 0.8 * chi)))).astype(int)
    covariates = pd.DataFrame({"age": rng.normal(42, 9, n)})
    many = logistic_odds_ratio(events, chi, covariates)
    assert many["epv"] > 10 and many["logistic_model"] == "maximum likelihood"
    few = logistic_odds_ratio(events[:30], chi[:30], covariates.iloc[:30])
    assert few["epv"] < 10 and few["logistic_model"] == "Firth"
    # Firth shrinks the small-sample estimate towards 0 compared with maximum likelihood
    ml = logistic_odds_ratio(events[:30], chi[:30], covariates.iloc[:30], method="ml")
    assert abs(np.log(few["odds_ratio"])) < abs(np.log(ml["odds_ratio"]))


def test_separated_outcome_gets_a_finite_firth_odds_ratio_never_a_degenerate_wald_interval():
    # every event has a higher chi than every non-event: the ML odds ratio is infinite and
    # a Wald interval is meaningless (the old report printed 0.00 (0.00 to 92654))
    chi = np.linspace(0.0, 0.1, 20)
    events = (chi > 0.05).astype(int)
    empty = pd.DataFrame(index=range(20))
    ml = logistic_odds_ratio(events, chi, empty, method="ml")
    assert np.isnan(ml["odds_ratio"]) and "separated" in ml["note"]
    firth = logistic_odds_ratio(events, chi, empty)
    assert firth["logistic_model"] == "Firth"
    assert 1 < firth["or_ci_low"] < firth["odds_ratio"] < firth["or_ci_high"] < np.inf
    assert firth["p"] < 0.05


def test_too_few_events_per_parameter_give_no_logistic_model_and_say_why():
    rng = np.random.default_rng(13)
    chi = rng.normal(size=12)
    events = np.array([1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0])
    covariates = pd.DataFrame({"age": rng.normal(42, 9, 12), "sex": list("MF" * 6)})
    result = logistic_odds_ratio(events, chi, covariates)  # 5 events, 3 parameters
    assert np.isnan(result["odds_ratio"]) and np.isnan(result["or_ci_high"])
    assert result["epv"] == pytest.approx(5 / 3) and "EPV 1.7 < 2" in result["note"]


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
    assert result["overdispersion_p"] == pytest.approx(stats.norm.sf(aux.tvalues[0]), rel=1e-6)

    nb_counts = rng.negative_binomial(1.0, 1.0 / (1.0 + mu))  # alpha = 1
    result = count_rate_ratio(nb_counts, chi, empty)
    assert result["model"] == "negative_binomial" and result["overdispersion_p"] < 0.05
    reference = sm.NegativeBinomial(nb_counts, sm.add_constant(chi)).fit(disp=0)
    assert result["rate_ratio"] == pytest.approx(np.exp(reference.params[1] * chi.std(ddof=1)),
                                                 rel=1e-4)
    assert result["alpha"] == pytest.approx(reference.params[-1], rel=1e-4)
