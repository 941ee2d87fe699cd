"""Written results: exact TSV columns, JSON without NaN, everything in results.json."""


import numpy as np
import pandas as pd

from qsmiron.records.study import Exclusion, StudyRecord
from qsmiron.stats.analysis import run_study
from qsmiron.stats.study import study_from_dict
from qsmiron.stats.write import write_results

GROUP = ["region", "hemisphere", "group_a", "group_b", "n_a", "n_b", "mean_a", "sd_a", "mean_b",
         "sd_b", "adj_mean_a", "adj_mean_b", "F", "p", "p_fdr", "partial_eta2", "cohen_d",
         "mwu_p"]
ASSOCIATIONS = ["region", "hemisphere", "group", "variable", "method", "n", "r", "p", "p_fdr"]
RELAPSE = ["region", "hemisphere", "n", "n_events", "odds_ratio", "or_ci_low", "or_ci_high", "p",
           "p_fdr", "auc", "auc_ci_low", "auc_ci_high", "youden_threshold_ppm", "sensitivity",
           "specificity"]
HAZARD = ["hr", "hr_ci_low", "hr_ci_high", "hr_p"]


def test_write_results_writes_the_issue_columns_and_a_complete_json(cohort, tmp_path):
    regions, participants = cohort(n_a=20, n_b=15, seed=7, regions=("VeP", "Pu"))
    participants.loc[0, "age"] = np.nan  # one exclusion to record
    results = run_study(regions, participants, study_from_dict({"relapse": {"event": "relapse_event"}}))
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
        assert columns(name)[-1] == "note"
    assert (tmp_path / "out" / "table1.tsv").exists()
    assert {"relapse_counts", "roc_curves", "km_curves"} <= set(written)

    text = (tmp_path / "out" / "results.json").read_text()
    assert "NaN" not in text and "Infinity" not in text
    record = StudyRecord.read(tmp_path / "out" / "results.json")
    assert record.settings.groups.compare == ["MOH", "CM"]
    assert record.settings.methods.associations.startswith("partial correlation")
    assert {"statsmodels", "lifelines", "scipy", "scikit-learn"} <= set(record.versions)
    assert Exclusion(participant_id="sub-001", analysis="group_comparison", reason="missing age") in record.exclusions
    assert len(record.group_comparison) == 4 and len(record.roc_curves) == 4
    tsv = pd.read_csv(tmp_path / "out" / "group_comparison.tsv", sep="\t")
    assert np.allclose(tsv["p"], [r["p"] for r in record.group_comparison])
    assert not list((tmp_path / "out").glob(".*tmp*"))  # no temporary files left
