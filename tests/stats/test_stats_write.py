"""Written results: exact TSV columns, JSON without NaN, everything in results.json."""

import json

import numpy as np
import pandas as pd

from qsmiron.records.answers import StudyAnswers
from qsmiron.records.study import ColumnInfo, Exclusion, StudyRecord
from qsmiron.stats.analysis import run_study
from qsmiron.stats.study import study_from_dict
from qsmiron.stats.write import study_record, write_results

GROUP = ["region", "hemisphere", "group_a", "group_b", "n_a", "n_b", "mean_a", "sd_a", "mean_b",
         "sd_b", "adj_mean_a", "adj_mean_b", "F", "p", "p_fdr", "partial_eta2", "cohen_d",
         "mwu_p"]
ASSOCIATIONS = ["region", "hemisphere", "group", "variable", "method", "n", "r", "p", "p_fdr"]
RELAPSE = ["region", "hemisphere", "n", "n_events", "odds_ratio", "or_ci_low", "or_ci_high", "p",
           "p_fdr", "auc", "auc_ci_low", "auc_ci_high", "youden_threshold_ppm", "sensitivity_cv",
           "specificity_cv"]
NEW = {"group_comparison.tsv": ["family", "diff_ppb", "diff_ci_low_ppb", "diff_ci_high_ppb",
                                "cohen_d_ci_low", "cohen_d_ci_high", "min_detectable_d"],
       "associations.tsv": ["family", "r_ci_low", "r_ci_high", "min_detectable_r"],
       "relapse.tsv": ["family", "logistic_model", "epv", "auc_corrected",
                       "sensitivity_apparent", "specificity_apparent", "min_detectable_or"]}
HAZARD = ["hr", "hr_ci_low", "hr_ci_high", "hr_p"]


def test_write_results_writes_the_issue_columns_and_a_complete_json(cohort, described, tmp_path):
    regions, participants = cohort(n_a=20, n_b=15, seed=7, regions=("VeP", "Pu"))
    participants.loc[0, "age"] = np.nan  # one exclusion to record
    results = run_study(regions, described(participants),
                        study_from_dict({"relapse": {"event": "relapse_event"}}))
    written = write_results(results, tmp_path / "out")

    def columns(name):
        return list(pd.read_csv(tmp_path / "out" / name, sep="\t").columns)

    # Every results table but Table 1 starts with the measure and its unit.
    assert columns("group_comparison.tsv")[:len(GROUP) + 2] == ["measure", "unit"] + GROUP
    assert columns("associations.tsv")[:len(ASSOCIATIONS) + 2] == ["measure", "unit"] + ASSOCIATIONS
    relapse = columns("relapse.tsv")
    assert relapse[:len(RELAPSE) + 2] == ["measure", "unit"] + RELAPSE and set(HAZARD) <= set(relapse)
    assert columns("roc_curves.tsv")[:3] == ["measure", "region", "hemisphere"]
    for name in ("group_comparison.tsv", "associations.tsv", "relapse.tsv"):
        assert columns(name)[-1] == "note" and set(NEW[name]) <= set(columns(name))
    at_risk = pd.read_csv(tmp_path / "out" / "km_at_risk.tsv", sep="\t")
    assert list(at_risk.columns) == ["measure", "region", "hemisphere", "group", "time", "at_risk", "events",
                                     "censored", "survival"]
    assert at_risk["time"].max() <= 12 and (at_risk.groupby(["region", "hemisphere", "group"])
                                            ["at_risk"].diff().dropna() <= 0).all()
    assert (tmp_path / "out" / "table1.tsv").exists()
    assert {"relapse_counts", "roc_curves", "km_curves"} <= set(written)

    text = (tmp_path / "out" / "results.json").read_text()
    assert "NaN" not in text and "Infinity" not in text
    record = StudyRecord.read(tmp_path / "out" / "results.json")
    assert record.settings.groups.compare == ["MOH", "CM"]
    assert record.settings.methods.associations.startswith("partial correlation")
    assert {"statsmodels", "lifelines", "scipy", "scikit-learn", "firthmodels"} <= set(record.versions)
    assert Exclusion(participant_id="sub-001", analysis="group_comparison", reason="missing age") in record.exclusions
    assert len(record.group_comparison) == 4 and len(record.roc_curves) == 4
    assert len(record.km_at_risk) == 4 and record.files["km_at_risk"] == "km_at_risk.tsv"
    assert record.units["time_to_relapse"].units == "months"
    assert record.units["sds"] == ColumnInfo(name="sds", long_name="Severity of Dependence Scale",
                                             description="0-15", units=None)
    assert "no primary regions" in record.settings.methods.fdr_families
    answers = record.answers
    assert answers.primary_regions == [] and not answers.group_difference.confirmatory
    assert len(answers.group_difference.difference_ppb) == 4  # every region: exploratory
    assert answers.association_matrix.variables == record.settings.associations.variables
    tsv = pd.read_csv(tmp_path / "out" / "group_comparison.tsv", sep="\t")
    assert np.allclose(tsv["p"], [r["p"] for r in record.group_comparison])
    assert not list((tmp_path / "out").glob(".*tmp*"))  # no temporary files left


def test_results_json_round_trips_through_the_study_record(cohort, described, tmp_path):
    regions, participants = cohort(n_a=12, n_b=10, seed=3, regions=("VeP", "Pu"))
    results = run_study(regions, described(participants), study_from_dict(
        {"primary_regions": ["VeP"], "relapse": {"event": "relapse_event", "km_times": [0, 6, 12]}}))
    written = write_results(results, tmp_path)
    record = StudyRecord.read(written["results"])
    expected = study_record(results, files={role: path.name for role, path in written.items()})
    assert record == expected.model_copy(update={"created": record.created})
    assert json.loads(written["results"].read_text()) == record.to_json()
    # every new fact reads back typed, not as a dict
    assert isinstance(record.answers, StudyAnswers) and isinstance(record.units["age"], ColumnInfo)
    assert record.answers.group_difference.confirmatory
    assert [e.label for e in record.answers.group_difference.cohen_d] == ["VeP L", "VeP R"]
    assert record.settings.primary_regions == ["VeP"] and record.settings.relapse.km_times == [0, 6, 12]
    assert "within the primary and within the exploratory" in record.settings.methods.relapse_fdr
    at_risk = record.km_at_risk[0]
    assert at_risk.columns["time"][:3] == [0.0, 6.0, 12.0]


def test_a_results_json_written_before_the_new_facts_still_reads(cohort, described, tmp_path):
    regions, participants = cohort(n_a=8, n_b=8, seed=4, regions=("VeP",), outcomes=False)
    written = write_results(run_study(regions, described(participants), study_from_dict({})), tmp_path)
    payload = json.loads(written["results"].read_text())
    for key in ("km_at_risk", "units", "answers"):
        del payload[key]
    for key in ("fdr_families", "minimal_detectable_effects"):
        del payload["settings"]["methods"][key]
    written["results"].write_text(json.dumps(payload))
    record = StudyRecord.read(written["results"])
    assert record.answers is None and record.units == {} and record.km_at_risk == []
    assert record.settings.methods.multiple_comparisons.startswith("Benjamini-Hochberg")
