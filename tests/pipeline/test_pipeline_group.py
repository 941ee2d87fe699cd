"""`qsmiron stats` end to end: files in, tables + results.json (+ report) out, or exit 2."""

import json

import numpy as np
import pandas as pd
import pytest

from qsmiron.cli import main


@pytest.fixture
def inputs(tmp_path):
    """A 24-participant study written as BIDS-style files (sex coded 1/2 with Levels)."""
    rng = np.random.default_rng(0)
    n = 24
    ids = [f"{i:02d}" for i in range(1, n + 1)]  # bare labels: normalised to sub-XX
    group = ["MOH"] * 12 + ["CM"] * 12
    participants = pd.DataFrame({
        "participant_id": [f"sub-{i}" for i in ids], "group": group,
        "age": rng.normal(42, 9, n).round(1), "sex": rng.choice(["1", "2"], n),
        "sds": np.r_[rng.normal(5.6, 2, 12).round(1), [np.nan] * 12],
        "relapse": np.r_[[1, 0] * 6, [np.nan] * 12]})
    participants.loc[5, "age"] = np.nan
    path = tmp_path / "participants.tsv"
    participants.to_csv(path, sep="\t", index=False, na_rep="n/a")
    (tmp_path / "participants.json").write_text(json.dumps(
        {"sex": {"Levels": {"1": "male", "2": "female"}}}))
    rows = [{"participant_id": pid, "region": region, "hemisphere": side,
             "mean_ppm": 0.07 - 0.015 * (g == "MOH") + rng.normal(0, 0.02), "n_voxels": 120}
            for pid, g in zip(ids, group) for region in ("VeP", "Pu") for side in "LR"]
    regions_path = tmp_path / "regions.tsv"
    pd.DataFrame(rows).to_csv(regions_path, sep="\t", index=False)
    study = tmp_path / "study.toml"
    study.write_text('[groups]\ncompare = ["MOH", "CM"]\n[associations]\nvariables = ["sds"]\n')
    return regions_path, path, study


def test_cli_stats_exits_0_and_writes_tables_results_and_report(inputs, tmp_path):
    regions, participants, study = inputs
    before = [path.read_bytes() for path in (regions, participants, study)]
    code = main(["stats", str(regions), str(participants), "-o", str(tmp_path / "out"),
                 "--study", str(study)])
    assert code == 0
    assert [path.read_bytes() for path in (regions, participants, study)] == before
    out = tmp_path / "out"
    for name in ("group_comparison.tsv", "associations.tsv", "relapse.tsv", "table1.tsv",
                 "results.json"):
        assert (out / name).stat().st_size > 0
    table = pd.read_csv(out / "group_comparison.tsv", sep="\t")
    assert list(table["region"]) == ["VeP", "VeP", "Pu", "Pu"]
    assert (table["n_a"] == 11).all()  # sub-06 has no age: listwise deletion
    payload = json.loads((out / "results.json").read_text())
    assert payload["settings"]["study_file"] == str(study)
    assert payload["settings"]["sex_coding"].startswith("participants.json Levels")
    assert payload["settings"]["relapse"]["group"] == "MOH"
    # INTEGRATION: report.html is written by qsmiron.report.html.write_report (helper H6)
    assert (out / "report.html").stat().st_size > 0


@pytest.mark.parametrize("breakage, fragment", [
    ("unknown_group", "'HC'"),
    ("mixed_sex", "mixes numeric and text"),
    ("no_hemisphere", "lacks column(s) hemisphere"),
    ("unknown_key", "unknown key(s) 'groups.labels'"),
])
def test_cli_stats_bad_input_exits_2_with_one_line(inputs, tmp_path, capsys, breakage, fragment):
    regions, participants, study = inputs
    if breakage == "unknown_group":
        study.write_text('[groups]\ncompare = ["MOH", "HC"]\n')
    elif breakage == "mixed_sex":
        table = pd.read_csv(participants, sep="\t", dtype=str)
        table.loc[0, "sex"] = "M"
        table.to_csv(participants, sep="\t", index=False)
        (participants.parent / "participants.json").unlink()
    elif breakage == "no_hemisphere":
        pd.read_csv(regions, sep="\t").drop(columns="hemisphere").to_csv(regions, sep="\t",
                                                                         index=False)
    else:
        study.write_text('[groups]\nlabels = ["MOH", "CM"]\n')
    code = main(["stats", str(regions), str(participants), "-o", str(tmp_path / "bad"),
                 "--study", str(study)])
    error = capsys.readouterr().err
    assert code == 2
    assert error.count("\n") == 1 and "Traceback" not in error
    assert error.startswith("qsmiron stats: error: ") and fragment in error
    assert not (tmp_path / "bad" / "results.json").exists()


