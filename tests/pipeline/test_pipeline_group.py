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
