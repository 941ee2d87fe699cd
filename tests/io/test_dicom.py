"""DICOM to BIDS (qsmiron convert) on synthetic vendor exports written with pydicom.

Each vendor's layout and phase storage (Siemens: separate magnitude and phase series, 12-bit
phase with slope 2; Philips classic: one series number, milliradians after slope and
intercept; GE: one series with a private image type, signed milliradians, or real and
imaginary with slice-alternating sign) must give the planted phase in radians at every
voxel's world position.
"""

from __future__ import annotations

import json
import stat

import nibabel as nib
import numpy as np
import pytest

pytest.importorskip("pydicom")
from dicom_factory import (ECHO_TIMES_MS, SHAPE, Study, assert_phase_matches_plant,  # noqa: E402
                           folder_fingerprint, write_gre, write_series)

from qsmiron.errors import InputError  # noqa: E402
from qsmiron.io.bids import discover_bids  # noqa: E402
from qsmiron.io.bids_validation import validate_dataset  # noqa: E402
from qsmiron.io.dicom import convert_dicom_to_bids  # noqa: E402

ONE_LEVEL_RAD = 2 * np.pi / 4096


@pytest.fixture(scope="module")
def siemens(tmp_path_factory):
    folder = tmp_path_factory.mktemp("dicom") / "patient007"
    write_gre(folder, Study("P 007"), vendor="SIEMENS")
    bids = tmp_path_factory.mktemp("bids") / "study"
    before = folder_fingerprint(folder)
    report = convert_dicom_to_bids(folder, bids, subject="01")
    return folder, bids, report, before


def test_siemens_separate_series_give_three_echoes_of_magnitude_and_phase_with_bids_names(siemens):
    _, bids, report, _ = siemens
    anat = bids / "sub-01" / "anat"
    expected = [anat / f"sub-01_echo-{e}_part-{p}_MEGRE.nii.gz" for p in ("mag", "phase") for e in (1, 2, 3)]
    assert report.written == expected
    assert report.converted[0].source == "series 5 (gre_me_qsm) + series 6 (gre_me_qsm_PHA)"
    for path in expected:
        assert path.exists() and path.with_name(path.name.replace(".nii.gz", ".json")).exists()
    assert not [p for p in bids.iterdir() if p.name.startswith(".")], "scratch folder left behind"
    description = json.loads((bids / "dataset_description.json").read_text())
    assert description["DatasetType"] == "raw" and description["GeneratedBy"][0]["Name"] == "qsmiron"


def test_siemens_sidecars_give_echo_times_in_seconds_field_strength_and_phase_units(siemens):
    _, bids, _, _ = siemens
    for part in ("mag", "phase"):
        times = []
        for echo in (1, 2, 3):
            sidecar = json.loads((bids / "sub-01" / "anat" / f"sub-01_echo-{echo}_part-{part}_MEGRE.json").read_text())
            times.append(sidecar["EchoTime"])
            assert sidecar["MagneticFieldStrength"] == pytest.approx(3.0)
            assert sidecar["Manufacturer"] == "Siemens"
            assert ("Units" in sidecar) == (part == "phase")
        assert times == pytest.approx([t * 1e-3 for t in ECHO_TIMES_MS], abs=1e-9)
    phase = json.loads((bids / "sub-01" / "anat" / "sub-01_echo-1_part-phase_MEGRE.json").read_text())
    assert phase["Units"] == "rad"
    assert phase["PhaseScaling"]["Method"] == "levels" and "8192" in phase["PhaseScaling"]["Description"]


def test_siemens_phase_in_radians_matches_the_planted_phase_within_one_level(siemens):
    _, bids, _, _ = siemens
    anat = bids / "sub-01" / "anat"
    magnitude = nib.load(anat / "sub-01_echo-1_part-mag_MEGRE.nii.gz")
    for echo, te_ms in enumerate(ECHO_TIMES_MS, start=1):
        path = anat / f"sub-01_echo-{echo}_part-phase_MEGRE.nii.gz"
        np.testing.assert_allclose(nib.load(path).affine, magnitude.affine, atol=1e-4)
        assert nib.load(path).get_data_dtype() == np.int16  # stored integers kept, only the header rescaled
        assert_phase_matches_plant(path, te_ms, tolerance_rad=ONE_LEVEL_RAD + 1e-6)


def test_converted_dataset_passes_qsmiron_validation(siemens):
    _, bids, _, _ = siemens
    subjects = discover_bids(bids)
    assert [s.participant_id for s in subjects] == ["sub-01"]
    assert validate_dataset(bids, subjects) == []
    assert subjects[0].echo_times_s == pytest.approx([0.004, 0.009, 0.014])


