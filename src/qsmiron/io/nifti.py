"""NIfTI images and their BIDS JSON sidecars, and the geometry recon needs from a header."""

from __future__ import annotations

import json
import logging
import os
import threading
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

from qsmiron.errors import InputError
from qsmiron.io.limits import MAX_VOXEL_MM
from qsmiron.io.atomic import atomic_path, json_text

NIFTI_SUFFIXES = (".nii.gz", ".nii")

GZIP_LEVEL = 2
"""Compression of written .nii.gz files, on ISA-L's scale (0 to 3; ``isal.igzip``, MIT): for
a 256 x 256 x 176 float32 Chimap (46 MB) of a whole head level 2 writes 7.5 MB in 0.03 s
CPU, where zlib's level 1 (nibabel's default) writes 7.3 MB in 0.26 s and ISA-L's level 3
7.3 MB in 0.18 s; 2 % larger files for an eighth of the time. Any gzip reader reads them."""


_SINGULAR_RELATIVE_DETERMINANT = 1e-6
"""|det(A)| below this times the product of the column norms: the axes do not span 3D."""


@dataclass
class Volume:
    """An image as arrays plus the facts every later step needs.

    Attributes
    ----------
    data : ndarray
        Voxel values as stored (scaled by the header's slope/intercept), float32 unless the
        caller asked otherwise.
    affine : ndarray, shape (4, 4)
        Voxel to world (RAS+, mm).
    path : Path or None
    sidecar : dict
        The BIDS JSON sidecar next to the file, empty when there is none.
    """

    data: np.ndarray
    affine: np.ndarray
    path: Path | None = None
    sidecar: dict[str, Any] = field(default_factory=dict)

    @property
    def voxel_size_mm(self) -> tuple[float, float, float]:
        return voxel_size_mm(self.affine)

    @property
    def shape3d(self) -> tuple[int, int, int]:
        return tuple(int(n) for n in self.data.shape[:3])


def strip_nifti_suffix(path: str | os.PathLike) -> Path:
    """``sub-1_echo-1_part-mag_MEGRE.nii.gz`` -> ``sub-1_echo-1_part-mag_MEGRE`` (same folder)."""
    path = Path(path)
    for suffix in NIFTI_SUFFIXES:
        if path.name.endswith(suffix):
            return path.with_name(path.name[: -len(suffix)])
    return path


def sidecar_path(path: str | os.PathLike) -> Path:
    """The BIDS JSON sidecar that belongs to a NIfTI file."""
    base = strip_nifti_suffix(path)
    return base.with_name(base.name + ".json")


def with_sidecars(paths) -> list[Path]:
    """The files given (None skipped) and the JSON sidecars that exist beside them: what reading
    them reads."""
    given = [Path(path) for path in paths if path is not None]
    return given + [sidecar for sidecar in map(sidecar_path, given) if sidecar.is_file()]


def outputs_with_sidecars(paths) -> list[Path]:
    """The output files given and the JSON sidecar of each NIfTI image among them: what writing
    them writes (``save_nifti`` may put a sidecar beside any image)."""
    given = [Path(path) for path in paths]
    return given + [sidecar_path(path) for path in given if path.name.endswith((".nii", ".nii.gz"))]


def read_sidecar(path: str | os.PathLike) -> dict[str, Any]:
    """Read the JSON sidecar of a NIfTI file; ``{}`` when there is none."""
    json_path = sidecar_path(path)
    if not json_path.exists():
        return {}
    try:
        payload = json.loads(json_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"the JSON sidecar cannot be read ({exc})", json_path) from None
    if not isinstance(payload, dict):
        raise InputError("the JSON sidecar is not a JSON object", json_path)
    return payload


