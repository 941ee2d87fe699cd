"""Time to event against lifelines fits and counts by hand."""

import numpy as np
import pandas as pd
import pytest
from lifelines import CoxPHFitter, KaplanMeierFitter

from qsmiron.stats.survival import (
    at_risk_table, cox_hazard_ratio, kaplan_meier_by_median, median_split, nice_times)


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


def _product_limit_by_hand(time, events, at):
    """S(t) = product over event times u <= t of (1 - deaths(u) / at risk(u)), written out."""
    survival = []
    for t in at:
        s = 1.0
        for u in np.unique(time[(events == 1) & (time <= t)]):
            s *= 1.0 - np.sum((time == u) & (events == 1)) / np.sum(time >= u)
        survival.append(s)
    return np.array(survival)


def _logrank_p_by_hand(time, events, first):
    """Mantel's log-rank test: observed minus expected events of one group, hypergeometric variance."""
    from scipy import stats

    observed = expected = variance = 0.0
    for u in np.unique(time[events == 1]):
        at_risk, at_risk_first = np.sum(time >= u), np.sum((time >= u) & first)
        deaths = np.sum((time == u) & (events == 1))
        observed += np.sum((time == u) & (events == 1) & first)
        expected += deaths * at_risk_first / at_risk
        if at_risk > 1:
            share = at_risk_first / at_risk
            variance += deaths * share * (1 - share) * (at_risk - deaths) / (at_risk - 1)
    return float(stats.chi2.sf((observed - expected) ** 2 / variance, 1))


def test_kaplan_meier_split_at_median_follows_the_product_limit_and_the_logrank_test_by_hand():
    rng = np.random.default_rng(6)
    chi = rng.normal(size=40)
    time = rng.exponential(10, 40) * np.exp(-1.5 * chi)  # higher chi, earlier events
    events = (rng.random(40) < 0.7).astype(int)
    curves, p = kaplan_meier_by_median(time, events, chi)
    assert set(curves["group"]) == {"low", "high"}
    low = chi <= np.median(chi)  # the median itself belongs to the low curve
    for label, members in (("low", low), ("high", ~low)):
        curve = curves[curves["group"] == label]
        assert curve["time"].iloc[0] == 0 and curve["survival"].iloc[0] == 1.0
        assert set(time[members & (events == 1)]) <= set(curve["time"])
        expected = _product_limit_by_hand(time[members], events[members], curve["time"].to_numpy())
        np.testing.assert_allclose(curve["survival"], expected, rtol=1e-12)
        assert np.all(curve["ci_low"] <= curve["survival"] + 1e-12)
        assert np.all(curve["survival"] <= curve["ci_high"] + 1e-12)
    assert p == pytest.approx(_logrank_p_by_hand(time, events, low), rel=1e-9)
    assert p < 0.05  # the planted difference shows (p about 0.034)


def test_cox_that_cannot_converge_reports_why_instead_of_a_zero_hazard_ratio():
    chi = np.linspace(0.0, 0.1, 12)
    time = np.linspace(1, 12, 12)
    events = (chi > 0.05).astype(int)  # every event has a higher chi than every non-event
    result = cox_hazard_ratio(time[::-1], events, chi, pd.DataFrame(index=range(12)))
    assert np.isnan(result["hr"]) and np.isnan(result["hr_p"])
    assert "did not converge" in result["note"]


def test_nice_times_step_in_round_units_up_to_the_longest_follow_up():
    assert nice_times(12.0).tolist() == [0, 3, 6, 9, 12]
    assert nice_times(11.5).tolist() == [0, 3, 6, 9]
    assert nice_times(730.0).tolist() == [0, 200, 400, 600]
    assert nice_times(24.0).tolist() == [0, 6, 12, 18, 24]
    assert nice_times(0.0).tolist() == [0]


def test_numbers_at_risk_match_lifelines_event_table_and_the_kaplan_meier_estimate():
    # lifelines' event table: at_risk at an event time t counts the times >= t (as R's
    # summary(survfit, times = t) and survminer's risk table)
    rng = np.random.default_rng(31)
    time = np.round(rng.exponential(8, 50), 1)
    events = (rng.random(50) < 0.6).astype(int)
    groups = np.where(rng.random(50) < 0.5, "low", "high")
    table = at_risk_table(time, events, groups, times=[0, 2.5, 5, 10, 20])
    assert list(table["group"].unique()) == list(dict.fromkeys(groups))
    for label, rows in table.groupby("group"):
        members = groups == label
        fitter = KaplanMeierFitter().fit(time[members], events[members])
        events_table = fitter.event_table
        for _, row in rows.iterrows():
            t = row["time"]
            later = events_table.index[events_table.index >= t]
            expected = events_table.loc[later[0], "at_risk"] if len(later) else 0
            assert row["at_risk"] == expected
            before = events_table.loc[events_table.index <= t]
            assert row["events"] == before["observed"].sum()
            assert row["censored"] == before["censored"].sum()
            assert row["survival"] == pytest.approx(
                float(fitter.survival_function_at_times(t).iloc[0]))
    first = table[table["time"] == 0]
    assert first["at_risk"].sum() == 50 and (first["survival"] == 1).all()


def test_median_split_puts_the_median_into_the_low_curve():
    assert median_split([1, 2, 3, 4, 5]).tolist() == ["low", "low", "low", "high", "high"]
