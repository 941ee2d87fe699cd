"""One subject from files: ``qsmiron recon`` and ``qsmiron invert``.

Everything the user gave is validated before any heavy work; results are computed in memory
and written into a temporary folder that is moved into place only when every file was
written, so an output folder never holds half a reconstruction.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from qsmiron import __version__
from qsmiron.config import QsmironConfig, load_config
from qsmiron.errors import InputError
from qsmiron.io.atomic import check_inputs_spared, check_writable_dir, write_json_atomic
from qsmiron.io.derivatives import IRON_ROLES, ReconPaths, recon_paths
from qsmiron.io.nifti import (b0_direction_voxel, outputs_with_sidecars, same_grid, save_nifti, voxel_size_mm,
                              with_sidecars)
from qsmiron.pipeline.recon_outputs import images
from qsmiron.records.recon import InversionRecord, ReconInputs, ReconRecord
from qsmiron.recon.settings import ReconSettings, check_total_field_pairing
from qsmiron.versions import software_versions


def _resolve_config(config_path, settings: QsmironConfig | None) -> QsmironConfig:
    if settings is not None and config_path is not None:
        raise ValueError("give either settings or config_path, not both")
    if settings is not None:
        return settings
    return load_config(config_path)


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
    data = data[..., 0] if data.ndim == 4 and data.shape[3] == 1 else data
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


def absolute_name(path: str | os.PathLike) -> str:
    """An input file as a record names it by default: its absolute path."""
    return str(Path(path).resolve())


def recon_record(gre, result, config: QsmironConfig, paths: ReconPaths, *, mask_path=None,
                 r2_path=None, input_name: Callable[[str | os.PathLike], str] = absolute_name) -> ReconRecord:
    """The record of a finished reconstruction (``paths``: the files it writes; ``input_name``:
    how it names an input file, e.g. as a BIDS URI in a cohort)."""
    chisep = result.chisep_info
    if chisep is not None and r2_path is not None and chisep.skipped is None:
        chisep = chisep.model_copy(update={"r2_map": input_name(r2_path)})
    return ReconRecord(
        qsmiron_version=__version__,
        inputs=ReconInputs(magnitude=[input_name(p) for p in gre.paths["magnitude"]],
                           phase=[input_name(p) for p in gre.paths["phase"]],
                           mask=None if mask_path is None else input_name(mask_path),
                           r2=None if r2_path is None else input_name(r2_path)),
        acquisition=gre.acquisition,
        steps=result.steps,
        readout=result.readout_info, r2star=result.r2star_info, chi_separation=chisep,
        outputs={role: path.name for role, path in paths.files().items()},
        mask_description="brain mask after phase-quality refinement and the erosion of background field "
                         "removal: where Chimap and localfield are valid",
        seconds=round(result.seconds, 3),
        warnings=[*gre.warnings, *result.warnings],
        config=config,
        versions=software_versions())


def _move_into(tmp_dir: Path, out_dir: Path, names: list[str]) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in names:
        os.replace(tmp_dir / name, out_dir / name)


def uses_template_brain(recon: ReconSettings) -> bool:
    """Whether the automatic mask's method takes the registered template brain."""
    from qsmiron.recon.stages import MASK, accepts

    return accepts(MASK.method(recon.mask.method), "brain_probability") \
        and bool(MASK.parameters(recon.mask).get("template_brain", False))


def template_brain(magnitude: np.ndarray, affine: np.ndarray,
                   recon: ReconSettings) -> tuple[np.ndarray | None, dict[str, Any]]:
    """The template brain on the subject grid for the automatic mask, or why there is none.

    Registered only for a mask method that takes one (``brain_probability``) with its
    ``template_brain`` on. Registration problems (ANTs errors included) never stop a
    reconstruction: the mask then falls back to the magnitude alone and the recorded reason
    says so.
    """
    if not uses_template_brain(recon):
        return None, {}
    from qsmiron.register.brainmask import template_brain_probability

    try:
        found = template_brain_probability(magnitude, affine)
    except (RuntimeError, ValueError, MemoryError) as error:
        return None, {"used": False, "reason": f"template registration failed ({error}); magnitude mask only"}
    return found.probability, found.info


