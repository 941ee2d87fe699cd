"""The study's QC rule on flagged regional values: left out of every analysis, named among the
exclusions with the flag, stated in the methods; by default nothing changes."""

import importlib.util
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import statsmodels.formula.api as smf
from scipy import stats

from qsmiron.errors import InputError
from qsmiron.io.derivatives import extension_paths
from qsmiron.io.participants import ParticipantsTable
from qsmiron.report.methods import statistics_sentences
from qsmiron.stats.analysis import run_study
from qsmiron.stats.methods_text import quality_exclusion_of_measures, quality_exclusion_text
from qsmiron.stats.extensions import run_regional_extensions
from qsmiron.stats.qc_exclusion import exclude_flagged_values, flag_reason
from qsmiron.stats.regions import EXCLUDED_FLAGS, QUALITY_FLAGS, QualityFlag, read_regions, validate_regions
from qsmiron.stats.study import study_from_dict

REGISTRATION = "value flagged flag_registration (through a registration flagged as an outlier)"
SMALL = "value flagged flag_small (from few voxels)"
FLAGGED = {("sub-02", "VeP", "L"): "flag_registration", ("sub-11", "VeP", "L"): "flag_small",
           ("sub-05", "VeP", "L"): "flag_partial_coverage", ("sub-13", "Pu", "R"): "flag_registration"}
"""The flagged values of :func:`_tables`; sub-02 also lacks its age."""


def _tables(n_per_group=8, seed=5):
    """Two groups, VeP and Pu on both sides, chi and R2*, four flagged values (``FLAGGED``)."""
    rng = np.random.default_rng(seed)
    ids = [f"sub-{i:02d}" for i in range(1, 2 * n_per_group + 1)]
    group = ["MOH"] * n_per_group + ["CM"] * n_per_group
    age = rng.normal(42, 9, len(ids)).round(1)
    rows = []
    for region in ("VeP", "Pu"):
        for side in ("L", "R"):
            for measure, reference, base, sd in (("chi", "whole_brain", 0.07, 0.02), ("r2star", "n/a", 30.0, 3.0)):
                values = base + sd * rng.normal(size=len(ids))
                for pid, value in zip(ids, values):
                    flag = FLAGGED.get((pid, region, side))
                    rows.append({"participant_id": pid, "region": region, "hemisphere": side, "measure": measure,
                                 "reference": reference, "mean": value,
                                 **{name: name == flag for name in QUALITY_FLAGS}})
    participants = pd.DataFrame({"participant_id": ids, "group": group, "age": age,
                                 "sds": rng.normal(6, 2, len(ids)).round(1)})
    participants.loc[participants["participant_id"] == "sub-02", "age"] = np.nan
    return pd.DataFrame(rows), ParticipantsTable(participants, source="participants.tsv")


STUDY = {"groups": {"compare": ["MOH", "CM"]}, "covariates": ["age"],
         "associations": {"group": "all", "variables": ["sds"], "covariates": []}}
RULE = {**STUDY, "exclude_flagged": ["flag_registration", "flag_small"]}


def _row(frame, region, side, measure="chi"):
    selected = frame[(frame["region"] == region) & (frame["hemisphere"] == side) & (frame["measure"] == measure)]
    assert len(selected) == 1
    return selected.iloc[0]


def _kept(regions, participants, region, side, flags=("flag_registration", "flag_small")):
    """The chi values of one region with the flagged rows removed, joined to the participants (the reference)."""
    rows = regions[(regions["measure"] == "chi") & (regions["region"] == region) & (regions["hemisphere"] == side)]
    rows = rows[~rows[list(flags)].any(axis=1)]
    return rows.merge(participants.frame, on="participant_id")


def test_group_comparison_without_the_flagged_values_equals_statsmodels_on_the_rows_removed():
    regions, participants = _tables()
    results = run_study(regions, participants, study_from_dict(RULE))
    vep = _row(results.group_comparison, "VeP", "L")
    # reference: OLS value ~ group + age on the rows left after removing the flagged ones (and
    # sub-02's missing age: patsy drops it), group coded 1 for MOH
    data = _kept(regions, participants, "VeP", "L").dropna(subset=["age"])
    fit = smf.ols("mean ~ C(group, Treatment('CM')) + age", data=data).fit()
    assert vep["diff"] == pytest.approx(fit.params["C(group, Treatment('CM'))[T.MOH]"], rel=1e-9)
    assert vep["p"] == pytest.approx(fit.pvalues["C(group, Treatment('CM'))[T.MOH]"], rel=1e-9)
    assert (vep["n_a"], vep["n_b"]) == (7, 7)  # MOH sub-02 and CM sub-11 out; sub-05's flag is not in the rule
    a, b = data.loc[data["group"] == "MOH", "mean"], data.loc[data["group"] == "CM", "mean"]
    assert vep["mwu_p"] == pytest.approx(stats.mannwhitneyu(a, b, alternative="two-sided").pvalue, rel=1e-9)
    # the same in R2*, and a region without a flagged value keeps everyone with an age
    assert _row(results.group_comparison, "VeP", "L", "r2star")["n_b"] == 7
    assert _row(results.group_comparison, "VeP", "R")[["n_a", "n_b"]].tolist() == [7, 8]
    # the associations (Spearman, no covariates, pooled) equal scipy's on the rows kept
    sds = _row(results.associations, "Pu", "R")
    kept = _kept(regions, participants, "Pu", "R")
    assert sds["n"] == 15 and sds["r"] == pytest.approx(stats.spearmanr(kept["mean"], kept["sds"])[0], rel=1e-9)


