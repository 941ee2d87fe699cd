"""Whole-study runs: planted effects found, a null cohort clean, bad input reported."""

import numpy as np
import pandas as pd
import pytest

from qsmiron.errors import InputError
from qsmiron.io.participants import ParticipantsTable
from qsmiron.records.study import Exclusion
from qsmiron.stats.analysis import run_study
from qsmiron.stats.study import Study, study_from_dict

STUDY = {"relapse": {"event": "relapse_event"}}


def row(frame, region, hemisphere, **more):
    selected = frame[(frame["region"] == region) & (frame["hemisphere"] == hemisphere)]
    for key, value in more.items():
        selected = selected[selected[key] == value]
    assert len(selected) == 1
    return selected.iloc[0]


def test_planted_group_difference_association_and_relapse_effect_are_found(cohort, described):
    # d = -0.8 in VeP (MOH lower), r = -0.4 between left VeP chi and SDS within MOH,
    # lower VeP chi -> relapse (log OR -1 per SD)
    regions, participants = cohort(n_a=150, n_b=100, d=-0.8, r=-0.4, relapse_log_or=-1.0, seed=0,
                                   regions=("VeP", "Pu", "GPe"))
    results = run_study(regions, described(participants), study_from_dict(STUDY))
    gc = results.group_comparison
    for hemisphere in ("L", "R"):
        vep = row(gc, "VeP", hemisphere)
        assert vep["p_fdr"] < 0.05 and vep["cohen_d"] < -0.4
        assert vep["adj_mean_a"] < vep["adj_mean_b"] and vep["mean_a"] < vep["mean_b"]
        assert vep["group_a"] == "MOH" and vep["n_a"] == 150 and vep["n_b"] == 100
    assert (gc.loc[gc["region"] != "VeP", "p_fdr"] >= 0.05).all()

    sds = row(results.associations, "VeP", "L", variable="sds")
    assert sds["p_fdr"] < 0.05 and sds["r"] < 0 and sds["group"] == "MOH" and sds["n"] == 150
    assert sds["method"] == "spearman"
    other = results.associations[results.associations["variable"] != "sds"]
    assert (other["p_fdr"] >= 0.05).all()

    relapse = row(results.relapse, "VeP", "L")
    assert relapse["odds_ratio"] < 1 and relapse["p_fdr"] < 0.05
    assert relapse["roc_direction"] == "lower" and relapse["auc"] > 0.6
    assert relapse["hr"] < 1 and relapse["hr_p_fdr"] < 0.05
    assert ("chi", "VeP", "L") in results.roc_curves and ("chi", "VeP", "L") in results.km_curves
    assert set(gc["measure"]) == {"chi"} and set(gc["unit"]) == {"ppm"}
    counts = row(results.relapse_counts, "VeP", "L")
    assert counts["rate_ratio"] < 1 and counts["p_fdr"] < 0.05
    assert results.exclusions == [] and results.warnings == []


def test_null_cohort_has_nothing_fdr_significant(cohort):
    regions, participants = cohort(n_a=60, n_b=50, d=0.0, r=0.0, relapse_log_or=0.0, seed=1,
                                   regions=("VeP", "Pu", "GPe"))
    results = run_study(regions, participants, study_from_dict(STUDY))
    for frame, column in ((results.group_comparison, "p_fdr"), (results.associations, "p_fdr"),
                          (results.relapse, "p_fdr"), (results.relapse, "hr_p_fdr"),
                          (results.relapse_counts, "p_fdr")):
        assert frame[column].notna().all()
        assert (frame[column] >= 0.05).all(), frame[["region", "hemisphere", column]]


