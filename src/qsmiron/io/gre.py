"""Multi-echo gradient-echo magnitude and phase: loading, validation, acquisition facts.

``load_gre`` reads either one 4D file per part (echoes along the 4th axis) or one 3D file per
echo, takes the echo times and the field strength from the arguments or from the BIDS JSON
sidecars, checks everything a reconstruction relies on (grids, finite values, echo times in
seconds and increasing, field strength) and collects the acquisition facts the methods
paragraph reports, with the QSM consensus checklist's warnings about the acquisition.

Every problem is an ``InputError`` naming the file and what is wrong, raised before any
heavy work starts.
"""

from __future__ import annotations

import io
import math
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import nibabel as nib
import numba
import numpy as np

from qsmiron.errors import InputError
from qsmiron.io.acquisition import acquisition_record, acquisition_warnings, clean_voxel_size_mm, format_mm
from qsmiron.io.limits import (ECHO_TIME_MS_THRESHOLD_S, FIELD_STRENGTH_RANGE_T, MIN_ECHOES,
                               MIN_VOXELS_PER_AXIS)
from qsmiron.io.nifti import (b0_direction_voxel, open_image, read_sidecar, same_grid,
                              voxel_size_mm)
from qsmiron.records.acquisition import Acquisition

GRID_TOLERANCE_MM = 1e-3
"""Affines of the echoes and parts must agree within this, mm."""

@dataclass
class MultiEchoGRE:
    """A validated multi-echo GRE acquisition in memory.

    Attributes
    ----------
    magnitude : ndarray, shape (X, Y, Z, E), float32
        Magnitude, echoes last.
    phase : ndarray, shape (X, Y, Z, E), float32
        Phase as stored (vendor integers or radians; not yet scaled).
    affine : ndarray, shape (4, 4)
        Voxel to world (RAS+, mm), shared by every echo and both parts.
    echo_times_s : tuple of float
        Echo times, seconds, increasing, one per echo.
    field_strength_t : float
        B0, tesla.
    voxel_size_mm : tuple of 3 floats
    b0_direction : ndarray, shape (3,)
        Unit B0 vector in voxel axes (from the affine; oblique slices handled).
    sidecars : dict
        ``{"magnitude": [dict, ...], "phase": [dict, ...]}``, one per file (empty when absent).
    paths : dict
        ``{"magnitude": [Path, ...], "phase": [Path, ...]}``, as given.
    acquisition : Acquisition
        The ``acquisition`` block of ``recon.json`` (None where unknown).
    warnings : list of str
        Consensus-checklist warnings about the acquisition.
    """

    magnitude: np.ndarray
    phase: np.ndarray
    affine: np.ndarray
    echo_times_s: tuple[float, ...]
    field_strength_t: float
    voxel_size_mm: tuple[float, float, float]
    b0_direction: np.ndarray
    sidecars: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    paths: dict[str, list[Path]] = field(default_factory=dict)
    acquisition: Acquisition | None = None
    warnings: list[str] = field(default_factory=list)

    @property
    def n_echoes(self) -> int:
        return int(self.magnitude.shape[3])

    @property
    def shape3d(self) -> tuple[int, int, int]:
        return tuple(int(n) for n in self.magnitude.shape[:3])


def _as_path_list(paths: str | os.PathLike | Sequence[str | os.PathLike], part: str) -> list[Path]:
    if isinstance(paths, (str, os.PathLike)):
        return [Path(paths)]
    result = [Path(p) for p in paths]
    if not result:
        raise InputError(f"no {part} file given")
    return result


def _open_image(path: Path) -> nib.Nifti1Image:
    return open_image(path, "image")


def _image_shape(image, path: Path) -> tuple[int, ...]:
    """The shape with a singleton 4th axis of 5D files (x, y, z, 1, echo) dropped."""
    shape = tuple(int(n) for n in image.shape)
    if len(shape) == 5 and shape[3] == 1:
        shape = shape[:3] + shape[4:]
    while len(shape) > 4 and shape[-1] == 1:
        shape = shape[:-1]
    if len(shape) < 3 or len(shape) > 4:
        raise InputError(f"expected a 3D or 4D image, got shape {shape}", path)
    return shape


