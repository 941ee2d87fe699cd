"""BIDS discovery and dataset-level validation of multi-echo GRE inputs."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from qsmiron.errors import InputError
from qsmiron.io.bids import Problem, discover_bids, parse_bids_name
from qsmiron.io.bids_validation import format_problems, valid_subjects, validate_dataset

TES = (0.004, 0.008, 0.012)


def write_image(path: Path, data=None, affine=None, sidecar=None, shape=(6, 5, 4)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = np.random.default_rng(0).normal(size=shape).astype(np.float32) if data is None else data
    nib.save(nib.Nifti1Image(data, np.diag([2.0, 2.0, 2.0, 1.0]) if affine is None else affine), str(path))
    if sidecar is not None:
        path.with_name(path.name.replace(".nii.gz", ".json").replace(".nii", ".json")).write_text(json.dumps(sidecar))
    return path


def write_subject(root: Path, label: str, *, session=None, mag_echoes=(1, 2, 3), phase_echoes=(1, 2, 3),
                  tes_mag=TES, tes_phase=TES, field=3.0, drop_fields=(), ext=".nii.gz", shape=(6, 5, 4)) -> Path:
    anat = root / f"sub-{label}" / (f"ses-{session}" if session else "") / "anat"
    prefix = f"sub-{label}" + (f"_ses-{session}" if session else "")
    for part, echoes, tes in (("mag", mag_echoes, tes_mag), ("phase", phase_echoes, tes_phase)):
        for echo in echoes:
            sidecar = {"EchoTime": tes[echo - 1], "MagneticFieldStrength": field}
            for name in drop_fields:
                sidecar.pop(name, None)
            write_image(anat / f"{prefix}_echo-{echo}_part-{part}_MEGRE{ext}", sidecar=sidecar, shape=shape)
    return anat


def write_participants(root: Path, labels) -> None:
    root.mkdir(parents=True, exist_ok=True)
    (root / "participants.tsv").write_text("participant_id\tgroup\n" + "".join(f"sub-{l}\tMOH\n" for l in labels))


def test_parse_bids_name_splits_entities_suffix_and_extension():
    assert parse_bids_name("sub-01_ses-2_echo-10_part-phase_MEGRE.nii.gz") == (
        {"sub": "01", "ses": "2", "echo": "10", "part": "phase"}, "MEGRE", ".nii.gz")
    assert parse_bids_name("sub-01 echo.nii") is None
    assert parse_bids_name("notes.txt") is None


def test_discover_orders_echoes_numerically_and_reads_sidecars(tmp_path):
    tes = tuple(0.002 * n for n in range(1, 12))
    write_subject(tmp_path, "01", mag_echoes=range(1, 12), phase_echoes=range(1, 12), tes_mag=tes, tes_phase=tes,
                  ext=".nii")
    write_image(tmp_path / "sub-01" / "anat" / "sub-01_T1w.nii.gz")
    (unit,) = discover_bids(tmp_path)
    assert unit.participant_id == "sub-01" and unit.session is None and unit.label == "sub-01"
    assert unit.echo_numbers == list(range(1, 12))
    assert [p.name for p in unit.magnitude][9] == "sub-01_echo-10_part-mag_MEGRE.nii"
    assert unit.echo_times_s == pytest.approx(tes)
    assert unit.field_strength_t == 3.0
    assert unit.t1w.name == "sub-01_T1w.nii.gz"
    assert len(unit.input_files()) == 44  # 22 images and their sidecars


def test_discover_applies_bids_inheritance_with_the_nearest_sidecar_winning(tmp_path):
    anat = write_subject(tmp_path, "01", drop_fields=("MagneticFieldStrength",))
    (tmp_path / "MEGRE.json").write_text(json.dumps({"MagneticFieldStrength": 2.89, "EchoTime": 99}))
    (tmp_path / "part-phase_MEGRE.json").write_text(json.dumps({"Units": "rad"}))
    (unit,) = discover_bids(tmp_path)
    phase1 = anat / "sub-01_echo-1_part-phase_MEGRE.nii.gz"
    assert unit.metadata[phase1] == {"MagneticFieldStrength": 2.89, "EchoTime": 0.004, "Units": "rad"}
    assert [p.name for p in unit.sidecar_files[phase1]] == [
        "MEGRE.json", "part-phase_MEGRE.json", "sub-01_echo-1_part-phase_MEGRE.json"]
    assert "Units" not in unit.metadata[anat / "sub-01_echo-1_part-mag_MEGRE.nii.gz"]
    assert validate_dataset(tmp_path, [unit], check_participants=False) == []


def test_discover_finds_sessions_as_separate_units(tmp_path):
    write_subject(tmp_path, "01", session="pre")
    write_subject(tmp_path, "01", session="post")
    units = discover_bids(tmp_path)
    assert [(u.participant_id, u.session, u.label) for u in units] == [
        ("sub-01", "ses-post", "sub-01_ses-post"), ("sub-01", "ses-pre", "sub-01_ses-pre")]
    assert units[0].relative_dir == Path("sub-01/ses-post")


def test_discover_refuses_a_missing_folder_a_non_bids_folder_and_an_absent_label(tmp_path):
    with pytest.raises(InputError, match="BIDS folder not found"):
        discover_bids(tmp_path / "nope")
    with pytest.raises(InputError, match="no sub-\\* folder"):
        discover_bids(tmp_path)
    write_subject(tmp_path, "01")
    with pytest.raises(InputError, match="sub-07"):
        discover_bids(tmp_path, participant_labels=["01", "07"])
    assert [u.participant_id for u in discover_bids(tmp_path, participant_labels=["sub-01"])] == ["sub-01"]


@pytest.fixture()
def broken_dataset(tmp_path):
    """One good subject and one of every kind of problem."""
    write_subject(tmp_path, "01")
    write_subject(tmp_path, "02", mag_echoes=(1, 3), phase_echoes=(1, 3))          # echo 2 missing
    write_subject(tmp_path, "03", phase_echoes=())                                  # no phase
    write_subject(tmp_path, "04", tes_phase=(0.004, 0.0085, 0.012))                 # TE mag != phase
    write_subject(tmp_path, "05", drop_fields=("EchoTime",))                         # no EchoTime
    anat = write_subject(tmp_path, "06", shape=(32, 32, 16))                         # corrupt phase
    phase = anat / "sub-06_echo-2_part-phase_MEGRE.nii.gz"
    phase.write_bytes(phase.read_bytes()[:30000])  # header intact, voxel data truncated
    write_subject(tmp_path, "07", tes_mag=(4, 8, 12), tes_phase=(4, 8, 12))          # milliseconds
    write_subject(tmp_path, "08", phase_echoes=(1, 2))                               # echo 3 has no phase
    write_subject(tmp_path, "09")                                                    # not in participants.tsv
    write_subject(tmp_path, "10", tes_mag=(0.004, 0.012, 0.008), tes_phase=(0.004, 0.012, 0.008))  # order
    write_subject(tmp_path, "11", drop_fields=("MagneticFieldStrength",))
    (tmp_path / "sub-12" / "anat").mkdir(parents=True)                               # nothing at all
    write_participants(tmp_path, ["01", "02", "03", "04", "05", "06", "07", "08", "10", "11", "12"])
    return tmp_path


def test_validate_lists_every_problem_of_the_dataset_at_once(broken_dataset):
    units = discover_bids(broken_dataset)
    problems = validate_dataset(broken_dataset, units)
    by_subject: dict[str, list[Problem]] = {}
    for problem in problems:
        by_subject.setdefault(problem.participant_id, []).append(problem)
    expected = {
        "sub-02": "echo 2 missing",
        "sub-03": "no phase images",
        "sub-04": "echo 2: EchoTime differs between magnitude (0.008 s) and phase (0.0085 s)",
        "sub-05": "sidecar has no EchoTime",
        "sub-06": "truncated or corrupt gzip file",
        "sub-07": "looks like milliseconds",
        "sub-08": "echo 3 has magnitude but no phase",
        "sub-09": "not listed in participants.tsv",
        "sub-10": "do not increase with the echo number",
        "sub-11": "sidecar has no MagneticFieldStrength",
        "sub-12": "no multi-echo GRE images",
    }
    assert "sub-01" not in by_subject
    assert set(by_subject) == set(expected)
    for participant_id, text in expected.items():
        messages = " | ".join(p.message for p in by_subject[participant_id])
        assert text in messages, (participant_id, messages)
    corrupt = [p for p in by_subject["sub-06"] if "truncated or corrupt gzip" in p.message]
    assert corrupt[0].path.name == "sub-06_echo-2_part-phase_MEGRE.nii.gz"
    assert all(p.fatal for p in by_subject["sub-05"]) and not any(p.fatal for p in by_subject["sub-09"])
    assert [u.participant_id for u in valid_subjects(units, problems)] == ["sub-01", "sub-09"]
    text = format_problems(problems)
    assert text.splitlines()[0].startswith("sub-02: error: echo 2 missing")
    assert "sub-09: warning: not listed in participants.tsv" in text


def test_validate_header_only_misses_truncated_data_but_full_check_catches_it(broken_dataset):
    units = [u for u in discover_bids(broken_dataset) if u.participant_id == "sub-06"]
    assert validate_dataset(broken_dataset, units, check_data=False, check_participants=False) == []
    assert len(validate_dataset(broken_dataset, units, check_participants=False)) == 1


def test_validate_reports_grid_mismatch_and_nan_images(tmp_path):
    anat = write_subject(tmp_path, "01")
    write_image(anat / "sub-01_echo-2_part-phase_MEGRE.nii.gz", affine=np.diag([2.0, 2.0, 2.5, 1.0]),
                sidecar={"EchoTime": 0.008, "MagneticFieldStrength": 3.0})
    bad = np.zeros((6, 5, 4), np.float32)
    bad[0, 0, 0] = np.nan
    write_image(anat / "sub-01_echo-3_part-mag_MEGRE.nii.gz", data=bad,
                sidecar={"EchoTime": 0.012, "MagneticFieldStrength": 3.0})
    problems = validate_dataset(tmp_path, discover_bids(tmp_path), check_participants=False)
    messages = sorted(p.message for p in problems)
    assert len(messages) == 2
    assert "grid differs" in messages[0] and "NaN" in messages[1]


def test_validate_flags_a_missing_participants_tsv_as_a_warning(tmp_path):
    write_subject(tmp_path, "01")
    (problem,) = validate_dataset(tmp_path, discover_bids(tmp_path))
    assert problem.participant_id is None and not problem.fatal and "participants.tsv is missing" in problem.message


def test_discover_reports_two_series_and_mismatched_names(tmp_path):
    anat = write_subject(tmp_path, "01")
    write_image(anat / "sub-01_acq-fast_echo-1_part-mag_MEGRE.nii.gz", sidecar={"EchoTime": 0.004})
    write_subject(tmp_path, "02")
    write_image(tmp_path / "sub-02" / "anat" / "sub-03_echo-4_part-mag_MEGRE.nii.gz")
    write_participants(tmp_path, ["01", "02"])
    problems = validate_dataset(tmp_path, discover_bids(tmp_path))
    assert [p.participant_id for p in problems] == ["sub-01", "sub-02"]
    assert "several MEGRE series" in problems[0].message
    assert "do not match its folder" in problems[1].message


@pytest.mark.parametrize("text, words", [("{\"Name\": \"x\",", "is not valid JSON"),
                                         ("[1, 2]", "JSON object"),
                                         ("{\"BIDSVersion\": \"1.9.0\"}", "has no Name")])
def test_a_broken_dataset_description_is_an_error_naming_it(tmp_path, text, words):
    write_subject(tmp_path, "01")
    (tmp_path / "dataset_description.json").write_text(text)
    with pytest.raises(InputError, match=words) as caught:
        discover_bids(tmp_path)
    assert caught.value.path == str(tmp_path / "dataset_description.json")


def test_an_echo_without_any_sidecar_is_named_as_such_not_as_a_json_missing_a_key(tmp_path):
    anat = write_subject(tmp_path, "01")
    write_participants(tmp_path, ["01"])
    (anat / "sub-01_echo-2_part-phase_MEGRE.json").unlink()
    problems = validate_dataset(tmp_path, discover_bids(tmp_path))
    (problem,) = [p for p in problems if "sidecar" in p.message]
    assert problem.path.name == "sub-01_echo-2_part-phase_MEGRE.nii.gz"
    assert "has no JSON sidecar (expected sub-01_echo-2_part-phase_MEGRE.json)" in problem.message


@pytest.mark.parametrize("part, value", [("mag", float("nan")), ("phase", float("nan")), ("phase", float("inf"))])
def test_a_sidecar_echo_time_that_is_not_finite_is_named_by_the_validation(tmp_path, part, value):
    """JSON's NaN passed 'value <= 0' and the magnitude-phase comparison: the subject went ahead with
    the other part's echo time, or failed at its recon with the echo times blamed on the command line."""
    anat = write_subject(tmp_path, "01")
    sidecar = anat / f"sub-01_echo-2_part-{part}_MEGRE.json"
    sidecar.write_text(json.dumps({"EchoTime": value, "MagneticFieldStrength": 3.0}))
    problems = validate_dataset(tmp_path, discover_bids(tmp_path), check_participants=False)
    assert [(p.path, p.message, p.fatal) for p in problems] == [
        (sidecar, f"EchoTime {value!r} is not a positive number of seconds", True)]


def test_a_bare_label_in_participants_tsv_lists_its_subject(tmp_path):
    """The statistics read ``01`` as sub-01; the validation warned 'sub-01: not listed in participants.tsv'."""
    write_subject(tmp_path, "01")
    write_subject(tmp_path, "02")
    (tmp_path / "participants.tsv").write_text("participant_id\tgroup\n01\tMOH\n")
    problems = validate_dataset(tmp_path, discover_bids(tmp_path))
    assert [(p.participant_id, p.message) for p in problems] == [
        ("sub-02", "not listed in participants.tsv: the group analysis will leave it out")]