def test_participants_in_one_table_only_are_reported_not_silently_dropped(cohort):
    regions, participants = cohort(n_a=10, n_b=10, seed=2, outcomes=False)
    regions = regions[regions["participant_id"] != "sub-001"]
    extra = pd.DataFrame({"participant_id": ["sub-900"], "region": ["VeP"], "hemisphere": ["L"],
                          "mean_ppm": [0.05]})
    results = run_study(pd.concat([regions, extra]), participants, Study())
    reasons = {(e.participant_id, e.reason) for e in results.exclusions}
    assert ("sub-900", "in the regions table but not in the participants table") in reasons
    assert ("sub-001", "in the participants table but has no regional values") in reasons
    assert any("sub-900" in w for w in results.warnings)
    assert any("sub-001" in w for w in results.warnings)
    assert results.exclusion_counts["all"] == 2


def test_missing_values_are_deleted_listwise_per_analysis_and_counted(cohort):
    regions, participants = cohort(n_a=12, n_b=10, seed=3, outcomes=False)
    participants.loc[participants["participant_id"] == "sub-002", "age"] = np.nan
    regions.loc[(regions["participant_id"] == "sub-003") & (regions["region"] == "Pu")
                & (regions["hemisphere"] == "L"), "mean_ppm"] = np.nan
    results = run_study(regions, participants, Study())
    gc = results.group_comparison
    assert row(gc, "Pu", "L")["n_a"] == 10 and row(gc, "Pu", "R")["n_a"] == 11
    records = [e for e in results.exclusions if e.analysis == "group_comparison"]
    assert Exclusion(participant_id="sub-002", analysis="group_comparison", reason="missing age") in records
    assert Exclusion(participant_id="sub-003", analysis="group_comparison",
                     reason="missing chi_ppm (Pu L)") in records
    assert results.exclusion_counts["group_comparison"] == 2


def test_group_below_three_and_constant_variable_give_reasons_and_warnings(cohort):
    regions, participants = cohort(n_a=12, n_b=12, seed=4, outcomes=False)
    keep = participants["group"].eq("MOH") | participants["participant_id"].isin(["sub-013",
                                                                                  "sub-014"])
    participants = participants[keep].assign(hit6=60.0)
    results = run_study(regions, participants, study_from_dict(
        {"groups": {"compare": ["MOH", "CM"]}, "associations": {"variables": ["hit6", "sds"]}}))
    gc = results.group_comparison
    assert gc["p"].isna().all() and gc["p_fdr"].isna().all()
    assert gc["note"].str.contains("CM has 2").all()
    hit6 = results.associations[results.associations["variable"] == "hit6"]
    assert hit6["r"].isna().all() and hit6["note"].str.contains("hit6 is the same").all()
    assert any("group CM has 2" in w for w in results.warnings)
    assert any(w.startswith("association ") and "VeP L hit6" in w and "no statistics (hit6 is "
               "the same for every participant)" in w for w in results.warnings)
    assert any(w.startswith("group comparison every row: no statistics") for w in results.warnings)
    # the other association still runs
    assert results.associations.loc[results.associations["variable"] == "sds", "r"].notna().all()


def test_bad_design_is_an_input_error_naming_the_file(cohort):
    regions, participants = cohort(n_a=8, n_b=8, seed=5)
    table = ParticipantsTable(participants, source="participants.tsv")
    with pytest.raises(InputError, match="'HC'") as error:
        run_study(regions, table, study_from_dict({"groups": {"compare": ["MOH", "HC"]}}))
    assert error.value.path == "participants.tsv"
    bad = participants.assign(relapse=participants["relapse"] * 2)
    with pytest.raises(InputError, match="'relapse' must be 0/1"):
        run_study(regions, bad, Study())
    with pytest.raises(InputError, match="lacks column"):
        run_study(regions.drop(columns="hemisphere"), participants, Study())
    other = participants.assign(participant_id=[f"sub-x{i}" for i in range(16)])
    with pytest.raises(InputError, match="no participant_id is in both"):
        run_study(regions, other, Study())


