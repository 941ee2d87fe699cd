"""ComBat harmonisation against its reference implementation (neuroCombat, and neuroHarmonize when
installed), and the refusals of designs ComBat cannot handle."""

import contextlib
import io

import numpy as np
import pandas as pd
import pytest

from qsmiron.errors import InputError
from qsmiron.io.participants import ParticipantsTable
from qsmiron.stats.harmonise import SITE_EFFECT_COLUMNS, harmonise_regions
from qsmiron.stats.regions import validate_regions
from qsmiron.stats.study import study_from_dict

REGIONS = [("Pu", 0.06, 0.02), ("VeP", 0.07, 0.02), ("GPe", 0.14, 0.025)]
SITE_SHIFT = {"A": 0.0, "B": 1.0, "C": -0.8}         # in between-subject SDs
SITE_SCALE = {"A": 1.0, "B": 1.6, "C": 0.7}


def _multisite(n=60, seed=0, sites=("A", "B", "C")):
    rng = np.random.default_rng(seed)
    ids = [f"sub-{i:03d}" for i in range(n)]
    site = np.array([sites[i % len(sites)] for i in range(n)])
    group = np.where(rng.random(n) < 0.5, "MOH", "CM")
    age = rng.normal(42, 9, n).round(1)
    sex = np.where(rng.random(n) < 0.3, "M", "F")
    rows = []
    for region, mean, sd in REGIONS:
        for hemisphere in ("L", "R"):
            value = (mean + 0.0005 * (age - 42) - 0.012 * (group == "MOH")
                     + sd * np.array([SITE_SHIFT[s] for s in site])
                     + sd * np.array([SITE_SCALE[s] for s in site]) * rng.normal(size=n))
            rows += [{"participant_id": p, "region": region, "hemisphere": hemisphere, "mean_ppm": v}
                     for p, v in zip(ids, value)]
    participants = pd.DataFrame({"participant_id": ids, "group": group, "age": age, "sex": sex, "site": site})
    return validate_regions(pd.DataFrame(rows)), ParticipantsTable(participants, source="participants.tsv")


STUDY = study_from_dict({"covariates": ["age", "sex"], "groups": {"compare": ["MOH", "CM"]},
                         "harmonise": {"method": "combat", "batch": "site"}})


def _reference_matrix(regions, participants):
    wide = regions.pivot(index="participant_id", columns=["region", "hemisphere"], values="mean")
    table = participants.frame.set_index("participant_id").loc[wide.index]
    return wide, table


def test_combat_equals_neurocombat_called_directly_to_1e6():
    from neuroCombat import neuroCombat

    regions, participants = _multisite()
    result = harmonise_regions(regions, participants, STUDY)
    wide, table = _reference_matrix(regions, participants)
    covars = table[["site", "group", "age", "sex"]].reset_index(drop=True)
    with contextlib.redirect_stdout(io.StringIO()):
        reference = neuroCombat(wide.to_numpy(float).T, covars, "site", categorical_cols=["group", "sex"],
                                continuous_cols=["age"])["data"].T
    ours = result.regions.pivot(index="participant_id", columns=["region", "hemisphere"],
                                values="mean").loc[wide.index, wide.columns].to_numpy()
    assert np.max(np.abs(ours - reference)) <= 1e-6 * np.max(np.abs(reference))
    assert list(result.regions.columns) == list(regions.columns)
    assert not np.allclose(ours, wide.to_numpy())


@pytest.mark.filterwarnings("ignore::PendingDeprecationWarning")  # neuroHarmonize uses np.matrix
def test_combat_equals_neuroharmonize_with_numeric_covariates_to_1e6():
    harmonize = pytest.importorskip("neuroHarmonize")
    regions, participants = _multisite(seed=1)
    result = harmonise_regions(regions, participants, STUDY)
    wide, table = _reference_matrix(regions, participants)
    covars = pd.DataFrame({"SITE": table["site"].to_numpy(), "moh": (table["group"] == "MOH").to_numpy(float),
                           "age": table["age"].to_numpy(float), "male": (table["sex"] == "M").to_numpy(float)})
    with contextlib.redirect_stdout(io.StringIO()):
        _, reference = harmonize.harmonizationLearn(wide.to_numpy(float), covars)
    ours = result.regions.pivot(index="participant_id", columns=["region", "hemisphere"],
                                values="mean").loc[wide.index, wide.columns].to_numpy()
    assert np.max(np.abs(ours - reference)) <= 1e-6 * np.max(np.abs(reference))


