"""From one subject's chi map and magnitude to a table of regional susceptibility (files in, files out).

``roi_from_files`` registers the magnitude to the template (ANTs), brings the atlas labels to
the subject's grid, measures chi per region in native space, and writes beside ``OUT.tsv``:
the transforms, the labels in subject space, two QC figures and ``<stem>.json`` (atlas,
template, registration metrics and timings, settings, versions).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import platform
import time
from pathlib import Path

import numpy as np
import pandas as pd

from qsmiron.errors import InputError
from qsmiron.io.nifti import load_nifti, same_grid, save_nifti, voxel_size_mm

CONTRACT_COLUMNS = ["region", "hemisphere", "mean_ppm", "median_ppm", "sd_ppm", "n_voxels", "volume_mm3"]


def _stem(out_tsv: Path) -> Path:
    name = out_tsv.name
    for suffix in (".tsv", ".csv", ".txt"):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
            break
    return out_tsv.with_name(name)


def _load_3d(path, what: str):
    volume = load_nifti(path)
    data = volume.data
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise InputError(f"{what} must be a 3-D image, got shape {data.shape}", path)
    volume.data = data
    return volume


def _versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    from qsmiron import __version__

    out = {"qsmiron": __version__, "python": platform.python_version()}
    for package in ("antspyx", "nibabel", "numpy", "scipy", "pandas", "scikit-image", "matplotlib"):
        try:
            out[package] = version(package)
        except PackageNotFoundError:
            out[package] = None
    return out


def _plausible_brain(mask: np.ndarray, voxel_mm3: float) -> bool:
    """A chi-map support that looks like a brain mask (not empty, not the whole field of view)."""
    volume_ml = mask.sum() * voxel_mm3 / 1000.0
    return 100.0 < volume_ml and mask.mean() < 0.95


def subject_brain_mask(magnitude: np.ndarray, voxel_size: tuple, *, chi_support: np.ndarray | None,
                       given: np.ndarray | None, mode: str) -> tuple[np.ndarray, str]:
    """The brain mask used to prepare the magnitude for registration, and where it came from."""
    from qsmiron.register.images import first_echo, threshold_brain_mask

    voxel_mm3 = float(np.prod(voxel_size))
    if mode == "none":
        return np.ones(magnitude.shape[:3], dtype=bool), "none (whole field of view)"
    if given is not None and mode == "auto":
        return given, "given mask"
    if mode in ("auto", "chi") and chi_support is not None and (mode == "chi" or _plausible_brain(chi_support, voxel_mm3)):
        return chi_support, "support of the chi map (reconstruction mask)"
    try:
        from qsmiron.recon.mask import brain_mask
    except ImportError:
        brain_mask = None
    if brain_mask is not None:
        try:
            return np.asarray(brain_mask(first_echo(magnitude), voxel_size), dtype=bool), "qsmiron.recon.mask.brain_mask"
        except Exception:  # fall back to the simple threshold below
            pass
    return threshold_brain_mask(first_echo(magnitude), voxel_size), "Otsu threshold of the magnitude"


def _fingerprint(*arrays, extra: dict) -> str:
    digest = hashlib.sha256()
    for array in arrays:
        digest.update(np.ascontiguousarray(array).tobytes())
    digest.update(json.dumps(extra, sort_keys=True, default=str).encode())
    return digest.hexdigest()


def _previous_fingerprint(json_path: Path) -> str | None:
    try:
        return json.loads(json_path.read_text(encoding="utf-8"))["registration"]["fingerprint"]
    except Exception:
        return None


def _fov_fraction(registration, reference_ants, subject_shape, subject_affine, labels_array, labels_affine) -> dict:
    """Per label: the fraction of its template voxels that land inside the subject's field of view."""
    from qsmiron.register.images import to_ants
    from qsmiron.register.normalise import to_template

    nonzero = np.argwhere(labels_array > 0)
    lower = np.maximum(nonzero.min(axis=0) - 2, 0)
    upper = np.minimum(nonzero.max(axis=0) + 3, np.asarray(labels_array.shape))
    crop = tuple(slice(a, b) for a, b in zip(lower, upper))
    cropped = labels_array[crop]
    crop_affine = labels_affine.copy()
    crop_affine[:3, 3] = labels_affine[:3, :3] @ lower + labels_affine[:3, 3]
    fov = to_ants(np.ones(subject_shape, dtype=np.float32), subject_affine)
    on_template = to_template(fov, registration, to_ants(cropped.astype(np.float32), crop_affine),
                              interpolation="nearestNeighbor").numpy() > 0.5
    counts = np.bincount(cropped.ravel(), minlength=int(cropped.max()) + 1)
    inside = np.bincount(cropped[on_template].ravel(), minlength=int(cropped.max()) + 1)
    return {int(i): float(inside[i] / counts[i]) for i in np.nonzero(counts)[0] if i}


