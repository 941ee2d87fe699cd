"""Mixed models per region: the wrapper against lme4's published results, the sign of the
group-by-time interaction, and bad input."""

from importlib.util import find_spec
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from qsmiron.errors import InputError
from qsmiron.io.participants import ParticipantsTable, SessionsTable
from qsmiron.stats.longitudinal import INTERACTION, LONGITUDINAL_COLUMNS, fit_random_intercept, longitudinal_models
from qsmiron.stats.regions import validate_regions
from qsmiron.stats.study import study_from_dict

DATA = Path(__file__).parent / "data"


def test_random_intercept_fit_equals_lme4_on_sleepstudy_to_1e4_relative():
    # lme4: lmer(Reaction ~ Days + (1 | Subject), sleepstudy), REML. Published output, e.g.
    # benwhalley/just-enough-r, multilevel-models.md (summary(...)$coefficients):
    #   (Intercept) 251.40510  9.7467163;  Days 10.46729  0.8042214
    # and the variance components 1378.1785 (Subject) and 960.4566 (residual) printed by
    # VarCorr in the same kind of output. The fixed effects to 13 digits, 251.405104848485 and
    # 10.467285959595, are lme4's own test values (lme4/lme4, tests/lmer-1.R).
    data = pd.read_csv(DATA / "sleepstudy.csv")
    exog = pd.DataFrame({"intercept": 1.0, "Days": data["Days"]})
    fit = fit_random_intercept(data["Reaction"], exog, data["Subject"])
    np.testing.assert_allclose(fit["estimate"], [251.405104848485, 10.467285959595], rtol=1e-4)
    np.testing.assert_allclose(fit["se"], [9.7467163, 0.8042214], rtol=1e-4)
    np.testing.assert_allclose([fit["var_participant"], fit["var_residual"]], [1378.1785, 960.4566], rtol=1e-4)
    assert fit["converged"]


@pytest.mark.parametrize("dataset", [2, 3, 4, 5])
def test_random_intercept_fit_equals_lme4_on_statsmodels_reference_data(dataset):
    # statsmodels ships lme4 fits (lme_results.R: lmer(endog ~ 0 + exog_fe_* + (1 | groups),
    # REML = TRUE), values in lme_r_results.py) of unbalanced simulated data with two or three
    # fixed effects. statsmodels' own bse_fe differs from these by up to 1.2 % (it inverts the
    # Hessian of all parameters); ours is lme4's (X' V^-1 X)^-1.
    spec = find_spec("statsmodels.regression.tests.results.lme_r_results")
    if spec is None:
        pytest.skip("statsmodels was installed without its test data")
    from statsmodels.regression.tests.results import lme_r_results as reference

    data = pd.read_csv(Path(spec.origin).parent / f"lme{dataset:02d}.csv")
    exog = data[[c for c in data.columns if c.startswith("exog_fe")]]
    fit = fit_random_intercept(data["endog"], exog, data["groups"])
    coef = getattr(reference, f"coef_reml_drf_{dataset}")
    se = np.sqrt(np.diag(getattr(reference, f"vcov_reml_drf_{dataset}")))
    np.testing.assert_allclose(fit["estimate"], coef, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(fit["se"], se, rtol=1e-4)


def _cohort(n_per_group=20, slope_a=0.004, slope_b=0.001, seed=0):
    """Three visits (0, 12, 24 months); MOH's chi rises by slope_a per month, CM's by slope_b."""
    rng = np.random.default_rng(seed)
    ids = [f"sub-{i:02d}" for i in range(2 * n_per_group)]
    group = np.array(["MOH"] * n_per_group + ["CM"] * n_per_group)
    age = rng.normal(42, 9, len(ids))
    rows, session_rows = [], []
    for pid, label, a in zip(ids, group, age):
        person = rng.normal(0, 0.02)
        for visit, months in enumerate((0.0, 12.0, 24.0), start=1):
            session_rows.append({"participant_id": pid, "session_id": f"ses-{visit}", "months": months})
            slope = slope_a if label == "MOH" else slope_b
            for region in ("VeP", "Pu"):
                value = 0.07 + person + 0.0004 * (a - 42) + (slope if region == "VeP" else 0.0) * months
                rows.append({"participant_id": pid, "session": f"ses-{visit}", "region": region, "hemisphere": "L",
                             "mean_ppm": value + rng.normal(0, 0.005)})
    participants = pd.DataFrame({"participant_id": ids, "group": group, "age": age.round(1)})
    return (validate_regions(pd.DataFrame(rows)), ParticipantsTable(participants, source="participants.tsv"),
            SessionsTable(pd.DataFrame(session_rows), source="sessions.tsv"))


STUDY = study_from_dict({"groups": {"compare": ["MOH", "CM"]}, "covariates": ["age"],
                         "longitudinal": {"time": "months"}})


def test_group_by_time_is_the_slope_difference_group_a_minus_group_b():
    regions, participants, sessions = _cohort()
    table = longitudinal_models(regions, participants, sessions, STUDY).table
    assert list(table.columns) == LONGITUDINAL_COLUMNS
    vep = table[(table["region"] == "VeP") & (table["term"] == INTERACTION)].iloc[0]
    assert vep["estimate"] == pytest.approx(0.003, abs=3 * vep["se"]) and vep["se"] < 0.0005
    assert vep["p"] < 1e-6 and vep["n"] == 120 and vep["n_participants"] == 40
    slope_b = table[(table["region"] == "VeP") & (table["term"] == "time")].iloc[0]
    assert slope_b["estimate"] == pytest.approx(0.001, abs=3 * slope_b["se"])
    putamen = table[(table["region"] == "Pu") & (table["term"] == INTERACTION)].iloc[0]
    assert abs(putamen["estimate"]) < 3 * putamen["se"]
    assert set(table["term"]) == {"intercept", "group", "time", INTERACTION, "age"}


def test_sessions_without_the_time_column_are_a_one_line_error_naming_the_file():
    regions, participants, sessions = _cohort(n_per_group=4)
    with pytest.raises(InputError, match="no column 'months'") as error:
        longitudinal_models(regions, participants, SessionsTable(sessions.frame.drop(columns="months"),
                                                                  source=sessions.source), STUDY)
    assert error.value.path == "sessions.tsv"
    with pytest.raises(InputError, match="needs the sessions tables"):
        longitudinal_models(regions, participants, None, STUDY)


def test_a_session_without_a_time_is_left_out_and_reported():
    regions, participants, sessions = _cohort(n_per_group=6)
    sessions.frame.loc[0, "months"] = np.nan
    results = longitudinal_models(regions, participants, sessions, STUDY)
    assert results.exclusions[0].participant_id == "sub-00"
    assert results.record.interactions[0].n == 35 and len(results.record.terms) == len(results.table)
    assert results.table["n"].max() == 35
