"""Study file: the issue's TOML form, unknown keys, and defaults resolved from the data."""

import pandas as pd
import pytest

from qsmiron.errors import InputError
from qsmiron.stats.study import Study, load_study, resolve_study, study_from_dict

ISSUE_TOML = """
covariates = ["age", "sex"]
regions = []                      # empty or absent: all regions
[groups]
column = "group"
compare = ["MOH", "CM"]           # group_a, group_b
[associations]
group = "MOH"                     # or "all" for the pooled sample
variables = ["sds", "disease_duration", "hit6"]
method = "spearman"               # or "pearson"
[relapse]
group = "MOH"
outcome = "relapse"               # 0/1
time = "time_to_relapse"          # optional, with event = "relapse"
event = "relapse"
count = "relapse_count"           # optional
"""


def test_load_study_accepts_the_issue_toml_form(tmp_path):
    path = tmp_path / "study.toml"
    path.write_text(ISSUE_TOML, encoding="utf-8")
    study = load_study(path)
    assert study.groups.compare == ["MOH", "CM"]
    assert study.associations.variables == ["sds", "disease_duration", "hit6"]
    assert study.relapse.time == "time_to_relapse" and study.relapse.event == "relapse"
    assert study.source == str(path)


def test_load_study_rejects_unknown_keys_naming_them(tmp_path):
    path = tmp_path / "study.toml"
    path.write_text('covarites = ["age"]\n[groups]\ncompare = ["A", "B"]\nlabel = "x"\n',
                    encoding="utf-8")
    with pytest.raises(InputError) as error:
        load_study(path)
    assert "'covarites'" in error.value.message and "'groups.label'" in error.value.message
    assert error.value.path == str(path)


def test_study_needs_two_different_groups_and_accepts_numeric_labels():
    with pytest.raises(InputError, match="two different group labels"):
        study_from_dict({"groups": {"compare": ["MOH", "MOH"]}})
    assert study_from_dict({"groups": {"compare": [1, 2]}}).groups.compare == ["1", "2"]


def test_load_study_without_file_is_all_defaults_and_bad_toml_is_reported(tmp_path):
    assert load_study(None) == Study()
    path = tmp_path / "study.toml"
    path.write_text("covariates = [", encoding="utf-8")
    with pytest.raises(InputError, match="cannot be parsed"):
        load_study(path)


def test_resolve_study_fills_defaults_from_the_data(cohort):
    regions, participants = cohort(n_a=8, n_b=12, seed=1)
    resolved = resolve_study(Study(), participants, ["Pu", "VeP"])
    assert resolved.groups.compare == ["CM", "MOH"]  # most frequent first
    assert resolved.covariates == ["age", "sex"]
    assert resolved.regions == ["Pu", "VeP"]
    assert resolved.associations.group == "CM"
    # sds only has values in MOH: not a default variable within CM
    assert resolved.associations.variables == ["disease_duration", "hit6"]
    assert resolved.relapse.outcome == "relapse" and resolved.relapse.group == "MOH"
    assert resolved.relapse.time == "time_to_relapse" and resolved.relapse.event == "relapse"
    assert resolved.relapse.count == "relapse_count"
    assert resolved.relapse.exposure == "followup_months"


@pytest.mark.parametrize("column, value, named", [("age", "old", "'old'"), ("sex", "F", "'F'"), ("age", 40, "40")])
def test_a_covariate_with_one_value_for_everyone_leaves_the_study_covariates_with_a_warning(
        cohort, column, value, named):
    """It could adjust no model, so the report must not say the analyses were adjusted for it."""
    _, participants = cohort(n_a=8, n_b=12, seed=1)
    participants[column] = value
    with pytest.warns(UserWarning, match=f"participants.tsv: covariate '{column}' has the single value {named} "
                                         "for every participant"):
        resolved = resolve_study(Study(), participants, ["Pu"], source="participants.tsv")
    kept = [c for c in ("age", "sex") if c != column]
    assert resolved.covariates == kept
    assert resolved.associations.covariates == kept and resolved.relapse.covariates == kept


