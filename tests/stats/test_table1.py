"""Table 1 summaries and tests against scipy.stats on fixed data."""

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from qsmiron.stats.table1 import describe_groups


@pytest.fixture
def table():
    rng = np.random.default_rng(12)
    n_a, n_b = 30, 25
    frame = pd.DataFrame({
        "participant_id": [f"sub-{i}" for i in range(n_a + n_b)],
        "group": ["MOH"] * n_a + ["CM"] * n_b,
        "age": np.r_[rng.normal(44, 9, n_a), rng.normal(40, 9, n_b)],
        "midas": np.r_[rng.exponential(100, n_a), rng.exponential(60, n_b)],  # skewed
        "sex": ["F"] * 24 + ["M"] * 6 + ["F"] * 15 + ["M"] * 10,
        "aura": [1.0] * 2 + [0.0] * 28 + [1.0] * 6 + [0.0] * 19,  # small expected counts
    })
    frame.loc[3, "age"] = np.nan
    return frame


def rows(table):
    result = describe_groups(table, table["group"], group_a="MOH", group_b="CM",
                             exclude=("participant_id", "group"))
    return result.set_index("variable")


def test_normal_variable_gets_mean_sd_and_welch_t(table):
    row = rows(table).loc["age"]
    a = table.loc[table["group"] == "MOH", "age"].dropna()
    b = table.loc[table["group"] == "CM", "age"]
    assert stats.shapiro(a).pvalue >= 0.05 and stats.shapiro(b).pvalue >= 0.05
    reference = stats.ttest_ind(a, b, equal_var=False)
    assert row["test"] == "Welch t"
    assert row["p"] == pytest.approx(reference.pvalue, rel=1e-12)
    assert row["summary_a"] == f"{a.mean():.1f} ± {a.std(ddof=1):.1f}"
    assert (row["n_a"], row["missing_a"]) == (29, 1)


def test_skewed_variable_gets_median_iqr_and_mann_whitney(table):
    row = rows(table).loc["midas"]
    a = table.loc[table["group"] == "MOH", "midas"]
    b = table.loc[table["group"] == "CM", "midas"]
    assert row["test"] == "Mann-Whitney U"
    assert row["p"] == pytest.approx(stats.mannwhitneyu(a, b).pvalue, rel=1e-12)
    q1, median, q3 = np.percentile(a, [25, 50, 75])
    assert row["summary_a"] == f"{median:.1f} [{q1:.1f}, {q3:.1f}]"


def test_categorical_uses_chi_square_or_fisher_by_expected_counts(table):
    result = rows(table)
    sex = result.loc["sex"]
    contingency = np.array([[24, 6], [15, 10]])
    assert stats.contingency.expected_freq(contingency).min() >= 5
    assert sex["test"] == "chi-square"
    assert sex["p"] == pytest.approx(stats.chi2_contingency(contingency).pvalue, rel=1e-12)
    assert sex["summary_a"] == "F: 24 (80.0 %); M: 6 (20.0 %)"
    aura = result.loc["aura"]
    contingency = np.array([[28, 2], [19, 6]])
    assert stats.contingency.expected_freq(contingency).min() < 5
    assert aura["test"] == "Fisher exact"
    assert aura["p"] == pytest.approx(stats.fisher_exact(contingency).pvalue, rel=1e-12)
    assert result.loc["n", "summary_a"] == "30"


def test_variable_recorded_in_one_group_only_is_summarised_without_a_test(table):
    table["sds"] = np.where(table["group"] == "MOH", 5.0 + np.arange(len(table)) % 4, np.nan)
    row = rows(table).loc["sds"]
    assert np.isnan(row["p"]) and row["summary_b"] == "" and row["note"]
