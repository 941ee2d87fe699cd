"""DICOM to BIDS with dcm2niix, on a synthetic Siemens-like multi-echo GRE written with pydicom."""

from __future__ import annotations

import hashlib
import json
import stat
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

pydicom = pytest.importorskip("pydicom")
from pydicom.dataset import Dataset, FileMetaDataset  # noqa: E402
from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid  # noqa: E402

from qsmiron.errors import InputError  # noqa: E402
from qsmiron.io.bids import discover_bids
from qsmiron.io.bids_validation import validate_dataset  # noqa: E402
from qsmiron.io.dicom import convert_dicom_to_bids  # noqa: E402

ECHO_TIMES_MS = (4.0, 9.0, 14.0)
SHAPE = (24, 20, 10)  # columns, rows, slices
VOXEL_MM = 2.0
ORIGIN_LPS = (-24.0, -20.0, -10.0)
PHASE_OFFSET_RAD = 0.3


def planted_field_hz(x_lps_mm, y_lps_mm):
    """The planted off-resonance: a ramp along the DICOM (LPS) x and y axes, so flips show."""
    return 2.0 * (x_lps_mm - ORIGIN_LPS[0]) + 1.0 * (y_lps_mm - ORIGIN_LPS[1])


def planted_phase_rad(x_lps_mm, y_lps_mm, te_s):
    field = planted_field_hz(x_lps_mm, y_lps_mm)
    return np.angle(np.exp(1j * (2 * np.pi * field * te_s + PHASE_OFFSET_RAD)))


