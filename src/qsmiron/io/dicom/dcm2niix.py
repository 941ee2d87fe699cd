"""Pixel conversion with the dcm2niix binary shipped by its PyPI package.

dcm2niix writes one NIfTI and JSON sidecar per echo and image type; ``converted_images``
reads them back and tells magnitude, phase, real and imaginary apart by the sidecar's
``ImageType`` (then dcm2niix's ``_ph``/``_real``/``_imaginary`` file suffixes), and echoes by
``EchoNumber`` (then ``_e<n>``, then the echo time).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qsmiron.errors import InputError
from qsmiron.io.dicom.headers import part_from_image_type
from qsmiron.io.nifti import strip_nifti_suffix

DCM2NIIX_TIMEOUT_S = 3600


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
    candidate = Path(sys.executable).parent / "dcm2niix"
    if candidate.is_file() and os.access(candidate, os.X_OK):
        return candidate
    found = shutil.which("dcm2niix")
    if found:
        return Path(found)
    raise InputError("dcm2niix is not installed; install it with `pip install dcm2niix`")


def dcm2niix_version() -> str | None:
    """dcm2niix's version string (``v1.0.20240202``), or None when it cannot be asked."""
    try:
        completed = subprocess.run([str(find_dcm2niix()), "--version"], capture_output=True, text=True,
                                   timeout=30, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired, InputError):
        return None
    match = re.search(r"v\d+\.\d+\.\d+", (completed.stdout or "") + (completed.stderr or ""))
    return match.group(0) if match else None


@dataclass
class ConvertedImage:
    """One NIfTI written by dcm2niix, with its sidecar and what it holds."""

    nifti: Path
    sidecar: dict[str, Any]
    part: str  # "mag", "phase", "real" or "imag"
    echo: int | None


def run_dcm2niix(input_dir: Path, out_dir: Path, what: str | Path) -> None:
    """Convert every DICOM in ``input_dir`` into ``out_dir`` (compressed NIfTI + BIDS sidecars).

    ``what`` names the data in error messages.
    """
    executable = find_dcm2niix()
    out_dir.mkdir(parents=True, exist_ok=True)
    command = [str(executable), "-b", "y", "-ba", "y", "-z", "y", "-f", "%s_%p", "-o", str(out_dir), str(input_dir)]
    try:
        completed = subprocess.run(command, capture_output=True, text=True, timeout=DCM2NIIX_TIMEOUT_S,
                                   stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise InputError(f"dcm2niix did not finish within {DCM2NIIX_TIMEOUT_S} s", what) from None
    except OSError as exc:
        raise InputError(f"dcm2niix could not be started ({exc})", executable) from None
    output = (completed.stdout or "") + (completed.stderr or "")
    if completed.returncode == 2 or "Unable to find any DICOM images" in output:
        raise InputError("dcm2niix found no DICOM image it can convert", what)
    if completed.returncode != 0:
        lines = [line for line in output.splitlines() if line.strip()]
        detail = lines[-1] if lines else "no message"
        raise InputError(f"dcm2niix failed with exit code {completed.returncode}: {detail}", what)


def _classify(nifti: Path, sidecar: dict[str, Any]) -> ConvertedImage:
    stem = strip_nifti_suffix(nifti).name
    image_type = sidecar.get("ImageType", []) or []
    part = part_from_image_type(image_type)
    if part == "mag":  # dcm2niix's own suffixes when the ImageType says nothing more
        if stem.endswith("_ph") or "_ph_" in stem:
            part = "phase"
        elif re.search(r"_real(_|$)", stem):
            part = "real"
        elif re.search(r"_imaginary(_|$)", stem):
            part = "imag"
    echo = sidecar.get("EchoNumber")
    if not isinstance(echo, int):
        match = re.search(r"_e(\d+)(?:_|$)", stem)
        echo = int(match.group(1)) if match else None
    return ConvertedImage(nifti=nifti, sidecar=sidecar, part=part, echo=echo)


def converted_images(out_dir: Path) -> list[ConvertedImage]:
    """The images dcm2niix wrote into ``out_dir`` (those with a sidecar)."""
    images = []
    for nifti in sorted(out_dir.glob("*.nii*")):
        json_path = strip_nifti_suffix(nifti).with_suffix(".json")
        if not json_path.exists():
            continue
        try:
            sidecar = json.loads(json_path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise InputError(f"dcm2niix wrote an unreadable sidecar ({exc})", json_path) from None
        images.append(_classify(nifti, sidecar))
    return images


def echoes_by_part(images: list[ConvertedImage], what: str | Path) -> dict[str, dict[int, ConvertedImage]]:
    """part -> echo number -> image; echoes without a number are numbered by echo time.

    Raises
    ------
    InputError
        Two images of one part and echo, or an image without EchoTime.
    """
    result: dict[str, dict[int, ConvertedImage]] = {}
    for part in sorted({image.part for image in images}):
        items = [image for image in images if image.part == part]
        for image in items:
            te = image.sidecar.get("EchoTime")
            if not isinstance(te, (int, float)) or te <= 0:
                raise InputError(f"{part} image {image.nifti.name} has no EchoTime in its DICOM header", what)
        if any(image.echo is None for image in items):
            items.sort(key=lambda image: float(image.sidecar["EchoTime"]))
            for number, image in enumerate(items, start=1):
                image.echo = number
        by_echo: dict[int, ConvertedImage] = {}
        for image in items:
            if image.echo in by_echo:
                raise InputError(f"two {part} images for echo {image.echo} ({by_echo[image.echo].nifti.name}, "
                                 f"{image.nifti.name})", what)
            by_echo[image.echo] = image
        result[part] = by_echo
    return result
