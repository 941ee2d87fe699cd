"""The stages of one subject's regional measurement, each a function of what the last returned.

load_inputs (+ load_iron_maps) -> register_subject -> subject_on_template -> check_head ->
labels_in_subject -> reference regions (``qsmiron.roi.references``) -> (measure_regions) ->
registration_qc

``qsmiron.roi.api.measure_subject`` runs them in this order and records each as a
``StepInfo``; nothing here writes the table or the record. ``check_head`` stops a scan that is
not a head (a phantom, a spine) before anything is measured.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage

from qsmiron.errors import InputError
from qsmiron.io.derivatives import RegionsPaths
from qsmiron.io.nifti import load_nifti, same_grid, voxel_size_mm
from qsmiron.register.normalise import Registration
from qsmiron.register.settings import RegistrationSettings


@dataclass
class SubjectImages:
    """The subject's images, loaded and checked against each other.

    Attributes
    ----------
    chi_ppm : ndarray (X, Y, Z) float32
    magnitude : ndarray (X, Y, Z) or (X, Y, Z, E)
    affine : ndarray (4, 4)
    voxel_size_mm : tuple of 3 floats
    chi_support : ndarray of bool
        Non-zero finite chi (the reconstruction mask when none is given).
    given_mask : ndarray of bool or None
    measure_mask : ndarray of bool
        Where chi is measured: the given mask (else the support), finite.
    r2star_per_s, r2star_valid : ndarray or None
        R2* (s^-1) and where it is valid (``load_iron_maps``).
    paramagnetic_ppm, diamagnetic_ppm : ndarray or None
        chi+ and chi- (ppm, magnitudes).
    reference_mask : ndarray of bool or None
        A user's reference region on this grid.
    brain_extent : ndarray of bool or None
        The whole brain as the reconstruction saw it before background removal eroded it (a
        given brain mask, or the total field map's non-zero voxels): registration's brain when
        there is no R2* (``subject_brain_mask``).
    """

    chi_ppm: np.ndarray
    magnitude: np.ndarray
    affine: np.ndarray
    voxel_size_mm: tuple[float, float, float]
    chi_support: np.ndarray
    given_mask: np.ndarray | None
    measure_mask: np.ndarray
    r2star_per_s: np.ndarray | None = None
    r2star_valid: np.ndarray | None = None
    paramagnetic_ppm: np.ndarray | None = None
    diamagnetic_ppm: np.ndarray | None = None
    reference_mask: np.ndarray | None = None
    brain_extent: np.ndarray | None = None


@dataclass(frozen=True)
class IronMaps:
    """The iron-specific maps of a subject (files on the chi map's grid), any of them absent.

    ``r2star``: R2* (s^-1, NaN where not valid); ``r2star_mask``: where it is valid (default:
    its finite non-zero voxels); ``paramagnetic``, ``diamagnetic``: chi+ and chi- (ppm).
    """

    r2star: str | os.PathLike | None = None
    r2star_mask: str | os.PathLike | None = None
    paramagnetic: str | os.PathLike | None = None
    diamagnetic: str | os.PathLike | None = None

    def given(self) -> dict[str, str]:
        """Field -> file of the maps given."""
        return {name: os.fspath(value) for name, value in vars(self).items() if value is not None}


def _load_3d(path, what: str):
    volume = load_nifti(path)
    data = volume.data
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise InputError(f"{what} must be a 3-D image, got shape {data.shape}", path)
    volume.data = data
    return volume


def check_registration_magnitude(magnitude: np.ndarray, path) -> None:
    """Refuse a first echo the registration cannot use: ANTs failed on it with a traceback after
    its own multi-line message (an image without signal has no centre of mass to start from).

    Raises
    ------
    InputError
        Naming ``path``: no positive value, one value everywhere, or more than 1 % negative voxels.
    """
    from qsmiron.register.images import first_echo

    echo = first_echo(magnitude)
    finite = echo[np.isfinite(echo)]
    if not np.any(finite > 0):
        raise InputError("the magnitude (first echo) has no positive value: nothing to register to the template",
                         path)
    if finite.min() == finite.max():
        raise InputError(f"the magnitude (first echo) is {finite.max():g} everywhere: no contrast to register "
                         "to the template", path)
    negative = np.count_nonzero(finite < 0) / finite.size
    if negative > 0.01:
        raise InputError(f"{100 * negative:.0f}% of the magnitude voxels are negative: is this a phase image "
                         "given as --magnitude?", path)


def load_inputs(chi, magnitude, mask=None) -> SubjectImages:
    """Read the chi map, the magnitude and an optional mask; check they share one grid.

    Raises
    ------
    InputError
        Wrong dimensions, different grids, or a chi map with no voxel to measure.
    """
    chi_vol = _load_3d(chi, "the chi map")
    mag_vol = load_nifti(magnitude)
    if mag_vol.data.ndim not in (3, 4):
        raise InputError(f"the magnitude must be 3-D or 4-D (echoes last), got shape {mag_vol.data.shape}", magnitude)
    if not same_grid(chi_vol.affine, mag_vol.affine, chi_vol.data.shape, mag_vol.data.shape):
        raise InputError(f"the chi map {chi} (shape {chi_vol.shape3d}) and the magnitude {magnitude} "
                         f"(shape {mag_vol.shape3d}) are not on the same voxel grid (shape and affine)", magnitude)
    chi_data = chi_vol.data.astype(np.float32)
    finite = np.isfinite(chi_data)
    chi_support = finite & (chi_data != 0)
    given = None
    if mask is not None:
        mask_vol = _load_3d(mask, "the mask")
        if not same_grid(chi_vol.affine, mask_vol.affine, chi_data.shape, mask_vol.data.shape):
            raise InputError(f"the mask is not on the grid of the chi map {chi}", mask)
        given = mask_vol.data > 0
    measure_mask = (given if given is not None else chi_support) & finite
    if not measure_mask.any():
        raise InputError("the chi map is zero or NaN everywhere (no voxels to measure)", chi)
    return SubjectImages(chi_data, mag_vol.data, chi_vol.affine, voxel_size_mm(chi_vol.affine), chi_support,
                         given, measure_mask)


def _on_grid(path, what: str, images: SubjectImages, chi_path) -> np.ndarray:
    volume = _load_3d(path, what)
    if not same_grid(images.affine, volume.affine, images.chi_ppm.shape, volume.data.shape):
        raise InputError(f"{what} is not on the grid of the chi map {chi_path}", path)
    return np.asarray(volume.data)


def load_brain_extent(images: SubjectImages, brain_mask, chi_path) -> SubjectImages:
    """The images with ``brain_extent`` read from ``brain_mask`` (its non-zero finite voxels)."""
    if brain_mask is not None:
        values = _on_grid(brain_mask, "the brain mask", images, chi_path)
        images.brain_extent = np.isfinite(values) & (values != 0)
        if not images.brain_extent.any():
            raise InputError("the brain mask is empty (no non-zero voxel)", brain_mask)
    return images


def load_iron_maps(images: SubjectImages, iron: IronMaps | None, reference_mask, chi_path) -> SubjectImages:
    """The images with the iron-specific maps and a reference mask read in (checked on chi's grid).

    Raises
    ------
    InputError
        A map on another grid or not 3-D; a reference mask with no voxel where chi is measured.
    """
    iron = iron or IronMaps()
    if iron.r2star is not None:
        r2s = _on_grid(iron.r2star, "the R2* map", images, chi_path).astype(np.float32)
        valid = (_on_grid(iron.r2star_mask, "the R2* mask", images, chi_path) > 0 if iron.r2star_mask is not None
                 else r2s != 0)
        images.r2star_per_s, images.r2star_valid = r2s, valid & np.isfinite(r2s)
    for name, path in (("paramagnetic_ppm", iron.paramagnetic), ("diamagnetic_ppm", iron.diamagnetic)):
        if path is not None:
            setattr(images, name, _on_grid(path, f"the {name.split('_')[0]} chi map", images,
                                           chi_path).astype(np.float32))
    if reference_mask is not None:
        images.reference_mask = _on_grid(reference_mask, "the reference mask", images, chi_path) > 0
        if not (images.reference_mask & images.measure_mask).any():
            raise InputError("the reference mask has no voxel where chi is measured", reference_mask)
    return images


def _plausible_brain(mask: np.ndarray, voxel_mm3: float) -> bool:
    """A chi-map support that looks like a brain mask (not empty, not the whole field of view)."""
    volume_ml = mask.sum() * voxel_mm3 / 1000.0
    return 100.0 < volume_ml and mask.mean() < 0.95


MAX_BRAIN_TO_SUPPORT = 1.35
"""Largest volume of the magnitude's brain mask, as a multiple of the chi support's, that is
still the brain: background removal erodes the support to 0.75-0.9 of the brain (demo: 1.28,
a 1 mm head: 1.11), while a mask taking in the scalp is larger by half or more (the real 3 T
scan: 3.10)."""


def _magnitude_brain(magnitude: np.ndarray, voxel_size: tuple) -> np.ndarray | None:
    """``qsmiron.recon.mask.brain_mask`` of the first echo; None when it cannot read the magnitude."""
    from qsmiron.recon.mask import brain_mask
    from qsmiron.register.images import first_echo

    try:
        return np.asarray(brain_mask(first_echo(magnitude), voxel_size), dtype=bool)
    except Exception:  # noqa: BLE001 - a magnitude the brain mask cannot read: the caller falls back
        return None


def _is_brain_around(whole: np.ndarray, chi_support: np.ndarray) -> bool:
    """Whether ``whole`` is the brain the chi support was eroded from (holds it, not much larger)."""
    support = int(chi_support.sum())
    return int((whole & chi_support).sum()) >= 0.98 * support and whole.sum() <= MAX_BRAIN_TO_SUPPORT * support


def subject_brain_mask(magnitude: np.ndarray, voxel_size: tuple, *, chi_support: np.ndarray | None,
                       given: np.ndarray | None, mode: str,
                       brain_hint: np.ndarray | None = None,
                       hint_source: str = "valid R2* voxels") -> tuple[np.ndarray, str]:
    """The brain mask used to prepare the magnitude for registration, and where it came from.

    The template is a brain-extracted image, so the subject's mask should cover the whole
    brain. A chi map's support does not: background removal erodes it by a few millimetres,
    and mutual information then pulls the template's brain edge onto the eroded edge. On the
    demo's rigidly moved heads that shrank the atlas by about 5 % per axis (affine determinant
    0.86; putamen Dice 0.76, ventral pallidum 0.37). ``auto`` therefore prefers the
    reconstruction's brain mask before erosion (``brain_hint``: its valid R2* voxels, with the
    given mask or chi support and holes filled; a measurement mask given beside chi is the
    eroded one too), which gives determinant 0.99 and Dice 0.92 and 0.72. Without it, the
    magnitude's own brain mask is used when it holds the given mask (else the chi support) and
    is at most ``MAX_BRAIN_TO_SUPPORT`` times its volume (the brain the mask was eroded from,
    not a head with its scalp); else the given mask, else the support. Before, a given mask
    came first: on six subjects of the family cohort (``benchmarks/validate_family_cohort.py``)
    measured with their QSM masks given and no R2*, the ventral pallidum's labels then lay
    0.8 to 1.0 mm superior of the true ones (left / right Dice 0.56 / 0.64, mean error -22.3 /
    -22.4 ppb); with the magnitude's brain Dice 0.87 / 0.85 and -4.7 / -7.9 ppb, the placement
    the cohort run (which has R2*) gets. Without R2* (fewer than three echoes) the brain's extent
    before erosion comes from the total field map's support (``hint_source`` says which): on the
    real 2-echo Philips scan the eroded QSM mask (1.03 L) had left the CIT168 label centres 2.6 mm
    (median; ventral pallidum 3.0-3.3 mm) from where the reconstruction's whole brain mask puts
    them, with a residual misalignment of 4.1 mm (``qsmiron.roi.qc.residual_shift``).
    """
    from qsmiron.register.images import first_echo, threshold_brain_mask

    voxel_mm3 = float(np.prod(voxel_size))
    if mode == "none":
        return np.ones(magnitude.shape[:3], dtype=bool), "none (whole field of view)"
    if mode == "auto" and brain_hint is not None:
        extent = brain_hint | (given if given is not None else False) | (chi_support if chi_support is not None else False)
        whole = ndimage.binary_fill_holes(extent)
        if _plausible_brain(whole, voxel_mm3):
            return whole, f"brain mask of the reconstruction ({hint_source} with the chi mask, holes filled)"
    support, what = (given, "the given mask") if given is not None else (chi_support, "the chi support")
    if mode == "auto" and support is not None and _plausible_brain(support, voxel_mm3):
        whole = _magnitude_brain(magnitude, voxel_size)
        if whole is not None and _is_brain_around(whole, support):
            return whole, (f"brain mask of the magnitude (holds {what}, at most {MAX_BRAIN_TO_SUPPORT:g} "
                           f"times its volume)")
    if given is not None and mode == "auto":
        return given, "given mask"
    if mode in ("auto", "chi") and chi_support is not None and (mode == "chi" or _plausible_brain(chi_support, voxel_mm3)):
        return chi_support, "support of the chi map (reconstruction mask)"
    whole = _magnitude_brain(magnitude, voxel_size)
    if whole is not None:
        return whole, "qsmiron.recon.mask.brain_mask"
    return threshold_brain_mask(first_echo(magnitude), voxel_size), "Otsu threshold of the magnitude"


def registration_fingerprint(images: SubjectImages, brain: np.ndarray, atlas, settings: RegistrationSettings) -> str:
    """SHA-256 of everything the registration depends on: saved transforms with it are reused."""
    from qsmiron.register.images import first_echo

    digest = hashlib.sha256()
    for array in (first_echo(images.magnitude).astype(np.float32), brain, images.affine):
        digest.update(np.ascontiguousarray(array).tobytes())
    extra = {"template": str(atlas.template_path), "atlas": atlas.describe(),
             "registration": settings.model_dump(mode="json")}
    digest.update(json.dumps(extra, sort_keys=True, default=str).encode())
    return digest.hexdigest()


def _previous_fingerprint(record_path: Path) -> str | None:
    """The fingerprint a previous measurement recorded (None when there is no readable record)."""
    from qsmiron.records.regions import RegionsRecord

    try:
        return RegionsRecord.read(record_path).registration.fingerprint
    except InputError:
        return None


def registration_for(subject_image, template_ants, labels_ants, settings: RegistrationSettings,
                     paths: RegionsPaths, fingerprint: str) -> tuple[Registration, bool]:
    """Saved transforms when their fingerprint matches (and reuse is on), else a new registration.

    Returns the registration (its files at ``paths.transforms``) and whether it was reused.
    """
    from qsmiron.register.normalise import register_to_template, syn_domain_mm

    if settings.reuse_transforms and _previous_fingerprint(paths.regions_record) == fingerprint:
        saved = Registration.load(paths.transforms)
        if saved is not None:
            return saved, True
    box = syn_domain_mm(labels_ants, settings)
    with tempfile.TemporaryDirectory(prefix="qsmiron_reg_") as workdir:
        fresh = register_to_template(subject_image, template_ants, settings=settings, syn_box_mm=box, workdir=workdir)
        return fresh.save(paths.transforms), False


def fov_fraction(registration, subject_shape, subject_affine, labels_array, labels_affine) -> dict:
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


@dataclass
class OnTemplate:
    """The prepared subject image resampled onto the template at the registration's resolution."""

    template: np.ndarray
    """The brain-extracted template on that grid."""
    subject: np.ndarray
    """The subject's brain-only magnitude on the same grid."""
    affine: np.ndarray
    spacing_mm: tuple[float, float, float]


def subject_on_template(subject_image, registration, template_ants, settings: RegistrationSettings) -> OnTemplate:
    """The subject warped onto the template grid (what the head check and the registration QC score)."""
    from qsmiron.register.images import ants_affine
    from qsmiron.register.normalise import template_grid, to_template

    reference = template_grid(template_ants, settings.resolution_mm)
    warped = to_template(subject_image, registration, reference)
    return OnTemplate(reference.numpy(), warped.numpy(), np.asarray(ants_affine(reference)),
                      tuple(float(s) for s in reference.spacing))


HEAD_CORE_EROSION_MM = 10.0
"""The template brain's core, where the head check compares: this far inside its outline."""


def check_head(view: OnTemplate, settings: RegistrationSettings, paths: RegionsPaths, title: str) -> dict:
    """Refuse to measure a scan that is not a head (a phantom, a spine), drawing why.

    Any blob that registration deforms onto the template shares the brain's outline with it
    (a sphere phantom reaches a brain Dice of 0.94 and a whole-brain NMI of 1.015, as much as
    a real 3 mm head). The brain's core tells them apart: 10 mm inside the template brain a
    head has ventricles, deep grey matter and white matter whose intensities its magnitude
    follows (up or down, whatever the contrast); a phantom or a spine has none there, and the
    absolute correlation (``core_correlation``) stays low. Threshold and measured values:
    ``RegistrationSettings.head_min_correlation`` (0 turns the check off).

    Returns
    -------
    dict
        ``core_correlation``, ``core_nmi``, ``core_voxels`` (``qsmiron.roi.qc.core_similarity``),
        ``head_min_correlation`` and ``head_like`` (None when the check is off): the fields of
        ``RegistrationQuality``.

    Raises
    ------
    InputError
        With ``step = "head_check"``, after drawing the registration figure at
        ``paths.qc_registration``.
    """
    from qsmiron.roi.qc import core_similarity, registration_png

    metrics = core_similarity(view.template, view.subject, view.spacing_mm, erosion_mm=HEAD_CORE_EROSION_MM)
    correlation, threshold = metrics["core_correlation"], settings.head_min_correlation
    head_like = None if threshold == 0 else bool(np.isfinite(correlation) and correlation >= threshold)
    metrics.update(head_min_correlation=threshold, head_like=head_like)
    if head_like is not False:
        return metrics
    registration_png(view.template, view.subject, view.affine, paths.qc_registration,
                     title=f"{title}: core |r| {correlation:.2f} - NOT A HEAD?")
    # No path, and short: the cohort status keeps 300 characters.
    raise InputError(f"not a head? after registration the magnitude follows the template's brain core too little "
                     f"(|r| {correlation:.2f} < {threshold}): a phantom, a spine or a failed registration; not "
                     f"measured (see {paths.qc_registration.name}; setting registration.head_min_correlation)",
                     step="head_check")


def shift_region(labels_ants, view: OnTemplate,
                 settings: RegistrationSettings) -> tuple[tuple[slice, ...] | None, str]:
    """Where the residual shift is judged: the SyN domain (the atlas regions plus ``syn_margin_mm``)
    when SyN refines only there, else the whole template brain; and its description."""
    from qsmiron.register.normalise import syn_domain_mm
    from qsmiron.roi.qc import grid_box

    box = syn_domain_mm(labels_ants, settings)
    if box is None:
        return None, "the template brain"
    return (grid_box(box, view.affine, view.template.shape),
            f"the atlas regions plus {settings.syn_margin_mm:g} mm (the SyN domain)")


def registration_qc(view: OnTemplate, images: SubjectImages, subject_labels, atlas,
                    settings: RegistrationSettings, paths: RegionsPaths, labels_ants) -> dict:
    """Score the registration on the template grid and draw the two QC figures; returns the metrics."""
    from qsmiron.roi.qc import atlas_overlay_png, registration_metrics, registration_png

    box, region = shift_region(labels_ants, view, settings)
    metrics = registration_metrics(view.template, view.subject, view.spacing_mm,
                                   max_residual_shift_mm=settings.max_residual_shift_mm,
                                   min_brain_dice=settings.min_brain_dice, shift_box=box)
    metrics["residual_shift_region"] = region
    name = paths.stem.name
    region_names = {int(row["index"]): str(row["region"]) for _, row in atlas.labels.iterrows()}
    atlas_overlay_png(np.nan_to_num(images.chi_ppm), subject_labels, images.affine, paths.qc_atlas,
                      title=f"{name}: {atlas.name} regions on chi (ppm)", region_names=region_names)
    registration_png(view.template, view.subject, view.affine, paths.qc_registration,
                     # Two lines: a cohort's BIDS stem and the figures overflowed the panel's width in one.
                     title=f"{name} in {atlas.space}\nresidual shift {metrics['residual_shift_mm']:.1f} mm, brain "
                           f"Dice {metrics['brain_dice']:.3f}, NMI {metrics['nmi']:.3f}"
                           + (" - OUTLIER" if metrics["outlier"] else ""))
    return metrics


_TEMPLATE_IMAGES: dict = {}


def template_images(path):
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
