"""From one subject's maps and magnitude to a table of regional values (files in, files out).

``measure_subject`` registers the magnitude to the template (ANTs), brings the atlas labels to
the subject's grid, makes the reference regions (``qsmiron.roi.references``), measures every
map it was given per region in native space (chi always; R2*, chi+ and chi- when given), and
writes beside ``OUT.tsv`` (names from ``qsmiron.io.derivatives.regions_paths``): the
transforms, the labels in subject space, two QC figures, chi on the template grid (for
voxel-wise statistics; setting ``registration.warp_chi_to_template``) and the ``RegionsRecord``
(``<stem>.json``: atlas, template, registration and its quality, measures, reference regions,
measurement, one ``StepInfo`` per stage, settings, versions). ``roi_from_files`` is the same,
returning the table (the ``qsmiron roi`` command).

The table is one tidy long form (``qsmiron.roi.measure.TABLE_COLUMNS``): one row per region,
hemisphere, ``measure`` (``chi``, ``r2star``, ``chi_para``, ``chi_dia``) and, for chi,
``reference`` (``whole_brain``, ``csf``, ``mask``), with its ``unit``.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from qsmiron import __version__
from qsmiron.errors import InputError
from qsmiron.io.atomic import check_inputs_spared, check_writable_dir
from qsmiron.io.derivatives import RegionsPaths, regions_paths
from qsmiron.io.nifti import outputs_with_sidecars, save_nifti, with_sidecars
from qsmiron.records.base import StepInfo, recorded_step
from qsmiron.register.ants_backend import RegistrationFailed
from qsmiron.records.regions import (MEASURE_UNITS, AtlasInfo, MeasureInfo, MeasurementInfo, RegionsInputs,
                                     RegionsRecord, RegistrationInfo, RegistrationQuality)
from qsmiron.roi.measure import TABLE_COLUMNS
from qsmiron.roi.sign import IRON_RICH_REGIONS, MIN_MEAN_PPM, iron_sign_check
from qsmiron.roi.subject import (HEAD_CORE_EROSION_MM, IronMaps, SubjectImages, check_head,
                                 check_registration_magnitude, fov_fraction,
                                 load_brain_extent, load_inputs, load_iron_maps, registration_fingerprint,
                                 registration_for, registration_qc, subject_brain_mask, subject_on_template,
                                 template_images)
from qsmiron.versions import software_versions

CONTRACT_COLUMNS = list(TABLE_COLUMNS[:11])
"""The leading columns of every regional table: region, hemisphere, measure, reference, unit,
mean, median, interior_median, sd, n_voxels, volume_mm3."""


@dataclass
class RegionsResult:
    """What ``measure_subject`` produced: the table, its record, its paths and which were written."""

    table: pd.DataFrame
    record: RegionsRecord
    paths: RegionsPaths
    written: dict[str, Path]
    """Role -> path of every file written (the record included)."""


def _registration_info(registration, settings, brain_source: str, fingerprint: str, reused: bool,
                       metrics: dict) -> RegistrationInfo:
    from qsmiron.register.normalise import METHOD, describe_registration

    transforms, metric = describe_registration(settings)
    return RegistrationInfo(
        tool="ANTs", method=METHOD.name, transforms=transforms, metric=metric, domain=settings.syn_region,
        subject_image="first echo of the magnitude" + (", N4 bias-corrected" if settings.bias_correct else "")
                      + ", brain only",
        subject_mask=brain_source, reused_transforms=reused, fingerprint=fingerprint,
        label_interpolation=settings.label_interpolation, grids=registration.parameters,
        quality=RegistrationQuality(**{k: (None if isinstance(v, float) and not np.isfinite(v) else v)
                                       for k, v in metrics.items()}))


def _brain_hint(images: SubjectImages) -> dict:
    """The reconstruction's brain before erosion: its valid R2* voxels, else the given brain mask."""
    if images.r2star_valid is not None or images.brain_extent is None:
        return {"brain_hint": images.r2star_valid}
    return {"brain_hint": images.brain_extent, "hint_source": "the given brain mask"}