def _read_data(image, path: Path, shape: tuple[int, ...]) -> np.ndarray:
    """The voxels as float32 (slope and intercept applied), C-ordered, of ``shape``."""
    try:
        return c_ordered_voxels(image).reshape(shape)
    except (OSError, EOFError, ValueError) as exc:  # what a short or damaged file raises
        raise InputError(f"the image data cannot be read ({type(exc).__name__}: {exc})", path) from None


@numba.njit(nogil=True, cache=True)
def _cast_to_c_order(stored, out):
    """out[x, y, z, e] = stored[x, y, z, e] as float32, ``stored`` Fortran- and ``out``
    C-ordered: blocks of 16 z slices keep the rows being read in cache while each voxel's
    echoes are written contiguously (0.24 s instead of 1 s with numpy slice by slice for a
    256 x 256 x 176 x 5 int16 volume). No GIL: magnitude and phase convert on two cores."""
    nx, ny, nz, ne = stored.shape
    for z0 in range(0, nz, 16):
        for y in range(ny):
            for x in range(nx):  # along the stored rows
                for z in range(z0, min(z0 + 16, nz)):
                    for e in range(ne):
                        out[x, y, z, e] = np.float32(stored[x, y, z, e])


_CAST_KINDS = frozenset("iuf")


def _voxels_in_memory(image) -> np.ndarray | None:
    """A read-only view of the stored voxels of an image made from bytes in memory (its file
    map holds a ``BytesIO``), or None when the image is on disk."""
    holder = getattr(image, "file_map", {}).get("image")
    buffer = getattr(holder, "fileobj", None)
    if not isinstance(buffer, io.BytesIO):
        return None
    proxy = image.dataobj
    shape = tuple(int(n) for n in proxy.shape)
    return np.frombuffer(buffer.getvalue(), dtype=proxy.dtype, count=int(np.prod(shape)),
                         offset=int(proxy.offset)).reshape(shape, order=proxy.order)


def c_ordered_voxels(image) -> np.ndarray:
    """An image's voxels as C-ordered float32, its slope and intercept applied.

    A .nii.gz opened by ``qsmiron.io.nifti.open_image`` (decompressed once to check it) is
    read unscaled in place from its bytes, neither decompressed nor copied again (a copy of a
    230 MB float32 part cost 0.2 s, and 0.2 to 0.8 s in page faults); the NIfTI (Fortran)
    order becomes the reconstruction's C order (echoes contiguous per voxel) while casting.
    """
    proxy = image.dataobj  # nibabel's ArrayProxy: where and how the voxels are stored
    stored = _voxels_in_memory(image)
    if stored is None:
        stored = np.asarray(proxy.get_unscaled())
    shape = stored.shape
    native = stored.dtype.isnative and stored.dtype.kind in _CAST_KINDS
    out = np.empty(shape, np.float32)
    if native and stored.ndim in (3, 4) and stored.flags.f_contiguous and not stored.flags.c_contiguous:
        four_d = stored.reshape(shape + (1,) * (4 - stored.ndim), order="F")
        _cast_to_c_order(four_d, out.reshape(four_d.shape))
    elif stored.ndim < 3:
        out[...] = stored
    else:
        for z in range(shape[2]):  # a cache-sized transpose, slice by slice
            out[:, :, z] = stored[:, :, z]
    slope, intercept = float(proxy.slope), float(proxy.inter)
    with np.errstate(over="ignore"):  # a scaling past float32 is named by the finite check
        if np.isfinite(slope) and slope not in (0.0, 1.0):
            out *= np.float32(slope)
        if np.isfinite(intercept) and intercept != 0.0:
            out += np.float32(intercept)
    return out


