"""ANCOVA row against independent computations (statsmodels formula, numpy, scipy)."""

import numpy as np
import pandas as pd
import pytest
import statsmodels.formula.api as smf
from scipy import stats
from statsmodels.stats.anova import anova_lm

from qsmiron.stats.group import cohen_d, cohen_d_interval, compare_groups
from qsmiron.stats.power import min_detectable_d


@pytest.fixture
def fixed_data():
    rng = np.random.default_rng(7)
    n = 40
    group = np.array(["MOH"] * 22 + ["CM"] * 18)
    age = rng.normal(42, 9, n)
    sex = np.where(rng.random(n) < 0.4, "M", "F")
    y = 0.07 + 0.0005 * (age - 42) + 0.004 * (sex == "M") - 0.012 * (group == "MOH") \
        + rng.normal(0, 0.02, n)
    index = [f"sub-{i}" for i in range(n)]
    return pd.DataFrame({"y": y, "group": group, "age": age, "sex": sex}, index=index)


def test_ancova_f_p_and_partial_eta2_match_statsmodels_anova_lm(fixed_data):
    row = compare_groups(fixed_data["y"], fixed_data["group"], fixed_data[["age", "sex"]],
                         group_a="MOH", group_b="CM")
    reference = anova_lm(smf.ols("y ~ C(group) + age + C(sex)", data=fixed_data).fit(), typ=3)
    term = reference.loc["C(group)"]
    assert row["F"] == pytest.approx(term["F"], rel=1e-10)
    assert row["p"] == pytest.approx(term["PR(>F)"], rel=1e-10)
    eta2 = term["sum_sq"] / (term["sum_sq"] + reference.loc["Residual", "sum_sq"])
    assert row["partial_eta2"] == pytest.approx(eta2, rel=1e-10)
    # identity: partial eta^2 = F df1 / (F df1 + df2)
    df2 = len(fixed_data) - 4
    assert row["partial_eta2"] == pytest.approx(row["F"] / (row["F"] + df2), rel=1e-10)


def test_adjusted_means_are_predictions_at_covariate_means_with_proportional_sex(fixed_data):
    row = compare_groups(fixed_data["y"], fixed_data["group"], fixed_data[["age", "sex"]],
                         group_a="MOH", group_b="CM")
    # independent least squares: y = b0 + b1 [MOH] + b2 age + b3 [M]
    X = np.column_stack([np.ones(len(fixed_data)), fixed_data["group"] == "MOH",
                         fixed_data["age"], fixed_data["sex"] == "M"]).astype(float)
    beta = np.linalg.lstsq(X, fixed_data["y"].to_numpy(), rcond=None)[0]
    at_means = np.array([1.0, 0.0, fixed_data["age"].mean(), (fixed_data["sex"] == "M").mean()])
    assert row["adj_mean_b"] == pytest.approx(at_means @ beta, rel=1e-10)
    at_means[1] = 1.0
    assert row["adj_mean_a"] == pytest.approx(at_means @ beta, rel=1e-10)


def test_adjusted_means_with_one_covariate_follow_the_textbook_formula(fixed_data):
    # adj mean_g = mean_g - b_within (xbar_g - xbar), b_within the pooled within-group slope
    row = compare_groups(fixed_data["y"], fixed_data["group"], fixed_data[["age"]],
                         group_a="MOH", group_b="CM")
    sxy = sxx = 0.0
    for _, part in fixed_data.groupby("group"):
        dx = part["age"] - part["age"].mean()
        sxy += float(dx @ (part["y"] - part["y"].mean()))
        sxx += float(dx @ dx)
    slope = sxy / sxx
    for label, key in (("MOH", "adj_mean_a"), ("CM", "adj_mean_b")):
        part = fixed_data[fixed_data["group"] == label]
        expected = part["y"].mean() - slope * (part["age"].mean() - fixed_data["age"].mean())
        assert row[key] == pytest.approx(expected, rel=1e-10)


def test_cohen_d_equals_student_t_times_root_of_inverse_sizes_and_mwu_matches_scipy(fixed_data):
    a = fixed_data.loc[fixed_data["group"] == "MOH", "y"].to_numpy()
    b = fixed_data.loc[fixed_data["group"] == "CM", "y"].to_numpy()
    t = stats.ttest_ind(a, b, equal_var=True).statistic
    assert cohen_d(a, b) == pytest.approx(t * np.sqrt(1 / a.size + 1 / b.size), rel=1e-10)
    row = compare_groups(fixed_data["y"], fixed_data["group"], fixed_data[[]],
                         group_a="MOH", group_b="CM")
    assert row["cohen_d"] == pytest.approx(cohen_d(a, b))
    assert row["mwu_p"] == pytest.approx(stats.mannwhitneyu(a, b).pvalue, rel=1e-12)
    assert row["mean_a"] == pytest.approx(a.mean()) and row["sd_b"] == pytest.approx(b.std(ddof=1))
    # without covariates the ANCOVA F is Student's t squared
    assert row["F"] == pytest.approx(t ** 2, rel=1e-10)