def _read_image_file(path: Path):
    """A nibabel image of ``path`` with its voxels in memory.

    A ``.gz`` file is decompressed whole (ISA-L's ``igzip``, 1.4 times zlib's speed, without
    the GIL), which checks its CRC and length, so a truncated or corrupt file is named as such
    instead of decoding into garbage voxels (nibabel reads only as many bytes as the header
    promises and never reaches the checksum). The voxels stay in memory: readers take them
    from the image (``image.dataobj``) without decompressing again.
    """
    from isal import igzip, isal_zlib

    if not path.name.endswith(".gz"):
        with quiet_nibabel():
            image = nib.load(str(path))
        check_stored_voxel_sizes(image, path)
        return image
    with open(path, "rb") as stream:
        if stream.read(2) != b"\x1f\x8b":
            raise ValueError("named .gz but not gzip-compressed")
    try:
        raw = igzip.decompress(path.read_bytes())
    except (OSError, EOFError, zlib.error, isal_zlib.error) as exc:
        raise InputError(f"is a truncated or corrupt gzip file ({exc}); copy it again from "
                         f"the source", path) from None
    header_size = int.from_bytes(raw[:4], "little") if len(raw) >= 4 else 0
    image_class = nib.Nifti2Image if header_size in (540, 0x1C020000) else nib.Nifti1Image
    with quiet_nibabel():
        image = image_class.from_bytes(raw)
    check_stored_voxel_sizes(image, path, raw[:540])
    return image


class quiet_nibabel:
    """nibabel prints what it fixes in a header (``pixdim[1,2,3] should be non-zero; setting 0
    dims to 1``) on stderr; ``check_stored_voxel_sizes`` decides about it instead.

    nibabel's logger is one for the process and files are read in several threads at once
    (magnitude and phase): the first to enter saves its level and the last to leave restores
    it. Each saving and restoring its own would leave the logger silenced when two overlap
    (A saves the level, B saves A's silence, A restores, B restores the silence)."""

    _lock = threading.Lock()
    _depth = 0
    _saved_level = logging.NOTSET

    def __enter__(self):
        with quiet_nibabel._lock:
            if quiet_nibabel._depth == 0:
                quiet_nibabel._saved_level = nib.imageglobals.logger.level
                nib.imageglobals.logger.setLevel(60)  # above CRITICAL: nothing
            quiet_nibabel._depth += 1
        return self

    def __exit__(self, *exc):
        with quiet_nibabel._lock:
            quiet_nibabel._depth -= 1
            if quiet_nibabel._depth == 0:
                nib.imageglobals.logger.setLevel(quiet_nibabel._saved_level)
        return False


def check_stored_voxel_sizes(image, path: str | os.PathLike, header_bytes: bytes | None = None) -> None:
    """Refuse a zero voxel size in the stored pixdim where no sform gives the geometry: nibabel
    would take 1 mm, and the dipole kernel would be built for voxels the scan does not have.
    ``header_bytes``: the file's first bytes when already read (decompressed)."""
    path = Path(path)
    if header_bytes is None:
        import gzip

        with (gzip.open(path, "rb") if path.name.endswith(".gz") else open(path, "rb")) as stream:
            header_bytes = stream.read(540)
    header_class = type(image.header)
    try:
        stored = header_class(binaryblock=header_bytes[:header_class.template_dtype.itemsize], check=False)
    except Exception:  # not this header's layout: nibabel read it some other way; nothing to check
        return
    pixdim = np.asarray(stored["pixdim"][1:4], dtype=float)
    if np.all(pixdim > 0) or int(stored["sform_code"]) > 0:
        return
    sizes = " x ".join(f"{v:g}" for v in pixdim)
    raise InputError(f"the header's voxel size (pixdim) is {sizes} mm and no sform gives the "
                     f"geometry: set the voxel size in the header (e.g. convert again with dcm2niix)", path)


def open_image(path: str | os.PathLike, what: str = "image"):
    """Open a NIfTI file with every check a header allows, before any analysis reads it.

    Raises
    ------
    InputError
        Naming the file: missing, a folder, a truncated or corrupt gzip stream, not NIfTI, a
        geometry no scanner writes (see :func:`check_geometry`), a zero voxel size without an
        sform, or complex voxels.
    """
    path = Path(path)
    if not path.exists():
        raise InputError("file not found", path)
    if path.is_dir():
        raise InputError(f"is a folder, expected a NIfTI {what}", path)
    try:
        image = _read_image_file(path)
    except InputError:
        raise
    except Exception as exc:  # nibabel raises many types for a corrupt file
        raise InputError(f"not a readable NIfTI {what} ({type(exc).__name__}: {exc})",
                         path) from None
    check_geometry(image.affine, path)
    check_real_valued(image, path, what)
    return image