def write_gre_dicom(folder: Path, *, parts=("M", "P"), echo_times_ms=ECHO_TIMES_MS, seed=0) -> None:
    """A 3D multi-echo GRE as Siemens exports it: one magnitude and one phase series, one file per slice."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    nx, ny, nz = SHAPE
    x_lps = ORIGIN_LPS[0] + VOXEL_MM * np.arange(nx)
    y_lps = ORIGIN_LPS[1] + VOXEL_MM * np.arange(ny)
    study, frame = generate_uid(), generate_uid()
    for series_number, part in ((5, "M"), (6, "P")):
        if part not in parts:
            continue
        series_uid = generate_uid()
        instance = 0
        for echo, te_ms in enumerate(echo_times_ms, start=1):
            if part == "M":
                volume = 1000 * np.exp(-te_ms / 40) + rng.normal(0, 5, SHAPE)
                stored = np.round(volume).clip(0, 4095).astype(np.uint16)
            else:
                phase = planted_phase_rad(x_lps[:, None], y_lps[None, :], te_ms * 1e-3)[:, :, None] * np.ones(SHAPE)
                # Siemens: stored 0..4095, RescaleSlope 2, RescaleIntercept -4096 -> -4096..4094.
                stored = np.round((phase * 4096 / np.pi + 4096) / 2).clip(0, 4095).astype(np.uint16)
            for k in range(nz):
                instance += 1
                meta = FileMetaDataset()
                meta.MediaStorageSOPClassUID = MRImageStorage
                meta.MediaStorageSOPInstanceUID = generate_uid()
                meta.TransferSyntaxUID = ExplicitVRLittleEndian
                ds = Dataset()
                ds.file_meta = meta
                ds.SOPClassUID = MRImageStorage
                ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
                ds.Modality = "MR"
                ds.Manufacturer = "SIEMENS"
                ds.ManufacturerModelName = "Prisma"
                ds.MagneticFieldStrength = 3.0
                ds.PatientName = "Phantom^Test"
                ds.PatientID = "P001"
                ds.PatientPosition = "HFS"
                ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series_uid, frame
                ds.StudyDate = ds.SeriesDate = "20240101"
                ds.StudyTime, ds.SeriesTime, ds.AcquisitionTime = "120000", "120100", "120100.000000"
                ds.SeriesNumber, ds.InstanceNumber, ds.AcquisitionNumber = series_number, instance, 1
                ds.ProtocolName = "gre_me_qsm"
                ds.SeriesDescription = "gre_me_qsm" + ("_PHA" if part == "P" else "")
                ds.ImageType = ["ORIGINAL", "PRIMARY", part, "ND"]
                ds.ScanningSequence, ds.SequenceVariant, ds.MRAcquisitionType = "GR", "SP", "3D"
                ds.EchoTime, ds.EchoNumbers = te_ms, echo
                ds.RepetitionTime, ds.FlipAngle, ds.ImagingFrequency = 30.0, 15, 123.2
                ds.ImagePositionPatient = [ORIGIN_LPS[0], ORIGIN_LPS[1], ORIGIN_LPS[2] + VOXEL_MM * k]
                ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
                ds.PixelSpacing = [VOXEL_MM, VOXEL_MM]
                ds.SliceThickness = ds.SpacingBetweenSlices = VOXEL_MM
                ds.SliceLocation = ORIGIN_LPS[2] + VOXEL_MM * k
                ds.Rows, ds.Columns = ny, nx
                ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
                ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
                if part == "P":
                    ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = -4096, 2, "US"
                ds.PixelData = np.ascontiguousarray(stored[:, :, k].T).tobytes()  # rows are y
                ds.save_as(folder / f"MR.{series_number}.{echo}.{k + 1:03d}.dcm", enforce_file_format=True)


def folder_fingerprint(folder: Path) -> dict[str, tuple[str, int]]:
    return {str(p.relative_to(folder)): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def dicom_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("dicom") / "patient007"
    write_gre_dicom(folder)
    return folder


@pytest.fixture(scope="module")
def converted(dicom_dir, tmp_path_factory):
    bids = tmp_path_factory.mktemp("bids") / "study"
    before = folder_fingerprint(dicom_dir)
    written = convert_dicom_to_bids(dicom_dir, bids, subject="01")
    return bids, written, before


def test_convert_writes_three_echoes_of_magnitude_and_phase_with_bids_names(converted):
    bids, written, _ = converted
    anat = bids / "sub-01" / "anat"
    expected = [anat / f"sub-01_echo-{e}_part-{p}_MEGRE.nii.gz" for p in ("mag", "phase") for e in (1, 2, 3)]
    assert written == expected
    for path in expected:
        assert path.exists() and path.with_name(path.name.replace(".nii.gz", ".json")).exists()
    assert not [p for p in bids.iterdir() if p.name.startswith(".")], "scratch folder left behind"
    description = json.loads((bids / "dataset_description.json").read_text())
    assert description["BIDSVersion"] and description["DatasetType"] == "raw"
    assert (bids / "participants.tsv").read_text().split() == ["participant_id", "sub-01"]


def test_convert_sidecars_give_echo_times_in_seconds_and_field_strength(converted):
    bids, _, _ = converted
    for part in ("mag", "phase"):
        times = []
        for echo in (1, 2, 3):
            sidecar = json.loads((bids / "sub-01" / "anat" / f"sub-01_echo-{echo}_part-{part}_MEGRE.json").read_text())
            times.append(sidecar["EchoTime"])
            assert sidecar["MagneticFieldStrength"] == pytest.approx(3.0)
            assert sidecar["EchoNumber"] == echo
            assert ("P" in sidecar["ImageType"]) == (part == "phase")
        assert times == pytest.approx([t * 1e-3 for t in ECHO_TIMES_MS], abs=1e-9)


def test_converted_dataset_passes_qsmiron_validation(converted):
    bids, _, _ = converted
    subjects = discover_bids(bids)
    assert [s.participant_id for s in subjects] == ["sub-01"]
    assert validate_dataset(bids, subjects) == []
    assert subjects[0].echo_times_s == pytest.approx([0.004, 0.009, 0.014])
    assert subjects[0].field_strength_t == pytest.approx(3.0)


def test_converted_phase_spans_siemens_range_and_maps_to_planted_phase_within_one_step(converted):
    """value * pi / 4096 must give back the planted phase at each voxel's world position."""
    bids, _, _ = converted
    anat = bids / "sub-01" / "anat"
    magnitude = nib.load(anat / "sub-01_echo-1_part-mag_MEGRE.nii.gz")
    for echo, te_ms in enumerate(ECHO_TIMES_MS, start=1):
        image = nib.load(anat / f"sub-01_echo-{echo}_part-phase_MEGRE.nii.gz")
        assert image.shape == SHAPE
        np.testing.assert_allclose(image.affine, magnitude.affine, atol=1e-4)
        values = image.get_fdata()
        assert values.min() >= -4096 and values.max() <= 4094
        ijk = np.stack(np.meshgrid(*[np.arange(n) for n in SHAPE], indexing="ij"), axis=-1)
        xyz_ras = ijk @ image.affine[:3, :3].T + image.affine[:3, 3]
        expected = planted_phase_rad(-xyz_ras[..., 0], -xyz_ras[..., 1], te_ms * 1e-3)  # RAS = -LPS in x, y
        error = np.angle(np.exp(1j * (values * np.pi / 4096 - expected)))
        assert np.abs(error).max() <= 2 * np.pi / 4096 + 1e-9


