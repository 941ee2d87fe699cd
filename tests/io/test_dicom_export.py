"""A whole DICOM export: several patients, visits and series in a messy folder layout.

The export (built with pydicom, see ``dicom_factory``):

- patient ``A-01`` (Siemens): two visits (2024-01-10 and 2024-07-02), each a GRE magnitude and
  phase series plus, on the first, a localizer, a single-echo GRE and a spin-echo T2; files
  spread over nested folders with names that say nothing;
- patient ``B.02`` (Philips classic): one visit, magnitude and phase in one series number;
  no PatientAge, PatientSex or PatientBirthDate;
- patient ``C03`` (Siemens): a birth date but no PatientAge; magnitude without phase;
- a text file and a DICOMDIR-like stray file.
"""

from __future__ import annotations

import pandas as pd
import pytest

pytest.importorskip("pydicom")
from dicom_factory import Study, folder_fingerprint, write_gre, write_series  # noqa: E402

from qsmiron.errors import InputError  # noqa: E402
from qsmiron.io.bids import discover_bids  # noqa: E402
from qsmiron.io.bids_validation import validate_dataset  # noqa: E402
from qsmiron.io.dicom import convert_dicom_to_bids  # noqa: E402


def _messy(prefix: str):
    return lambda number, kind, echo, k: f"{prefix}/{(number * 7 + k) % 3}/x{number}{kind}{echo}_{k:02d}"


@pytest.fixture(scope="module")
def export(tmp_path_factory):
    root = tmp_path_factory.mktemp("export") / "EXPORT"
    first = Study("A-01", date="20240110", time="091500", age="052Y", sex="M")
    write_gre(root, first, vendor="SIEMENS", number=7, name=_messy("DISK1/DIR000"))
    write_series(root, first, number=1, kinds=("M",), echo_times_ms=(4.0,), description="localizer",
                 name=_messy("DISK1/DIR001"))
    write_series(root, first, number=3, kinds=("M",), echo_times_ms=(5.0,), description="gre_single",
                 name=_messy("DISK1/DIR002"))
    write_series(root, first, number=4, kinds=("M",), echo_times_ms=(12.0, 90.0), description="t2_tse",
                 scanning_sequence="SE", name=_messy("DISK1/DIR003"))
    second = Study("A-01", date="20240702", time="140000", age="052Y", sex="M")
    write_gre(root, second, vendor="SIEMENS", number=9, name=_messy("DISK2/Z"))
    write_gre(root, Study("B.02", age="", sex="", date="20240301"), vendor="PHILIPS", number=1401,
              name=_messy("other/deeper/still"))
    write_series(root, Study("C03", age="", sex="F", birth_date="19700615", date="20240301"), number=2,
                 kinds=("M",), name=_messy("c"))
    (root / "DISK1" / "notes.txt").write_text("exported by hand\n")
    (root / "DICOMDIR").write_bytes(b"\0" * 200)
    before = folder_fingerprint(root)
    bids = tmp_path_factory.mktemp("bids") / "plain"
    report = convert_dicom_to_bids(root, bids)
    return root, before, bids, report


def test_every_dicom_file_is_unchanged_after_conversion(export):
    root, before, _, _ = export
    assert folder_fingerprint(root) == before


def test_subjects_come_from_sanitised_patient_ids_and_visits_become_sessions_by_date(export):
    _, _, bids, report = export
    units = [(u.participant_id, u.session) for u in discover_bids(bids)]
    assert units == [("sub-A01", "ses-20240110"), ("sub-A01", "ses-20240702"), ("sub-B02", None)]
    assert [item.label for item in report.converted] == ["sub-A01 ses-20240110", "sub-A01 ses-20240702", "sub-B02"]
    assert [p for p in validate_dataset(bids, discover_bids(bids)) if p.fatal] == []


def test_summary_counts_what_was_found_and_gives_a_reason_for_every_skip(export):
    _, _, _, report = export
    assert (report.n_patients, report.n_studies, report.n_series) == (3, 4, 9)
    assert report.n_other_files == 2
    reasons = {(skip.patient_id, skip.what.split(" (")[0]): skip.reason for skip in report.skipped}
    assert reasons[("A-01", "series 1")] == "localizer"
    assert reasons[("A-01", "series 3")] == "single echo"
    assert reasons[("A-01", "series 4")].startswith("not a gradient-echo sequence (SE)")
    assert reasons[("C03", "series 2")].startswith("magnitude without phase")
    assert len(report.skipped) == 4
    text = report.summary()
    assert text.splitlines()[0] == "found: 250 DICOM files (2 other files ignored), 3 patients, 4 studies, 9 series"
    assert "patient A-01: series 1 (localizer): localizer" in text
    assert "skipped by reason: " in text and "magnitude without phase 1" in text