def test_convert_never_modifies_the_dicom_folder(siemens):
    folder, _, _, before = siemens
    assert folder_fingerprint(folder) == before


def test_philips_classic_one_series_number_milliradians_become_radians(tmp_path):
    write_gre(tmp_path / "dicom", Study("PH1"), vendor="PHILIPS", number=1401)
    report = convert_dicom_to_bids(tmp_path / "dicom", tmp_path / "bids")
    assert report.converted[0].source == "series 1401 (gre_me_qsm)" and report.converted[0].participant_id == "sub-PH1"
    anat = tmp_path / "bids" / "sub-PH1" / "anat"
    for echo, te_ms in enumerate(ECHO_TIMES_MS, start=1):
        sidecar = json.loads((anat / f"sub-PH1_echo-{echo}_part-phase_MEGRE.json").read_text())
        assert sidecar["Units"] == "rad" and sidecar["PhaseScaling"]["Method"] == "milliradians"
        assert "RescaleIntercept -3142" in sidecar["PhaseScaling"]["Description"]
        # Stored levels are 2 pi / 4095 rad apart: the error is half a level at most.
        assert_phase_matches_plant(anat / f"sub-PH1_echo-{echo}_part-phase_MEGRE.nii.gz", te_ms,
                                   tolerance_rad=ONE_LEVEL_RAD)


def test_ge_phase_in_signed_milliradians_becomes_radians(tmp_path):
    write_series(tmp_path / "dicom", Study("GE1"), vendor="GE", number=3, kinds=("M", "P"))
    report = convert_dicom_to_bids(tmp_path / "dicom", tmp_path / "bids")
    assert report.converted[0].manufacturer == "GE"
    anat = tmp_path / "bids" / "sub-GE1" / "anat"
    for echo, te_ms in enumerate(ECHO_TIMES_MS, start=1):
        assert json.loads((anat / f"sub-GE1_echo-{echo}_part-phase_MEGRE.json").read_text())["PhaseScaling"][
            "Method"] == "milliradians"
        assert_phase_matches_plant(anat / f"sub-GE1_echo-{echo}_part-phase_MEGRE.nii.gz", te_ms,
                                   tolerance_rad=0.5e-3 + 1e-6)  # rounding to whole milliradians


def test_ge_real_and_imaginary_with_slice_alternating_sign_become_magnitude_and_phase(tmp_path):
    write_series(tmp_path / "dicom", Study("GE2"), vendor="GE", number=4, kinds=("R", "I"), chopped=True)
    convert_dicom_to_bids(tmp_path / "dicom", tmp_path / "bids")
    anat = tmp_path / "bids" / "sub-GE2" / "anat"
    sidecar = json.loads((anat / "sub-GE2_echo-1_part-phase_MEGRE.json").read_text())
    scaling = sidecar["PhaseScaling"]
    assert scaling["Method"] == "complex" and "every second slice" in scaling["Description"]
    for echo, te_ms in enumerate(ECHO_TIMES_MS, start=1):
        # |z| >= 700 stored as whole numbers: the angle is off by under 1 / 700 rad.
        assert_phase_matches_plant(anat / f"sub-GE2_echo-{echo}_part-phase_MEGRE.nii.gz", te_ms, tolerance_rad=1.5e-3)
        magnitude = nib.load(anat / f"sub-GE2_echo-{echo}_part-mag_MEGRE.nii.gz").get_fdata()
        np.testing.assert_allclose(magnitude, 1000 * np.exp(-te_ms / 40), atol=1.0)
    assert nib.load(anat / "sub-GE2_echo-1_part-mag_MEGRE.nii.gz").shape == SHAPE


def test_convert_takes_the_subject_label_from_the_sanitised_patient_id_and_a_given_session(siemens, tmp_path):
    folder = siemens[0]
    report = convert_dicom_to_bids(folder, tmp_path / "bids", session="pre")
    assert report.written[0] == tmp_path / "bids/sub-P007/ses-pre/anat/sub-P007_ses-pre_echo-1_part-mag_MEGRE.nii.gz"
    subjects = discover_bids(tmp_path / "bids")
    assert [(s.participant_id, s.session) for s in subjects] == [("sub-P007", "ses-pre")]
    assert [p for p in validate_dataset(tmp_path / "bids", subjects) if p.fatal] == []