def _register(images: SubjectImages, atlas, template_ants, labels_ants, settings, paths, steps):
    """Prepare the subject image and register it (or reuse saved transforms); two steps."""
    from qsmiron.register.images import prepare_subject
    from qsmiron.register.normalise import METHOD

    with recorded_step(steps, "prepare_subject", "n4_bias_correction" if settings.bias_correct else "none",
                       {"subject_mask": settings.subject_mask, "bias_resolution_mm": settings.bias_resolution_mm,
                        "bias_iterations": settings.bias_iterations}) as notes:
        brain, brain_source = subject_brain_mask(images.magnitude, images.voxel_size_mm,
                                                 chi_support=images.chi_support, given=images.given_mask,
                                                 mode=settings.subject_mask, **_brain_hint(images))
        fingerprint = registration_fingerprint(images, brain, atlas, settings)
        subject_image = prepare_subject(images.magnitude, brain, images.affine, bias_correct=settings.bias_correct,
                                        resolution_mm=0.75 * settings.resolution_mm,
                                        bias_resolution_mm=settings.bias_resolution_mm,
                                        bias_iterations=settings.bias_iterations,
                                        bias_convergence=settings.bias_convergence)
        notes["subject_mask"] = brain_source
    with recorded_step(steps, "registration", METHOD.name, settings.model_dump(mode="json")) as notes:
        registration, reused = registration_for(subject_image, template_ants, labels_ants, settings, paths,
                                                fingerprint)
        notes["reused_transforms"] = reused
    return subject_image, registration, brain_source, fingerprint, reused


def _register_magnitude(images: SubjectImages, magnitude, atlas, template_ants, labels_ants, settings,
                        paths: RegionsPaths, steps: list[StepInfo]):
    """``_register``, a magnitude it cannot use named as the user's file (ANTs stopped with a
    traceback after ITK's own report)."""
    check_registration_magnitude(images.magnitude, magnitude)
    try:
        return _register(images, atlas, template_ants, labels_ants, settings, paths, steps)
    except RegistrationFailed as error:
        raise InputError(f"the magnitude could not be registered to the template ({error}): is it the first "
                         "echo's magnitude of a head scan?", magnitude) from None


def _labels_sidecar(atlas_obj, registration, settings, *, chi, spatial_reference: str | None, name) -> dict:
    """The sidecar of the labels on the subject's grid: warped from the template by the inverse
    transforms onto chi's grid (``spatial_reference``: the raw image of that grid, or None)."""
    from qsmiron.io.derivative_dataset import labels_sidecar
    from qsmiron.io.derivatives import atlas_label
    from qsmiron.register.normalise import describe_registration

    inverse = [name(f) for f in (registration.affine, registration.inverse_warp) if f]
    return labels_sidecar(atlas=atlas_label(atlas_obj.name), template=atlas_obj.space,
                          transforms=describe_registration(settings)[0], interpolation=settings.label_interpolation,
                          spatial_reference=spatial_reference, sources=[*inverse, name(chi)])


def _write_outputs(images: SubjectImages, subject_labels, table: pd.DataFrame, registration, template,
                   config, paths: RegionsPaths, steps: list[StepInfo], *, space: str, sources: list[str],
                   label_table: pd.DataFrame, labels_json: dict, input_name) -> tuple[pd.DataFrame, dict[str, Path]]:
    """Labels (with their sidecar ``labels_json``), chi (and R2*) on the template grid
    (``registration.warp_chi_to_template``), and the table (contract columns first).

    Returns the table as written and role -> path of every file the measurement wrote (the
    record aside): the table, the labels and their sidecar, the QC figures, the transforms that
    exist (no warps without SyN) and the template-space maps with their sidecars when asked for.
    """
    from qsmiron.io.atomic import write_tsv_atomic
    from qsmiron.io.derivatives import sidecar_of

    save_nifti(paths.labels, subject_labels.astype(np.int16), images.affine, sidecar=labels_json)
    write_tsv_atomic(paths.labels_table, label_table)
    written = {"labels": paths.labels, "labels_json": sidecar_of(paths.labels), "labels_table": paths.labels_table,
               "qc_atlas": paths.qc_atlas,
               "qc_registration": paths.qc_registration,
               **{role: path for role, path in paths.transforms.files().items()
                  if path in (registration.affine, registration.warp, registration.inverse_warp)}}
    if config.registration.warp_chi_to_template:
        written.update(_template_maps(images, registration, template[0], paths, steps, space=space,
                                      sources=sources, input_name=input_name))
    table = table[CONTRACT_COLUMNS + [c for c in table.columns if c not in CONTRACT_COLUMNS]]
    write_tsv_atomic(paths.regions, table)
    return table, {"regions": paths.regions, **written}


