"""``convert_dicom_to_bids``: a whole DICOM export to a BIDS dataset of multi-echo GRE.

Headers are read with pydicom and sorted (``sorting``); each acquisition's files are linked
into a scratch folder and converted by dcm2niix; the images are placed as
``sub-<label>[/ses-<label>]/anat/sub-<label>[_ses-<label>][_run-<n>]_echo-<n>_part-<mag|phase>_MEGRE.nii.gz``
with phase in radians (``phase``). The DICOM files are only read (links point at them, nothing
writes through them). One acquisition that fails is skipped with its reason; the others go on.

These are raw BIDS names, the input of ``qsmiron run``, not qsmiron's outputs (which are named
in ``qsmiron.io.derivatives``): like ``qsmiron simulate``, the converter builds them itself, in
``_anat_dir`` and ``_megre_name``; ``participants`` names the tables.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from qsmiron import __version__
from qsmiron.errors import InputError
from qsmiron.io.atomic import check_inputs_spared, check_writable_dir, write_json_atomic, write_text_atomic
from qsmiron.io.dicom.dcm2niix import ConvertedImage, converted_images, dcm2niix_version, echoes_by_part, run_dcm2niix
from qsmiron.io.dicom.headers import ImageHeader, read_headers
from qsmiron.io.dicom.participants import ParticipantInfo, read_existing_tables, write_participant_files
from qsmiron.io.dicom.phase import complex_to_polar, scale_phase_file
from qsmiron.io.dicom.report import ConversionReport, ConvertedAcquisition
from qsmiron.io.dicom.sorting import Acquisition, Series, Skip, find_acquisitions, group_series
from qsmiron.io.dicom.subjects import (MappingRow, age_years, bids_label, given_label, mapping_row, read_mapping,
                                       session_labels, sex_code)
from qsmiron.io.nifti import same_grid

BIDS_VERSION = "1.10.0"
_DROPPED_SIDECAR_KEYS = ("BidsGuess",)


@dataclass
class _Planned:
    acquisition: Acquisition
    participant: str
    session: str | None
    run: int | None
    study_uid: str
    header: ImageHeader
    group: str | None


def convert_dicom_to_bids(dicom_dir: str | os.PathLike, bids_dir: str | os.PathLike, *,
                          mapping: str | os.PathLike | None = None, subject: str | None = None,
                          session: str | None = None) -> ConversionReport:
    """Convert the multi-echo GRE of a DICOM export (any subjects, visits, series, folders) to BIDS.

    Parameters
    ----------
    dicom_dir : str or PathLike
        The export: any folder layout, any file names. Only read.
    bids_dir : str or PathLike
        The BIDS dataset to write (created when absent; subjects already there are kept, and
        acquisitions already converted are skipped).
    mapping : str or PathLike, optional
        TSV from PatientID to ``participant_id`` (and ``session_id``, ``StudyDate``, ``group``);
        see ``qsmiron.io.dicom.subjects``. Patients not listed are skipped.
    subject, session : str, optional
        Labels for an export of one patient (and one visit); by default the sanitised PatientID
        and, with several visits, the study dates.

    Returns
    -------
    ConversionReport
        What was found, converted and skipped (``summary()`` is what the CLI prints).

    Raises
    ------
    InputError
        No DICOM image in the folder, a BIDS folder that cannot be written or that is the DICOM
        folder or inside it, a bad mapping file,
        ``subject``/``session`` given for an export with several patients/visits, or nothing
        convertible (the error's ``report`` attribute holds the report with the reasons).
    """
    dicom_dir, bids_dir = Path(dicom_dir), Path(bids_dir)
    if not dicom_dir.is_dir():
        raise InputError("DICOM folder not found", dicom_dir)
    check_inputs_spared([bids_dir], [dicom_dir, mapping])
    subject = given_label(subject, "--subject") if subject is not None else None
    session = given_label(session, "--session") if session else None
    check_writable_dir(bids_dir)  # before reading a large export's headers
    headers, n_other, unreadable = read_headers(dicom_dir)
    if not headers:
        raise InputError("no DICOM images found in this folder (or its subfolders)" if not unreadable else
                         f"no readable DICOM images: {unreadable[0].one_line()}", dicom_dir)
    rows = read_mapping(mapping) if mapping is not None else None
    series = group_series(headers)
    report = ConversionReport(bids_dir=bids_dir, n_files=len(headers), n_other_files=n_other,
                              n_patients=len({h.patient_id for h in headers}),
                              n_studies=len({(h.patient_id, h.study_uid) for h in headers}), n_series=len(series))
    report.skipped.extend(Skip(str(error.path), error.message) for error in unreadable)
    planned = _plan(series, rows, subject, session, report.skipped, dicom_dir)
    # Before the first image is written: tables that cannot be updated stop the command here.
    existing = read_existing_tables(bids_dir, {f"sub-{item.participant}" for item in planned})
    made_here = not bids_dir.exists()
    bids_dir.mkdir(parents=True, exist_ok=True)
    infos: dict[str, ParticipantInfo] = {}
    with tempfile.TemporaryDirectory(prefix=".qsmiron-convert-", dir=bids_dir) as scratch_name:
        for index, item in enumerate(planned):
            what = f"{item.acquisition.name()}"
            prefix, anat = _prefix(item), _anat_dir(bids_dir, item)
            if anat.is_dir() and any(anat.glob(_megre_name(prefix, "*", "*", "*"))):
                report.skipped.append(Skip(what, f"already converted ({prefix} MEGRE exists in {anat}); "
                                                 "remove it to convert again", item.header.patient_id))
                continue
            try:
                converted = _convert_one(item, Path(scratch_name) / f"acq{index:04d}", anat, prefix)
            except InputError as error:
                report.skipped.append(Skip(what, error.message, item.header.patient_id))
                continue
            report.converted.append(converted)
            info = infos.setdefault(item.participant, ParticipantInfo(f"sub-{item.participant}", item.group))
            info.add_session(item.session, item.header.study_date, age_years(item.header), sex_code(item.header))
    report.participants = [f"sub-{label}" for label in sorted(infos)]
    if not report.converted:
        if made_here:  # nothing half-made left behind: the folders this call made, if still empty
            _remove_empty_folders(bids_dir)
        error = InputError("no multi-echo GRE with magnitude and phase could be converted "
                           f"({len(report.skipped)} skipped; see the summary)", dicom_dir)
        error.report = report  # type: ignore[attr-defined]
        raise error
    _write_dataset_description(bids_dir)
    write_participant_files(bids_dir, list(infos.values()), existing)
    return report


def _remove_empty_folders(root: Path) -> None:
    """``root`` and the folders below it, deepest first, as far as they are empty."""
    for folder in sorted((p for p in root.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
        with contextlib.suppress(OSError):
            folder.rmdir()
    with contextlib.suppress(OSError):
        root.rmdir()


def _prefix(item: _Planned) -> str:
    """``sub-<label>[_ses-<label>][_run-<n>]``: the entities every file of the acquisition starts with."""
    prefix = f"sub-{item.participant}" + (f"_ses-{item.session}" if item.session else "")
    return prefix + (f"_run-{item.run}" if item.run else "")


def _anat_dir(bids_dir: Path, item: _Planned) -> Path:
    """``sub-<label>[/ses-<label>]/anat`` of the raw dataset."""
    return bids_dir / f"sub-{item.participant}" / (f"ses-{item.session}" if item.session else "") / "anat"


def _megre_name(prefix: str, echo: int | str, part: str, extension: str) -> str:
    """``<prefix>_echo-<n>_part-<mag|phase>_MEGRE.<extension>`` (``*`` patterns allowed)."""
    return f"{prefix}_echo-{echo}_part-{part}_MEGRE.{extension}"


def _plan(series: list[Series], rows: dict[str, list[MappingRow]] | None, subject: str | None,
          session: str | None, skips: list[Skip], dicom_dir: Path) -> list[_Planned]:
    """Acquisitions with their subject, session and run labels; skipped series into ``skips``."""
    studies: dict[tuple[str, str], list[Series]] = {}
    for item in series:
        studies.setdefault((item.patient_id, item.study_uid), []).append(item)
    if subject is not None and len({patient for patient, _ in studies}) > 1:
        raise InputError("--subject names one participant, but the export holds several patients "
                         "(use a mapping file)", dicom_dir)
    per_study: list[tuple[Acquisition, str, str | None, str | None]] = []
    for (patient, study_uid), items in studies.items():
        header = items[0].first
        row = None
        if rows is not None:
            row = mapping_row(rows, patient, header.study_date)
            if row is None:
                skips.append(Skip(f"study of {header.study_date or 'unknown date'} ({len(items)} series)",
                                  "PatientID not in the mapping file", patient))
                continue
        acquisitions, skipped = find_acquisitions(items)
        skips.extend(skipped)
        if not acquisitions:
            continue
        participant = row.participant if row else (subject if subject is not None else bids_label(patient, "subject"))
        explicit = row.session if row and row.session else session
        for acquisition in acquisitions:
            per_study.append((acquisition, participant, explicit, row.group if row else None))
    # Sessions: several visits of one participant are told apart by study date.
    visits: dict[str, dict[str, ImageHeader]] = {}
    for acquisition, participant, _, _ in per_study:
        visits.setdefault(participant, {})[acquisition.first.study_uid] = acquisition.first
    labels: dict[tuple[str, str], str | None] = {}
    for participant, by_uid in visits.items():
        dated = session_labels([(uid, h.study_date, h.study_time) for uid, h in by_uid.items()])
        several = len(by_uid) > 1
        if several and session is not None:
            raise InputError(f"--session names one visit, but sub-{participant} has {len(by_uid)} studies", dicom_dir)
        for uid in by_uid:
            labels[(participant, uid)] = dated[uid] if several else None
    planned: list[_Planned] = []
    for acquisition, participant, explicit, group in per_study:
        uid = acquisition.first.study_uid
        chosen = explicit if explicit else labels[(participant, uid)]
        if chosen is None and any(e for _, p, e, _ in per_study if p == participant):
            chosen = session_labels([(uid, acquisition.first.study_date, acquisition.first.study_time)])[uid]
        planned.append(_Planned(acquisition, participant, chosen, None, uid, acquisition.first, group))
    counts: dict[tuple[str, str | None], int] = {}
    for item in planned:
        counts[(item.participant, item.session)] = counts.get((item.participant, item.session), 0) + 1
    numbers: dict[tuple[str, str | None], int] = {}
    for item in planned:
        key = (item.participant, item.session)
        if counts[key] > 1:
            numbers[key] = numbers.get(key, 0) + 1
            item.run = numbers[key]
    return planned


def _link_files(acquisition: Acquisition, folder: Path) -> None:
    """Symbolic links to the acquisition's DICOM files: dcm2niix reads them, nothing is copied."""
    folder.mkdir(parents=True)
    for index, header in enumerate(acquisition.files):
        os.symlink(header.path.resolve(), folder / f"{index:06d}.dcm")


def _convert_one(item: _Planned, scratch: Path, anat: Path, prefix: str) -> ConvertedAcquisition:
    acquisition = item.acquisition
    what = acquisition.name()
    _link_files(acquisition, scratch / "dicom")
    run_dcm2niix(scratch / "dicom", scratch / "nifti", what)
    by_part = echoes_by_part(converted_images(scratch / "nifti"), what)
    if acquisition.complex_parts or "phase" not in by_part:
        if not {"real", "imag"} <= set(by_part):
            raise InputError("dcm2niix wrote no phase images for this acquisition", what)
        by_part, scaling = _polar_from_complex(by_part, scratch / "polar", what)
    else:
        scaling = None
    magnitude, phase = by_part.get("mag", {}), by_part["phase"]
    if not magnitude or set(magnitude) != set(phase):
        raise InputError(f"magnitude echoes {sorted(magnitude)} and phase echoes {sorted(phase)} differ", what)
    if len(phase) < 2:
        raise InputError("single echo after conversion", what)
    _check_one_grid([*magnitude.values(), *phase.values()], what)
    anat.mkdir(parents=True, exist_ok=True)
    files: list[Path] = []
    summary = ""
    for part, images in (("mag", magnitude), ("phase", phase)):
        for echo in sorted(images):
            image = images[echo]
            sidecar = {k: v for k, v in image.sidecar.items() if k not in _DROPPED_SIDECAR_KEYS}
            sidecar["EchoNumber"] = echo
            if part == "phase":
                if scaling is None:
                    header = _phase_header(acquisition)
                    units, record = scale_phase_file(image.nifti, sidecar, bits_stored=header.bits_stored,
                                                     rescale_slope=header.rescale_slope,
                                                     rescale_intercept=header.rescale_intercept)
                else:
                    units, record = scaling
                sidecar["Units"] = units
                sidecar["PhaseScaling"] = record
                summary = f"{record['Method']} -> {units}"
            target = anat / _megre_name(prefix, echo, part, "nii.gz")
            os.replace(image.nifti, target)  # same file system: the scratch folder is inside the dataset
            write_json_atomic(anat / _megre_name(prefix, echo, part, "json"), sidecar)
            files.append(target)
    echo_times = [float(magnitude[e].sidecar["EchoTime"]) for e in sorted(magnitude)]
    return ConvertedAcquisition(f"sub-{item.participant}", item.session, item.run, what,
                                str(magnitude[min(magnitude)].sidecar.get("Manufacturer", "")), echo_times,
                                summary, files)


def _check_one_grid(images: list[ConvertedImage], what: str) -> None:
    """Every echo of magnitude and phase on one grid: a slice lost in the export shortens a volume."""
    import nibabel as nib

    loaded = [(image, nib.load(str(image.nifti))) for image in images]
    _, first = loaded[0]
    odd = [f"{image.part} echo {image.echo} {'x'.join(map(str, nifti.shape[:3]))}" for image, nifti in loaded
           if not same_grid(nifti.affine, first.affine, nifti.shape, first.shape)]
    if odd:
        raise InputError(f"the converted volumes are not on one grid ({', '.join(odd)}; the first "
                         f"{'x'.join(map(str, first.shape[:3]))}): slices missing or unreadable", what)


def _phase_header(acquisition: Acquisition) -> ImageHeader:
    for header in acquisition.files:
        if "phase" in header.parts:
            return header
    return acquisition.first


def _polar_from_complex(by_part: dict[str, dict[int, ConvertedImage]], folder: Path,
                        what: str) -> tuple[dict[str, dict[int, ConvertedImage]], tuple[str, dict]]:
    """Magnitude and phase NIfTIs from real and imaginary ones (float32, phase in radians)."""
    import nibabel as nib

    real, imaginary = by_part["real"], by_part["imag"]
    if set(real) != set(imaginary):
        raise InputError(f"real echoes {sorted(real)} and imaginary echoes {sorted(imaginary)} differ", what)
    folder.mkdir(parents=True)
    result: dict[str, dict[int, ConvertedImage]] = {"mag": {}, "phase": {}}
    chopped_any = False
    for echo in sorted(real):
        re_image, im_image = nib.load(str(real[echo].nifti)), nib.load(str(imaginary[echo].nifti))
        magnitude, phase, chopped = complex_to_polar(re_image.get_fdata(), im_image.get_fdata())
        chopped_any |= chopped
        for part, data in (("mag", magnitude), ("phase", phase)):
            path = folder / f"echo{echo}_{part}.nii.gz"
            out = nib.Nifti1Image(data, re_image.affine)
            out.header.set_qform(re_image.affine, int(re_image.header["qform_code"]) or 1)
            out.header.set_sform(re_image.affine, int(re_image.header["sform_code"]) or 1)
            out.header.set_xyzt_units("mm", "sec")
            nib.save(out, str(path))
            sidecar = dict(real[echo].sidecar)
            sidecar["ImageType"] = [t for t in sidecar.get("ImageType", []) if t not in ("R", "REAL")] + \
                ["MAGNITUDE" if part == "mag" else "PHASE"]
            result[part][echo] = ConvertedImage(path, sidecar, part, echo)
    note = ("magnitude |z| and phase angle(z) computed from the real and imaginary images"
            + ("; every second slice multiplied by -1 (slice-alternating sign of the complex image)"
               if chopped_any else ""))
    record = {"Method": "complex", "Description": note, "ConvertedBy": f"qsmiron {__version__} convert"}
    return result, ("rad", record)


def _write_dataset_description(bids_dir: Path) -> None:
    description = bids_dir / "dataset_description.json"
    if not description.exists():
        version = dcm2niix_version()
        write_json_atomic(description, {
            "Name": bids_dir.resolve().name,
            "BIDSVersion": BIDS_VERSION,
            "DatasetType": "raw",
            "GeneratedBy": [
                {"Name": "qsmiron", "Version": __version__,
                 "Description": "qsmiron convert: DICOM headers sorted with pydicom, phase brought to radians"},
                {"Name": "dcm2niix", **({"Version": version} if version else {}),
                 "Description": "pixel data to NIfTI and JSON sidecars"},
            ],
        })
    readme = bids_dir / "README"
    if not readme.exists():
        today = _dt.date.today().isoformat()
        write_text_atomic(readme, f"Multi-echo GRE converted from DICOM by qsmiron {__version__} convert on "
                                  f"{today}.\nPhase images are in radians; each phase sidecar's PhaseScaling says "
                                  "how the scanner stored them.\n")