def test_convert_again_skips_what_is_already_converted(siemens):
    folder, bids, _, _ = siemens
    written = bids / "sub-01" / "anat" / "sub-01_echo-1_part-mag_MEGRE.nii.gz"
    before = written.stat().st_mtime_ns
    with pytest.raises(InputError, match="no multi-echo GRE") as info:
        convert_dicom_to_bids(folder, bids, subject="01")
    assert "already converted" in info.value.report.summary()
    assert written.stat().st_mtime_ns == before


def test_convert_adds_a_subject_to_an_existing_participants_tsv_keeping_rows_and_columns(siemens, tmp_path):
    bids = tmp_path / "bids"
    bids.mkdir()
    (bids / "participants.tsv").write_text("participant_id\tage\tscore\nsub-01\t40\t7\n")
    convert_dicom_to_bids(siemens[0], bids, subject="02")
    assert (bids / "participants.tsv").read_text().splitlines() == [
        "participant_id\tage\tscore\tsex\tgroup", "sub-01\t40\t7\tn/a\tn/a", "sub-02\t45\tn/a\tF\tn/a"]


def test_convert_without_dicom_files_says_so(tmp_path):
    folder = tmp_path / "notdicom"
    folder.mkdir()
    (folder / "readme.txt").write_text("no images here")
    with pytest.raises(InputError, match="no DICOM images found") as info:
        convert_dicom_to_bids(folder, tmp_path / "bids")
    assert info.value.path == str(folder)


def test_convert_into_a_file_says_so_before_reading_the_export(siemens, tmp_path):
    target = tmp_path / "bids"
    target.write_text("not a folder")
    with pytest.raises(InputError, match="exists and is not a folder") as info:
        convert_dicom_to_bids(siemens[0], target)
    assert info.value.path == str(target)


def test_convert_magnitude_only_is_skipped_with_the_reason(tmp_path):
    write_series(tmp_path / "magonly", Study("M1"), vendor="SIEMENS", kinds=("M",))
    with pytest.raises(InputError, match="no multi-echo GRE") as info:
        convert_dicom_to_bids(tmp_path / "magonly", tmp_path / "bids")
    assert "magnitude without phase" in info.value.report.summary()
    assert not (tmp_path / "bids").exists()  # the folder this call made is not left behind, empty
    (tmp_path / "kept").mkdir()
    (tmp_path / "kept" / "notes.txt").write_text("mine")
    with pytest.raises(InputError, match="no multi-echo GRE"):
        convert_dicom_to_bids(tmp_path / "magonly", tmp_path / "kept")
    assert [p.name for p in (tmp_path / "kept").iterdir()] == ["notes.txt"]  # one that existed stays


def test_a_dcm2niix_failure_skips_the_acquisition_with_its_message(siemens, tmp_path, monkeypatch):
    fake = tmp_path / "dcm2niix"
    fake.write_text("#!/bin/sh\necho 'Error: simulated crash' >&2\nexit 1\n")
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setattr("qsmiron.io.dicom.dcm2niix.find_dcm2niix", lambda: fake)
    with pytest.raises(InputError) as info:
        convert_dicom_to_bids(siemens[0], tmp_path / "bids", subject="01")
    assert "dcm2niix failed with exit code 1: Error: simulated crash" in info.value.report.summary()


def test_converted_vendor_datasets_pass_the_bids_validator_with_zero_errors(tmp_path):
    from validator_helper import describe, validate

    write_gre(tmp_path / "dicom" / "siemens", Study("S1"), vendor="SIEMENS")
    write_gre(tmp_path / "dicom" / "philips", Study("P1"), vendor="PHILIPS")
    write_series(tmp_path / "dicom" / "ge", Study("G1"), vendor="GE", kinds=("R", "I"), chopped=True)
    report = convert_dicom_to_bids(tmp_path / "dicom", tmp_path / "bids")
    assert len(report.converted) == 3
    errors, _ = validate(tmp_path / "bids")
    assert errors == [], describe(errors)