def _template_maps(images: SubjectImages, registration, template_img, paths: RegionsPaths, steps: list[StepInfo],
                   *, space: str, sources: list[str], input_name) -> dict[str, Path]:
    """Chi, and R2* when there is one, on the template grid (for voxel-wise statistics), with
    their sidecars: role -> path."""
    from qsmiron.io.derivatives import ROLE_TEMPLATE_CHIMAP, ROLE_TEMPLATE_R2STARMAP, sidecar_of
    from qsmiron.register.template_maps import write_template_map

    transforms = [input_name(f) for f in (registration.affine, registration.warp) if f]
    maps = [(ROLE_TEMPLATE_CHIMAP, paths.template_chimap, images.chi_ppm, images.measure_mask, "ppm")]
    if images.r2star_per_s is not None:
        valid = images.measure_mask if images.r2star_valid is None else images.r2star_valid & images.measure_mask
        maps.append((ROLE_TEMPLATE_R2STARMAP, paths.template_r2starmap, images.r2star_per_s, valid, "s^-1"))
    written: dict[str, Path] = {}
    with recorded_step(steps, "chi_to_template", "ants_apply_transforms",
                       {"interpolation": "linear, normalised by the resampled mask", "min_coverage": 0.5,
                        "maps": [role for role, *_ in maps]}):
        for role, path, data, mask, units in maps:
            write_template_map(path, data, mask, images.affine, registration, template_img,
                               sources=[*sources, *transforms], space=space, units=units)
            written.update({role: path, f"{role}_json": sidecar_of(path)})
    return written


def _measures(images: SubjectImages, chi, iron: IronMaps, name=str) -> dict[str, tuple[np.ndarray, np.ndarray, MeasureInfo]]:
    """Measure -> (map, valid mask, record) of every map there is to measure (``name``: how the
    record names a map's file)."""
    chi_mask = images.measure_mask
    given = {"chi": (images.chi_ppm, chi_mask, chi, "the chi mask"),
             "r2star": (images.r2star_per_s, images.r2star_valid, iron.r2star, "the valid R2* fit"),
             "chi_para": (images.paramagnetic_ppm, chi_mask, iron.paramagnetic, "the chi mask"),
             "chi_dia": (images.diamagnetic_ppm, chi_mask, iron.diamagnetic, "the chi mask")}
    given = {key: (values, mask, None if source is None else name(source), where)
             for key, (values, mask, source, where) in given.items()}
    return {name: (values, mask, MeasureInfo(measure=name, unit=MEASURE_UNITS[name], source=source, mask=where))
            for name, (values, mask, source, where) in given.items() if values is not None}


def _measure_all(images, measures, subject_labels, atlas_obj, roi, fov, references) -> pd.DataFrame:
    """Every measure per region, chi under every available reference, as one long table."""
    from qsmiron.roi.measure import long_table, measure_regions

    tables = {name: measure_regions(values, mask, subject_labels, images.voxel_size_mm, atlas_obj.labels,
                                    erode_voxels=roi.erode_voxels, min_voxels=roi.min_voxels,
                                    min_coverage=roi.min_coverage, fov_fraction=fov)
              for name, (values, mask, _) in measures.items()}
    return long_table(tables, {name: info.unit for name, (_, _, info) in measures.items()}, references.offsets())


def _quality_checks(on_template, images, subject_labels, atlas_obj, labels_ants, reg, paths, head: dict,
                    table: pd.DataFrame, steps: list[StepInfo]):
    """The registration's QC (its flag set on every row of ``table``) and the sign check (with its
    warning or None)."""
    with recorded_step(steps, "qc", "residual_shift_and_brain_dice",
                       {"max_residual_shift_mm": reg.max_residual_shift_mm, "min_brain_dice": reg.min_brain_dice}):
        metrics = {**registration_qc(on_template, images, subject_labels, atlas_obj, reg, paths, labels_ants),
                   **head}
        table["flag_registration"] = bool(metrics["outlier"])
    with recorded_step(steps, "sign_check", "iron_rich_nuclei_positive",
                       {"regions": list(IRON_RICH_REGIONS), "min_mean_ppm": MIN_MEAN_PPM}) as notes:
        sign, warning = iron_sign_check(table)
        notes.update(sign.model_dump(mode="json"))
    return metrics, sign, warning


def _check_outputs(paths: RegionsPaths, images, label_table) -> None:
    """Refuse a measurement whose outputs (the images' sidecars too) would replace a file it reads."""
    check_inputs_spared(outputs_with_sidecars(paths.files().values()), [*with_sidecars(images), label_table])


