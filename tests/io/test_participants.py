"""participants.tsv reading: ids, n/a, numeric columns, sex codings and their errors."""

import json

import numpy as np
import pandas as pd
import pytest

from qsmiron.errors import InputError
from qsmiron.io.participants import (normalise_participant_id, participants_at_session, read_bids_sessions,
                                     read_participants, read_sessions)


def write_table(folder, text, dictionary=None):
    path = folder / "participants.tsv"
    path.write_text(text, encoding="utf-8")
    if dictionary is not None:
        (folder / "participants.json").write_text(json.dumps(dictionary), encoding="utf-8")
    return path


def test_read_participants_normalises_ids_missing_values_and_numbers(tmp_path):
    path = write_table(tmp_path, "participant_id\tgroup\tage\tsex\tsds\n"
                                 "01\tMOH\t40\tM\t5\n"
                                 "sub-02\tCM\tn/a\tfemale\t\n"
                                 " sub-03 \tMOH\t51.5\tF\t3\n")
    table = read_participants(path)
    frame = table.frame
    assert list(frame["participant_id"]) == ["sub-01", "sub-02", "sub-03"]
    assert pd.api.types.is_float_dtype(frame["age"])
    assert np.isnan(frame.loc[1, "age"]) and frame.loc[2, "age"] == 51.5
    assert np.isnan(frame.loc[1, "sds"])
    assert list(frame["sex"]) == ["M", "F", "F"]
    assert list(frame["group"]) == ["MOH", "CM", "MOH"]
    assert table.source == str(path)


def test_read_participants_reads_numeric_sex_by_json_levels(tmp_path):
    path = write_table(tmp_path, "participant_id\tsex\nsub-1\t0\nsub-2\t1\nsub-3\tn/a\n",
                       {"sex": {"Levels": {"0": "female", "1": "male"}}})
    table = read_participants(path)
    assert table.frame["sex"].iloc[:2].tolist() == ["F", "M"] and pd.isna(table.frame["sex"].iloc[2])
    assert "Levels" in table.sex_coding


def test_read_participants_reads_1_2_sex_without_levels_as_iso_5218(tmp_path):
    path = write_table(tmp_path, "participant_id\tsex\nsub-1\t1\nsub-2\t2\nsub-3\t2\n")
    table = read_participants(path)
    assert table.frame["sex"].tolist() == ["M", "F", "F"]
    assert "ISO/IEC 5218" in table.sex_coding


def test_read_participants_reads_levels_with_long_descriptions(tmp_path):
    path = write_table(tmp_path, "participant_id\tsex\nsub-1\tM\nsub-2\tF\n",
                       {"sex": {"Description": "sex", "Levels": {"M": "Male participant",
                                                                   "F": "Female participant"}}})
    assert read_participants(path).frame["sex"].tolist() == ["M", "F"]


@pytest.mark.parametrize("rows, fragment", [
    ("sub-1\tM\nsub-2\t2\n", "mixes numeric and text"),
    ("sub-1\t0\nsub-2\t1\n", "ambiguous"),
    ("sub-1\tM\nsub-2\tX\n", "X"),
])
def test_read_participants_rejects_undecidable_sex_codings_naming_file_and_column(
        tmp_path, rows, fragment):
    path = write_table(tmp_path, "participant_id\tsex\n" + rows)
    with pytest.raises(InputError) as error:
        read_participants(path)
    assert error.value.path == str(path)
    assert "'sex'" in error.value.message and fragment in error.value.message


def test_read_participants_rejects_sex_values_outside_json_levels(tmp_path):
    path = write_table(tmp_path, "participant_id\tsex\nsub-1\t1\nsub-2\t3\n",
                       {"sex": {"Levels": {"1": "male", "2": "female"}}})
    with pytest.raises(InputError, match="not among the Levels"):
        read_participants(path)


@pytest.mark.parametrize("levels", ["M", ["male", "female"]])
def test_read_participants_rejects_sex_levels_that_are_not_a_mapping_naming_the_json(tmp_path, levels):
    """Levels given as a text or a list was an AttributeError traceback ('str' object has no attribute 'items')."""
    path = write_table(tmp_path, "participant_id\tsex\nsub-1\tM\n", {"sex": {"Levels": levels}})
    with pytest.raises(InputError, match="the Levels of 'sex' must map each code to its meaning") as error:
        read_participants(path)
    assert error.value.path == str(tmp_path / "participants.json")