def _finite_by_type(image) -> bool:
    """Whether every voxel is finite whatever its value: integers stored, scaled within
    float32's range (0.35 s of isfinite per 256 x 256 x 176 x 5 part saved)."""
    proxy, dtype = image.dataobj, np.dtype(image.dataobj.dtype)
    if dtype.kind not in "iu":
        return False
    slope, intercept = float(proxy.slope), float(proxy.inter)  # applied as c_ordered_voxels does
    slope, intercept = (slope if np.isfinite(slope) and slope != 0.0 else 1.0), np.nan_to_num(intercept, nan=0.0)
    largest = float(max(abs(np.iinfo(dtype).min), np.iinfo(dtype).max))
    return largest * abs(slope) + abs(intercept) < float(np.finfo(np.float32).max) / 2


def _check_finite(data: np.ndarray, path: Path, what: str, image=None) -> None:
    if image is not None and _finite_by_type(image):
        return
    finite = np.isfinite(data)
    if not finite.all():
        n_bad = int(data.size - np.count_nonzero(finite))
        raise InputError(f"{what} holds {n_bad} NaN or infinite values; the scanner's "
                         f"images have none (was it processed or masked with NaN?)", path)


@dataclass
class _Part:
    """One part (magnitude or phase) after its headers were checked, before reading data."""

    name: str
    paths: list[Path]
    images: list[Any]
    shapes: list[tuple[int, ...]]
    sidecars: list[dict[str, Any]]
    affine: np.ndarray
    shape: tuple[int, int, int, int]


def _inspect_part(paths: list[Path], part: str) -> _Part:
    """Open one part's files, check their grids against each other (headers only)."""
    images = [_open_image(p) for p in paths]
    shapes = [_image_shape(im, p) for im, p in zip(images, paths)]
    sidecars = [read_sidecar(p) for p in paths]
    affine = np.asarray(images[0].affine, float)
    if len(paths) == 1:
        shape = shapes[0]
        if len(shape) == 3 or shape[3] == 1:
            raise InputError(f"the {part} holds one echo; a reconstruction needs at least "
                             f"{MIN_ECHOES} (give a 4D file or one file per echo)", paths[0])
        return _Part(part, paths, images, shapes, sidecars, affine, tuple(shape))
    reference_shape = shapes[0][:3]
    for image, path, shape in zip(images, paths, shapes):
        if len(shape) == 4 and shape[3] != 1:
            raise InputError(f"holds {shape[3]} volumes; with one {part} file per echo each "
                             f"file must be 3D", path)
        if not same_grid(affine, image.affine, reference_shape, shape,
                         atol_mm=GRID_TOLERANCE_MM):
            raise InputError(f"its grid (shape {shape[:3]}, voxel "
                             f"{format_mm(voxel_size_mm(image.affine))}) differs from the first "
                             f"{part} echo {paths[0].name} (shape {reference_shape}, voxel "
                             f"{format_mm(voxel_size_mm(affine))}) or its affine does", path)
    return _Part(part, paths, images, shapes, sidecars, affine,
                 tuple(reference_shape) + (len(paths),))


def _read_part(part: _Part) -> np.ndarray:
    """Read one part's voxels as (X, Y, Z, E) float32, rejecting NaN and infinite values."""
    if len(part.paths) == 1:
        # NIfTI voxels come in Fortran order; the reconstruction works on C-ordered arrays
        # (echoes contiguous per voxel last), so convert once here instead of in every stage.
        data = _read_data(part.images[0], part.paths[0], part.shape)
        _check_finite(data, part.paths[0], f"the {part.name}", part.images[0])
        return data
    data = np.empty(part.shape, dtype=np.float32)
    for echo, (image, path) in enumerate(zip(part.images, part.paths)):
        volume = _read_data(image, path, part.shape[:3])
        _check_finite(volume, path, f"the {part.name}", image)
        data[..., echo] = volume
    return data


def _check_magnitude(magnitude: np.ndarray, part: _Part) -> None:
    """Reject an echo that is zero everywhere, or a magnitude that is mostly negative."""
    for echo in range(magnitude.shape[3]):
        volume = magnitude[..., echo]
        path = part.paths[echo] if len(part.paths) > 1 else part.paths[0]
        if not np.any(volume):
            which = f"echo {echo + 1} of the magnitude" if len(part.paths) == 1 else "the magnitude"
            raise InputError(f"{which} is zero everywhere", path)
        negative = np.count_nonzero(volume < 0)
        if negative > 0.01 * volume.size:
            raise InputError(f"{100 * negative / volume.size:.0f}% of the magnitude voxels are "
                             f"negative: is this a phase image given as --magnitude?", path)