def roi_from_files(chi, magnitude, out_tsv, *, atlas="cit168", atlas_labels=None, template=None,
                   config_path=None, settings=None, mask=None) -> pd.DataFrame:
    """Per-region susceptibility of one subject, written as ``out_tsv`` with its QC beside it.

    Parameters
    ----------
    chi : path
        Susceptibility map (ppm), 3-D; zero or NaN outside its mask.
    magnitude : path
        GRE magnitude on the same grid (3-D, or 4-D with echoes last: the first echo is used).
    out_tsv : path
        Table to write; the other outputs take its name without ``.tsv`` as their stem.
    atlas : "cit168" or path
    atlas_labels : path, optional
        Index/name table of a user atlas.
    template : path, optional
        Template the atlas is defined on (default: the MNI152NLin2009cAsym brain).
    config_path : path, optional
        Settings file (TOML/JSON); ``settings`` (a ``QsmironConfig``) takes precedence.
    mask : path, optional
        Where chi is valid (the reconstruction mask); default: chi's non-zero finite support.

    Returns
    -------
    DataFrame
        Columns ``region``, ``hemisphere`` (L/R), ``mean_ppm``, ``median_ppm``, ``sd_ppm``,
        ``n_voxels``, ``volume_mm3``, then ``label``, ``coverage`` and the flag columns
        ``flag_empty``, ``flag_small``, ``flag_partial_coverage``, ``flag_registration``.
    """
    from qsmiron.atlas.load import load_atlas
    from qsmiron.config import config_to_dict, load_config
    from qsmiron.io.atomic import write_json_atomic, write_tsv_atomic
    from qsmiron.register.images import first_echo, prepare_subject, to_ants
    from qsmiron.register.normalise import (Registration, TRANSFORM_SUFFIXES, labels_to_subject,
                                            _syn_stages, label_box_mm, register_to_template, template_grid,
                                            to_template)
    from qsmiron.roi.measure import measure_regions
    from qsmiron.roi.qc import atlas_overlay_png, core_similarity, registration_metrics, registration_png

    started = time.perf_counter()
    cpu_started = time.process_time()
    seconds: dict[str, float] = {}
    cpu_seconds: dict[str, float] = {}
    config = settings if settings is not None else load_config(config_path)
    reg_settings, roi_settings = config.registration, config.roi
    atlas = roi_settings.atlas if atlas is None else atlas
    out_tsv = Path(out_tsv)
    stem = _stem(out_tsv)

    # Inputs --------------------------------------------------------------------------------
    tick, cpu_tick = time.perf_counter(), time.process_time()
    chi_vol = _load_3d(chi, "the chi map")
    mag_vol = load_nifti(magnitude)
    if mag_vol.data.ndim not in (3, 4):
        raise InputError(f"the magnitude must be 3-D or 4-D (echoes last), got shape {mag_vol.data.shape}", magnitude)
    if not same_grid(chi_vol.affine, mag_vol.affine, chi_vol.data.shape, mag_vol.data.shape):
        raise InputError(f"the chi map {chi} (shape {chi_vol.shape3d}) and the magnitude {magnitude} "
                         f"(shape {mag_vol.shape3d}) are not on the same voxel grid (shape and affine)", magnitude)
    affine = chi_vol.affine
    voxel = voxel_size_mm(affine)
    chi_data = chi_vol.data.astype(np.float32)
    finite = np.isfinite(chi_data)
    chi_support = finite & (chi_data != 0)
    given_mask = None
    if mask is not None:
        mask_vol = _load_3d(mask, "the mask")
        if not same_grid(affine, mask_vol.affine, chi_data.shape, mask_vol.data.shape):
            raise InputError(f"the mask is not on the grid of the chi map {chi}", mask)
        given_mask = mask_vol.data > 0
    measure_mask = (given_mask if given_mask is not None else chi_support) & finite
    if not measure_mask.any():
        raise InputError("the chi map is zero or NaN everywhere (no voxels to measure)", chi)
    atlas_obj = load_atlas(atlas, atlas_labels, template)
    template_img, template_ants = _template_images(atlas_obj.template_path if template is None else template)
    seconds["load"] = time.perf_counter() - tick
    cpu_seconds["load"] = time.process_time() - cpu_tick

    # Registration (or reuse of saved transforms) -------------------------------------------
    tick, cpu_tick = time.perf_counter(), time.process_time()
    brain, brain_source = subject_brain_mask(mag_vol.data, voxel, chi_support=chi_support, given=given_mask,
                                             mode=reg_settings.subject_mask)
    fingerprint = _fingerprint(first_echo(mag_vol.data).astype(np.float32), brain, affine,
                               extra={"template": str(atlas_obj.template_path), "atlas": atlas_obj.describe(),
                                      "registration": reg_settings.model_dump(mode="json")})
    subject_image = prepare_subject(mag_vol.data, brain, affine, bias_correct=reg_settings.bias_correct,
                                    resolution_mm=0.75 * reg_settings.resolution_mm,
                                    bias_resolution_mm=reg_settings.bias_resolution_mm,
                                    bias_iterations=reg_settings.bias_iterations,
                                    bias_convergence=reg_settings.bias_convergence)
    seconds["prepare_subject"] = time.perf_counter() - tick
    cpu_seconds["prepare_subject"] = time.process_time() - cpu_tick
    tick, cpu_tick = time.perf_counter(), time.process_time()
    json_path = stem.with_name(stem.name + ".json")
    registration = None
    reused = False
    if reg_settings.reuse_transforms and _previous_fingerprint(json_path) == fingerprint:
        registration = Registration.load(stem)
        reused = registration is not None
    labels_array = atlas_obj.label_array()
    labels_ants = to_ants(labels_array.astype(np.float32), atlas_obj.image.affine)
    if registration is None:
        import tempfile

        syn_box = label_box_mm(labels_ants, reg_settings.syn_margin_mm) if reg_settings.syn_region == "atlas" else None
        with tempfile.TemporaryDirectory(prefix="qsmiron_reg_") as workdir:
            fresh = register_to_template(subject_image, template_ants, settings=reg_settings, syn_box_mm=syn_box,
                                         workdir=workdir)
            registration = fresh.save(stem)
    seconds["registration"] = time.perf_counter() - tick
    cpu_seconds["registration"] = time.process_time() - cpu_tick

    # Head check, before anything is measured ----------------------------------------------
    reference = template_grid(template_ants, reg_settings.resolution_mm)
    warped = to_template(subject_image, registration, reference)
    reference_affine = np.asarray(_ants_affine(reference))
    metrics = registration_metrics(reference.numpy(), warped.numpy(), min_nmi=reg_settings.min_nmi,
                                   min_brain_dice=reg_settings.min_brain_dice)
    metrics.update(core_similarity(reference.numpy(), warped.numpy(), reference.spacing))
    qc_reg = stem.with_name(stem.name + "_qc_registration.png")
    _check_head(metrics, reg_settings, reference, warped, reference_affine, qc_reg, stem.name, atlas_obj.space)

    # Labels to the subject, measurement ------------------------------------------------------
    tick, cpu_tick = time.perf_counter(), time.process_time()
    chi_ants = to_ants(chi_data, affine)
    subject_labels = labels_to_subject(labels_ants, registration, chi_ants,
                                       interpolation=reg_settings.label_interpolation)
    fov = _fov_fraction(registration, chi_ants, chi_data.shape, affine, labels_array, atlas_obj.image.affine)
    seconds["labels_to_subject"] = time.perf_counter() - tick
    cpu_seconds["labels_to_subject"] = time.process_time() - cpu_tick
    tick, cpu_tick = time.perf_counter(), time.process_time()
    table = measure_regions(np.nan_to_num(chi_data), measure_mask, subject_labels, voxel, atlas_obj.labels,
                            erode_voxels=roi_settings.erode_voxels, min_voxels=roi_settings.min_voxels,
                            min_coverage=roi_settings.min_coverage, fov_fraction=fov)
    seconds["measurement"] = time.perf_counter() - tick
    cpu_seconds["measurement"] = time.process_time() - cpu_tick

    # QC ------------------------------------------------------------------------------------
    tick, cpu_tick = time.perf_counter(), time.process_time()
    table["flag_registration"] = bool(metrics["outlier"])
    qc_atlas = stem.with_name(stem.name + "_qc_atlas.png")
    atlas_overlay_png(np.nan_to_num(chi_data), subject_labels, affine, qc_atlas,
                      title=f"{stem.name}: {atlas_obj.name} outlines on chi (ppm, -0.1..0.2); left on the left")
    registration_png(reference.numpy(), warped.numpy(), reference_affine, qc_reg,
                     title=f"{stem.name} in {atlas_obj.space}: NMI {metrics['nmi']:.3f}, brain Dice "
                           f"{metrics['brain_dice']:.3f}" + (" - OUTLIER" if metrics["outlier"] else ""))
    seconds["qc"] = time.perf_counter() - tick
    cpu_seconds["qc"] = time.process_time() - cpu_tick

    outputs = {"table": str(out_tsv), "qc_atlas": str(qc_atlas), "qc_registration": str(qc_reg),
               "transforms": {k: str(stem) + v for k, v in TRANSFORM_SUFFIXES.items()
                              if Path(str(stem) + v).exists()}}
    labels_path = stem.with_name(stem.name + f"_atlas-{atlas_obj.name}_dseg.nii.gz")
    save_nifti(labels_path, subject_labels.astype(np.int16), affine)
    outputs["labels_subject_space"] = str(labels_path)
    if reg_settings.warp_chi_to_template:
        tick = time.perf_counter()
        chi_template = to_template(chi_ants, registration, template_ants)
        chi_template_path = stem.with_name(stem.name + f"_space-{atlas_obj.space}_chi.nii.gz")
        save_nifti(chi_template_path, chi_template.numpy(), template_img.affine)
        outputs["chi_template_space"] = str(chi_template_path)
        seconds["chi_to_template"] = time.perf_counter() - tick

    ordered = CONTRACT_COLUMNS + [c for c in table.columns if c not in CONTRACT_COLUMNS]
    table = table[ordered]
    write_tsv_atomic(out_tsv, table)
    seconds["total"] = time.perf_counter() - started
    cpu_seconds["total"] = time.process_time() - cpu_started
    payload = {
        "qsmiron_version": _versions()["qsmiron"],
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "inputs": {"chi": str(chi), "magnitude": str(magnitude), "mask": None if mask is None else str(mask),
                   "matrix": list(chi_vol.shape3d), "voxel_size_mm": list(voxel)},
        "atlas": atlas_obj.describe(),
        "template": {"path": str(atlas_obj.template_path), "space": atlas_obj.space},
        "registration": {"method": "ANTs rigid + affine (Mattes mutual information, whole brain), then SyN "
                                   f"({' then '.join(m for m, *_ in _syn_stages(reg_settings)) or 'none'}; "
                                   f"domain: {reg_settings.syn_region}) of the subject magnitude (first echo, "
                                   "N4 bias-corrected, brain only) to the template",
                         "parameters": registration.parameters,
                         "subject_mask": brain_source, "reused_transforms": reused, "fingerprint": fingerprint,
                         "seconds": seconds["registration"], "metrics": metrics,
                         "label_interpolation": reg_settings.label_interpolation},
        "measurement": {"space": "subject (native, chi not interpolated)",
                        "mask": "given mask" if mask is not None else "non-zero finite chi",
                        "erode_voxels": roi_settings.erode_voxels, "min_voxels": roi_settings.min_voxels,
                        "min_coverage": roi_settings.min_coverage,
                        "flagged": {c: int(table[c].sum()) for c in table.columns if c.startswith("flag_")}},
        "seconds": seconds,
        "cpu_seconds": cpu_seconds,
        "outputs": outputs,
        "settings": config_to_dict(config),
        "versions": _versions(),
    }
    write_json_atomic(json_path, payload)
    return table


