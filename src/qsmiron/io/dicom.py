"""DICOM to BIDS for multi-echo GRE, with the dcm2niix binary shipped by its PyPI package.

dcm2niix writes one NIfTI and JSON sidecar per echo and image type into a scratch folder;
those are sorted here into magnitude and phase by the sidecar's ``ImageType`` (``M`` /
``P``, with dcm2niix's ``_ph`` file suffix as a fallback) and into echoes by ``EchoNumber``
(then ``_e<n>``, then the echo time), and moved into
``sub-<label>/[ses-<label>/]anat/sub-<label>[_ses-<label>]_echo-<n>_part-<mag|phase>_MEGRE.nii.gz``.
The DICOM folder is only read. Phase images keep dcm2niix's scaling (Siemens: -4096..4094);
the reconstruction converts them to radians.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qsmiron.errors import InputError
from qsmiron.io.atomic import write_json_atomic, write_text_atomic
from qsmiron.io.nifti import strip_nifti_suffix

BIDS_VERSION = "1.10.0"
DCM2NIIX_TIMEOUT_S = 3600
_PHASE_TYPES = {"P", "PHASE"}
_OTHER_PARTS = {"R", "REAL", "I", "IMAGINARY"}


def find_dcm2niix() -> Path:
    """The dcm2niix executable: the one in the ``dcm2niix`` PyPI package, else on PATH.

    Raises
    ------
    InputError
        When no dcm2niix can be found (install it with ``pip install dcm2niix``).
    """
    try:
        import dcm2niix  # the PyPI package: a wrapper around the compiled binary

        candidate = Path(getattr(dcm2niix, "bin", "") or "")
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    except ImportError:
        pass
    for folder in (Path(sys.executable).parent, ):
        candidate = folder / "dcm2niix"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    found = shutil.which("dcm2niix")
    if found:
        return Path(found)
    raise InputError("dcm2niix is not installed; install it with `pip install dcm2niix`")


@dataclass
class _Converted:
    nifti: Path
    sidecar: dict[str, Any]
    part: str | None  # "mag", "phase", or None for parts we do not use
    echo: int | None
    group: str  # the acquisition (protocol) the image belongs to


def _label(text: str, what: str) -> str:
    """A BIDS label: letters and digits only."""
    cleaned = re.sub(r"^(sub|ses)-", "", str(text))
    cleaned = re.sub(r"[^A-Za-z0-9]", "", cleaned)
    if not cleaned:
        raise InputError(f"cannot make a BIDS {what} label from {text!r}; give one with --{what} LABEL")
    return cleaned


def _classify(nifti: Path, sidecar: dict[str, Any]) -> _Converted:
    stem = strip_nifti_suffix(nifti).name
    image_type = {str(item).upper() for item in sidecar.get("ImageType", []) or []}
    if image_type & _PHASE_TYPES or stem.endswith("_ph") or "_ph_" in stem:
        part = "phase"
    elif image_type & _OTHER_PARTS or "DERIVED" in image_type or re.search(r"_(real|imaginary)$", stem):
        part = None  # real/imaginary parts and derived images (SWI, minimum projections) are not used
    else:
        part = "mag"
    echo = sidecar.get("EchoNumber")
    if not isinstance(echo, int):
        match = re.search(r"_e(\d+)(?:_|$)", stem)
        echo = int(match.group(1)) if match else None
    group = str(sidecar.get("ProtocolName") or sidecar.get("SeriesDescription") or "series")
    group = re.sub(r"(_PHA|_Pha|_phase|_PHASE|_MAG|_mag)$", "", group)
    return _Converted(nifti=nifti, sidecar=sidecar, part=part, echo=echo, group=group)


def _run_dcm2niix(dicom_dir: Path, scratch: Path) -> str:
    executable = find_dcm2niix()
    command = [str(executable), "-b", "y", "-ba", "y", "-z", "y", "-f", "%s_%p", "-o", str(scratch), str(dicom_dir)]
    try:
        completed = subprocess.run(command, capture_output=True, text=True, timeout=DCM2NIIX_TIMEOUT_S,
                                   stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise InputError(f"dcm2niix did not finish within {DCM2NIIX_TIMEOUT_S} s", dicom_dir) from None
    except OSError as exc:
        raise InputError(f"dcm2niix could not be started ({exc})", executable) from None
    output = (completed.stdout or "") + (completed.stderr or "")
    if completed.returncode == 2 or "Unable to find any DICOM images" in output:
        raise InputError("no DICOM images found in this folder (or its subfolders)", dicom_dir)
    if completed.returncode != 0:
        lines = [line for line in output.splitlines() if line.strip()]
        detail = lines[-1] if lines else "no message"
        raise InputError(f"dcm2niix failed with exit code {completed.returncode}: {detail}", dicom_dir)
    return output


def _has_files(folder: Path) -> bool:
    return any(path.is_file() for path in folder.rglob("*"))


def convert_dicom_to_bids(dicom_dir: str | os.PathLike, bids_dir: str | os.PathLike, *,
                          subject: str | None = None, session: str | None = None) -> list[Path]:
    """Convert a multi-echo GRE DICOM folder into a BIDS dataset.

    Parameters
    ----------
    dicom_dir : str or PathLike
        Folder with the DICOM files of one subject (subfolders included). Only read.
    bids_dir : str or PathLike
        The BIDS dataset to add the subject to (created when absent, with
        ``dataset_description.json``; the subject is added to ``participants.tsv``).
    subject : str, optional
        Subject label (``01`` or ``sub-01``). Default: the DICOM folder's name, letters and
        digits only.
    session : str, optional
        Session label; none by default.

    Returns
    -------
    list of Path
        The MEGRE images written, magnitude echoes then phase echoes.

    Raises
    ------
    InputError
        No DICOM found, no multi-echo GRE with phase, several candidate acquisitions, an
        existing subject, or dcm2niix failing.
    """
    dicom_dir = Path(dicom_dir)
    bids_dir = Path(bids_dir)
    if not dicom_dir.is_dir():
        raise InputError("DICOM folder not found", dicom_dir)
    if not _has_files(dicom_dir):
        raise InputError("no DICOM images found: the folder is empty", dicom_dir)
    subject_label = _label(subject if subject is not None else dicom_dir.resolve().name, "subject")
    session_label = _label(session, "session") if session is not None else None
    participant_id = f"sub-{subject_label}"
    prefix = participant_id + (f"_ses-{session_label}" if session_label else "")
    anat_dir = bids_dir / participant_id
    if session_label:
        anat_dir = anat_dir / f"ses-{session_label}"
    anat_dir = anat_dir / "anat"
    if anat_dir.exists() and any(anat_dir.glob(f"{prefix}_*MEGRE*")):
        raise InputError(f"{participant_id} already has MEGRE images here; remove them or choose another "
                         "--subject/--session", anat_dir)

    bids_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".qsmiron-dcm2niix-", dir=bids_dir) as scratch_name:
        scratch = Path(scratch_name)
        _run_dcm2niix(dicom_dir, scratch)
        converted = []
        for nifti in sorted(scratch.glob("*.nii*")):
            json_path = strip_nifti_suffix(nifti).with_suffix(".json")
            if not json_path.exists():
                continue
            try:
                sidecar = json.loads(json_path.read_text(encoding="utf-8"))
            except (OSError, json.JSONDecodeError) as exc:
                raise InputError(f"dcm2niix wrote an unreadable sidecar ({exc})", json_path) from None
            converted.append(_classify(nifti, sidecar))
        if not converted:
            raise InputError("dcm2niix found DICOM files but wrote no image", dicom_dir)
        megre = _select_megre(converted, dicom_dir)
        written = _place(megre, anat_dir, prefix, dicom_dir)
    _update_dataset_files(bids_dir, participant_id)
    return written


def _select_megre(converted: list[_Converted], dicom_dir: Path) -> dict[str, dict[int, _Converted]]:
    """The one acquisition with magnitude and phase, as part -> echo number -> image."""
    groups: dict[str, list[_Converted]] = {}
    for item in converted:
        if item.part is not None:
            groups.setdefault(item.group, []).append(item)
    with_phase = {name: items for name, items in groups.items() if any(i.part == "phase" for i in items)}
    if not with_phase:
        names = ", ".join(sorted(groups)) or "none"
        raise InputError(f"no phase images found (series converted: {names}); QSM needs the phase "
                         "(export the phase series from the scanner)", dicom_dir)
    with_both = {name: items for name, items in with_phase.items() if any(i.part == "mag" for i in items)}
    if not with_both:
        raise InputError("phase images were found but no magnitude images of the same acquisition "
                         f"({', '.join(sorted(with_phase))})", dicom_dir)
    if len(with_both) > 1:
        raise InputError("several acquisitions with magnitude and phase (" + ", ".join(sorted(with_both)) +
                         "); put one acquisition per DICOM folder", dicom_dir)
    items = next(iter(with_both.values()))
    result: dict[str, dict[int, _Converted]] = {"mag": {}, "phase": {}}
    for part in ("mag", "phase"):
        part_items = [i for i in items if i.part == part]
        if any(i.echo is None for i in part_items):
            # No echo numbers: order by echo time.
            part_items.sort(key=lambda i: float(i.sidecar.get("EchoTime", 0.0)))
            for number, item in enumerate(part_items, start=1):
                item.echo = number
        for item in part_items:
            if item.echo in result[part]:
                raise InputError(f"two {part} images for echo {item.echo} ({result[part][item.echo].nifti.name}, "
                                 f"{item.nifti.name}); put one acquisition per DICOM folder", dicom_dir)
            result[part][item.echo] = item
    if set(result["mag"]) != set(result["phase"]):
        raise InputError(f"magnitude echoes {sorted(result['mag'])} and phase echoes {sorted(result['phase'])} "
                         "differ", dicom_dir)
    for part in ("mag", "phase"):
        for echo, item in result[part].items():
            te = item.sidecar.get("EchoTime")
            if not isinstance(te, (int, float)) or te <= 0:
                raise InputError(f"{part} echo {echo} has no EchoTime in its DICOM header", dicom_dir)
    return result


def _place(megre: dict[str, dict[int, _Converted]], anat_dir: Path, prefix: str, dicom_dir: Path) -> list[Path]:
    anat_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for part in ("mag", "phase"):
        for echo in sorted(megre[part]):
            item = megre[part][echo]
            sidecar = dict(item.sidecar)
            sidecar["EchoNumber"] = echo
            sidecar.setdefault("ConversionSoftware", "dcm2niix")
            extension = ".nii.gz" if item.nifti.name.endswith(".nii.gz") else ".nii"
            target = anat_dir / f"{prefix}_echo-{echo}_part-{part}_MEGRE{extension}"
            # Same file system (the scratch folder is inside the BIDS folder): an atomic rename.
            os.replace(item.nifti, target)
            write_json_atomic(strip_nifti_suffix(target).with_suffix(".json"), sidecar)
            written.append(target)
    return written


def _update_dataset_files(bids_dir: Path, participant_id: str) -> None:
    description = bids_dir / "dataset_description.json"
    if not description.exists():
        from qsmiron import __version__

        write_json_atomic(description, {
            "Name": bids_dir.resolve().name,
            "BIDSVersion": BIDS_VERSION,
            "DatasetType": "raw",
            "GeneratedBy": [{"Name": "dcm2niix", "Description": f"converted with qsmiron {__version__} convert"}],
        })
    participants = bids_dir / "participants.tsv"
    if not participants.exists():
        write_text_atomic(participants, f"participant_id\n{participant_id}\n")
        return
    lines = participants.read_text(encoding="utf-8").splitlines()
    if not lines:
        write_text_atomic(participants, f"participant_id\n{participant_id}\n")
        return
    header = lines[0].split("\t")
    if "participant_id" not in header:
        raise InputError("has no participant_id column", participants)
    column = header.index("participant_id")
    if any(len(row.split("\t")) > column and row.split("\t")[column] == participant_id for row in lines[1:]):
        return
    row = ["n/a"] * len(header)
    row[column] = participant_id
    write_text_atomic(participants, "\n".join(lines + ["\t".join(row)]) + "\n")