def _fmt_times(values: Sequence[float]) -> str:
    return ", ".join(f"{v:g}" for v in values)


def _sidecar_echo_times(sidecars: list[dict[str, Any]], paths: list[Path], n_echoes: int,
                        part: str) -> tuple[list[float] | None, Path | None]:
    """Echo times from one part's sidecars, or None when they do not carry them."""
    if len(paths) == 1:
        value = sidecars[0].get("EchoTime")
        if value is None:
            return None, None
        values = value if isinstance(value, list) else [value]
        if len(values) != n_echoes:
            raise InputError(f"the JSON sidecar gives {len(values)} EchoTime value(s) for "
                             f"{n_echoes} echoes in the 4D {part}; give --echo-times "
                             f"(seconds) or a list of {n_echoes} echo times",
                             _sidecar_of(paths[0]))
        return [_number(v, "EchoTime", _sidecar_of(paths[0])) for v in values], _sidecar_of(paths[0])
    values = [sc.get("EchoTime") for sc in sidecars]
    if all(v is None for v in values):
        return None, None
    for value, path in zip(values, paths):
        if value is None:
            sidecar = _sidecar_of(path)
            if not sidecar.exists():
                raise InputError(f"has no JSON sidecar ({sidecar.name}) while the other echoes "
                                 f"have one with EchoTime; add it or give --echo-times", path)
            raise InputError("the JSON sidecar has no EchoTime while the other echoes' do",
                             sidecar)
        if isinstance(value, list):
            raise InputError("EchoTime must be one number for a one-echo file",
                             _sidecar_of(path))
    return [_number(v, "EchoTime", _sidecar_of(p)) for v, p in zip(values, paths)], _sidecar_of(paths[0])


def _sidecar_of(path: Path) -> Path:
    from qsmiron.io.nifti import sidecar_path

    return sidecar_path(path)


def _number(value: Any, key: str, path: Path) -> float:
    if isinstance(value, bool):  # float(true) is 1: an echo at 1 s, reported as out of order
        raise InputError(f"{key} must be a number, got {value!r}", path)
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise InputError(f"{key} must be a number, got {value!r}", path) from None
    if not math.isfinite(number):
        raise InputError(f"{key} must be finite, got {value!r}", path)
    return number


def _check_echo_times(echo_times: list[float], n_echoes: int, source: str, path: Path) -> None:
    if len(echo_times) != n_echoes:
        raise InputError(f"{len(echo_times)} echo time(s) ({_fmt_times(echo_times)}, {source}) "
                         f"for {n_echoes} echoes in the data", path)
    if any(not math.isfinite(t) or t <= 0 for t in echo_times):
        raise InputError(f"echo times must be positive seconds, got {_fmt_times(echo_times)} "
                         f"({source})", path)
    if max(echo_times) > ECHO_TIME_MS_THRESHOLD_S:
        seconds = ",".join(f"{t / 1000:g}" for t in echo_times)
        raise InputError(f"echo times {_fmt_times(echo_times)} ({source}) look like "
                         f"milliseconds; give seconds as BIDS does (e.g. {seconds})", path)
    if any(b <= a for a, b in zip(echo_times, echo_times[1:])):
        raise InputError(f"echo times {_fmt_times(echo_times)} ({source}) are not strictly "
                         f"increasing; list the echoes (files or volumes) in acquisition order",
                         path)


