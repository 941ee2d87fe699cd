"""One subject from files: ``qsmiron recon`` and ``qsmiron invert``.

Everything the user gave is validated before any heavy work; results are computed in memory
and written into a temporary folder that is moved into place only when every file was
written, so an output folder never holds half a reconstruction.
"""

from __future__ import annotations

import datetime
import os
import platform
import shutil
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from qsmiron import __version__
from qsmiron.config import QsmironConfig, load_config
from qsmiron.errors import InputError
from qsmiron.io.atomic import write_json_atomic
from qsmiron.io.nifti import b0_direction_voxel, same_grid, save_nifti, voxel_size_mm

DEFAULT_NAMES = {
    "Chimap": "Chimap.nii.gz",
    "mask": "mask.nii.gz",
    "fieldmap": "fieldmap.nii.gz",
    "localfield": "localfield.nii.gz",
    "recon_json": "recon.json",
}
"""Output file names of ``reconstruct_files``; ``names`` overrides any of them."""

_VERSION_PACKAGES = ("numpy", "scipy", "nibabel", "scikit-image", "pydantic", "numba")


def software_versions() -> dict[str, str | None]:
    """Versions of qsmiron, Python and the numerical libraries a reconstruction used."""
    versions: dict[str, str | None] = {"qsmiron": __version__,
                                       "python": platform.python_version()}
    for name in _VERSION_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def _resolve_config(config_path, settings: QsmironConfig | None) -> QsmironConfig:
    if settings is not None and config_path is not None:
        raise ValueError("give either settings or config_path, not both")
    if settings is not None:
        return settings
    return load_config(config_path)


def _check_out_dir(out_dir: Path) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError("the output folder exists and is not a folder", out_dir)
    probe = out_dir
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir() or not os.access(probe, os.W_OK | os.X_OK):
        raise InputError("the output folder cannot be created or written here", out_dir)


def _output_names(names: dict[str, str] | None) -> dict[str, str]:
    resolved = dict(DEFAULT_NAMES)
    if names:
        unknown = set(names) - set(DEFAULT_NAMES)
        if unknown:
            raise ValueError(f"unknown output name keys {sorted(unknown)}; use {sorted(DEFAULT_NAMES)}")
        resolved.update({k: str(v) for k, v in names.items()})
    values = list(resolved.values())
    if len(set(values)) != len(values) or any(Path(v).name != v for v in values):
        raise ValueError(f"output names must be distinct plain file names, got {resolved}")
    return resolved


def load_mask(path: str | os.PathLike, shape3d: Sequence[int], affine: np.ndarray, *,
              data_path: str | os.PathLike | None = None) -> np.ndarray:
    """Read a binary mask that must lie on the given grid.

    Raises
    ------
    InputError
        Naming the mask file: unreadable, not 3D, another grid, values other than 0 and 1,
        NaNs, or empty.
    """
    from qsmiron.io.nifti import load_nifti

    volume = load_nifti(path, dtype=None, with_sidecar=False)
    data = np.asarray(volume.data)
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise InputError(f"a mask must be 3D, got shape {data.shape}", path)
    if not same_grid(volume.affine, affine, data.shape, shape3d):
        where = f" of {Path(data_path).name}" if data_path is not None else ""
        raise InputError(f"the mask is on another grid (shape {data.shape}, voxel "
                         f"{tuple(round(v, 3) for v in voxel_size_mm(volume.affine))} mm) than "
                         f"the data{where} (shape {tuple(shape3d)}, voxel "
                         f"{tuple(round(v, 3) for v in voxel_size_mm(affine))} mm) or its "
                         f"affine differs", path)
    values = data.astype(np.float64, copy=False)
    if not np.all(np.isfinite(values)):
        raise InputError("the mask holds NaN or infinite values", path)
    if not np.all((values == 0) | (values == 1)):
        found = np.unique(values[(values != 0) & (values != 1)])[:5]
        raise InputError(f"the mask is not binary (values other than 0 and 1, e.g. "
                         f"{', '.join(f'{v:g}' for v in found)}); threshold it first", path)
    mask = values == 1
    if not mask.any():
        raise InputError("the mask is empty (no voxel is 1)", path)
    return mask


def _paths(value) -> list[str]:
    if value is None:
        return []
    if isinstance(value, (str, os.PathLike)):
        return [os.fspath(value)]
    return [os.fspath(v) for v in value]