def _check_r2_request(config: QsmironConfig, r2, n_echoes: int, magnitude_path) -> None:
    """An R2 map is only used by chi-separation, which needs R2*: say so before any work."""
    from qsmiron.recon.r2star import MIN_ECHOES

    if r2 is None:
        return
    if config.recon.chisep.method == "none":
        raise InputError("an R2 map was given, but chi-separation (the only step that uses it) is off: "
                         "set [recon.chisep] method = \"shin\"", r2)
    if config.recon.r2star.method == "none":
        raise InputError("an R2 map was given for chi-separation, which needs R2*, but R2* mapping is off "
                         "([recon.r2star] method = \"none\")", r2)
    if n_echoes < MIN_ECHOES:
        raise InputError(f"an R2 map was given for chi-separation, which needs R2* from at least "
                         f"{MIN_ECHOES} echoes; this acquisition has {n_echoes}", magnitude_path)


def _error_file(error: InputError, gre, mask, r2):
    """The file a reconstruction stage's problem is about."""
    from qsmiron.recon.stages import R2_MAP_STEP

    if error.step == R2_MAP_STEP:
        return r2
    if error.step == "mask":
        return mask if mask is not None else gre.paths["magnitude"][0]
    if error.step == "phase":
        return gre.paths["phase"][0]
    if error.step in ("r2star", "chisep"):  # the magnitude's decay
        return gre.paths["magnitude"][0]
    return gre.paths["phase"][0] if mask is None else mask


def _write_outputs(result, record: ReconRecord, paths: ReconPaths, affine, out_dir: Path,
                   sources: Sequence[str] | None) -> None:
    """Every image, its sidecar and the record into a temporary folder, then moved into place."""
    from qsmiron.io.atomic import json_text
    from qsmiron.io.derivatives import sidecar_of
    from qsmiron.pipeline.recon_outputs import images, sidecars

    parent = out_dir if out_dir.exists() else out_dir.parent
    parent.mkdir(parents=True, exist_ok=True)
    tmp_dir = Path(tempfile.mkdtemp(prefix=".qsmiron-recon-", suffix=".tmp", dir=parent))
    try:
        arrays = images(result)
        written = {**paths.maps(), **paths.iron_maps()}
        # Compression releases the GIL (io.nifti.save_nifti): the maps are written on two cores.
        with ThreadPoolExecutor(max_workers=2) as pool:
            pending = [pool.submit(save_nifti, tmp_dir / path.name, arrays[role][0], affine,
                                   dtype=arrays[role][1]) for role, path in written.items()]
            try:
                for done in pending:
                    done.result()
            except BaseException:
                for waiting in pending:  # a full disk stops the rest (the pool waits for those running)
                    waiting.cancel()
                raise
        notes = sidecars(record, list(written), chain=paths.with_sidecars, sources=sources)
        for role, sidecar in notes.items():
            (tmp_dir / sidecar_of(written[role]).name).write_text(json_text(sidecar), encoding="utf-8")
        write_json_atomic(tmp_dir / paths.record.name, record.to_json())
        # The record last: its presence marks a complete set.
        names = [path.name for path in written.values()] + [sidecar_of(written[r]).name for r in notes]
        _move_into(tmp_dir, out_dir, names + [paths.record.name])
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)