def measure_subject(chi, magnitude, out_tsv, *, config, atlas=None, atlas_labels=None, template=None,
                    mask=None, label=None, iron: IronMaps | None = None, reference_mask=None,
                    figures_dir=None, input_name=None, brain_mask=None) -> RegionsResult:
    """Regional values of one subject, written as ``out_tsv`` with its QC and record beside it.

    Parameters as ``roi_from_files``; ``config`` is the ``QsmironConfig`` in force; ``label``
    (``sub-X[_ses-Y]``, a cohort's subject) gives the outputs their BIDS-derivative names, with
    the QC images in ``figures_dir`` (``qsmiron.io.derivatives.regions_paths``); ``input_name``
    names an input file in the record and sidecars (default: the path as given; a cohort gives
    BIDS URIs).
    """
    from qsmiron.atlas.load import load_atlas
    from qsmiron.io.atomic import write_json_atomic
    from qsmiron.register.ants_backend import pin_itk_to_one_thread
    from qsmiron.register.images import to_ants
    from qsmiron.register.normalise import labels_to_subject
    from qsmiron.roi.references import check_template_reference_mask, reference_regions

    reg, roi = config.registration, config.roi
    check_writable_dir(Path(out_tsv).parent)
    check_template_reference_mask(roi)
    if config.pipeline.reproducible_registration:
        pin_itk_to_one_thread()
    atlas = roi.atlas if atlas is None else atlas
    iron = iron or IronMaps()
    steps: list[StepInfo] = []
    with recorded_step(steps, "load", "nibabel", {"atlas": str(atlas)}):
        images = load_brain_extent(load_iron_maps(load_inputs(chi, magnitude, mask), iron, reference_mask, chi),
                                   brain_mask, chi)
        atlas_obj = load_atlas(atlas, atlas_labels, template)
        template_pair = template_images(atlas_obj.template_path if template is None else template)
        labels_array = atlas_obj.label_array()
        labels_ants = to_ants(labels_array.astype(np.float32), atlas_obj.image.affine)
    paths = regions_paths(out_tsv, atlas=atlas_obj.name, space=atlas_obj.space, label=label, figures_dir=figures_dir)
    _check_outputs(paths, [chi, magnitude, mask, reference_mask, brain_mask, atlas_obj.template_path,
                           *iron.given().values(), *([atlas] if Path(atlas).is_file() else [])], atlas_labels)
    name = input_name or (lambda path: Path(path).name)
    subject_image, registration, brain_source, fingerprint, reused = _register_magnitude(
        images, magnitude, atlas_obj, template_pair[1], labels_ants, reg, paths, steps)
    with recorded_step(steps, "head_check", "template_core_correlation",
                       {"head_min_correlation": reg.head_min_correlation,
                        "core_erosion_mm": HEAD_CORE_EROSION_MM}) as notes:
        on_template = subject_on_template(subject_image, registration, template_pair[1], reg)
        head = check_head(on_template, reg, paths, f"{paths.stem.name} in {atlas_obj.space}")
        notes.update(head)
    with recorded_step(steps, "labels_to_subject", reg.label_interpolation):
        chi_ants = to_ants(images.chi_ppm, images.affine)
        subject_labels = labels_to_subject(labels_ants, registration, chi_ants, interpolation=reg.label_interpolation)
        fov = fov_fraction(registration, images.chi_ppm.shape, images.affine, labels_array, atlas_obj.image.affine)
    with recorded_step(steps, "reference_regions", "+".join(roi.references) or "none",
                       {"references": list(roi.references), "csf": roi.csf.model_dump(mode="json")}) as notes:
        references = reference_regions(images, registration, chi_ants, roi, atlas_obj.space)
        notes.update({r.name: r.volume_ml if r.available else r.reason for r in references.records})
    given = (lambda path: str(path)) if input_name is None else input_name
    measures = _measures(images, chi, iron, given)
    with recorded_step(steps, "measurement", "native_space_mean_median_and_interior_median",
                       roi.model_dump(mode="json")) as notes:
        table = _measure_all(images, measures, subject_labels, atlas_obj, roi, fov, references)
        notes.update(n_regions=int(len(atlas_obj.labels)), measures=list(measures))
    metrics, sign, sign_warning = _quality_checks(on_template, images, subject_labels, atlas_obj, labels_ants, reg,
                                                  paths, head, table, steps)
    # A cohort's subject (``label``) names the raw image its grid is that of: the magnitude, by its BIDS URI.
    labels_json = _labels_sidecar(atlas_obj, registration, reg, chi=chi, name=name,
                                  spatial_reference=None if label is None else name(magnitude))
    table, written = _write_outputs(images, subject_labels, table, registration, template_pair, config, paths,
                                    steps, space=atlas_obj.space, label_table=atlas_obj.labels[["index", "name"]],
                                    labels_json=labels_json, sources=[name(p) for p in (chi, mask) if p is not None],
                                    input_name=name)
    record = RegionsRecord(
        qsmiron_version=__version__,
        inputs=RegionsInputs(chi=given(chi), magnitude=given(magnitude), mask=None if mask is None else given(mask),
                             matrix=list(images.chi_ppm.shape), voxel_size_mm=list(images.voxel_size_mm),
                             reference_mask=None if reference_mask is None else given(reference_mask),
                             **{key: given(value) for key, value in iron.given().items()}),
        atlas=AtlasInfo(**atlas_obj.describe()),
        registration=_registration_info(registration, reg, brain_source, fingerprint, reused, metrics),
        measurement=MeasurementInfo(space="subject (native, values not interpolated)",
                                    mask="given mask" if mask is not None else "non-zero finite chi",
                                    erode_voxels=roi.erode_voxels, min_voxels=roi.min_voxels,
                                    min_coverage=roi.min_coverage,
                                    flagged={c: int(table[c].sum()) for c in table.columns if c.startswith("flag_")}),
        steps=steps, outputs={role: path.name for role, path in written.items()},
        measures=[info.model_copy(update={"references": list(references.offsets()) if name == "chi" else []})
                  for name, (_, _, info) in measures.items()],
        references=references.records, sign_check=sign,
        warnings=references.warnings + ([sign_warning] if sign_warning else []), config=config,
        versions=software_versions())
    write_json_atomic(paths.regions_record, record.to_json())
    return RegionsResult(table=table, record=record, paths=paths,
                         written={**written, "regions_record": paths.regions_record})