def recon_record(gre, result, config: QsmironConfig, *, mask_path=None,
                 names: dict[str, str] | None = None) -> dict[str, Any]:
    """The ``recon.json`` payload for a finished reconstruction."""
    acquisition = dict(gre.acquisition)
    acquisition["phase_scaling"] = result.phase_scaling or None
    reference_method = config.recon.reference.method
    region = "whole brain mask" if reference_method == "mean" else "reference mask"
    from qsmiron.recon.chain import _jsonable

    return _jsonable({
        "qsmiron_version": __version__,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "inputs": {
            "magnitude": [str(Path(p).resolve()) for p in gre.paths["magnitude"]],
            "phase": [str(Path(p).resolve()) for p in gre.paths["phase"]],
            "mask": None if mask_path is None else str(Path(mask_path).resolve()),
        },
        "acquisition": acquisition,
        "steps": result.steps,
        "reference": {"method": reference_method, "region": region},
        "units": {"Chimap": "ppm", "fieldmap": "Hz", "localfield": "ppm", "mask": "binary"},
        "outputs": dict(names or DEFAULT_NAMES),
        "mask_description": "brain mask after phase-quality refinement and the erosion of "
                            "background field removal: where Chimap and localfield are valid",
        "seconds": round(result.seconds, 3),
        "warnings": [*gre.warnings, *result.warnings],
        "config": config.model_dump(mode="json"),
        "versions": software_versions(),
    })


def _move_into(tmp_dir: Path, out_dir: Path, names: list[str]) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in names:
        os.replace(tmp_dir / name, out_dir / name)


def template_brain(magnitude: np.ndarray, affine: np.ndarray, config: QsmironConfig, *,
                   user_mask: bool) -> tuple[np.ndarray | None, dict[str, Any]]:
    """The template brain on the subject grid for the automatic mask, or why there is none.

    Registration problems (ANTs errors included) never stop a reconstruction: the mask then
    falls back to the magnitude alone and the recorded reason says so.
    """
    if user_mask:
        return None, {"used": False, "reason": "a user mask was given"}
    if not config.recon.mask.template_brain:
        return None, {"used": False, "reason": "disabled (mask.template_brain = false)"}
    from qsmiron.register.brainmask import template_brain_probability

    try:
        found = template_brain_probability(magnitude, affine)
    except (RuntimeError, ValueError, MemoryError) as error:
        return None, {"used": False, "reason": f"template registration failed ({error}); magnitude mask only"}
    return found.probability, found.info


def reconstruct_files(magnitude, phase, out_dir, *, echo_times_s: Sequence[float] | None = None,
                      field_strength_t: float | None = None, mask=None, config_path=None,
                      settings: QsmironConfig | None = None,
                      names: dict[str, str] | None = None) -> dict[str, Path]:
    """Reconstruct one multi-echo GRE acquisition from NIfTI files into ``out_dir``.

    Parameters
    ----------
    magnitude, phase : path or sequence of paths
        One 4D file (echoes last) or one 3D file per echo, in echo order.
    out_dir : path
        Created if needed; existing files other than the outputs are left alone.
    echo_times_s : sequence of float, optional
        Seconds; default: ``EchoTime`` from the BIDS JSON sidecars.
    field_strength_t : float, optional
        Tesla; default: ``MagneticFieldStrength`` from the sidecars.
    mask : path, optional
        Binary brain mask on the data's grid, used instead of the automatic one.
    config_path : path, optional
        Settings file (TOML or JSON); ``settings`` gives them as an object instead.
    settings : QsmironConfig, optional
    names : dict, optional
        Output file names by key (``Chimap``, ``mask``, ``fieldmap``, ``localfield``,
        ``recon_json``); defaults in ``DEFAULT_NAMES``.

    Returns
    -------
    dict
        Key -> written path, for the keys of ``DEFAULT_NAMES``.

    Raises
    ------
    InputError
        Naming the file and the problem, before anything is written.
    """
    from qsmiron.io.gre import load_gre
    from qsmiron.recon.chain import reconstruct_arrays

    out_dir = Path(out_dir)
    output_names = _output_names(names)
    # Validation first: configuration, output folder, inputs, mask.
    config = _resolve_config(config_path, settings)
    if config.recon.reference.method != "mean":
        raise InputError(f"recon.reference.method = {config.recon.reference.method!r} needs a "
                         f"reference mask, which recon does not take; use 'mean' (whole brain, "
                         f"the consensus reference)", config_path)
    _check_out_dir(out_dir)
    gre = load_gre(magnitude, phase, echo_times_s=echo_times_s, field_strength_t=field_strength_t)
    user_mask = None
    if mask is not None:
        user_mask = load_mask(mask, gre.shape3d, gre.affine, data_path=gre.paths["magnitude"][0])

    probability, probability_notes = template_brain(gre.magnitude, gre.affine, config,
                                                    user_mask=user_mask is not None)
    try:
        result = reconstruct_arrays(gre.magnitude, gre.phase, gre.voxel_size_mm, gre.b0_direction,
                                    gre.echo_times_s, gre.field_strength_t,
                                    settings=config.recon, mask=user_mask,
                                    brain_probability=probability,
                                    brain_probability_notes=probability_notes)
    except InputError as error:
        step = getattr(error, "step", None)
        if step == "mask":
            where = mask if mask is not None else gre.paths["magnitude"][0]
        elif step == "phase_preparation":
            where = gre.paths["phase"][0]
        else:
            where = gre.paths["phase"][0] if mask is None else mask
        raise error.with_path(where) from None

    record = recon_record(gre, result, config, mask_path=mask, names=output_names)
    affine = gre.affine
    del gre
    # Write everything into a temporary folder beside the outputs, then move it into place.
    parent = out_dir if out_dir.exists() else out_dir.parent
    parent.mkdir(parents=True, exist_ok=True)
    tmp_dir = Path(tempfile.mkdtemp(prefix=".qsmiron-recon-", suffix=".tmp", dir=parent))
    try:
        save_nifti(tmp_dir / output_names["Chimap"], result.chi_ppm, affine, dtype=np.float32)
        save_nifti(tmp_dir / output_names["mask"], result.mask, affine, dtype=np.uint8)
        save_nifti(tmp_dir / output_names["fieldmap"], result.field_hz, affine, dtype=np.float32)
        save_nifti(tmp_dir / output_names["localfield"], result.local_ppm, affine,
                   dtype=np.float32)
        write_json_atomic(tmp_dir / output_names["recon_json"], record)
        # recon.json last: its presence marks a complete set.
        order = [output_names[k] for k in ("Chimap", "mask", "fieldmap", "localfield",
                                           "recon_json")]
        _move_into(tmp_dir, out_dir, order)
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)
    return {key: out_dir / name for key, name in output_names.items()}


