"""Reference regions of a subject's chi values: where each is in subject space, its size, its offset.

Susceptibility is relative. The regional table gives chi under every reference region that
could be made (QSM consensus, Magn Reson Med 2024;91:1834: state the reference, include the
whole brain):

- ``whole_brain``: the brain mask where chi is measured;
- ``csf``: the CSF of the lateral ventricles: a ventricle prior derived from the
  MNI152NLin2009cAsym template (``qsmiron.atlas.ventricles``), warped to the subject by the
  registration the measurement already ran, then cleaned with the subject's own images
  (``qsmiron.recon.reference.ventricle_csf_mask``: low R2*, a consistent magnitude, eroded
  against partial volume). A mask that comes out empty is not an error: the CSF rows are left
  out and the reason is recorded;
- ``mask``: a user's region (on the subject's grid, or in template space and warped).

Referencing subtracts a constant, so every value under every reference comes from one map:
a value under reference R is the measured value minus R's offset, the mean of the measured
map over R (``qsmiron.recon.reference.reference_offsets``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from qsmiron.errors import InputError
from qsmiron.methods import Method
from qsmiron.records.regions import ReferenceRegion
from qsmiron.recon.reference import (reference_offsets, reference_to_mask, reference_to_mean,
                                     ventricle_csf_mask)
from qsmiron.roi.subject import SubjectImages

REFERENCE_METHODS = (
    Method("whole_brain", reference_to_mean, label="the mean over the whole brain mask",
           description="mean susceptibility of the brain mask where chi is measured (consensus)",
           citation="QSM Consensus Organization Committee. Magn Reson Med 2024;91:1834-1862",
           doi="10.1002/mrm.30006"),
    Method("csf", ventricle_csf_mask,
           label="the mean over the CSF of the lateral ventricles (a ventricle prior derived from the "
                 "MNI152NLin2009cAsym template, warped by each subject's registration, cleaned by low R2* "
                 "and a consistent magnitude, eroded against partial volume)",
           description="CSF of the lateral ventricles, segmented in subject space",
           citation="CSF segmented by low R2* after Liu Z, Spincemaille P, Yao Y, et al. Magn Reson Med "
                    "2018;79:2795-2803", doi="10.1002/mrm.26946"),
    Method("mask", reference_to_mask, label="the mean over a user-supplied reference mask",
           description="a reference region given by the user"),
)
"""The reference regions, declared once (the methods paragraph names them by label)."""


def reference_method(name: str) -> Method | None:
    """The declared reference method called ``name`` (None for one this version does not declare)."""
    return next((method for method in REFERENCE_METHODS if method.name == name), None)


@dataclass
class ReferenceRegions:
    """The regions that could be made (name -> mask; None is the whole measure mask) and the
    record of every region tried."""

    regions: dict[str, np.ndarray | None] = field(default_factory=dict)
    records: list[ReferenceRegion] = field(default_factory=list)

    def offsets(self) -> dict[str, float]:
        """Name -> offset (ppm) of the available regions, in the order they were made."""
        return {r.name: float(r.offset_ppm) for r in self.records if r.available}

    @property
    def warnings(self) -> list[str]:
        return [f"reference '{r.name}' left out: {r.reason}" for r in self.records if not r.available]


def warp_from_template(array: np.ndarray, affine: np.ndarray, registration, reference_ants) -> np.ndarray:
    """An integer image in template space (a prior, a mask) on the subject's grid (nearest neighbour)."""
    from qsmiron.register.images import to_ants
    from qsmiron.register.normalise import labels_to_subject

    return labels_to_subject(to_ants(np.asarray(array, np.float32), affine), registration, reference_ants,
                             interpolation="nearestNeighbor")


def _missing(name: str, reason: str, parameters: dict | None = None) -> tuple[None, ReferenceRegion]:
    return None, ReferenceRegion(name=name, method=name, available=False, reason=reason,
                                 parameters=parameters or {})