def test_harmonisation_removes_the_site_effect_and_keeps_the_group_difference():
    regions, participants = _multisite(n=150, seed=2)
    result = harmonise_regions(regions, participants, STUDY)
    effects = result.site_effects
    assert list(effects.columns) == SITE_EFFECT_COLUMNS
    per_region = effects.drop_duplicates(["region", "hemisphere"])
    assert (per_region["p_before"] < 1e-3).all() and (per_region["p_after"] > 0.5).all()
    after = result.regions.merge(participants.frame, on="participant_id")
    difference = after.groupby("group")["mean"].mean()
    assert difference["MOH"] - difference["CM"] == pytest.approx(-0.012, abs=0.004)


def _wide(result_regions, column="mean"):
    return result_regions.pivot(index="participant_id", columns=["region", "hemisphere"], values=column)


def test_applying_the_estimates_to_the_complete_cases_gives_neurocombats_own_output():
    """The adjustment held-out participants get is neuroCombat's own: applied to the participants
    it was estimated on, with covariate effects recovered from its mod.mean, it reproduces them."""
    from neuroCombat import neuroCombat

    from qsmiron.stats.harmonise import _apply_combat

    regions, participants = _multisite(seed=5)
    wide, table = _reference_matrix(regions, participants)
    columns = [f"__f{i}" for i in range(wide.shape[1])]
    data = table[["site", "age", "sex"]].assign(__group=table["group"]).join(wide.set_axis(columns, axis=1))
    covars = table[["site", "group", "age", "sex"]].reset_index(drop=True)
    with contextlib.redirect_stdout(io.StringIO()):
        fitted = neuroCombat(wide.to_numpy(float).T, covars, "site", categorical_cols=["group", "sex"],
                             continuous_cols=["age"])
    applied = _apply_combat(data, data, fitted["estimates"], "site", columns, ["__group", "age", "sex"])
    reference = fitted["data"].T
    assert np.max(np.abs(applied.to_numpy() - reference)) <= 1e-6 * np.max(np.abs(reference))
    assert np.max(np.abs(applied.to_numpy() - wide.to_numpy())) > 0.01


def test_a_participant_missing_a_value_is_harmonised_for_the_values_it_has():
    regions, participants = _multisite(seed=3)
    complete = harmonise_regions(regions, participants, STUDY)
    missing = (regions["participant_id"] == "sub-005") & (regions["region"] == "Pu")
    regions.loc[missing, "mean"] = np.nan
    result = harmonise_regions(regions, participants, STUDY)
    # its missing values stay missing, each named, and it is not left out whole
    assert [(e.participant_id, e.reason) for e in result.exclusions[None]] == [
        ("sub-005", "missing chi Pu L, chi Pu R")]
    assert result.warnings == [] and result.record.n_harmonised == 60 and result.record.n_partial == 1
    assert "the 1 participant-session(s) missing some values" in result.record.methods
    after, before = _wide(result.regions).loc["sub-005"], _wide(complete.regions).loc["sub-005"]
    assert after[("Pu", "L")] != after[("Pu", "L")] and after[("Pu", "R")] != after[("Pu", "R")]
    # its other values: as when it took part in the fit, within a tenth of the between-subject SD
    # (59 instead of 60 participants estimate the sites; its own weight in its site's 20 was 1/20),
    # and its site's shift (site C: -0.8 SD) is removed as for everyone
    original = _wide(regions).loc["sub-005"]
    sd = {region: spread for region, _, spread in REGIONS}
    for region in ("VeP", "GPe"):
        for key in [(region, "L"), (region, "R")]:
            assert abs(after[key] - before[key]) < 0.1 * sd[region]
            assert abs(after[key] - original[key]) > 0.25 * sd[region]
    # the site effects are measured on the complete cases
    assert set(result.site_effects.groupby("region")["n"].sum()) == {2 * 59}


def test_a_site_whose_participants_all_miss_a_value_is_not_harmonised_and_says_why():
    regions, participants = _multisite(n=90, seed=6)
    site_c = set(participants.frame.loc[participants.frame["site"] == "C", "participant_id"])
    regions.loc[regions["participant_id"].isin(site_c) & (regions["region"] == "GPe"), "mean"] = np.nan
    result = harmonise_regions(regions, participants, STUDY)
    reasons = {(e.participant_id, e.reason) for e in result.exclusions[None]}
    assert {pid for pid, reason in reasons if reason == "site C has no participant with every regional value"} == site_c
    assert _wide(result.regions).loc[sorted(site_c)].isna().all().all()
    assert result.warnings and result.warnings[0].startswith("30 participant(s) could not be harmonised")
    assert result.record.n_harmonised == 60 and result.record.n_partial == 0