def _resolve_echo_times(echo_times_s, mag_paths, mag_sidecars, phase_paths, phase_sidecars,
                        n_echoes: int, warnings: list[str]) -> tuple[list[float], str]:
    if echo_times_s is not None:
        values = [float(t) for t in np.atleast_1d(np.asarray(echo_times_s, dtype=float))]
        _check_echo_times(values, n_echoes, "given as echo_times_s / --echo-times", phase_paths[0])
        # The given times win; sidecars that disagree (or give one TE for a 4D file, as
        # converters merging echoes do) only earn a warning.
        try:
            from_sidecars, _ = _sidecar_echo_times(phase_sidecars, phase_paths, n_echoes, "phase")
            if from_sidecars is None:
                from_sidecars, _ = _sidecar_echo_times(mag_sidecars, mag_paths, n_echoes,
                                                       "magnitude")
        except InputError:
            from_sidecars = None
        if from_sidecars is not None and not np.allclose(from_sidecars, values, rtol=0, atol=1e-6):
            warnings.append(f"the echo times given ({_fmt_times(values)} s) differ from the "
                            f"sidecars' ({_fmt_times(from_sidecars)} s); the given ones are used")
        return values, "argument"
    from_phase, phase_json = _sidecar_echo_times(phase_sidecars, phase_paths, n_echoes, "phase")
    from_mag, mag_json = _sidecar_echo_times(mag_sidecars, mag_paths, n_echoes, "magnitude")
    if from_phase is not None and from_mag is not None and not np.allclose(
            from_phase, from_mag, rtol=0, atol=1e-6):
        raise InputError(f"the phase sidecars give echo times {_fmt_times(from_phase)} but "
                         f"the magnitude sidecars give {_fmt_times(from_mag)} (from {mag_json})",
                         phase_json)
    from_sidecars = from_phase if from_phase is not None else from_mag
    sidecar_file = phase_json if from_phase is not None else mag_json
    if from_sidecars is None:
        raise InputError("echo times unknown: give --echo-times (seconds) or EchoTime in the "
                         "BIDS JSON sidecars", phase_paths[0])
    _check_echo_times(from_sidecars, n_echoes, "from the JSON sidecars", sidecar_file)
    return from_sidecars, "sidecar"


def _resolve_field_strength(field_strength_t, all_sidecars, all_paths, first_phase: Path,
                            warnings: list[str]) -> tuple[float, str]:
    from_sidecar = None
    sidecar_file = None
    for sidecar, path in zip(all_sidecars, all_paths):
        if sidecar.get("MagneticFieldStrength") is not None:
            from_sidecar = _number(sidecar["MagneticFieldStrength"], "MagneticFieldStrength",
                                   _sidecar_of(path))
            sidecar_file = _sidecar_of(path)
            break
    low, high = FIELD_STRENGTH_RANGE_T
    if field_strength_t is not None:
        value = float(field_strength_t)
        if not math.isfinite(value) or not low <= value <= high:
            raise InputError(f"field strength {field_strength_t!r} (given as --field-strength) "
                             f"is not a B0 in tesla ({low:g} to {high:g})", first_phase)
        if from_sidecar is not None and abs(from_sidecar - value) > 0.05 * value:
            warnings.append(f"the field strength given ({value:g} T) differs from the "
                            f"sidecar's MagneticFieldStrength ({from_sidecar:g} T); the given "
                            f"one is used")
        return value, "argument"
    if from_sidecar is None:
        raise InputError("field strength unknown: give --field-strength (tesla) or "
                         "MagneticFieldStrength in the BIDS JSON sidecar", first_phase)
    if not low <= from_sidecar <= high:
        raise InputError(f"MagneticFieldStrength {from_sidecar:g} is not a B0 in tesla "
                         f"({low:g} to {high:g})", sidecar_file)
    return from_sidecar, "sidecar"


