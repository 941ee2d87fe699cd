"""Read the headers of every DICOM file of an export (pydicom), never the pixels.

One ``ImageHeader`` per file holds what sorting needs: who (PatientID, age, sex, birth
date), which visit (StudyInstanceUID, StudyDate), which series (SeriesInstanceUID,
SeriesNumber, descriptions), what kind of image (the parts it holds: magnitude, phase, real,
imaginary; its echo times; gradient echo or not; derived or localizer) and its geometry.
An enhanced (multi-frame) file summarises its frames: the parts and echo times of all of them.
A file that starts as DICOM but cannot be read, or is shorter than its header says (a copy cut
short), is reported rather than counted among the other files.

The part of an image comes from, in this order: the enhanced ``ComplexImageComponent`` of
each frame; the ``ImageType`` values (Siemens ``M``/``P``, Philips ``M_FFE``/``PHASE MAP``
with ``M``/``P``/``R``/``I``, and the words ``MAGNITUDE``/``PHASE``/``REAL``/``IMAGINARY``);
GE's private image type (0043,102F: 0 magnitude, 1 phase, 2 real, 3 imaginary); else
magnitude.
"""

from __future__ import annotations

import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from qsmiron.errors import InputError

PARTS = ("mag", "phase", "real", "imag")
_PART_WORDS = {"P": "phase", "PHASE": "phase", "R": "real", "REAL": "real", "I": "imag",
               "IMAGINARY": "imag", "M": "mag", "MAGNITUDE": "mag"}
_GE_IMAGE_TYPE = (0x0043, 0x102F)
_GE_PARTS = {0: "mag", 1: "phase", 2: "real", 3: "imag"}
_DICOMDIR_CLASS = "1.2.840.10008.1.3.10"
_LOCALIZER_WORDS = re.compile(r"(localizer|localiser|scout|survey|aahead|\bloc\b|3-?plane|tri-?pilot)", re.I)
_DERIVED_WORDS = {"DERIVED", "SWI", "MNIP", "MIP", "MINIP", "PROJECTION IMAGE", "QSM", "R2STAR", "T2STAR",
                  "FIELD_MAP", "B0 MAP", "MOCO", "ADC", "FA"}


@dataclass(frozen=True)
class ImageHeader:
    """What sorting needs to know about one DICOM file.

    ``echo_times_ms`` and ``parts`` cover every frame of an enhanced file; ``n_frames`` is 1
    for a classic file.
    """

    path: Path
    patient_id: str
    patient_age: str
    patient_sex: str
    patient_birth_date: str
    study_uid: str
    study_date: str
    study_time: str
    series_uid: str
    series_number: int | None
    series_description: str
    protocol_name: str
    modality: str
    manufacturer: str
    image_type: tuple[str, ...]
    parts: frozenset[str]
    echo_times_ms: frozenset[float]
    sequence: str
    gradient_echo: bool
    localizer: bool
    derived: bool
    geometry: tuple
    n_frames: int
    enhanced: bool
    bits_stored: int | None = None
    rescale_slope: float | None = None
    rescale_intercept: float | None = None

    @property
    def description(self) -> str:
        return self.series_description or self.protocol_name or "unnamed series"


def _text(ds, keyword: str, default: str = "") -> str:
    value = ds.get(keyword, default)
    if value is None:
        return default
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        return "\\".join(str(v) for v in value)
    return str(value).strip()


def _tokens(values: Iterable[Any]) -> list[str]:
    """ImageType values, upper case, Philips ``M_FFE`` kept whole (its ``M`` is a value of its own)."""
    return [str(v).strip().upper() for v in values if str(v).strip()]


def part_from_image_type(image_type: Iterable[Any], ge_private: Any = None,
                         complex_component: str | None = None) -> str:
    """``mag``, ``phase``, ``real`` or ``imag`` for one image or frame (see the module docstring)."""
    component = (complex_component or "").upper()
    if component in ("MAGNITUDE", "PHASE", "REAL", "IMAGINARY"):
        return _PART_WORDS[component]
    tokens = _tokens(image_type)
    words = set(tokens) | {word for token in tokens for word in token.split()}
    for word in ("P", "PHASE", "R", "REAL", "I", "IMAGINARY", "M", "MAGNITUDE"):
        if word in words:
            return _PART_WORDS[word]
    try:
        if ge_private is not None and int(ge_private) in _GE_PARTS:
            return _GE_PARTS[int(ge_private)]
    except (TypeError, ValueError):
        pass
    return "mag"