def test_group_smaller_than_three_gives_a_row_with_a_reason_not_a_crash(fixed_data):
    small = pd.concat([fixed_data[fixed_data["group"] == "MOH"],
                       fixed_data[fixed_data["group"] == "CM"].iloc[:2]])
    row = compare_groups(small["y"], small["group"], small[["age"]], group_a="MOH", group_b="CM")
    assert np.isnan(row["F"]) and np.isnan(row["p"]) and row["n_b"] == 2
    assert "CM has 2" in row["note"]


def test_constant_values_and_constant_covariate_are_reported(fixed_data):
    constant = fixed_data.assign(y=0.05)
    row = compare_groups(constant["y"], constant["group"], constant[["age"]],
                         group_a="MOH", group_b="CM")
    assert np.isnan(row["p"]) and "same for every participant" in row["note"]
    one_sex = fixed_data.assign(sex="F")
    row = compare_groups(one_sex["y"], one_sex["group"], one_sex[["age", "sex"]],
                         group_a="MOH", group_b="CM")
    reference = anova_lm(smf.ols("y ~ C(group) + age", data=one_sex).fit(), typ=2)
    assert row["F"] == pytest.approx(reference.loc["C(group)", "F"], rel=1e-10)
    assert "sex has the single value 'F'" in row["note"]


def test_group_confounded_with_a_covariate_is_reported(fixed_data):
    confounded = fixed_data.assign(sex=np.where(fixed_data["group"] == "MOH", "F", "M"))
    row = compare_groups(confounded["y"], confounded["group"], confounded[["sex"]],
                         group_a="MOH", group_b="CM")
    assert np.isnan(row["F"]) and "collinear" in row["note"]
    assert np.isfinite(row["cohen_d"])  # the raw comparison is still reported


# mtcars (R datasets): miles per gallon by transmission, am = 0 automatic, 1 manual
MTCARS_MPG = [21.0, 21.0, 22.8, 21.4, 18.7, 18.1, 14.3, 24.4, 22.8, 19.2, 17.8, 16.4, 17.3, 15.2,
              10.4, 10.4, 14.7, 32.4, 30.4, 33.9, 21.5, 15.5, 15.2, 13.3, 19.2, 27.3, 26.0, 30.4,
              15.8, 19.7, 15.0, 21.4]
MTCARS_AM = [1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 0, 0, 0, 0, 0, 1, 1, 1,
             1, 1, 1, 1]


def test_cohen_d_ci_reproduces_r_effectsize_on_mtcars():
    # effectsize::cohens_d(mpg ~ am, data = mtcars): d = -1.48, 95 % CI [-2.27, -0.67]
    mpg, am = np.array(MTCARS_MPG), np.array(MTCARS_AM)
    d = cohen_d(mpg[am == 0], mpg[am == 1])
    low, high = cohen_d_interval(d, 19, 13)
    assert (round(d, 2), round(low, 2), round(high, 2)) == (-1.48, -2.27, -0.67)


def test_adjusted_difference_in_ppb_and_its_ci_equal_the_statsmodels_group_coefficient(fixed_data):
    row = compare_groups(fixed_data["y"], fixed_data["group"], fixed_data[["age", "sex"]],
                         group_a="MOH", group_b="CM")
    fit = smf.ols("y ~ C(group, Treatment('CM')) + age + C(sex)", data=fixed_data).fit()
    term = "C(group, Treatment('CM'))[T.MOH]"
    assert row["diff_ppb"] == pytest.approx(1000 * fit.params[term], rel=1e-10)
    assert row["diff_ppb"] == pytest.approx(1000 * (row["adj_mean_a"] - row["adj_mean_b"]),
                                            rel=1e-10)
    low, high = fit.conf_int().loc[term]
    assert row["diff_ci_low_ppb"] == pytest.approx(1000 * low, rel=1e-10)
    assert row["diff_ci_high_ppb"] == pytest.approx(1000 * high, rel=1e-10)
    # the same in the values' unit (ppm here)
    assert (row["diff"], row["diff_ci_low"], row["diff_ci_high"]) == pytest.approx(
        (fit.params[term], low, high), rel=1e-10)
    assert row["cohen_d_ci_low"] < row["cohen_d"] < row["cohen_d_ci_high"]
    assert row["min_detectable_d"] == pytest.approx(
        min_detectable_d(22, 18, n_covariates=2), rel=1e-12)


def test_cohen_d_interval_of_a_huge_effect_is_finite_and_brackets_it():
    # scipy's noncentral t returns NaN in its far tails; the bounds must still be found there.
    from qsmiron.stats.group import cohen_d_interval

    low, high = cohen_d_interval(30.0, 8, 8)
    assert np.isfinite(low) and np.isfinite(high) and low < 30.0 < high