# --------------------------------------------------------------------------------------------
# Longitudinal data: one analysis per session


@pytest.fixture
def two_sessions(tmp_path):
    """24 participants scanned twice: no group difference at ses-1, VeP lower in MOH at ses-2;
    ages and SDS at each visit in BIDS-style sessions tables; ses-3 has two participants."""
    rng = np.random.default_rng(4)
    n = 24
    ids = [f"sub-{i:02d}" for i in range(1, n + 1)]
    group = np.array(["MOH"] * 12 + ["CM"] * 12)
    age = rng.normal(42, 9, n).round(1)
    pd.DataFrame({"participant_id": ids, "group": group, "age": age, "sex": rng.choice(["M", "F"], n)}).to_csv(
        tmp_path / "participants.tsv", sep="\t", index=False)
    sessions = pd.DataFrame(
        [{"participant_id": pid, "session_id": ses, "age": a + years, "sds": round(rng.normal(6, 2), 1)}
         for pid, a in zip(ids, age) for ses, years in (("ses-1", 0.0), ("ses-2", 1.5))]
        + [{"participant_id": pid, "session_id": "ses-3", "age": a + 3.0, "sds": 4.0} for pid, a in zip(ids[:2], age)])
    sessions.to_csv(tmp_path / "sessions.tsv", sep="\t", index=False)
    rows = []
    for session, shift in (("ses-1", 0.0), ("ses-2", -0.03)):
        for pid, g in zip(ids, group):
            for region in ("VeP", "Pu"):
                for side in "LR":
                    effect = shift * (g == "MOH") * (region == "VeP")
                    rows.append({"participant_id": pid, "session": session, "region": region, "hemisphere": side,
                                 "mean_ppm": 0.07 + effect + rng.normal(0, 0.015)})
    rows += [{"participant_id": pid, "session": "ses-3", "region": "VeP", "hemisphere": side, "mean_ppm": 0.07}
             for pid in ids[:2] for side in "LR"]
    pd.DataFrame(rows).to_csv(tmp_path / "regions.tsv", sep="\t", index=False)
    return tmp_path / "regions.tsv", tmp_path / "participants.tsv", tmp_path / "sessions.tsv"


def test_each_session_is_analysed_separately_with_the_values_of_that_visit(two_sessions, tmp_path):
    import statsmodels.formula.api as smf
    from statsmodels.stats.anova import anova_lm

    from qsmiron.pipeline.group import run_group_analysis

    regions_tsv, participants_tsv, sessions_tsv = two_sessions
    out = tmp_path / "group"
    index = run_group_analysis(regions_tsv, participants_tsv, out, sessions=sessions_tsv)
    assert index == out / "report.html"
    listing = pd.read_csv(out / "sessions.tsv", sep="\t")
    assert listing.session.tolist() == ["ses-1", "ses-2", "ses-3"]
    assert listing.n_participants.tolist() == [24, 24, 2]
    assert listing.status.tolist() == ["analysed", "analysed", "failed"]
    assert "has 1 group(s)" in listing.reason[2]
    page = index.read_text()
    assert 'href="ses-1/report.html"' in page and 'href="ses-2/report.html"' in page and "not analysed" in page

    # Independent reference: the ANCOVA of ses-2 with the ages at that visit.
    regions = pd.read_csv(regions_tsv, sep="\t")
    visit = pd.read_csv(sessions_tsv, sep="\t").query("session_id == 'ses-2'")[["participant_id", "age"]]
    data = (regions.query("session == 'ses-2' and region == 'VeP' and hemisphere == 'L'")
            .merge(pd.read_csv(participants_tsv, sep="\t").drop(columns="age"), on="participant_id")
            .merge(visit, on="participant_id"))
    expected = anova_lm(smf.ols("mean_ppm ~ C(group) + age + C(sex)", data=data).fit(), typ=2)
    for session in ("ses-1", "ses-2"):
        payload = json.loads((out / session / "results.json").read_text())
        assert payload["settings"]["session"] == session
        assert (out / session / "report.html").stat().st_size > 0
    table = pd.read_csv(out / "ses-2" / "group_comparison.tsv", sep="\t").set_index(["region", "hemisphere"])
    assert table.loc[("VeP", "L"), "p"] == pytest.approx(expected.loc["C(group)", "PR(>F)"], rel=1e-8)
    row = table.loc[("VeP", "L")]
    # Equal groups: group_a is the first label alphabetically (CM), so MOH lower means d > 0.
    assert (row.group_a, row.group_b) == ("CM", "MOH") and row.cohen_d > 1 and row.p_fdr < 0.01
    first = pd.read_csv(out / "ses-1" / "group_comparison.tsv", sep="\t")
    assert (first.p_fdr > 0.05).all()
    assert "session ses-2" in (out / "ses-2" / "report.html").read_text()