def test_resolve_study_without_age_sex_or_relapse_columns():
    participants = pd.DataFrame({"participant_id": ["sub-1", "sub-2"], "group": ["A", "B"]})
    resolved = resolve_study(Study(), participants, ["Pu"])
    assert resolved.covariates == [] and resolved.associations.variables == []
    assert resolved.relapse.outcome is None and resolved.relapse.time is None


def test_resolve_study_errors_name_what_is_missing():
    participants = pd.DataFrame({"participant_id": ["sub-1", "sub-2", "sub-3"],
                                 "group": ["A", "B", "C"], "age": [1, 2, 3]})
    with pytest.raises(InputError, match="3 group") as error:
        resolve_study(Study(), participants, ["Pu"], source="participants.tsv")
    assert error.value.path == "participants.tsv"
    with pytest.raises(InputError, match="'MOH'.*labels present: A"):
        resolve_study(study_from_dict({"groups": {"compare": ["MOH", "A"]}}), participants, ["Pu"])
    base = {"groups": {"compare": ["A", "B"]}}
    with pytest.raises(InputError, match="'bmi'"):
        resolve_study(study_from_dict({**base, "covariates": ["bmi"]}), participants, ["Pu"])
    with pytest.raises(InputError, match="'Xx'.*present: Pu"):
        resolve_study(study_from_dict({**base, "regions": ["Xx"]}), participants, ["Pu"])
    with pytest.raises(InputError, match="'hit6'.*associations.variables"):
        resolve_study(study_from_dict({**base, "associations": {"variables": ["hit6"]}}),
                      participants, ["Pu"])


def test_resolve_study_rejects_text_clinical_variables():
    participants = pd.DataFrame({"participant_id": ["sub-1", "sub-2"], "group": ["A", "B"],
                                 "sds": ["high", "low"]})
    with pytest.raises(InputError, match="'sds'.*must be numeric"):
        resolve_study(study_from_dict({"associations": {"variables": ["sds"]}}), participants, [])


def test_study_session_is_a_bids_label_with_or_without_its_prefix():
    assert study_from_dict({"session": "baseline"}).session == "ses-baseline"
    assert study_from_dict({"session": "ses-2"}).session == "ses-2"
    assert study_from_dict({"session": 1}).session == "ses-1"
    with pytest.raises(InputError, match="'session'.*BIDS session label"):
        study_from_dict({"session": "week 4"})


@pytest.mark.parametrize("bad", ["NA", "unknown", "4O"])
def test_a_numeric_covariate_with_a_stray_word_names_the_column_row_and_value(bad):
    # Before, the column silently became text: one dummy per age value, an over-fitted model.
    participants = pd.DataFrame({"participant_id": ["sub-1", "sub-2", "sub-3", "sub-4"],
                                 "group": ["A", "B", "A", "B"],
                                 "age": ["41", "38", bad, "52"]})
    with pytest.raises(InputError) as caught:
        resolve_study(study_from_dict({"covariates": ["age"]}), participants, [])
    message = caught.value.message
    assert "'age'" in message and "row 3 (sub-3)" in message and repr(bad) in message


def test_a_text_covariate_and_bids_missing_values_are_accepted():
    participants = pd.DataFrame({"participant_id": ["sub-1", "sub-2", "sub-3", "sub-4"],
                                 "group": ["A", "B", "A", "B"], "site": ["x", "y", "x", "y"],
                                 "age": [41.0, float("nan"), 30.0, 52.0]})
    resolved = resolve_study(study_from_dict({"covariates": ["age", "site"]}), participants, [])
    assert resolved.covariates == ["age", "site"]


def test_a_text_clinical_variable_names_its_first_bad_row():
    participants = pd.DataFrame({"participant_id": ["sub-1", "sub-2", "sub-3"],
                                 "group": ["A", "B", "A"], "sds": ["3", "4", "unknown"]})
    with pytest.raises(InputError, match=r"'sds'.*row 3 \(sub-3\) holds 'unknown'"):
        resolve_study(study_from_dict({"associations": {"variables": ["sds"]}}), participants, [])