def _parse_value(text: str):
    """A command-line parameter value: bool, none, int, float, else the string itself."""
    lowered = text.strip().lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered in ("none", "null"):
        return None
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text.strip()


def method_parameters_from_text(method: str, texts: dict[str, str] | None) -> dict[str, Any]:
    """Validate ``key=value`` method parameters given as text against the method's signature.

    Values become numbers, booleans, None or strings; an integer parameter must get an
    integer, a float parameter takes integers too, a boolean one true/false.

    Raises
    ------
    InputError
        One line naming the unknown key (and the keys the method takes) or the bad value.
    """
    from qsmiron.recon.invert import method_parameters

    accepted = {k: v for k, v in method_parameters(method).items() if k not in ("magnitude", "noise_ppm")}
    params: dict[str, Any] = {}
    for key, text in (texts or {}).items():
        if key not in accepted:
            raise InputError(f"inversion method {method!r} has no parameter {key!r}; it takes "
                             f"{', '.join(sorted(accepted))}")
        value, default = _parse_value(text), accepted[key]
        if isinstance(default, bool) and not isinstance(value, bool):
            raise InputError(f"parameter {key!r} of {method!r} must be true or false, got {text!r}")
        if type(default) is int and type(value) is not int:
            raise InputError(f"parameter {key!r} of {method!r} must be an integer, got {text!r}")
        if type(default) is float and type(value) is int:
            value = float(value)
        if type(default) is float and type(value) is not float:
            raise InputError(f"parameter {key!r} of {method!r} must be a number, got {text!r}")
        params[key] = value
    return params


def _load_magnitude(path, shape3d: Sequence[int], affine: np.ndarray, field_path) -> np.ndarray:
    """A magnitude on the field's grid; a 4D one (echoes last) is combined as root sum of squares."""
    from qsmiron.io.nifti import load_nifti

    volume = load_nifti(path, with_sidecar=False)
    data, volume_affine = np.asarray(volume.data, dtype=np.float32), volume.affine
    if data.ndim == 4:
        data = np.sqrt(np.sum(np.square(data), axis=3))
    if data.ndim != 3 or not same_grid(volume_affine, affine, data.shape, shape3d):
        raise InputError(f"the magnitude must be a 3D or 4D image on the grid of "
                         f"{Path(field_path).name} (shape {tuple(shape3d)}), got shape "
                         f"{tuple(data.shape)} or another affine", path)
    if not np.all(np.isfinite(data)):
        raise InputError("the magnitude holds NaN or infinite values", path)
    return data