def test_convert_never_modifies_the_dicom_folder(dicom_dir, converted):
    _, _, before = converted
    assert folder_fingerprint(dicom_dir) == before


def test_convert_takes_the_subject_label_from_the_folder_name_and_adds_a_session(dicom_dir, tmp_path):
    written = convert_dicom_to_bids(dicom_dir, tmp_path / "bids", session="pre")
    assert written[0] == tmp_path / "bids/sub-patient007/ses-pre/anat/sub-patient007_ses-pre_echo-1_part-mag_MEGRE.nii.gz"
    subjects = discover_bids(tmp_path / "bids")
    assert [(s.participant_id, s.session) for s in subjects] == [("sub-patient007", "ses-pre")]
    assert [p for p in validate_dataset(tmp_path / "bids", subjects) if p.fatal] == []


def test_convert_refuses_to_overwrite_an_existing_subject(converted, dicom_dir):
    bids, written, _ = converted
    before = written[0].stat().st_mtime_ns
    with pytest.raises(InputError, match="already has MEGRE"):
        convert_dicom_to_bids(dicom_dir, bids, subject="01")
    assert written[0].stat().st_mtime_ns == before


def test_convert_adds_a_second_subject_to_participants_tsv_keeping_columns(dicom_dir, tmp_path):
    bids = tmp_path / "bids"
    bids.mkdir()
    (bids / "participants.tsv").write_text("participant_id\tage\nsub-01\t40\n")
    convert_dicom_to_bids(dicom_dir, bids, subject="02")
    assert (bids / "participants.tsv").read_text() == "participant_id\tage\nsub-01\t40\nsub-02\tn/a\n"


def test_convert_without_dicom_files_says_so(tmp_path):
    folder = tmp_path / "notdicom"
    folder.mkdir()
    (folder / "readme.txt").write_text("no images here")
    with pytest.raises(InputError, match="no DICOM images found") as info:
        convert_dicom_to_bids(folder, tmp_path / "bids")
    assert info.value.path == str(folder)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError, match="no DICOM images found"):
        convert_dicom_to_bids(empty, tmp_path / "bids")


def test_convert_magnitude_only_reports_missing_phase(tmp_path):
    folder = tmp_path / "magonly"
    write_gre_dicom(folder, parts=("M",))
    with pytest.raises(InputError, match="no phase images"):
        convert_dicom_to_bids(folder, tmp_path / "bids", subject="01")
    assert not (tmp_path / "bids" / "sub-01").exists()


def test_convert_reports_dcm2niix_failure_with_its_message(dicom_dir, tmp_path, monkeypatch):
    fake = tmp_path / "dcm2niix"
    fake.write_text("#!/bin/sh\necho 'Error: simulated crash' >&2\nexit 1\n")
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setattr("qsmiron.io.dicom.find_dcm2niix", lambda: fake)
    with pytest.raises(InputError, match="dcm2niix failed with exit code 1: Error: simulated crash"):
        convert_dicom_to_bids(dicom_dir, tmp_path / "bids", subject="01")