def open_header(path: str | os.PathLike):
    """The header checks of ``open_image`` without reading the voxels (nibabel's lazy image):
    stored voxel sizes, geometry, real values. nibabel's own errors for a corrupt header pass
    through as they are."""
    with quiet_nibabel():
        image = nib.load(str(path))
    check_stored_voxel_sizes(image, path)
    check_geometry(image.affine, path)
    check_real_valued(image, path)
    return image


def check_real_valued(image, path: str | os.PathLike, what: str = "image") -> None:
    """Refuse complex voxels: every input is real (a scan as magnitude and phase images), and
    casting would drop the imaginary part with only numpy's warning."""
    if np.dtype(image.get_data_dtype()).kind == "c":
        raise InputError(f"holds complex values, but a real-valued {what} was expected (a scan as "
                         f"separate magnitude and phase images: BIDS part-mag and part-phase)", path)


def check_geometry(affine: np.ndarray, path: str | os.PathLike | None = None) -> None:
    """Refuse an affine no scanner writes: non-finite, singular, or with voxels over 10 mm.

    Raises
    ------
    InputError
        Naming ``path`` and the reason.
    """
    affine = np.asarray(affine, dtype=float)
    if affine.shape != (4, 4) or not np.all(np.isfinite(affine)):
        raise InputError("the image affine holds NaN or infinite values: the header's "
                         "sform/qform is broken", path)
    columns = affine[:3, :3]
    norms = np.linalg.norm(columns, axis=0)
    if np.any(norms == 0):
        raise InputError("the image affine is degenerate (a voxel axis of zero length): the "
                         "header's sform/qform is broken", path)
    if abs(np.linalg.det(columns)) < _SINGULAR_RELATIVE_DETERMINANT * float(np.prod(norms)):
        raise InputError("the image affine is singular (its voxel axes do not span 3D space): "
                         "the header's sform/qform is broken", path)
    if norms.max() > MAX_VOXEL_MM:
        sizes = " x ".join(f"{v:g}" for v in norms)
        raise InputError(f"voxels of {sizes} mm: an edge over {MAX_VOXEL_MM:g} mm is not a "
                         f"plausible MRI head image (check the header's pixdim)", path)


def load_nifti(path: str | os.PathLike, *, dtype=np.float32, with_sidecar: bool = True) -> Volume:
    """Load a NIfTI file, with a clear error for a missing, corrupt or implausible file.

    Parameters
    ----------
    path : str or PathLike
    dtype : numpy dtype or None
        Type of the returned array; None keeps the stored type (labels, integers).
    with_sidecar : bool
        Also read the BIDS JSON sidecar.
    """
    path = Path(path)
    image = open_image(path)
    try:
        data = image.get_fdata(dtype=np.float64) if dtype is not None else np.asanyarray(image.dataobj)
    except Exception as exc:  # nibabel raises many types for a corrupt file
        raise InputError(f"not a readable NIfTI image ({type(exc).__name__}: {exc})", path) from None
    if dtype is not None:
        data = np.asarray(data, dtype=dtype)
    sidecar = read_sidecar(path) if with_sidecar else {}
    return Volume(data=data, affine=np.asarray(image.affine, dtype=float), path=path, sidecar=sidecar)


def write_image_file(image: nib.Nifti1Image, path: Path, *, gzipped: bool) -> None:
    """Write ``image`` to ``path``, gzip-compressed in one C call when ``gzipped``.

    One ``igzip.compress`` (ISA-L, ``GZIP_LEVEL``) releases the GIL, where nibabel's chunked
    writes go through Python: outputs can then be compressed in parallel threads.
    """
    if gzipped:
        from isal import igzip

        path.write_bytes(igzip.compress(image.to_bytes(), compresslevel=GZIP_LEVEL, mtime=0))
    else:
        nib.save(image, str(path))