def load_gre(magnitude_paths, phase_paths, *, echo_times_s: Sequence[float] | None = None,
             field_strength_t: float | None = None) -> MultiEchoGRE:
    """Load and validate a multi-echo GRE acquisition.

    Parameters
    ----------
    magnitude_paths, phase_paths : path or sequence of paths
        One 4D NIfTI (echoes along the 4th axis) or one 3D NIfTI per echo, in echo order
        (the order given is kept). The two parts may use different forms.
    echo_times_s : sequence of float, optional
        Echo times in seconds; default: ``EchoTime`` from the BIDS JSON sidecars (one per
        file, or a list in the sidecar of a 4D file).
    field_strength_t : float, optional
        B0 in tesla; default: ``MagneticFieldStrength`` from the sidecars.

    Returns
    -------
    MultiEchoGRE

    Raises
    ------
    InputError
        Naming the file and the problem: missing or unreadable file; mismatched shapes or
        affines between the echoes or between magnitude and phase; a single echo; NaN or
        infinite values; an all-zero or negative magnitude; echo times that are missing,
        miscounted, not positive, in milliseconds or not increasing; a missing or
        implausible field strength.
    """
    # Opening a .nii.gz decompresses it (open_image checks the whole stream), which releases
    # the GIL: the phase opens in a second thread while the magnitude opens.
    with ThreadPoolExecutor(max_workers=1) as pool:
        mag_paths = _as_path_list(magnitude_paths, "magnitude")
        pending_phase = pool.submit(lambda: _inspect_part(_as_path_list(phase_paths, "phase"), "phase"))
        mag = _inspect_part(mag_paths, "magnitude")
        pha = pending_phase.result()
    if mag.shape != pha.shape:
        raise InputError(f"phase shape {pha.shape} (x, y, z, echoes) does not match the "
                         f"magnitude's {mag.shape} ({mag.paths[0].name})", pha.paths[0])
    if not same_grid(mag.affine, pha.affine, mag.shape, pha.shape, atol_mm=GRID_TOLERANCE_MM):
        raise InputError(f"the phase affine differs from the magnitude's ({mag.paths[0].name}) "
                         f"by up to {np.abs(mag.affine - pha.affine).max():.3g} mm; both "
                         f"parts must be on one grid", pha.paths[0])
    shape = mag.shape
    if min(shape[:3]) < MIN_VOXELS_PER_AXIS:
        raise InputError(f"matrix {shape[0]} x {shape[1]} x {shape[2]}: QSM needs a 3D volume "
                         f"with at least {MIN_VOXELS_PER_AXIS} voxels along every axis (the "
                         f"dipole field and background removal reach across slices); a 2D or "
                         f"single-slab image cannot be reconstructed", mag.paths[0])
    n_echoes = mag.shape[3]

    # Echo times and field strength come from headers and sidecars: check them before the
    # voxel data is read.
    warnings: list[str] = []
    echo_times, echo_source = _resolve_echo_times(echo_times_s, mag.paths, mag.sidecars,
                                                  pha.paths, pha.sidecars, n_echoes, warnings)
    all_sidecars = [*pha.sidecars, *mag.sidecars]
    all_paths = [*pha.paths, *mag.paths]
    field_strength, field_source = _resolve_field_strength(field_strength_t, all_sidecars,
                                                           all_paths, pha.paths[0], warnings)

    # Both parts at once: the casts release the GIL (two cores, half the wait).
    with ThreadPoolExecutor(max_workers=1) as pool:
        pending_phase = pool.submit(_read_part, pha)
        magnitude = _read_part(mag)
        _check_magnitude(magnitude, mag)
        phase = pending_phase.result()

    merged: dict[str, Any] = {}
    for sidecar in reversed(all_sidecars):  # the first phase sidecar wins
        merged.update(sidecar)
    affine = mag.affine
    b0 = b0_direction_voxel(affine)
    voxel = clean_voxel_size_mm(affine)
    warnings.extend(acquisition_warnings(voxel, echo_times, field_strength, merged))
    acquisition = acquisition_record(magnitude.shape[:3], affine, echo_times, field_strength, b0,
                               merged, echo_source, field_source)
    return MultiEchoGRE(
        magnitude=magnitude,
        phase=phase,
        affine=affine,
        echo_times_s=tuple(echo_times),
        field_strength_t=float(field_strength),
        voxel_size_mm=voxel,
        b0_direction=b0,
        sidecars={"magnitude": mag.sidecars, "phase": pha.sidecars},
        paths={"magnitude": mag.paths, "phase": pha.paths},
        acquisition=acquisition,
        warnings=warnings,
    )