def test_participants_tsv_has_age_and_sex_from_dicom_and_na_where_absent(export):
    _, _, bids, _ = export
    table = pd.read_csv(bids / "participants.tsv", sep="\t", dtype=str, keep_default_na=False)
    assert list(table.columns) == ["participant_id", "age", "sex", "group"]
    rows = table.set_index("participant_id").to_dict("index")
    assert rows["sub-A01"] == {"age": "52", "sex": "M", "group": "n/a"}
    assert rows["sub-B02"] == {"age": "n/a", "sex": "n/a", "group": "n/a"}
    import json

    dictionary = json.loads((bids / "participants.json").read_text())
    assert dictionary["age"]["Units"] == "year" and set(dictionary["sex"]["Levels"]) == {"M", "F", "O"}
    sessions = pd.read_csv(bids / "sub-A01" / "sub-A01_sessions.tsv", sep="\t", dtype=str, keep_default_na=False)
    assert sessions.to_dict("list") == {"session_id": ["ses-20240110", "ses-20240702"], "age": ["52", "52"]}


def test_a_mapping_file_names_subjects_sessions_and_groups_and_leaves_out_unlisted_patients(export, tmp_path):
    root = export[0]
    mapping = tmp_path / "patients.tsv"
    mapping.write_text("PatientID\tparticipant_id\tsession_id\tStudyDate\tgroup\n"
                       "A-01\tsub-101\tbaseline\t20240110\tMOH\n"
                       "A-01\tsub-101\tfollowup\t20240702\tMOH\n"
                       "C03\t103\tn/a\tn/a\tcontrol\n")
    report = convert_dicom_to_bids(root, tmp_path / "bids", mapping=mapping)
    units = [(u.participant_id, u.session) for u in discover_bids(tmp_path / "bids")]
    assert units == [("sub-101", "ses-baseline"), ("sub-101", "ses-followup")]
    assert any(s.patient_id == "B.02" and s.reason == "PatientID not in the mapping file" for s in report.skipped)
    table = pd.read_csv(tmp_path / "bids" / "participants.tsv", sep="\t", dtype=str, keep_default_na=False)
    assert table.to_dict("records") == [{"participant_id": "sub-101", "age": "52", "sex": "M", "group": "MOH"}]


def test_age_comes_from_the_birth_date_when_patient_age_is_missing(tmp_path):
    study = Study("D04", age="", sex="F", birth_date="19700615", date="20240301")
    write_gre(tmp_path / "dicom", study, vendor="SIEMENS")
    convert_dicom_to_bids(tmp_path / "dicom", tmp_path / "bids")
    table = pd.read_csv(tmp_path / "bids" / "participants.tsv", sep="\t", dtype=str, keep_default_na=False)
    assert table.to_dict("records") == [{"participant_id": "sub-D04", "age": "53", "sex": "F", "group": "n/a"}]


def test_a_mapping_file_without_its_columns_is_an_input_error(export, tmp_path):
    mapping = tmp_path / "bad.tsv"
    mapping.write_text("id\tlabel\nA-01\t01\n")
    with pytest.raises(InputError, match="no PatientID or participant_id column") as info:
        convert_dicom_to_bids(export[0], tmp_path / "bids", mapping=mapping)
    assert info.value.path == str(mapping)


def test_a_mapping_label_that_is_not_a_bids_label_is_refused_not_rewritten(export, tmp_path):
    mapping = tmp_path / "patients.tsv"
    mapping.write_text("PatientID\tparticipant_id\nA-01\tsub-101\nC03\tp_103\n")
    with pytest.raises(InputError, match="line 3: participant_id label 'p_103' is not a BIDS label: letters and "
                                         "digits only \\(e.g. p103\\)") as info:
        convert_dicom_to_bids(export[0], tmp_path / "bids", mapping=mapping)
    assert info.value.path == str(mapping) and not (tmp_path / "bids").exists()


@pytest.mark.parametrize("option, value", [("subject", "p-01"), ("session", "visit 1")])
def test_a_given_subject_or_session_that_is_not_a_bids_label_is_refused_before_reading(tmp_path, option, value):
    # No DICOM folder content is needed: the label is checked first.
    (tmp_path / "dicom").mkdir()
    with pytest.raises(InputError, match=f"--{option} label '{value}' is not a BIDS label"):
        convert_dicom_to_bids(tmp_path / "dicom", tmp_path / "bids", **{option: value})


def test_subject_option_is_refused_for_an_export_of_several_patients(export, tmp_path):
    with pytest.raises(InputError, match="several patients"):
        convert_dicom_to_bids(export[0], tmp_path / "bids", subject="01")


def test_converted_export_with_sessions_passes_the_bids_validator_with_zero_errors(export):
    from validator_helper import describe, validate

    errors, _ = validate(export[2])
    assert errors == [], describe(errors)
