"""Normalisation of a subject to the template with ANTs, and images moved between the two.

The template (fixed) is resampled to ``settings.resolution_mm``; the subject's prepared
magnitude (moving) is registered to it in three stages, rigid -> affine -> SyN, starting from
an alignment of the centres of mass: Mattes mutual information for rigid, affine and the
coarse SyN level, local cross-correlation at the finest SyN level (``RegistrationSettings``
says why). ANTs writes one affine (``*0GenericAffine.mat``, rigid and affine collapsed) and
one SyN warp pair (``*1Warp.nii.gz``, ``*1InverseWarp.nii.gz``). Every transform works in
physical space, so labels defined on the 1 mm atlas grid are brought to the subject's own
grid (any voxel size, orientation or obliquity) by one resampling with a label-preserving
interpolation.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from qsmiron.io.derivatives import TransformPaths
from qsmiron.io.nifti import box_through_affine
from qsmiron.methods import Method
from qsmiron.register.ants_backend import run_ants_registration
from qsmiron.register.images import ants_affine, from_ants, to_ants
from qsmiron.register.settings import RegistrationSettings

@dataclass
class Registration:
    """A subject <-> template mapping as ANTs transform files.

    Attributes
    ----------
    affine : Path
        The collapsed rigid + affine transform (subject -> template direction, ANTs convention).
    warp, inverse_warp : Path or None
        SyN displacement fields; None when the deformable stage was skipped.
    seconds : float
    """

    affine: Path
    warp: Path | None = None
    inverse_warp: Path | None = None
    seconds: float = 0.0
    parameters: dict = field(default_factory=dict)

    @property
    def to_template(self) -> tuple[list[str], list[bool]]:
        """Transform list and inversion flags moving subject images onto the template."""
        files = ([str(self.warp)] if self.warp else []) + [str(self.affine)]
        return files, [False] * len(files)

    @property
    def to_subject(self) -> tuple[list[str], list[bool]]:
        """Transform list and inversion flags moving template images onto the subject."""
        files = [str(self.affine)] + ([str(self.inverse_warp)] if self.inverse_warp else [])
        return files, [True] + [False] * (len(files) - 1)

    def files(self) -> list[Path]:
        return [p for p in (self.affine, self.warp, self.inverse_warp) if p is not None]

    def save(self, paths: TransformPaths) -> "Registration":
        """Copy the transforms to ``paths`` (atomically each) and return the saved copy."""
        from qsmiron.io.atomic import atomic_path

        saved = {}
        for key, source in (("affine", self.affine), ("warp", self.warp), ("inverse_warp", self.inverse_warp)):
            if source is None:
                saved[key] = None
                continue
            destination = getattr(paths, key)
            with atomic_path(destination) as tmp:
                shutil.copyfile(source, tmp)
            saved[key] = destination
        return Registration(affine=saved["affine"], warp=saved["warp"], inverse_warp=saved["inverse_warp"],
                            seconds=self.seconds, parameters=dict(self.parameters))

    @classmethod
    def load(cls, paths: TransformPaths) -> "Registration | None":
        """Saved transforms at ``paths``, or None when the affine is missing (or one warp is)."""
        if not paths.affine.exists():
            return None
        if paths.warp.exists() != paths.inverse_warp.exists():
            return None
        return cls(affine=paths.affine, warp=paths.warp if paths.warp.exists() else None,
                   inverse_warp=paths.inverse_warp if paths.inverse_warp.exists() else None)


def resample_to_resolution(image, resolution_mm: float, *, interpolation: str = "linear"):
    """An ANTs image resampled to isotropic ``resolution_mm`` (same field of view)."""
    import ants

    spacing = np.asarray(image.spacing, dtype=float)
    if np.allclose(spacing, resolution_mm, atol=1e-3):
        return image.clone()
    interp_type = {"linear": 0, "nearest": 1, "genericLabel": 1}.get(interpolation, 0)
    return ants.resample_image(image, (resolution_mm,) * 3, use_voxels=False, interp_type=interp_type)


def crop_to_content(image, *, margin_mm: float = 10.0):
    """An ANTs image cropped to the bounding box of its non-zero voxels plus a margin.

    The template is brain-extracted: the empty space around the brain only costs time in
    every stage of the registration.
    """
    import ants

    data = image.numpy()
    nonzero = np.argwhere(data != 0)
    if nonzero.size == 0:
        return image
    margin = np.ceil(margin_mm / np.asarray(image.spacing, float)).astype(int)
    lower = np.maximum(nonzero.min(axis=0) - margin, 0)
    upper = np.minimum(nonzero.max(axis=0) + margin + 1, np.asarray(data.shape))
    if np.all(lower == 0) and np.all(upper == np.asarray(data.shape)):
        return image
    return ants.crop_indices(image, lower.tolist(), upper.tolist())


def _levels(values) -> str:
    return "x".join(str(int(v)) if float(v).is_integer() else str(v) for v in values)


_TEMPLATE_CACHE: dict = {}
_TEMPLATE_CACHE_SIZE = 4


def _image_key(image) -> tuple:
    """Geometry plus a checksum of a strided sample: identifies a template image cheaply."""
    data = image.numpy()
    sample = np.ascontiguousarray(data[::3, ::3, ::3], dtype=np.float32)
    return (tuple(data.shape), tuple(np.round(image.spacing, 6)), tuple(np.round(image.origin, 6)),
            tuple(np.round(np.asarray(image.direction).ravel(), 6)), hash(sample.tobytes()))


def template_grid(template, resolution_mm: float, *, margin_mm: float = 10.0):
    """The template resampled to ``resolution_mm`` and cropped to its brain (cached per process).

    Every subject of a cohort is registered to the same template grids; preparing them once
    per process saves a resampling of the 1 mm template per subject and grid.
    """
    key = (_image_key(template), round(float(resolution_mm), 6), float(margin_mm))
    cached = _TEMPLATE_CACHE.get(key)
    if cached is None:
        cached = crop_to_content(resample_to_resolution(template, resolution_mm).clone("float"), margin_mm=margin_mm)
        if len(_TEMPLATE_CACHE) >= _TEMPLATE_CACHE_SIZE:
            _TEMPLATE_CACHE.pop(next(iter(_TEMPLATE_CACHE)))
        _TEMPLATE_CACHE[key] = cached
    return cached


def syn_stages(settings: RegistrationSettings) -> list[tuple[str, tuple, tuple, tuple]]:
    """(metric, iterations, shrink factors, smoothing) of each SyN stage.

    ``MI+CC`` is MI at the coarser levels, then CC at the finest level (a second SyN stage
    from the first one's field). The MI stage keeps the finest level with 0 iterations, so
    that both stages end on the full SyN grid and ANTs collapses them into one warp (fields on
    different grids cannot be); a single level is CC alone.
    """
    levels = (tuple(settings.syn_iterations), tuple(settings.syn_shrink_factors), tuple(settings.syn_smoothing_vox))
    if not settings.syn_iterations:
        return []
    if settings.syn_metric != "MI+CC":
        return [(settings.syn_metric, *levels)]
    iterations, shrink, smoothing = levels
    fine = ("CC", iterations[-1:], shrink[-1:], smoothing[-1:])
    if len(iterations) == 1:
        return [fine]
    return [("MI", iterations[:-1] + (0,), shrink, smoothing), fine]


def crop_to_box(image, box_mm):
    """An ANTs image cropped to the voxels inside a world box (RAS+ mm corners ``(lower, upper)``)."""
    import ants

    first, last = box_through_affine(*box_mm, np.linalg.inv(ants_affine(image)))
    shape = np.asarray(image.shape)
    lower = np.clip(np.floor(first).astype(int), 0, shape - 1)
    upper = np.clip(np.ceil(last).astype(int) + 1, lower + 1, shape)
    if np.all(lower == 0) and np.all(upper == shape):
        return image
    return ants.crop_indices(image, lower.tolist(), upper.tolist())


def label_box_mm(labels, margin_mm: float) -> tuple[np.ndarray, np.ndarray] | None:
    """World (RAS+ mm) bounding box of the non-zero voxels of a label image (ANTs), plus a margin."""
    data = labels.numpy()
    nonzero = np.argwhere(data != 0)
    if nonzero.size == 0:
        return None
    lower, upper = box_through_affine(nonzero.min(axis=0), nonzero.max(axis=0), ants_affine(labels))
    return lower - margin_mm, upper + margin_mm


def syn_domain_mm(labels, settings: RegistrationSettings) -> tuple[np.ndarray, np.ndarray] | None:
    """The world box SyN is confined to: the atlas regions (``labels``, ANTs) plus
    ``settings.syn_margin_mm`` when ``settings.syn_region`` is "atlas"; None (the whole brain) else."""
    if settings.syn_region != "atlas" or labels is None:
        return None
    return label_box_mm(labels, settings.syn_margin_mm)


def register_to_template(subject, template, *, settings: RegistrationSettings | None = None,
                         template_mask=None, subject_mask=None, syn_box_mm=None,
                         workdir: str | os.PathLike | None = None) -> Registration:
    """Register a prepared subject image (moving) to the template (fixed) with ANTs.

    Two ANTs runs. (1) Rigid then affine, Mattes MI, on the whole brain of the template
    resampled to ``settings.linear_resolution_mm``, from an alignment of the centres of mass.
    (2) SyN (by default MI at the coarse level, CC at the finest) on the template resampled to
    ``settings.resolution_mm`` and cropped to ``syn_box_mm`` (the atlas regions plus a margin),
    starting from the affine: the deformable stage costs per voxel of its domain, and only the
    atlas regions are measured. Outside the box the mapping is the affine alone (a
    displacement field is zero outside its domain).

    Parameters
    ----------
    subject : ants image
        The subject's brain-only, bias-corrected magnitude (see ``images.prepare_subject``).
    template : ants image
        The (brain-extracted) template at its native grid; its resampled grids are cached per
        process (``template_grid``).
    template_mask, subject_mask : ants image, optional
        Metric masks (brain) used by the deformable stage.
    syn_box_mm : (lower, upper) RAS+ mm, optional
        Domain of the deformable stage; the whole brain when not given.
    workdir : path, optional
        Where ANTs writes its transform files; a new temporary folder by default (the caller
        saves what it keeps with ``Registration.save``).

    Returns
    -------
    Registration
        ``seconds`` is wall time; ``parameters`` holds the grids and ``cpu_seconds`` of each
        run (process CPU time, all threads).
    """
    settings = settings or RegistrationSettings()
    started = time.perf_counter()
    workdir = Path(workdir) if workdir is not None else Path(tempfile.mkdtemp(prefix="qsmiron_reg_"))
    workdir.mkdir(parents=True, exist_ok=True)
    linear_resolution = max(settings.linear_resolution_mm, settings.resolution_mm)
    fixed_linear = template_grid(template, linear_resolution)
    # The moving image need not be finer than the registration grid: smoothing and the
    # metric's sampling both work at that scale, and a smaller image is faster.
    moving = subject.clone("float")
    if min(moving.spacing) < settings.resolution_mm * 0.75:
        moving = resample_to_resolution(moving, settings.resolution_mm * 0.75)
    window = settings.convergence_window
    common = ["--dimensionality", "3", "--float", "1", "--random-seed", str(settings.random_seed),
              "--collapse-output-transforms", "1", "--interpolation", "Linear",
              "--use-histogram-matching", "0", "--winsorize-image-intensities", "[0.005,0.995]"]
    cpu = {}

    # (1) Rigid + affine, whole brain; the moving image too need not be finer than this grid.
    tick = time.process_time()
    prefix = str(workdir / "linear_")
    moving_linear = moving
    if min(moving.spacing) < linear_resolution * 0.75:
        moving_linear = resample_to_resolution(moving, linear_resolution * 0.75)
    args = common + ["--initial-moving-transform", ["[", fixed_linear, ",", moving_linear, ",1]"]]
    for kind in ("Rigid", "Affine"):
        args += ["--transform", f"{kind}[0.1]",
                 "--metric", ["MI[", fixed_linear, ",", moving_linear,
                              f",1,{settings.mi_bins},Regular,{settings.sampling_fraction}]"],
                 "--convergence", f"[{_levels(settings.linear_iterations)},{settings.linear_convergence},{window}]",
                 "--shrink-factors", _levels(settings.linear_shrink_factors),
                 "--smoothing-sigmas", _levels(settings.linear_smoothing_vox) + "vox"]
    run_ants_registration(args + ["--output", prefix])
    affine = Path(prefix + "0GenericAffine.mat")
    cpu["linear"] = time.process_time() - tick

    # (2) SyN in the box, from the affine.
    warp = inverse = None
    stages = syn_stages(settings)
    fixed = None
    if stages:
        tick = time.process_time()
        fixed = template_grid(template, settings.resolution_mm)
        if syn_box_mm is not None:
            fixed = crop_to_box(fixed, syn_box_mm)
        prefix = str(workdir / "syn_")
        args = common + ["--initial-moving-transform", str(affine)]
        for metric, iterations, shrink, smoothing in stages:
            args += ["--transform", f"SyN[{settings.syn_gradient_step},{settings.syn_flow_sigma_vox},"
                                    f"{settings.syn_total_sigma_vox}]",
                     "--metric", (["MI[", fixed, ",", moving, f",1,{settings.mi_bins}]"] if metric == "MI"
                                  else ["CC[", fixed, ",", moving, f",1,{settings.syn_cc_radius_vox}]"]),
                     "--convergence", f"[{_levels(iterations)},{settings.syn_convergence},{window}]",
                     "--shrink-factors", _levels(shrink),
                     "--smoothing-sigmas", _levels(smoothing) + "vox"]
        if template_mask is not None or subject_mask is not None:
            fm = "NA" if template_mask is None else (template_mask != 0).clone("unsigned char")
            mm = "NA" if subject_mask is None else (subject_mask != 0).clone("unsigned char")
            args += ["--masks", ["[", fm, ",", mm, "]"]]
        run_ants_registration(args + ["--output", prefix])
        # The initial affine is collapsed into the output's affine when ANTs writes one.
        collapsed = Path(prefix + "0GenericAffine.mat")
        if collapsed.exists():
            affine = collapsed
            warp, inverse = Path(prefix + "1Warp.nii.gz"), Path(prefix + "1InverseWarp.nii.gz")
        else:
            warp, inverse = Path(prefix + "0Warp.nii.gz"), Path(prefix + "0InverseWarp.nii.gz")
        if not warp.exists() or not inverse.exists():
            raise RuntimeError(f"antsRegistration wrote no SyN warp in {workdir}")
        cpu["syn"] = time.process_time() - tick
    seconds = time.perf_counter() - started
    return Registration(affine=affine, warp=warp, inverse_warp=inverse, seconds=seconds,
                        parameters={"resolution_mm": settings.resolution_mm,
                                    "linear_resolution_mm": linear_resolution,
                                    "syn_stages": [m for m, *_ in stages],
                                    "syn_domain_shape": None if fixed is None else list(fixed.shape),
                                    "cpu_seconds": cpu})


def _subject_box(points_template_mm: np.ndarray, registration: Registration, reference, margin_mm: float):
    """Voxel index box of ``reference`` holding template points mapped to the subject, plus a margin."""
    import ants
    import pandas as pd

    files, invert = registration.to_template  # maps template points to subject points
    lps = pd.DataFrame(points_template_mm * [-1.0, -1.0, 1.0], columns=["x", "y", "z"])
    mapped = ants.apply_transforms_to_points(3, lps, files, whichtoinvert=invert)[["x", "y", "z"]].to_numpy()
    mapped = mapped * [-1.0, -1.0, 1.0]
    affine = ants_affine(reference)
    inverse = np.linalg.inv(affine)
    ijk = mapped @ inverse[:3, :3].T + inverse[:3, 3]
    margin = margin_mm / np.asarray(reference.spacing, float)
    shape = np.asarray(reference.shape)
    lower = np.clip(np.floor(ijk.min(axis=0) - margin).astype(int), 0, shape)
    upper = np.clip(np.ceil(ijk.max(axis=0) + margin).astype(int) + 1, 0, shape)
    return lower, upper


def labels_to_subject(labels, registration: Registration, reference, *,
                      interpolation: str = "genericLabel", margin_mm: float = 8.0) -> np.ndarray:
    """Atlas labels (an ANTs image in template space) resampled onto the subject's grid.

    The labels are cropped to their bounding box, the box's corners and faces are mapped to
    the subject, and the labels are resampled only inside that part of the subject grid
    (plus ``margin_mm``): a label-preserving interpolation costs per output voxel, and the
    subcortical atlas covers a few per cent of a head. Voxels outside get label 0.

    Parameters
    ----------
    labels : ants image
        Integer labels, template space (any grid of that space).
    registration : Registration
    reference : ants image
        Any image on the subject's grid.
    interpolation : {"genericLabel", "nearestNeighbor"}
        ``genericLabel`` smooths each label's indicator before choosing the most likely label
        (fewer jagged edges than nearest neighbour at coarse subject voxels); both keep label
        values exact.

    Returns
    -------
    ndarray of int32 on the subject's grid
    """
    import ants

    data = labels.numpy()
    out = np.zeros(reference.shape, dtype=np.int32)
    nonzero = np.argwhere(data != 0)
    if nonzero.size == 0:
        return out
    lower = np.maximum(nonzero.min(axis=0) - 2, 0)
    upper = np.minimum(nonzero.max(axis=0) + 3, np.asarray(data.shape))
    cropped = ants.crop_indices(labels.clone("float"), lower.tolist(), upper.tolist())
    # Points on a 6 x 6 x 6 lattice over the label box (corners and faces included).
    axes = [np.linspace(a, b - 1, 6) for a, b in zip(lower, upper)]
    ijk = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 3)
    label_affine = ants_affine(labels)
    points = ijk @ label_affine[:3, :3].T + label_affine[:3, 3]
    box_lower, box_upper = _subject_box(points, registration, reference, margin_mm)
    if np.any(box_upper - box_lower < 1):
        return out
    sub_reference = ants.crop_indices(reference.clone("float"), box_lower.tolist(), box_upper.tolist())
    files, invert = registration.to_subject
    warped = ants.apply_transforms(fixed=sub_reference, moving=cropped, transformlist=files,
                                   whichtoinvert=invert, interpolator=interpolation, defaultvalue=0)
    box = tuple(slice(int(a), int(b)) for a, b in zip(box_lower, box_upper))
    out[box] = np.rint(warped.numpy()).astype(np.int32)
    return out


def to_template(image, registration: Registration, reference, *, interpolation: str = "linear"):
    """A subject image (ANTs) resampled onto a template-space reference grid (ANTs image)."""
    import ants

    files, invert = registration.to_template
    return ants.apply_transforms(fixed=reference, moving=image, transformlist=files, whichtoinvert=invert,
                                 interpolator=interpolation, defaultvalue=0)


def to_subject(image, registration: Registration, reference, *, interpolation: str = "linear"):
    """A template-space image (ANTs) resampled onto the subject's grid (ANTs reference)."""
    import ants

    files, invert = registration.to_subject
    return ants.apply_transforms(fixed=reference, moving=image, transformlist=files, whichtoinvert=invert,
                                 interpolator=interpolation, defaultvalue=0)


__all__ = ["Registration", "register_to_template", "labels_to_subject", "to_template", "to_subject",
           "resample_to_resolution", "template_grid", "crop_to_box", "label_box_mm", "syn_domain_mm", "syn_stages",
           "describe_registration", "METHOD", "from_ants", "to_ants"]


def describe_registration(settings: RegistrationSettings) -> tuple[list[str], str]:
    """The transforms in order and the similarity metric(s) in words, as ``settings`` run them."""
    stages = syn_stages(settings)
    transforms = ["rigid", "affine"] + (["SyN"] if stages else [])
    metric = "Mattes mutual information (rigid, affine)"
    if stages:
        names = {"MI": "Mattes mutual information", "CC": f"local cross-correlation (radius "
                                                         f"{settings.syn_cc_radius_vox} voxel)"}
        parts = [names[m] for m, *_ in stages]
        where = (" at the coarse levels, then " if len(parts) == 2 else "")
        metric += "; SyN: " + (parts[0] + where + parts[1] + " at the finest level" if len(parts) == 2
                               else parts[0])
    return transforms, metric


METHOD = Method("ants_syn", register_to_template, label="ANTs rigid + affine + SyN",
                description="rigid and affine (Mattes MI) on the whole brain, then symmetric "
                            "diffeomorphic normalisation (SyN) in the atlas box",
                citation="Avants BB, Epstein CL, Grossman M, Gee JC. Med Image Anal 2008;12:26-41",
                doi="10.1016/j.media.2007.06.004")
"""The registration method, declared for the records and the methods paragraph (its parameters
are ``RegistrationSettings``)."""