def test_each_excluded_value_is_named_with_its_flag_not_as_missing():
    regions, participants = _tables()
    results = run_study(regions, participants, study_from_dict(RULE))
    listed = {(e.participant_id, e.analysis, e.reason) for e in results.exclusions}
    assert ("sub-11", "group_comparison", f"{SMALL} (VeP L)") in listed
    assert ("sub-13", "associations sds", f"{REGISTRATION} (Pu R)") in listed
    # sub-02: the flagged value and the missing age are two reasons; the age holds for every region
    assert ("sub-02", "group_comparison", f"{REGISTRATION} (VeP L)") in listed
    assert ("sub-02", "group_comparison", "missing age") in listed
    assert not any("chi_ppm" in e.reason or "r2star" in e.reason for e in results.exclusions)
    # one record per analysis for both measures (the flag holds for each), none for the flag outside the rule
    assert sorted(e.analysis for e in results.exclusions if e.participant_id == "sub-11") == [
        "associations sds", "group_comparison"]
    assert not any(e.participant_id == "sub-05" for e in results.exclusions)
    assert results.exclusion_counts["group_comparison"] == 3  # sub-02, sub-11, sub-13


def test_methods_state_the_rule_and_the_warning_keeps_only_the_flags_analysed_as_measured():
    regions, participants = _tables()
    results = run_study(regions, participants, study_from_dict(RULE))
    rule = results.settings.methods.quality_exclusion
    # analysed participants and regions: sub-02, sub-11 (VeP L), sub-13 (Pu R), in chi and in R2*
    assert "flagged by qsmiron roi as flag_small (from few voxels) or flag_registration" in rule
    assert "were excluded before analysis (in each measure, 3 values of 3 participants)" in rule
    chi = run_study(regions[regions["measure"] == "chi"], participants, study_from_dict(RULE))
    assert "were excluded before analysis (3 values of 3 participants)" in chi.settings.methods.quality_exclusion
    assert "values flagged only flag_partial_coverage were analysed as measured" in rule
    assert any(sentence.startswith("Regional values flagged by qsmiron roi as flag_small")
               for sentence in statistics_sentences(results.settings, results))
    [warning] = [w for w in results.warnings if "analysed as measured" in w]
    assert "flag_partial_coverage: VeP L 1" in warning and "flag_registration" not in warning
    assert results.settings.exclude_flagged == ["flag_registration", "flag_small"]
    # a table without the flag columns: the rule could leave nothing out, and says so
    unflagged = run_study(regions.drop(columns=list(QUALITY_FLAGS)), participants, study_from_dict(RULE))
    assert "(in each measure, no value was flagged)" in unflagged.settings.methods.quality_exclusion
    assert ("exclude_flagged names flag_small, flag_registration but the regions table has no such column: no value "
            "was left out for it") in unflagged.warnings


def test_the_rule_is_said_once_for_several_measures_unless_their_counts_differ():
    two, one = quality_exclusion_text(["flag_small"], 2, 1), quality_exclusion_text(["flag_small"], 1, 1)
    assert "excluded before analysis (2 values of 1 participant)," in two
    assert quality_exclusion_of_measures({"chi": two}) == two
    assert "excluded before analysis (in each measure, 2 values of 1 participant)," in quality_exclusion_of_measures(
        {"chi": two, "r2star": two})
    assert quality_exclusion_of_measures({"chi": two, "r2star": one}) == f"for chi, {two}; for r2star, {one}"
    assert quality_exclusion_of_measures({"chi": "", "r2star": ""}) == ""


def test_by_default_flagged_values_are_analysed_and_the_results_are_those_of_a_table_without_flags():
    regions, participants = _tables()
    results = run_study(regions, participants, study_from_dict(STUDY))
    plain = run_study(regions.drop(columns=list(QUALITY_FLAGS)), participants, study_from_dict(STUDY))
    pd.testing.assert_frame_equal(results.group_comparison, plain.group_comparison)
    pd.testing.assert_frame_equal(results.associations, plain.associations)
    assert results.exclusions == plain.exclusions
    assert results.settings.methods.quality_exclusion == "" and results.settings.exclude_flagged == []
    assert _row(results.group_comparison, "VeP", "L")[["n_a", "n_b"]].tolist() == [7, 8]
    [warning] = [w for w in results.warnings if "analysed as measured" in w]
    assert "flag_registration: VeP L 1, Pu R 1" in warning and "flag_small: VeP L 1" in warning