def _is_gradient_echo(ds) -> tuple[bool, str]:
    """(plain gradient echo?, the sequence as the header names it)."""
    scanning = _text(ds, "ScanningSequence")
    if scanning:
        tokens = set(scanning.upper().split("\\"))
        return "GR" in tokens and not tokens & {"SE", "IR", "EP"}, scanning
    pulse = _text(ds, "EchoPulseSequence").upper()
    if pulse:
        epi = _text(ds, "EchoPlanarPulseSequence").upper() == "YES"
        inversion = _text(ds, "InversionRecovery").upper() == "YES"
        return pulse == "GRADIENT" and not epi and not inversion, f"{pulse}{' EPI' if epi else ''}"
    return False, "unknown"


def _geometry(ds, frame=None) -> tuple:
    """Rows, columns, pixel spacing and orientation (rounded): what one volume shares."""
    spacing = orientation = None
    if frame is not None:
        for group in (frame, ds.get("SharedFunctionalGroupsSequence", [None])[0]):
            if group is None:
                continue
            if spacing is None and "PixelMeasuresSequence" in group:
                spacing = group.PixelMeasuresSequence[0].get("PixelSpacing")
            if orientation is None and "PlaneOrientationSequence" in group:
                orientation = group.PlaneOrientationSequence[0].get("ImageOrientationPatient")
    spacing = spacing if spacing is not None else ds.get("PixelSpacing")
    orientation = orientation if orientation is not None else ds.get("ImageOrientationPatient")
    return (int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0),
            tuple(round(float(v), 3) for v in (spacing or ())),
            tuple(round(float(v), 3) for v in (orientation or ())))


def _frames(ds) -> tuple[set[str], set[float], list[str]]:
    """Parts, echo times (ms) and frame types of every frame of an enhanced file."""
    parts: set[str] = set()
    echoes: set[float] = set()
    frame_types: list[str] = []
    shared = ds.get("SharedFunctionalGroupsSequence", [None])[0]
    for frame in ds.get("PerFrameFunctionalGroupsSequence", []):
        frame_type, component, echo = None, None, None
        for group in (frame, shared):
            if group is None:
                continue
            if frame_type is None and "MRImageFrameTypeSequence" in group:
                item = group.MRImageFrameTypeSequence[0]
                frame_type, component = item.get("FrameType"), item.get("ComplexImageComponent")
            if echo is None and "MREchoSequence" in group:
                echo = group.MREchoSequence[0].get("EffectiveEchoTime")
        parts.add(part_from_image_type(frame_type or (), complex_component=component))
        if echo is not None:
            echoes.add(round(float(echo), 4))
        frame_types.extend(_tokens(frame_type or ()))
    return parts, echoes, frame_types


def header_of(ds, path: Path) -> ImageHeader:
    """The ``ImageHeader`` of a dataset read by pydicom from ``path``."""
    enhanced = "PerFrameFunctionalGroupsSequence" in ds
    image_type = tuple(_tokens(ds.get("ImageType", ()) or ()))
    if enhanced:
        parts, echoes, frame_types = _frames(ds)
        first = ds.PerFrameFunctionalGroupsSequence[0] if ds.PerFrameFunctionalGroupsSequence else None
        geometry = _geometry(ds, first)
        type_words = set(image_type) | set(frame_types)
    else:
        ge = ds.get(_GE_IMAGE_TYPE)
        parts = {part_from_image_type(image_type, ge.value if ge is not None else None)}
        echo = ds.get("EchoTime")
        echoes = {round(float(echo), 4)} if echo not in (None, "") else set()
        geometry = _geometry(ds)
        type_words = set(image_type)
    words = type_words | {w for t in type_words for w in t.split()}
    gradient_echo, sequence = _is_gradient_echo(ds)
    names = " ".join((_text(ds, "SeriesDescription"), _text(ds, "ProtocolName")))
    number = ds.get("SeriesNumber")
    return ImageHeader(
        path=path,
        patient_id=_text(ds, "PatientID") or _text(ds, "PatientName"),
        patient_age=_text(ds, "PatientAge"), patient_sex=_text(ds, "PatientSex").upper(),
        patient_birth_date=_text(ds, "PatientBirthDate"),
        study_uid=_text(ds, "StudyInstanceUID"), study_date=_text(ds, "StudyDate"),
        study_time=_text(ds, "StudyTime"),
        series_uid=_text(ds, "SeriesInstanceUID"),
        series_number=int(number) if number not in (None, "") else None,
        series_description=_text(ds, "SeriesDescription"), protocol_name=_text(ds, "ProtocolName"),
        modality=_text(ds, "Modality").upper(), manufacturer=_text(ds, "Manufacturer"),
        image_type=image_type, parts=frozenset(parts), echo_times_ms=frozenset(echoes),
        sequence=sequence, gradient_echo=gradient_echo,
        localizer="LOCALIZER" in words or bool(_LOCALIZER_WORDS.search(names)),
        derived=bool(words & _DERIVED_WORDS),
        geometry=geometry, n_frames=int(ds.get("NumberOfFrames", 1) or 1), enhanced=enhanced,
        bits_stored=int(ds.BitsStored) if ds.get("BitsStored") not in (None, "") else None,
        rescale_slope=float(ds.RescaleSlope) if ds.get("RescaleSlope") not in (None, "") else None,
        rescale_intercept=float(ds.RescaleIntercept) if ds.get("RescaleIntercept") not in (None, "") else None)