def roi_from_files(chi, magnitude, out_tsv, *, atlas="cit168", atlas_labels=None, template=None,
                   config_path=None, settings=None, mask=None, iron: IronMaps | None = None,
                   reference_mask=None, brain_mask=None) -> pd.DataFrame:
    """Per-region values of one subject, written as ``out_tsv`` with its QC beside it.

    Parameters
    ----------
    chi : path
        Susceptibility map (ppm), 3-D; zero or NaN outside its mask.
    magnitude : path
        GRE magnitude on the same grid (3-D, or 4-D with echoes last: the first echo is used).
    out_tsv : path
        Table to write; the other outputs take its name without ``.tsv`` as their stem.
    atlas : "cit168" or path
        None takes the configuration's ``roi.atlas``.
    atlas_labels : path, optional
        Index/name table of a user atlas.
    template : path, optional
        Template the atlas is defined on (default: the MNI152NLin2009cAsym brain).
    config_path : path, optional
        Settings file (TOML/JSON); ``settings`` (a ``QsmironConfig``) takes precedence.
    mask : path, optional
        Where chi is valid (the reconstruction mask); default: chi's non-zero finite support.
    iron : IronMaps, optional
        R2* (with its valid mask), chi+ and chi- maps on the same grid: each is measured too,
        and R2* cleans the ventricle CSF reference.
    reference_mask : path, optional
        A reference region on the same grid: chi is also given relative to its mean.
    brain_mask : path, optional
        The whole brain on the same grid, before background removal eroded it (a mask, or any
        map that is non-zero there, such as the recon's total field map): the registration's
        brain when no R2* map is given (``subject_brain_mask``).

    Returns
    -------
    DataFrame
        Columns ``region``, ``hemisphere`` (L/R), ``measure`` (``chi``, ``r2star``, ``chi_para``,
        ``chi_dia``), ``reference`` (for chi: ``whole_brain``, ``csf``, ``mask``; None for the
        others), ``unit``, ``mean``, ``median``, ``interior_median`` (``qsmiron.roi.measure``), ``sd``,
        ``n_voxels``, ``volume_mm3``, then
        ``label``, ``coverage`` and the flag columns ``flag_empty``, ``flag_small``,
        ``flag_partial_coverage``, ``flag_registration``.
    """
    from qsmiron.config import load_config

    if not str(out_tsv).endswith(".tsv"):
        raise InputError("the regions table must be named .tsv: its name without .tsv names the other "
                         "outputs beside it", out_tsv)
    config = settings if settings is not None else load_config(config_path)
    result = measure_subject(chi, magnitude, out_tsv, config=config, atlas=atlas, atlas_labels=atlas_labels,
                             template=template, mask=mask, iron=iron, reference_mask=reference_mask,
                             brain_mask=brain_mask)
    for message in result.record.warnings:  # the command prints each as one line
        warnings.warn(message, UserWarning, stacklevel=2)
    return result.table