def test_read_participants_rejects_duplicated_ids_after_normalisation(tmp_path):
    path = write_table(tmp_path, "participant_id\tage\n01\t30\nsub-01\t31\n")
    with pytest.raises(InputError, match="repeats sub-01"):
        read_participants(path)


def test_read_participants_requires_participant_id_column(tmp_path):
    path = write_table(tmp_path, "subject,age\n1,30\n")
    with pytest.raises(InputError, match="no 'participant_id' column"):
        read_participants(path)


def test_read_participants_reports_broken_json_and_missing_file(tmp_path):
    path = write_table(tmp_path, "participant_id\tage\nsub-1\t30\n")
    (tmp_path / "participants.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(InputError) as error:
        read_participants(path)
    assert error.value.path.endswith("participants.json")
    with pytest.raises(InputError, match="not found"):
        read_participants(tmp_path / "absent.tsv")


def test_read_participants_leaves_text_columns_as_text(tmp_path):
    path = write_table(tmp_path, "participant_id\tgroup\tscore\nsub-1\t1\t3\nsub-2\t2\thigh\n")
    frame = read_participants(path).frame
    assert frame["score"].tolist() == ["3", "high"]
    assert frame["group"].tolist() == [1, 2]


def test_normalise_participant_id_forms():
    assert normalise_participant_id("sub-ab1") == "sub-ab1"
    assert normalise_participant_id(7) == "sub-7"
    assert normalise_participant_id(7.0) == "sub-7"
    assert normalise_participant_id(float("nan")) is None


# --------------------------------------------------------------------------------------------
# Sessions tables: values per visit


def test_bids_sessions_tables_give_each_participant_values_at_that_session(tmp_path):
    participants = read_participants(write_table(
        tmp_path, "participant_id\tgroup\tage\tsex\tsds\n"
                  "sub-01\tMOH\t40\tF\t7\nsub-02\tCM\t50\tM\tn/a\nsub-03\tCM\t30\tF\t2\n"))
    for label, text in (("01", "session_id\tacq_time\tage\tsds\tmidas\n"
                               "ses-1\t2024-01-02T10:00:00\t40.2\t7\t30\nses-2\t2024-07-02T10:00:00\t40.7\t3\t12\n"),
                        ("02", "session_id\tage\n1\t50.1\n2\tn/a\n")):
        (tmp_path / f"sub-{label}").mkdir()
        (tmp_path / f"sub-{label}" / f"sub-{label}_sessions.tsv").write_text(text)
    sessions = read_bids_sessions(tmp_path)
    assert sorted(zip(sessions.frame.participant_id, sessions.frame.session_id)) == [
        ("sub-01", "ses-1"), ("sub-01", "ses-2"), ("sub-02", "ses-1"), ("sub-02", "ses-2")]

    at_second = participants_at_session(participants, sessions, "2")
    assert at_second.session == "ses-2" and at_second.sessions_source == sessions.source
    second = at_second.frame.set_index("participant_id")
    assert second.loc["sub-01", "age"] == pytest.approx(40.7) and second.loc["sub-01", "sds"] == 3
    assert second.loc["sub-02", "age"] == 50  # n/a at the session keeps the participants value
    assert second.loc["sub-03", "age"] == 30 and np.isnan(second.loc["sub-03", "midas"])
    assert second.loc["sub-01", "midas"] == 12 and "acq_time" not in second.columns
    assert pd.api.types.is_numeric_dtype(second["age"]) and second.loc["sub-01", "sex"] == "F"
    first = participants_at_session(participants, sessions, "ses-1").frame.set_index("participant_id")
    assert first.loc["sub-02", "age"] == pytest.approx(50.1) and first.loc["sub-01", "sds"] == 7
    assert participants_at_session(participants, None, "ses-1") is participants
    assert read_participants(tmp_path / "participants.tsv").frame.equals(participants.frame)  # not modified


def test_sessions_table_errors_name_the_file(tmp_path):
    path = tmp_path / "sessions.tsv"
    path.write_text("session\tage\nses-1\t40\n")
    with pytest.raises(InputError, match="has no 'session_id' column") as error:
        read_sessions(path, participant_id="sub-01")
    assert str(path) in str(error.value)
    path.write_text("session_id\tage\nses-1\t40\n")
    with pytest.raises(InputError, match="its participant is not known"):
        read_sessions(path)
    path.write_text("participant_id\tsession_id\tage\n01\tses-1\t40\nsub-01\t1\t41\n")
    with pytest.raises(InputError, match="repeats sub-01 ses-1"):
        read_sessions(path)