def test_exclusion_empties_every_summary_once_and_spares_missing_values():
    regions = validate_regions(_tables()[0].assign(median=lambda f: f["mean"]))
    regions.loc[(regions["participant_id"] == "sub-13") & (regions["region"] == "Pu") & (regions["hemisphere"] == "R")
                & (regions["measure"] == "chi"), ["mean", "median"]] = np.nan  # flagged and not measured
    once = exclude_flagged_values(regions, ["flag_registration"])
    pd.testing.assert_frame_equal(exclude_flagged_values(once, ["flag_registration"]), once)
    marked = once[once[EXCLUDED_FLAGS] != ""]
    # sub-02's VeP L in chi and R2*, and sub-13's Pu R in R2* (its chi had no value to leave out)
    assert sorted(zip(marked["participant_id"], marked["measure"])) == [
        ("sub-02", "chi"), ("sub-02", "r2star"), ("sub-13", "r2star")]
    assert marked[["mean", "median"]].isna().all().all() and set(marked[EXCLUDED_FLAGS]) == {"flag_registration"}
    assert once.drop(index=marked.index)["mean"].equals(regions.drop(index=marked.index)["mean"])
    assert exclude_flagged_values(regions, []) is regions


def test_the_rule_names_known_flags_only():
    assert set(QualityFlag.__args__) == set(QUALITY_FLAGS)
    with pytest.raises(InputError, match=r"invalid study settings: 'exclude_flagged.0': Input should be "
                                         r"'flag_small', 'flag_partial_coverage' or 'flag_registration'"):
        study_from_dict({"exclude_flagged": ["flag_regist"]})


def test_an_excluded_flags_column_is_read_back_and_checked(tmp_path):
    written = exclude_flagged_values(validate_regions(_tables()[0]), ["flag_small"])
    path = tmp_path / "regions.tsv"
    written.to_csv(path, sep="\t", index=False, na_rep="n/a")
    again = read_regions(path)
    assert again[EXCLUDED_FLAGS].tolist() == written[EXCLUDED_FLAGS].tolist()
    path.write_text(path.read_text().replace("flag_small\t", "flag_tiny\t", 1).replace("\tflag_small", "\tflag_tiny"))
    with pytest.raises(InputError, match=r"column 'excluded_flags' holds flag_tiny; expected flag_small"):
        read_regions(path)


def _longitudinal_cohort():
    spec = importlib.util.spec_from_file_location("longitudinal_cases", Path(__file__).with_name("test_longitudinal.py"))
    cases = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cases)
    regions, participants, sessions = cases._cohort(n_per_group=6, seed=4)
    flagged = (regions["participant_id"] == "sub-01") & (regions["session"] == "ses-2") & (regions["region"] == "VeP")
    regions["flag_registration"] = flagged
    participants.frame["site"] = np.where(np.arange(len(participants.frame)) % 2 == 0, "A", "B")
    return regions, participants, sessions


def test_the_optional_sections_see_the_same_exclusion_and_name_it(tmp_path):
    regions, participants, sessions = _longitudinal_cohort()
    sections = {"groups": {"compare": ["MOH", "CM"]}, "covariates": ["age"], "exclude_flagged": ["flag_registration"],
                "longitudinal": {"time": "months"}, "normative": {"reference_group": "CM", "covariates": ["age"]}}
    result = run_regional_extensions(regions, participants, study_from_dict(sections), extension_paths(tmp_path),
                                     sessions=sessions)
    assert [(e.participant_id, e.reason) for e in result.exclusions[None]] == [
        ("sub-01", f"{REGISTRATION} (VeP L ses-2)")]
    vep = next(t for t in result.longitudinal.terms if t.region == "VeP")
    assert vep.n == 6 * 2 * 3 - 1 and vep.n_participants == 12
    normative = pd.read_csv(tmp_path / "normative.tsv", sep="\t", keep_default_na=False)
    scored = normative[(normative["participant_id"] == "sub-01") & (normative["session"] == "ses-2")
                       & (normative["region"] == "VeP")].iloc[0]
    assert scored["z"] == "n/a" and scored["note"] == REGISTRATION
    # ComBat needs every value: the flagged one is not harmonised, and the reason is the flag; the participant's
    # other values at that session are, with the estimates of the participants with every value
    harmonised = run_regional_extensions(regions, participants, study_from_dict(
        {**{k: v for k, v in sections.items() if k not in ("longitudinal", "normative")}, "harmonise": {"batch": "site"}}),
        extension_paths(tmp_path / "h"), sessions=sessions)
    assert [(e.participant_id, e.reason) for e in harmonised.exclusions["ses-2"]] == [
        ("sub-01", f"{REGISTRATION} (chi VeP L ses-2)")]
    values = harmonised.regions
    at_ses2 = values[(values["participant_id"] == "sub-01") & (values["session"] == "ses-2")]
    assert at_ses2.set_index("region")["mean"].isna().to_dict() == {"VeP": True, "Pu": False}
    assert flag_reason("flag_registration") == REGISTRATION
