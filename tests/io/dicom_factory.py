"""Synthetic DICOM series as Siemens, Philips and GE export them (pydicom), with a planted phase.

The planted off-resonance is a ramp along the DICOM (LPS) x and y axes, so that a flipped or
transposed conversion shows; ``planted_phase_rad`` gives the phase every converted voxel must
hold at its world position.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid

ECHO_TIMES_MS = (4.0, 9.0, 14.0)
SHAPE = (24, 20, 10)  # columns, rows, slices
VOXEL_MM = 2.0
ORIGIN_LPS = (-24.0, -20.0, -10.0)
PHASE_OFFSET_RAD = 0.3
PHILIPS_SLOPE = 2000 * np.pi / 4095  # stored 0..4095 -> -3142..3142 mrad with intercept -3142


def planted_field_hz(x_lps_mm, y_lps_mm):
    return 2.0 * (x_lps_mm - ORIGIN_LPS[0]) + 1.0 * (y_lps_mm - ORIGIN_LPS[1])


def planted_phase_rad(x_lps_mm, y_lps_mm, te_s):
    field = planted_field_hz(x_lps_mm, y_lps_mm)
    return np.angle(np.exp(1j * (2 * np.pi * field * te_s + PHASE_OFFSET_RAD)))


def phase_volume_rad(te_ms: float) -> np.ndarray:
    x_lps = ORIGIN_LPS[0] + VOXEL_MM * np.arange(SHAPE[0])
    y_lps = ORIGIN_LPS[1] + VOXEL_MM * np.arange(SHAPE[1])
    return planted_phase_rad(x_lps[:, None], y_lps[None, :], te_ms * 1e-3)[:, :, None] * np.ones(SHAPE)


def magnitude_volume(te_ms: float, rng) -> np.ndarray:
    return 1000 * np.exp(-te_ms / 40) + rng.normal(0, 5, SHAPE)


class Study:
    """One visit of one patient: the identity and study fields every series of it shares."""

    def __init__(self, patient_id="P001", *, date="20240101", time="120000", age="045Y", sex="F",
                 birth_date="", field_strength=3.0):
        self.patient_id, self.date, self.time = patient_id, date, time
        self.age, self.sex, self.birth_date, self.field_strength = age, sex, birth_date, field_strength
        self.uid, self.frame = generate_uid(), generate_uid()


def _dataset(study: Study, series_uid: str, number: int, description: str, vendor: str) -> Dataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = MRImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = MRImageStorage, meta.MediaStorageSOPInstanceUID
    ds.Modality = "MR"
    ds.Manufacturer = {"SIEMENS": "SIEMENS", "PHILIPS": "Philips Medical Systems", "GE": "GE MEDICAL SYSTEMS"}[vendor]
    ds.ManufacturerModelName = "Model"
    ds.MagneticFieldStrength = study.field_strength
    ds.PatientName, ds.PatientID = f"{study.patient_id}^Test", study.patient_id
    for keyword, value in (("PatientAge", study.age), ("PatientSex", study.sex), ("PatientBirthDate", study.birth_date)):
        if value:
            setattr(ds, keyword, value)
    ds.PatientPosition = "HFS"
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study.uid, series_uid, study.frame
    ds.StudyDate = ds.SeriesDate = study.date
    ds.StudyTime, ds.SeriesTime, ds.AcquisitionTime = study.time, study.time, study.time + ".000000"
    ds.SeriesNumber, ds.AcquisitionNumber = number, 1
    ds.ProtocolName = ds.SeriesDescription = description
    ds.ScanningSequence, ds.SequenceVariant, ds.MRAcquisitionType = "GR", "SP", "3D"
    ds.RepetitionTime, ds.FlipAngle, ds.ImagingFrequency = 30.0, 15, 42.577 * study.field_strength
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.PixelSpacing = [VOXEL_MM, VOXEL_MM]
    ds.SliceThickness = ds.SpacingBetweenSlices = VOXEL_MM
    ds.Rows, ds.Columns = SHAPE[1], SHAPE[0]
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    return ds


def _stored(kind: str, te_ms: float, vendor: str, rng) -> tuple[np.ndarray, dict]:
    """Stored pixel values and the rescale/pixel attributes of one echo of one image kind."""
    if kind == "M":
        return np.round(magnitude_volume(te_ms, rng)).clip(0, 4095).astype(np.uint16), {}
    phase = phase_volume_rad(te_ms)
    if kind == "P" and vendor == "SIEMENS":  # 0..4095, slope 2, intercept -4096 -> -4096..4094
        stored = np.round((phase * 4096 / np.pi + 4096) / 2).clip(0, 4095)
        return stored.astype(np.uint16), {"RescaleIntercept": -4096, "RescaleSlope": 2, "RescaleType": "US"}
    if kind == "P" and vendor == "PHILIPS":  # milliradians after slope and intercept
        stored = np.round((phase * 1000 + 3142) / PHILIPS_SLOPE).clip(0, 4095)
        return stored.astype(np.uint16), {"RescaleIntercept": -3142, "RescaleSlope": PHILIPS_SLOPE,
                                          "RescaleType": "normalized"}
    if kind == "P":  # GE: signed milliradians
        return np.round(phase * 1000).astype(np.int16), {"PixelRepresentation": 1, "BitsStored": 16,
                                                         "HighBit": 15}
    z = 1000 * np.exp(-te_ms / 40) * np.exp(1j * phase)  # noise-free: real and imaginary must agree
    values = z.real if kind == "R" else z.imag
    return np.round(values).astype(np.int16), {"PixelRepresentation": 1, "BitsStored": 16, "HighBit": 15}


_IMAGE_TYPES = {
    "SIEMENS": {"M": ["ORIGINAL", "PRIMARY", "M", "ND"], "P": ["ORIGINAL", "PRIMARY", "P", "ND"]},
    "PHILIPS": {"M": ["ORIGINAL", "PRIMARY", "M_FFE", "M", "FFE"], "P": ["ORIGINAL", "PRIMARY", "PHASE MAP", "P", "FFE"]},
}
_GE_PRIVATE = {"M": 0, "P": 1, "R": 2, "I": 3}


def write_series(folder: Path, study: Study, *, vendor="SIEMENS", number=5, kinds=("M",),
                 echo_times_ms=ECHO_TIMES_MS, description="gre_me_qsm", seed=0, chopped=False,
                 scanning_sequence="GR", image_type=None, name=None) -> list[Path]:
    """One series: every kind ("M", "P", "R", "I") of every echo, one file per slice.

    ``chopped`` multiplies every second slice of real and imaginary by -1 (GE's slice-
    alternating sign). ``name(number, kind, echo, slice)`` gives the file's relative path.
    """
    rng = np.random.default_rng(seed)
    series_uid = generate_uid()
    written = []
    instance = 0
    for kind in kinds:
        for echo, te_ms in enumerate(echo_times_ms, start=1):
            stored, attributes = _stored(kind, te_ms, vendor, rng)
            for k in range(SHAPE[2]):
                instance += 1
                ds = _dataset(study, series_uid, number, description, vendor)
                ds.InstanceNumber = instance
                ds.ScanningSequence = scanning_sequence
                if image_type is not None:
                    ds.ImageType = image_type
                elif vendor == "GE":
                    ds.ImageType = ["ORIGINAL", "PRIMARY", "OTHER"]
                    ds.add_new((0x0043, 0x0010), "LO", "GEMS_PARM_01")
                    ds.add_new((0x0043, 0x102F), "SS", _GE_PRIVATE[kind])
                else:
                    ds.ImageType = _IMAGE_TYPES[vendor][kind]
                ds.EchoTime, ds.EchoNumbers = te_ms, echo
                ds.ImagePositionPatient = [ORIGIN_LPS[0], ORIGIN_LPS[1], ORIGIN_LPS[2] + VOXEL_MM * k]
                ds.SliceLocation = ORIGIN_LPS[2] + VOXEL_MM * k
                for keyword, value in attributes.items():
                    setattr(ds, keyword, value)
                plane = stored[:, :, k]
                if chopped and kind in ("R", "I") and k % 2:
                    plane = -plane
                ds.PixelData = np.ascontiguousarray(plane.T).tobytes()  # rows are y
                relative = name(number, kind, echo, k) if name else f"MR.{number}.{kind}{echo}.{k + 1:03d}.dcm"
                path = folder / relative
                path.parent.mkdir(parents=True, exist_ok=True)
                ds.save_as(path, enforce_file_format=True)
                written.append(path)
    return written


def write_gre(folder: Path, study: Study | None = None, *, vendor="SIEMENS", number=5, **kwargs) -> Study:
    """A multi-echo GRE with magnitude and phase as the vendor exports it (Siemens: two series)."""
    study = study or Study()
    if vendor == "SIEMENS":
        write_series(folder, study, vendor=vendor, number=number, kinds=("M",), **kwargs)
        write_series(folder, study, vendor=vendor, number=number + 1, kinds=("P",),
                     **{**kwargs, "description": kwargs.get("description", "gre_me_qsm") + "_PHA"})
    else:
        write_series(folder, study, vendor=vendor, number=number, kinds=("M", "P"), **kwargs)
    return study


def folder_fingerprint(folder: Path) -> dict[str, tuple[str, int]]:
    """Checksum and modification time of every file below ``folder``."""
    return {str(p.relative_to(folder)): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file()}


def assert_phase_matches_plant(path, te_ms: float, *, tolerance_rad: float) -> None:
    """The converted phase (rad) equals the planted phase at every voxel's world position."""
    import nibabel as nib

    image = nib.load(str(path))
    values = image.get_fdata()
    assert image.shape == SHAPE
    assert values.min() >= -np.pi - 1e-3 and values.max() <= 2 * np.pi + 1e-3
    ijk = np.stack(np.meshgrid(*[np.arange(n) for n in SHAPE], indexing="ij"), axis=-1)
    xyz_ras = ijk @ image.affine[:3, :3].T + image.affine[:3, 3]
    expected = planted_phase_rad(-xyz_ras[..., 0], -xyz_ras[..., 1], te_ms * 1e-3)  # RAS = -LPS in x, y
    error = np.angle(np.exp(1j * (values - expected)))
    assert np.abs(error).max() <= tolerance_rad