def csf_region(images: SubjectImages, registration, reference_ants, settings, space: str
               ) -> tuple[np.ndarray | None, ReferenceRegion]:
    """The lateral-ventricle CSF on the subject's grid, or None and why (never raises on the data)."""
    from qsmiron.atlas.builtin import TEMPLATE_SPACE
    from qsmiron.atlas.ventricles import template_ventricle_prior
    from qsmiron.register.images import first_echo

    parameters = settings.csf.model_dump(mode="json")
    if space != TEMPLATE_SPACE:
        return _missing("csf", f"the ventricle prior is defined in {TEMPLATE_SPACE}, and this registration "
                               f"targets {space}", parameters)
    prior, affine = template_ventricle_prior()
    warped = warp_from_template(prior, affine, registration, reference_ants)
    r2star = None
    if images.r2star_per_s is not None:
        r2star = np.where(images.r2star_valid, images.r2star_per_s, np.nan).astype(np.float32)
    try:
        csf, info = ventricle_csf_mask(warped, images.measure_mask, images.voxel_size_mm, r2star_per_s=r2star,
                                       magnitude=first_echo(images.magnitude), **settings.csf.model_dump())
    except InputError as error:
        return _missing("csf", error.one_line(), parameters)
    # Without an R2* map the cleaning has no "low_r2star" step: the record shows it.
    return csf, ReferenceRegion(name="csf", method="csf", available=True, parameters=parameters,
                                voxels_after_step=info["voxels_after_step"], note=info.get("erosion_skipped"))


def check_template_reference_mask(settings) -> None:
    """Open the settings' template-space reference mask (``roi.reference_mask``, ``settings`` being
    ``config.roi``) before the registration, after which ``user_region`` reads it: a missing or
    broken file is named before that work instead of after it.

    Raises
    ------
    InputError
        Naming the file and the setting.
    """
    if settings.reference_mask is None:
        return
    from qsmiron.io.nifti import open_image

    try:
        open_image(settings.reference_mask, "reference mask")
    except InputError as error:
        raise InputError(f"{error.message} (the setting roi.reference_mask)", error.path) from None


def user_region(images: SubjectImages, registration, reference_ants, settings
                ) -> tuple[np.ndarray | None, ReferenceRegion | None]:
    """A user's reference mask on the subject's grid (given there, or warped from template space)."""
    if images.reference_mask is not None:
        region = images.reference_mask
        parameters = {"space": "subject"}
    elif settings.reference_mask is not None:
        from qsmiron.io.nifti import load_nifti

        volume = load_nifti(settings.reference_mask, with_sidecar=False)
        region = warp_from_template(np.asarray(volume.data) > 0, volume.affine, registration, reference_ants) > 0
        parameters = {"space": "template", "file": str(Path(settings.reference_mask))}
    else:
        return None, None
    if not (region & images.measure_mask).any():
        return _missing("mask", "the reference mask has no voxel where chi is measured", parameters)
    return region, ReferenceRegion(name="mask", method="mask", available=True, parameters=parameters)


def reference_regions(images: SubjectImages, registration, reference_ants, settings, space: str
                      ) -> ReferenceRegions:
    """Every reference region of ``settings.references`` (and a user's mask), with offsets and sizes."""
    out = ReferenceRegions()
    tried: list[tuple[np.ndarray | None, ReferenceRegion]] = []
    if "whole_brain" in settings.references:
        tried.append((None, ReferenceRegion(name="whole_brain", method="whole_brain", available=True)))
    if "csf" in settings.references:
        tried.append(csf_region(images, registration, reference_ants, settings, space))
    region, record = user_region(images, registration, reference_ants, settings)
    if record is not None:
        tried.append((region, record))
    available = {record.name: region for region, record in tried if record.available}
    offsets = reference_offsets(images.chi_ppm, images.measure_mask, available, voxel_size_mm=images.voxel_size_mm)
    for region, record in tried:
        if record.available:
            size = offsets[record.name]
            record = record.model_copy(update={"offset_ppm": size["offset_ppm"], "n_voxels": size["n_voxels"],
                                               "volume_ml": round(size["volume_ml"], 3)})
        out.records.append(record)
    out.regions = available
    return out