def _check_head(metrics: dict, settings, reference, warped, reference_affine, qc_png: Path, name: str,
                space: str) -> None:
    """Refuse to measure a scan that is not a head (a phantom, a spine), drawing why.

    Any blob that registration deforms onto the template shares the brain's outline with it
    (a sphere phantom reaches a brain Dice of 0.94 and a whole-brain NMI of 1.015, as much as
    a real 3 mm head). The brain's core tells them apart: 10 mm inside the template brain a
    head has ventricles, deep grey matter and white matter whose intensities its magnitude
    follows (up or down, whatever the contrast); a phantom or a spine has none there, and the
    absolute correlation (``core_correlation``) stays low. Threshold and measured values:
    ``RegistrationSettings.head_min_correlation``.

    Raises
    ------
    InputError
        With ``step = "head_check"``, after writing the registration figure to ``qc_png``.
    """
    from qsmiron.roi.qc import registration_png

    correlation = metrics["core_correlation"]
    metrics["head_min_correlation"] = settings.head_min_correlation
    metrics["head_like"] = bool(np.isfinite(correlation) and correlation >= settings.head_min_correlation)
    if metrics["head_like"] or settings.head_min_correlation == 0:
        return
    registration_png(reference.numpy(), warped.numpy(), reference_affine, qc_png,
                     title=f"{name} in {space}: core |r| {correlation:.2f} - NOT A HEAD?")
    # No path, and short: the cohort status keeps 300 characters.
    error = InputError(f"not a head? after registration the magnitude follows the template's brain core too little "
                       f"(|r| {correlation:.2f} < {settings.head_min_correlation}): a phantom, a spine or a failed "
                       f"registration; not measured (see {qc_png.name}; setting registration.head_min_correlation)")
    error.step = "head_check"  # type: ignore[attr-defined]
    raise error


_TEMPLATE_IMAGES: dict = {}


def _template_images(path):
    """The template as a nibabel image and an ANTs image, read once per process and file version."""
    from qsmiron.atlas.load import load_template
    from qsmiron.register.images import to_ants

    key = None
    if path is not None:
        stat = Path(path).stat()
        key = (str(Path(path).resolve()), stat.st_mtime_ns, stat.st_size)
    if key is None or key not in _TEMPLATE_IMAGES:
        image = load_template(path)
        pair = (image, to_ants(image.get_fdata(dtype=np.float32), image.affine))
        if key is None:
            return pair
        _TEMPLATE_IMAGES.clear()
        _TEMPLATE_IMAGES[key] = pair
    return _TEMPLATE_IMAGES[key]


def _ants_affine(image):
    from qsmiron.register.images import ants_affine

    return ants_affine(image)