def test_pooled_pearson_associations_and_regions_subset(cohort):
    regions, participants = cohort(n_a=15, n_b=15, seed=6, outcomes=False)
    results = run_study(regions, participants, study_from_dict(
        {"regions": ["vep"], "associations": {"group": "all", "variables": ["hit6"],
                                              "method": "pearson"}}))
    assert results.settings.regions == ["VeP"]
    assert set(results.group_comparison["region"]) == {"VeP"}
    assoc = results.associations
    assert (assoc["group"] == "all").all() and (assoc["n"] == 30).all()
    assert (assoc["method"] == "pearson").all()


PRIMARY_STUDY = {"primary_regions": ["vep", "Pu"], "relapse": {"event": "relapse_event"},
                 "associations": {"variables": ["sds", "hit6"], "primary_variables": ["sds"]}}


@pytest.fixture(scope="module")
def primary_results(cohort, described):
    regions, participants = cohort(n_a=40, n_b=30, d=-1.2, r=-0.6, relapse_log_or=-1.0,
                                   seed=9, regions=("VeP", "Pu", "GPe"))
    return run_study(regions, described(participants), study_from_dict(PRIMARY_STUDY))


def test_primary_regions_form_their_own_fdr_family_in_every_table(primary_results):
    from statsmodels.stats.multitest import multipletests

    results = primary_results
    assert results.settings.primary_regions == ["VeP", "Pu"]
    methods = results.settings.methods
    assert "both hemispheres" in methods.fdr_families
    assert methods.group_comparison_fdr.startswith("within the primary and within the exploratory")
    assert methods.fdr_families in methods.multiple_comparisons
    tables = ((results.group_comparison, "p", "p_fdr"), (results.relapse, "p", "p_fdr"),
              (results.relapse, "hr_p", "hr_p_fdr"), (results.relapse_counts, "p", "p_fdr"),
              (results.associations, "p", "p_fdr"))
    for frame, p, q in tables:
        primary = frame["region"].isin(["VeP", "Pu"])
        if "variable" in frame:
            primary &= frame["variable"] == "sds"
        assert (frame.loc[primary, "family"] == "primary").all()
        assert (frame.loc[~primary, "family"] == "exploratory").all()
        for family in ("primary", "exploratory"):
            rows = frame[(frame["family"] == family) & frame[p].notna()]
            assert rows[q].to_numpy() == pytest.approx(
                multipletests(rows[p].to_numpy(), method="fdr_bh")[1], rel=1e-12)


def test_answers_open_with_the_primary_regions_effects_and_the_association_matrix(primary_results):
    results = primary_results
    answers = results.answers
    group = answers.group_difference
    assert group.confirmatory and (group.group_a, group.group_b) == ("MOH", "CM")
    assert [e.label for e in group.difference_ppb] == ["VeP L", "VeP R", "Pu L", "Pu R"]
    vep = row(results.group_comparison, "VeP", "L")
    first = group.difference_ppb[0]
    assert (first.estimate, first.ci_low, first.ci_high) == (
        vep["diff_ppb"], vep["diff_ci_low_ppb"], vep["diff_ci_high_ppb"])
    assert first.ci_high < 0 and group.cohen_d[0].ci_high < 0  # MOH lower: planted d = -1.2
    assert "VeP L" in group.significant and (group.n_a, group.n_b) == (40, 30)
    assert group.min_detectable_d == pytest.approx(vep["min_detectable_d"])

    association = answers.association
    assert association.variables == ["sds"] and association.group == "MOH"
    assert [(e.label, e.variable) for e in association.correlations] == [
        ("VeP L", "sds"), ("VeP R", "sds"), ("Pu L", "sds"), ("Pu R", "sds")]
    sds = association.correlations[0]
    assert sds.ci_low < sds.estimate < sds.ci_high < 0  # planted r = -0.6

    relapse = answers.relapse
    assert relapse.n == 40 and relapse.too_few_events == ""
    assert [e.method for e in relapse.odds_ratio] == ["Firth"] * 4  # about 14 events, EPV < 10
    auc = relapse.auc[0]
    assert auc.ci_low <= auc.auc <= auc.ci_high and 0 <= auc.sensitivity_cv <= 1

    matrix = answers.association_matrix
    assert matrix.variables == ["sds", "hit6"] and len(matrix.regions) == 6
    table = results.associations.set_index(["region", "hemisphere", "variable"])
    assert matrix.r[2][1] == table.loc[("Pu", "L", "hit6"), "r"]
    assert matrix.family[0] == ["primary", "exploratory"]