def test_a_participant_with_a_level_no_complete_case_has_is_not_harmonised():
    regions, participants = _multisite(seed=3)
    participants.frame.loc[participants.frame["participant_id"] == "sub-008", "sex"] = "X"
    regions.loc[(regions["participant_id"] == "sub-008") & (regions["region"] == "VeP"), "mean"] = np.nan
    result = harmonise_regions(regions, participants, STUDY)
    assert ("sub-008", "sex X not among the participants with every regional value") in {
        (e.participant_id, e.reason) for e in result.exclusions[None]}
    assert _wide(result.regions).loc["sub-008"].isna().all()


def test_a_participant_without_any_value_is_left_out_whole():
    regions, participants = _multisite(seed=3)
    regions.loc[regions["participant_id"] == "sub-007", "mean"] = np.nan
    result = harmonise_regions(regions, participants, STUDY)
    assert [e.participant_id for e in result.exclusions[None]] == ["sub-007"]
    assert result.record.n_harmonised == 59 and result.record.n_partial == 0 and len(result.warnings) == 1


def test_a_site_column_with_one_level_is_refused_in_one_line():
    regions, participants = _multisite()
    participants.frame["site"] = "A"
    with pytest.raises(InputError, match="single level") as error:
        harmonise_regions(regions, participants, STUDY)
    assert error.value.path == "participants.tsv" and "\n" not in str(error.value)


def test_a_site_with_one_participant_is_refused():
    regions, participants = _multisite()
    participants.frame.loc[0, "site"] = "D"
    with pytest.raises(InputError, match="'D' has fewer than 2 participants"):
        harmonise_regions(regions, participants, STUDY)


def test_a_site_confounded_with_the_group_is_refused():
    regions, participants = _multisite()
    participants.frame["site"] = np.where(participants.frame["group"] == "MOH", "A", "B")
    with pytest.raises(InputError, match="group is confounded with site"):
        harmonise_regions(regions, participants, STUDY)


def test_sessions_are_harmonised_separately_and_keep_their_column():
    regions, participants = _multisite(seed=4)
    two = pd.concat([regions.assign(session="ses-1"), regions.assign(session="ses-2",
                                                                     mean=regions["mean"] + 0.001)])
    result = harmonise_regions(validate_regions(two), participants, STUDY)
    assert set(result.regions["session"]) == {"ses-1", "ses-2"}
    assert set(result.site_effects["session"]) == {"ses-1", "ses-2"}


def test_every_summary_column_is_harmonised_on_its_own():
    regions, participants = _multisite(seed=3)
    rng = np.random.default_rng(3)
    both = regions.assign(median=regions["mean"] + rng.normal(0.0, 0.005, len(regions)))
    result = harmonise_regions(both, participants, STUDY)
    alone = harmonise_regions(both.drop(columns="mean").rename(columns={"median": "mean"}), participants, STUDY)
    assert list(result.regions.columns) == list(validate_regions(both).columns)
    assert np.allclose(result.regions["median"], alone.regions["mean"], rtol=0, atol=1e-12)
    assert np.allclose(result.regions["mean"], harmonise_regions(regions, participants, STUDY).regions["mean"],
                       rtol=0, atol=1e-12)
    assert not np.allclose(result.regions["median"], both["median"])


def test_each_measure_reports_the_site_effects_of_its_own_default_summary():
    # chi is analysed by its interior-weighted median, R2* by its median: each summary is set
    # apart by an offset, and the site means before harmonisation show which one was used.
    regions, participants = _multisite(seed=4)
    chi = regions.assign(median=regions["mean"] + 0.1, interior_median=regions["mean"] + 0.2)
    r2star = chi.assign(measure="r2star", reference=None, mean=30 + 100 * regions["mean"],
                        median=40 + 100 * regions["mean"], interior_median=50 + 100 * regions["mean"])
    table = validate_regions(pd.concat([chi, r2star], ignore_index=True))
    result = harmonise_regions(table, participants, STUDY)
    site = participants.frame.set_index("participant_id")["site"]
    effects = result.site_effects.set_index(["measure", "region", "hemisphere", "site"])
    for measure, column in (("chi", "interior_median"), ("r2star", "median")):
        rows = table[(table["measure"] == measure) & (table["region"] == "Pu") & (table["hemisphere"] == "L")]
        expected = rows.set_index("participant_id")[column].groupby(site).mean()
        for name, value in expected.items():
            assert effects.loc[(measure, "Pu", "L", name), "mean_before"] == pytest.approx(value, rel=1e-9)