def invert_file(field, mask, out, *, method: str | None = None, config_path=None, magnitude=None,
                params: dict[str, str] | None = None) -> Path:
    """Dipole inversion of a local field map file.

    Parameters
    ----------
    field : path
        Local field, ppm of B0, 3D NIfTI; voxel size and B0 direction (oblique slices
        included) come from its affine. Values outside the mask are ignored.
    mask : path
        Binary mask on the same grid.
    out : path
        Susceptibility map to write (ppm, same grid); a JSON sidecar beside it records the
        method, its parameters and the versions.
    method : str, optional
        One of ``qsmiron.recon.invert.INVERSION_METHODS``; default: the configuration's
        (``recon.inversion.method``).
    config_path : path, optional
        Settings file (TOML or JSON).
    magnitude : path, optional
        Magnitude on the same grid (3D, or 4D with echoes last, combined as root sum of
        squares): edge prior and data weights of the magnitude-weighted methods (``wtv``,
        ``wtv_bregman``); recorded as unused by the others.
    params : dict of str, optional
        Method parameters as text (``{"max_outer": "4"}``), validated against the method's
        signature; they override the configuration's.

    Raises
    ------
    InputError
        A 4D field, NaN or infinite values inside the mask, a mask or magnitude on another
        grid, a mask that is not binary or empty, an unknown method or parameter.
    """
    from qsmiron.io.gre import clean_voxel_size_mm
    from qsmiron.io.nifti import load_nifti
    from qsmiron.recon.chain import _jsonable, _method_parameters
    from qsmiron.recon.invert import INVERSION_METHODS, RENAMED_METHODS, invert, resolve_method
    from qsmiron.recon.reference import reference_susceptibility

    config = load_config(config_path)
    block = config.recon.inversion
    chosen = block.method if method is None else str(method)
    if chosen not in INVERSION_METHODS and chosen not in RENAMED_METHODS:
        raise InputError(f"unknown inversion method {chosen!r}; choose one of "
                         f"{', '.join(sorted(INVERSION_METHODS))}")
    chosen = resolve_method(chosen)
    given = method_parameters_from_text(chosen, params)
    out = Path(out)
    if out.exists() and out.is_dir():
        raise InputError("the output is a folder; give a file name ending in .nii.gz", out)
    field_volume = load_nifti(field)
    data = field_volume.data
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise InputError(f"the local field must be 3D, got shape {data.shape} (give one "
                         f"echo-combined field in ppm, not the echoes)", field)
    mask_array = load_mask(mask, data.shape, field_volume.affine, data_path=field)
    if not np.all(np.isfinite(data[mask_array])):
        n_bad = int(np.count_nonzero(~np.isfinite(data[mask_array])))
        raise InputError(f"the local field holds {n_bad} NaN or infinite values inside the "
                         f"mask", field)
    magnitude_array = None if magnitude is None else _load_magnitude(magnitude, data.shape,
                                                                     field_volume.affine, field)
    local_ppm = np.where(mask_array, data, 0).astype(np.float32)
    voxel = clean_voxel_size_mm(field_volume.affine)
    b0 = b0_direction_voxel(field_volume.affine)
    chosen_block = block if chosen == block.method else block.model_copy(update={"method": chosen})
    params_used = {**_method_parameters(chosen_block), **given}
    result = invert(local_ppm, mask_array, voxel, b0, method=chosen, magnitude=magnitude_array,
                    **params_used)
    # Susceptibility is relative: reference it to the whole-brain (mask) mean, as recon does.
    chi, reference_info = reference_susceptibility(np.where(mask_array, result.chi_ppm, 0),
                                                   mask_array, method="mean")
    chi = np.where(mask_array, chi, 0).astype(np.float32)
    info = dict(result.info or {})
    used_inputs = info.pop("inputs", {}) or {}

    sidecar = {
        "Units": "ppm",
        "qsmiron": {
            "command": "invert",
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "inputs": {"field": str(Path(field).resolve()), "mask": str(Path(mask).resolve()),
                       "magnitude": None if magnitude is None else str(Path(magnitude).resolve()),
                       "magnitude_used": bool(used_inputs.get("magnitude", False))},
            "method": chosen,
            "parameters": _jsonable(params_used | (info.pop("parameters", None) or {})),
            "parameters_from_command_line": _jsonable(given),
            "notes": _jsonable(info),
            "voxel_size_mm": list(voxel),
            "b0_direction_voxel": [float(v) for v in b0],
            "reference": {"method": "mean", "region": "the mask",
                          "notes": _jsonable(reference_info)},
            "versions": software_versions(),
        },
    }
    save_nifti(out, chi, field_volume.affine, dtype=np.float32, sidecar=sidecar)
    return out