def test_convert_command_prints_the_summary_and_fails_in_one_line_when_nothing_converts(siemens, tmp_path, capsys):
    from qsmiron.cli import main

    assert main(["convert", str(siemens[0]), str(tmp_path / "bids"), "--subject", "01"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("found: 60 DICOM files (0 other files ignored), 1 patients, 1 studies, 2 series")
    assert "sub-01: series 5 (gre_me_qsm) + series 6 (gre_me_qsm_PHA); Siemens; 3 echoes (TE 4, 9, 14 ms)" in out
    assert main(["convert", str(siemens[0]), str(tmp_path / "bids"), "--subject", "01"]) == 2
    captured = capsys.readouterr()
    assert "already converted" in captured.out
    assert len(captured.err.strip().splitlines()) == 1 and "no multi-echo GRE" in captured.err


@pytest.mark.parametrize("inside", ["", "bids", "P 007/bids"])
def test_convert_refuses_a_bids_folder_that_is_the_dicom_folder_or_inside_it(inside, siemens, tmp_path, capsys):
    import shutil

    from qsmiron.cli import main

    export = tmp_path / "export"
    shutil.copytree(siemens[0], export)
    before, entries = folder_fingerprint(export), sorted(export.rglob("*"))
    bids = export / inside if inside else export
    code = main(["convert", str(export), str(bids), "--subject", "01"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1, err
    assert err.startswith(f"qsmiron convert: error: {bids}: ") and "input" in err, err
    assert folder_fingerprint(export) == before and sorted(export.rglob("*")) == entries


def _damaged_export(folder, damage):
    """A Siemens export with one magnitude slice file removed, cut short, or replaced by garbage."""
    write_gre(folder, Study("D1"), vendor="SIEMENS")
    victim = sorted(folder.glob("MR.5.M2.*.dcm"))[4]
    if damage == "missing":
        victim.unlink()
    elif damage == "cut_in_header":
        victim.write_bytes(victim.read_bytes()[:700])
    elif damage == "cut_in_pixels":
        victim.write_bytes(victim.read_bytes()[:-100])
    else:
        victim.write_bytes(b"\0" * 128 + b"DICM" + bytes(range(256)) * 4)
    return victim


@pytest.mark.parametrize("damage, file_reason", [("missing", None), ("cut_in_header", "truncated"),
                                                 ("cut_in_pixels", "truncated"),
                                                 ("garbage", "looks like DICOM but its header cannot be read")])
def test_an_acquisition_with_a_missing_or_damaged_slice_file_is_skipped_and_the_file_reported(damage, file_reason,
                                                                                             tmp_path):
    victim = _damaged_export(tmp_path / "dicom", damage)
    with pytest.raises(InputError, match="no multi-echo GRE") as info:
        convert_dicom_to_bids(tmp_path / "dicom", tmp_path / "bids")
    summary = info.value.report.summary()
    assert ("unequal numbers of slices (mag at TE 9 ms 9, the others 10): DICOM files missing or unreadable"
            in summary), summary
    if file_reason is not None:
        assert f"  {victim}: {file_reason}" in summary and info.value.report.n_other_files == 0, summary
    assert not list((tmp_path / "bids").rglob("*.nii.gz"))


def test_converted_volumes_on_different_grids_are_skipped_even_when_the_slice_count_is_not_checked(tmp_path,
                                                                                                  monkeypatch):
    # Enhanced files are only compared after conversion: the same check on what dcm2niix wrote.
    _damaged_export(tmp_path / "dicom", "missing")
    monkeypatch.setattr("qsmiron.io.dicom.sorting.why_incomplete", lambda acquisition: None)
    with pytest.raises(InputError, match="no multi-echo GRE") as info:
        convert_dicom_to_bids(tmp_path / "dicom", tmp_path / "bids")
    summary = info.value.report.summary()
    assert "the converted volumes are not on one grid (mag echo 2 " in summary and "slices missing" in summary, summary
    assert not list((tmp_path / "bids").rglob("*.nii.gz"))


@pytest.mark.parametrize("name, content, words", [
    ("participants.tsv", b"participant_id\tage\n\xff\xfe\n", "cannot be read as a tab-separated table"),
    ("participants.tsv", b"subject\tage\nsub-01\t40\n", "has no participant_id column"),
    ("participants.json", b"[]\n", "is not a JSON object"),
    ("participants.json", b"\xff\xfe{", "cannot be read as JSON"),
    ("sub-02/sub-02_sessions.tsv", b"session_id\tage\n\xff\n", "cannot be read as a tab-separated table"),
])
def test_an_unreadable_participant_file_in_the_bids_folder_stops_convert_before_any_image(
        name, content, words, siemens, tmp_path, capsys):
    """Found after the images (a list in participants.json was a TypeError with a traceback), the
    error left them converted but not in participants.tsv, and the next run skipped them."""
    from qsmiron.cli import main

    bids = tmp_path / "bids"
    (bids / name).parent.mkdir(parents=True)
    (bids / name).write_bytes(content)
    before = folder_fingerprint(bids)
    code = main(["convert", str(siemens[0]), str(bids), "--subject", "02", "--session", "1"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert err.startswith(f"qsmiron convert: error: {bids / name}: {words}"), err
    assert folder_fingerprint(bids) == before and not list(bids.rglob("*.nii.gz"))