def _looks_like_dicom(path: Path) -> bool:
    """The 128-byte preamble then ``DICM``: a DICOM file, whether or not the rest can be read."""
    try:
        with open(path, "rb") as handle:
            return handle.read(132)[128:] == b"DICM"
    except OSError:
        return False


_PIXEL_DATA_TAG = b"\xe0\x7f\x10\x00"  # (7FE0,0010), little endian
_UNDEFINED_LENGTH = 0xFFFFFFFF


def _truncation(handle, size: int) -> str | None:
    """Why the file is shorter than the pixel data its header declares, or None.

    ``handle`` stands where pydicom stopped before the pixels: at the pixel data element, whose
    length (explicit or implicit VR) says where the file must end. Encapsulated (compressed)
    pixels have no length to check.
    """
    start = handle.tell()
    element = handle.read(12)
    if element[:4] != _PIXEL_DATA_TAG:
        return None
    explicit = element[4:6].isalpha()
    length = int.from_bytes(element[8:12] if explicit else element[4:8], "little")
    end = start + (12 if explicit else 8) + length
    if length == _UNDEFINED_LENGTH or size >= end:
        return None
    return f"truncated ({size} bytes, its pixel data ends at byte {end})"


def _dataset(path: Path):
    """(header dataset, why the file is truncated or None) of a DICOM file; None for another file."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    # pydicom warns about what it works around in a damaged file: the file is reported instead.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            with open(path, "rb") as handle:
                try:
                    ds = pydicom.dcmread(handle, stop_before_pixels=True)
                except InvalidDicomError:
                    handle.seek(0)  # old files without the 128-byte preamble
                    try:
                        ds = pydicom.dcmread(handle, stop_before_pixels=True, force=True)
                    except Exception:  # noqa: BLE001 - anything unreadable is "not DICOM" here
                        return None
                    if "SOPClassUID" not in ds or "Rows" not in ds:
                        return None
                return ds, _truncation(handle, os.fstat(handle.fileno()).st_size)
        except (OSError, ValueError, EOFError, AttributeError, KeyError, TypeError) as error:
            if _looks_like_dicom(path):
                raise InputError(f"looks like DICOM but cannot be read ({type(error).__name__}: {error})",
                                 path) from None
            return None


def read_header(path: Path) -> ImageHeader | None:
    """The header of one file, or None when it is not a DICOM image (DICOMDIR, text, ...).

    Raises
    ------
    InputError
        Naming the file: it starts as a DICOM file but cannot be read, or is shorter than its
        pixels (a copy cut short).
    """
    read = _dataset(path)
    if read is None:
        return None
    ds, truncated = read
    meta_class = getattr(getattr(ds, "file_meta", None), "MediaStorageSOPClassUID", None)
    if str(meta_class or "") == _DICOMDIR_CLASS:
        return None
    if "Rows" not in ds:
        # An image's header that stops before its image attributes is a file cut short, not a
        # document or a report (which have no rows).
        if "Image Storage" in getattr(meta_class, "name", ""):
            raise InputError(f"truncated ({meta_class.name} whose header ends before its image attributes)", path)
        if meta_class is None and "SOPClassUID" not in ds and _looks_like_dicom(path):
            raise InputError("looks like DICOM but its header cannot be read (no SOP class)", path)
        return None
    if truncated is not None:
        raise InputError(truncated, path)
    return header_of(ds, path)


def read_headers(dicom_dir: str | os.PathLike) -> tuple[list[ImageHeader], int, list[InputError]]:
    """Headers of every DICOM image below ``dicom_dir`` (any depth, any file names).

    Returns
    -------
    headers : list of ImageHeader
        Sorted by path.
    n_other : int
        Files that are not DICOM images (ignored).
    unreadable : list of InputError
        DICOM files that cannot be read or are truncated, each naming its file and why: left
        out of ``headers``, to be reported.
    """
    headers: list[ImageHeader] = []
    unreadable: list[InputError] = []
    n_other = 0
    for root, folders, files in os.walk(dicom_dir):
        folders.sort()
        for name in sorted(files):
            path = Path(root, name)
            if path.is_symlink() and not path.exists():
                n_other += 1
                continue
            try:
                header = read_header(path)
            except InputError as error:
                unreadable.append(error)
                continue
            if header is None:
                n_other += 1
            else:
                headers.append(header)
    return headers, n_other, unreadable