def test_ten_participants_with_four_relapses_get_no_odds_ratio_only_a_descriptive_auc(cohort):
    # the case: the old report printed an odds ratio of 0.00 (0.00 to 92654)
    regions, participants = cohort(n_a=10, n_b=10, seed=10, regions=("VeP", "Pu"))
    moh = participants["group"] == "MOH"
    participants.loc[moh, "relapse"] = [1, 0, 1, 0, 0, 1, 0, 0, 1, 0]
    participants.loc[moh, "relapse_event"] = participants.loc[moh, "relapse"]
    # a bare DataFrame: no participants.json
    results = run_study(regions, participants, study_from_dict(
        {"primary_regions": ["VeP"], "relapse": {"event": "relapse_event"}}))
    relapse = results.relapse
    assert (relapse["n"] == 10).all() and (relapse["n_events"] == 4).all()
    for column in ("odds_ratio", "or_ci_low", "or_ci_high", "p", "p_fdr", "youden_threshold_ppm",
                   "sensitivity_cv", "specificity_cv", "auc_corrected", "hr", "hr_p"):
        assert relapse[column].isna().all(), column
    assert relapse["auc"].between(0, 1).all() and (relapse["auc_ci_low"] <= relapse["auc"]).all()
    assert relapse["note"].str.contains("4 events and 6 non-events").all()
    assert relapse["note"].str.contains("too few for any outcome model").all()
    assert any(w.startswith("relapse every row: 4 events and 6 non-events")
               for w in results.warnings)
    assert results.answers.relapse.too_few_events.startswith("4 events and 6 non-events")
    assert all(e.estimate is None for e in results.answers.relapse.odds_ratio)
    assert relapse["min_detectable_or"].iloc[0] > 5  # only a huge effect could be found
    assert ("chi", "VeP", "L") in results.km_curves and ("chi", "VeP", "L") in results.km_at_risk
    assert any("'time_to_relapse' has no Units" in w for w in results.warnings)
    assert results.units["time_to_relapse"].units is None


def test_the_regional_median_is_analysed_by_default_and_the_mean_on_request(cohort):
    import statsmodels.formula.api as smf
    from statsmodels.stats.anova import anova_lm

    regions, participants = cohort(n_a=40, n_b=40, regions=("VeP", "Pu"), outcomes=False)
    rng = np.random.default_rng(5)
    # A median that differs from the mean by noise: the two analyses must differ, each matching
    # statsmodels on its own column.
    both = regions.assign(median_ppm=regions["mean_ppm"] + rng.normal(0.0, 0.01, len(regions)))
    default = run_study(both, participants, Study(covariates=["age", "sex"]))
    asked = run_study(both, participants, Study(covariates=["age", "sex"], statistic="mean"))
    assert default.settings.statistic == "median" and asked.settings.statistic == "mean"
    assert "median of the region's voxels" in default.settings.methods.regional_value
    table = participants.frame if isinstance(participants, ParticipantsTable) else participants
    for result, column in ((default, "median_ppm"), (asked, "mean_ppm")):
        data = both.query("region == 'VeP' and hemisphere == 'L'").merge(table, on="participant_id")
        data = data[data["group"].isin(["MOH", "CM"])]
        expected = anova_lm(smf.ols(f"{column} ~ C(group) + age + C(sex)", data=data).fit(), typ=2)
        got = row(result.group_comparison, "VeP", "L")
        assert got["p"] == pytest.approx(expected.loc["C(group)", "PR(>F)"], rel=1e-8)
    assert row(default.group_comparison, "VeP", "L")["p"] != pytest.approx(row(asked.group_comparison, "VeP", "L")["p"])