def test_the_study_or_the_command_line_chooses_one_session(two_sessions, tmp_path, capsys):
    regions_tsv, participants_tsv, sessions_tsv = two_sessions
    study = tmp_path / "study.toml"
    study.write_text('session = "2"\n[groups]\ncompare = ["MOH", "CM"]\n')
    assert main(["stats", str(regions_tsv), str(participants_tsv), "-o", str(tmp_path / "by_study"),
                 "--study", str(study), "--sessions", str(sessions_tsv)]) == 0
    assert json.loads((tmp_path / "by_study" / "results.json").read_text())["settings"]["session"] == "ses-2"
    assert not (tmp_path / "by_study" / "sessions.tsv").exists()
    assert main(["stats", str(regions_tsv), str(participants_tsv), "-o", str(tmp_path / "by_option"),
                 "--session", "ses-1"]) == 0
    assert json.loads((tmp_path / "by_option" / "results.json").read_text())["settings"]["session"] == "ses-1"
    assert main(["stats", str(regions_tsv), str(participants_tsv), "-o", str(tmp_path / "bad"),
                 "--session", "ses-9"]) == 2
    error = capsys.readouterr().err
    assert "'ses-9' is not in the regions table (sessions present: ses-1, ses-2, ses-3)" in error
    assert error.count("\n") == 1


def test_cli_stats_leaves_out_values_flagged_under_the_studys_qc_rule(inputs, tmp_path):
    regions, participants, study = inputs
    table = pd.read_csv(regions, sep="\t", dtype={"participant_id": str})
    table["flag_registration"] = (table["participant_id"] == "01") & (table["region"] == "VeP")
    table.to_csv(regions, sep="\t", index=False)
    study.write_text('exclude_flagged = ["flag_registration"]\n' + study.read_text())
    assert main(["stats", str(regions), str(participants), "-o", str(tmp_path / "out"), "--study", str(study)]) == 0
    out = tmp_path / "out"
    counts = pd.read_csv(out / "group_comparison.tsv", sep="\t")[["region", "n_a"]].values.tolist()
    assert counts == [["VeP", 10], ["VeP", 10], ["Pu", 11], ["Pu", 11]]  # sub-06 has no age, sub-01's VeP is flagged
    payload = json.loads((out / "results.json").read_text())
    reason = "value flagged flag_registration (through a registration flagged as an outlier) (VeP L, VeP R)"
    assert {"participant_id": "sub-01", "analysis": "group_comparison", "reason": reason} in payload["exclusions"]
    assert "(2 values of 1 participant)" in payload["settings"]["methods"]["quality_exclusion"]
    report = (out / "report.html").read_text()
    assert "were excluded before analysis" in report and reason in report


def test_a_run_group_level_error_names_the_participants_table_as_given_not_relative_to_the_derivatives(
        inputs, tmp_path):
    """The group level names its inputs relative to the derivative dataset in results.json; an error
    once named the file so too (``../../participants.tsv``), a path that points nowhere from the
    user's folder."""
    from qsmiron.errors import InputError
    from qsmiron.pipeline.group import run_group_analysis

    regions, participants, study = inputs
    table = pd.read_csv(participants, sep="\t", dtype=str)
    table.loc[0, "age"] = "forty"
    table.to_csv(participants, sep="\t", index=False)
    study.write_text('covariates = ["age"]\n[groups]\ncompare = ["MOH", "CM"]\n')
    derivatives = tmp_path / "derivatives" / "qsmiron"
    derivatives.mkdir(parents=True)
    with pytest.raises(InputError, match="column 'age' .* must be numeric") as info:
        run_group_analysis(regions, participants, derivatives / "group", study_path=study,
                           derivatives_dir=derivatives)
    assert info.value.path == str(participants)
    assert not (derivatives / "group" / "results.json").exists()