def save_nifti(path: str | os.PathLike, data: np.ndarray, affine: np.ndarray, *,
               sidecar: dict[str, Any] | None = None, dtype=None,
               intent: str | None = None) -> Path:
    """Write a NIfTI file (and optionally its JSON sidecar) atomically.

    The qform and sform both carry ``affine`` (code 1, scanner/aligned) so other tools read
    the same orientation. Booleans are stored as uint8.
    """
    path = Path(path)
    array = np.asarray(data)
    if array.dtype == bool:
        array = array.astype(np.uint8)
    if dtype is not None:
        array = array.astype(dtype, copy=False)
    image = nib.Nifti1Image(array, np.asarray(affine, dtype=float))
    image.header.set_qform(affine, code=1)
    image.header.set_sform(affine, code=1)
    image.header.set_xyzt_units("mm", "sec")
    if intent is not None:
        image.header.set_intent(intent)
    # Both files are complete before either is moved in, and the image moves last, so an
    # interrupted write never leaves a new image beside a missing or older sidecar.
    with atomic_path(path) as tmp_image:
        write_image_file(image, tmp_image, gzipped=path.name.endswith(".gz"))
        if sidecar is not None:
            with atomic_path(sidecar_path(path)) as tmp_sidecar:
                tmp_sidecar.write_text(json_text(sidecar), encoding="utf-8")
    return path


def box_through_affine(lower, upper, affine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Lower and upper corners of the axis-aligned box holding the box ``[lower, upper]``
    (3 coordinates each) after ``affine`` (4 x 4): a box's image is the hull of its 8 corners."""
    lower, upper = np.asarray(lower, float), np.asarray(upper, float)
    corners = np.stack(np.meshgrid(*zip(lower, upper), indexing="ij"), axis=-1).reshape(-1, 3)
    affine = np.asarray(affine, float)
    mapped = corners @ affine[:3, :3].T + affine[:3, 3]
    return mapped.min(axis=0), mapped.max(axis=0)


def voxel_size_mm(affine: np.ndarray) -> tuple[float, float, float]:
    """Voxel edge lengths (mm) from an affine: the norms of its first three columns."""
    affine = np.asarray(affine, dtype=float)
    return tuple(float(v) for v in np.linalg.norm(affine[:3, :3], axis=0))


def b0_direction_voxel(affine: np.ndarray, b0_world=(0.0, 0.0, 1.0)) -> np.ndarray:
    """Unit vector of B0 in voxel (array-axis) coordinates.

    The scanner's B0 points along world z (the bore axis) in RAS+ scanner coordinates, which
    is what the NIfTI affine maps to for images straight from the scanner (dcm2niix). With
    oblique slices the voxel axes are rotated relative to the world, so B0 in voxel axes is
    the world B0 expressed in the (normalised) voxel axes: ``R^T b0`` where ``R`` holds the
    unit column directions of the affine. Reflections (LPS vs RAS storage) are handled by the
    same formula: the sign of a component follows the axis direction.

    Parameters
    ----------
    affine : ndarray, shape (4, 4)
    b0_world : sequence of 3 floats
        B0 in world coordinates; the default is the scanner z axis.

    Returns
    -------
    ndarray, shape (3,)
        Unit vector.
    """
    affine = np.asarray(affine, dtype=float)
    columns = affine[:3, :3]
    norms = np.linalg.norm(columns, axis=0)
    if np.any(norms == 0):
        raise InputError("the image affine is degenerate (a zero-length voxel axis)")
    directions = columns / norms
    b0 = np.asarray(b0_world, dtype=float)
    b0 = b0 / np.linalg.norm(b0)
    # Least squares keeps the result right if the axes are not exactly orthogonal (shear).
    b0_voxel = np.linalg.lstsq(directions, b0, rcond=None)[0]
    return b0_voxel / np.linalg.norm(b0_voxel)


def same_grid(affine_a: np.ndarray, affine_b: np.ndarray, shape_a, shape_b, *,
              atol_mm: float = 1e-3) -> bool:
    """True when two images share a voxel grid (shape and affine within ``atol_mm``)."""
    return tuple(shape_a[:3]) == tuple(shape_b[:3]) and np.allclose(
        np.asarray(affine_a, float), np.asarray(affine_b, float), atol=atol_mm)