def _check_mask_source(magnitude: np.ndarray, path) -> None:
    """``qsmiron.recon.mask.brain_mask`` thresholds this root sum of squares (float32, on at most 2 million
    voxels), and raised a ValueError, a traceback, where it overflows or has not two values above zero."""
    flat = magnitude.reshape(-1, magnitude.shape[-1])
    with np.errstate(over="ignore", under="ignore"):
        combined = np.sqrt(np.square(flat[:: max(1, flat.shape[0] // 2_000_000)]).sum(axis=1))
    positive = combined[combined > 0]
    if np.all(np.isfinite(combined)) and positive.size > 1 and np.ptp(positive) > 0:
        return
    reason = "overflows single precision" if not np.all(np.isfinite(combined)) else "has one value wherever it " \
        "is not zero" if positive.size > 1 else "is zero (in single precision) in all voxels but at most one"
    raise InputError(f"the magnitude's root sum of squares over the echoes {reason} (values {np.min(flat):.3g} to "
                     f"{np.max(flat):.3g}): no brain mask can be derived from it (give one with --mask)", path)


def reconstruct_files(magnitude, phase, out_dir, *, echo_times_s: Sequence[float] | None = None,
                      field_strength_t: float | None = None, mask=None, r2=None, config_path=None,
                      settings: QsmironConfig | None = None,
                      names: dict[str, str] | None = None,
                      paths: ReconPaths | None = None,
                      sources: Sequence[str] | None = None,
                      input_name: Callable[[str | os.PathLike], str] = absolute_name) -> ReconPaths:
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
    r2 : path, optional
        A measured (spin-echo) R2 map, s^-1, on the data's grid, for chi-separation
        (``[recon.chisep] method = "shin"``); without it chi-separation uses the pseudo-R2
        approximation.
    config_path : path, optional
        Settings file (TOML or JSON); ``settings`` gives them as an object instead.
    settings : QsmironConfig, optional
    names : dict, optional
        Output file names by key (``qsmiron.io.derivatives.LEGACY_RECON_KEYS``) instead of the
        defaults (``qsmiron.io.derivatives.recon_paths``).
    paths : ReconPaths, optional
        All output paths (inside ``out_dir``), as ``qsmiron.io.derivatives.recon_paths`` builds
        them; instead of ``names``.
    sources : sequence of str, optional
        BIDS ``Sources`` written into every sidecar (a cohort).
    input_name : callable, optional
        How the record names an input file (default its absolute path; a cohort gives BIDS URIs).

    Returns
    -------
    ReconPaths
        The paths written: the iron-specific maps not made (R2* from fewer than 3 echoes,
        chi-separation not asked for) are None.

    Raises
    ------
    InputError
        Naming the file and the problem, before anything is written.
    """
    from qsmiron.io.gre import load_gre
    from qsmiron.io.relaxometry import load_r2_map
    from qsmiron.recon.chain import reconstruct_arrays

    out_dir = Path(out_dir)
    if paths is None:
        paths = recon_paths(out_dir, names=names)
    check_inputs_spared(paths.files().values(),
                        [*with_sidecars([*_paths(magnitude), *_paths(phase), mask, r2]), config_path])
    # Validation first: configuration, output folder, inputs, mask, R2 map.
    config = _resolve_config(config_path, settings)
    if config.recon.reference.method != "mean":
        raise InputError(f"recon.reference.method = {config.recon.reference.method!r} needs a "
                         f"reference mask, which recon does not take; use 'mean' (whole brain, "
                         f"the consensus reference)", config_path)
    try:
        check_total_field_pairing(config.recon)
    except InputError as error:
        raise error.with_path(config_path) from None
    check_writable_dir(out_dir)
    if mask is None and uses_template_brain(config.recon):
        from qsmiron.register.ants_backend import pin_itk_to_one_thread
        from qsmiron.register.brainmask import start_importing_ants
        if config.pipeline.reproducible_registration:
            pin_itk_to_one_thread()
        start_importing_ants()
    gre = load_gre(magnitude, phase, echo_times_s=echo_times_s, field_strength_t=field_strength_t)
    _check_r2_request(config, r2, len(gre.echo_times_s), gre.paths["magnitude"][0])
    user_mask = None
    if mask is not None:
        user_mask = load_mask(mask, gre.shape3d, gre.affine, data_path=gre.paths["magnitude"][0])
    else:
        _check_mask_source(gre.magnitude, gre.paths["magnitude"][0])
    r2_map = None if r2 is None else load_r2_map(r2, gre.shape3d, gre.affine)

    # The template registration (ANTs, one thread) runs beside the phase scaling and the
    # magnitude threshold; the mask step takes its result. ANTs holds the GIL through most of
    # it (0.8 of 1.1 s on head_obl15), so the two barely overlap; a forked process instead was
    # measured no faster (phase and mask steps 2.6 against 2.7 s): the registration, 1.4 to
    # 1.9 s, is the longer path either way.
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="template-brain") as pool:
        registration = None if user_mask is not None else \
            pool.submit(template_brain, gre.magnitude, gre.affine, config.recon)
        try:
            result = reconstruct_arrays(gre.magnitude, gre.phase, gre.voxel_size_mm, gre.b0_direction,
                                        gre.echo_times_s, gre.field_strength_t,
                                        settings=config.recon, mask=user_mask, r2_per_s=r2_map,
                                        brain_probability_source=None if registration is None else registration.result)
        except InputError as error:
            raise error.with_path(_error_file(error, gre, mask, r2)) from None

    made = set(images(result))
    paths = dataclasses.replace(paths, **{role: None for role in IRON_ROLES if role not in made})
    record = recon_record(gre, result, config, paths, mask_path=mask, r2_path=r2, input_name=input_name)
    affine = gre.affine
    del gre
    _write_outputs(result, record, paths, affine, out_dir, sources)
    return paths


def inversion_method(name: str) -> str:
    """The declared inversion method a user named (a former name maps to it, with a FutureWarning).

    Raises
    ------
    InputError
        An unknown name, listing the choices.
    """
    from qsmiron.recon.stages import INVERSION

    try:
        declared = INVERSION.method(str(name))
    except ValueError:
        declared = None
    if declared is None or not declared.selectable:
        raise InputError(f"unknown inversion method {name!r}; choose one of "
                         f"{', '.join(sorted(INVERSION.selectable()))}")
    if declared.name != name:
        declared.warn_renamed(str(name), "inversion method")
    return declared.name


def method_parameters_from_text(method: str, texts: dict[str, str] | None) -> dict[str, Any]:
    """``key=value`` parameters of an inversion method, validated against its declaration.

    The values are read as the method's settings block reads them (its signature's types and
    bounds: ``"4"`` is an integer, ``"true"`` a boolean, ``"auto"`` a choice); ``none`` is None.

    Raises
    ------
    InputError
        One line naming the unknown key (and the keys the method takes) or the bad value.
    """
    from pydantic import ValidationError

    from qsmiron.recon.stages import INVERSION
    from qsmiron.settings_base import describe_validation_error

    model = INVERSION.method_settings_model(method)
    texts = dict(texts or {})
    unknown = sorted(set(texts) - set(model.model_fields))
    if unknown:
        raise InputError(f"inversion method {method!r} has no parameter {unknown[0]!r}; it takes "
                         f"{', '.join(sorted(model.model_fields))}")
    values = {key: None if text.strip().lower() in ("none", "null") else text for key, text in texts.items()}
    try:
        validated = model.model_validate(values)
    except ValidationError as error:
        raise InputError(f"--param of inversion method {method!r}: {describe_validation_error(error)}") from None
    return {key: getattr(validated, key) for key in values}


def load_magnitude(path, shape3d: Sequence[int], affine: np.ndarray, field_path) -> np.ndarray:
    """A magnitude on the field's grid as (X, Y, Z, E) float32 (a 3D image is one echo).

    Raises
    ------
    InputError
        Naming the magnitude: not 3D or 4D, another grid, NaN or infinite values.
    """
    from qsmiron.io.nifti import load_nifti

    volume = load_nifti(path, with_sidecar=False)
    data = np.asarray(volume.data, dtype=np.float32)
    if data.ndim == 3:
        data = data[..., np.newaxis]
    if data.ndim != 4 or not same_grid(volume.affine, affine, data.shape[:3], shape3d):
        raise InputError(f"the magnitude must be a 3D or 4D image on the grid of "
                         f"{Path(field_path).name} (shape {tuple(shape3d)}), got shape "
                         f"{tuple(volume.data.shape)} or another affine", path)
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
        A declared inversion method (``qsmiron.recon.invert.METHODS``); default: the
        configuration's (``recon.inversion.method``).
    config_path : path, optional
        Settings file (TOML or JSON).
    magnitude : path, optional
        Magnitude on the same grid (3D, or 4D with echoes last, of which the last echo is
        used, as ``qsmiron recon`` does: ``ReconState.edge_magnitude``): edge prior and data
        weights of the methods that take one (``wtv``, ``wtv_bregman``); the step's
        ``notes["inputs"]`` records whether it was used.
    params : dict of str, optional
        Method parameters as text (``{"max_outer": "4"}``), validated against the method's
        declaration; they override the configuration's and are recorded
        (``InversionRecord.command_line_parameters``).

    Raises
    ------
    InputError
        A 4D field, NaN or infinite values inside the mask, a mask or magnitude on another
        grid, a mask that is not binary or empty, an unknown method or parameter.
    """
    from qsmiron.io.acquisition import clean_voxel_size_mm
    from qsmiron.io.nifti import load_nifti
    from qsmiron.recon.stages import INVERSION, REFERENCE, ReconState, run_stages

    config = load_config(config_path)
    recon = config.recon.model_copy(deep=True)
    if method is not None:
        recon.inversion.method = inversion_method(method)
    chosen = recon.inversion.method
    given = method_parameters_from_text(chosen, params)
    if given:
        setattr(recon.inversion, chosen, getattr(recon.inversion, chosen).model_copy(update=given))
    # Susceptibility is relative: reference it to the whole-brain (mask) mean, as recon does.
    recon.reference.method = "mean"
    out = Path(out)
    if out.is_dir() or not out.name.endswith((".nii", ".nii.gz")):
        raise InputError(f"the output {'is a folder' if out.is_dir() else 'is not named as a NIfTI image'}; "
                         f"give a file name ending in .nii.gz", out)
    check_writable_dir(out.parent)
    check_inputs_spared(outputs_with_sidecars([out]), [*with_sidecars([field, mask, magnitude]), config_path])
    field_volume = load_nifti(field)
    data = field_volume.data
    data = data[..., 0] if data.ndim == 4 and data.shape[3] == 1 else data
    if data.ndim != 3:
        raise InputError(f"the local field must be 3D, got shape {data.shape} (give one "
                         f"echo-combined field in ppm, not the echoes)", field)
    mask_array = load_mask(mask, data.shape, field_volume.affine, data_path=field)
    n_bad = int(np.count_nonzero(~np.isfinite(data[mask_array])))
    if n_bad or not np.any(data[mask_array]):  # a zero field: the TV solvers' stopping rule divided by zero
        raise InputError(f"the local field holds {n_bad} NaN or infinite values inside the mask" if n_bad else
                         "the local field is zero everywhere inside the mask: nothing to invert", field)
    magnitude_array = None if magnitude is None else load_magnitude(magnitude, data.shape, field_volume.affine,
                                                                     field)
    voxel = clean_voxel_size_mm(field_volume.affine)
    b0 = b0_direction_voxel(field_volume.affine)
    state = ReconState(voxel_size_mm=voxel, b0_direction=b0, local_mask=mask_array, magnitude=magnitude_array,
                       local_ppm=np.where(mask_array, data, 0).astype(np.float32))
    steps = run_stages(state, recon, (INVERSION, REFERENCE))
    inputs = {"field": str(Path(field).resolve()), "mask": str(Path(mask).resolve())}
    if magnitude is not None:
        inputs["magnitude"] = str(Path(magnitude).resolve())
    record = InversionRecord(qsmiron_version=__version__, inputs=inputs, command_line_parameters=given,
                             voxel_size_mm=list(voxel), b0_direction_voxel=[float(v) for v in b0],
                             steps=steps, versions=software_versions())
    save_nifti(out, state.chi_ppm, field_volume.affine, dtype=np.float32,
               sidecar={"Units": "ppm", "qsmiron": record.to_json()})
    return out
