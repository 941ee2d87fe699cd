"""Parameters of normalisation to the template."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from qsmiron.settings_base import Settings


class RegistrationSettings(Settings):
    """ANTs registration of the subject's magnitude to the template.

    Rigid and affine stages with Mattes mutual information on the whole-brain template resampled
    to ``linear_resolution_mm`` (a 12-parameter motion needs no fine grid), then SyN on the
    template resampled to ``resolution_mm`` and cropped to the atlas regions plus a margin
    (``syn_region``). The subject is a GRE magnitude and the template a
    T1w image: their intensities are related, not equal, so every stage uses Mattes mutual
    information by default; ``syn_metric="MI+CC"`` adds a local cross-correlation refinement at
    the finest SyN level (it assumes intensities locally linearly related; see
    benchmarks/bench_roi.py for its cost and effect). Labels are then brought to the subject's
    own grid by one resampling through the saved transforms.
    """

    resolution_mm: float = Field(2.0, gt=0.3, le=8.0,
                                 description="grid of the template during the deformable (SyN) stage, mm")
    linear_resolution_mm: float = Field(4.0, gt=0.3, le=8.0,
                                        description="grid of the template during the rigid and affine stages, mm "
                                        "(never finer than resolution_mm)")
    linear_iterations: tuple[int, ...] = Field(
        (200, 100), description="rigid and affine iterations per level (coarse to fine), on the linear grid")
    linear_shrink_factors: tuple[int, ...] = (2, 1)
    linear_smoothing_vox: tuple[float, ...] = (1.0, 0.0)
    linear_convergence: float = Field(1e-6, gt=0, description="rigid/affine: stop when the metric's slope over "
                                      "the last convergence_window iterations falls below this")
    syn_iterations: tuple[int, ...] = Field(
        (40, 20), description="SyN iterations per level; () skips the deformable stage")
    syn_shrink_factors: tuple[int, ...] = (2, 1)
    syn_smoothing_vox: tuple[float, ...] = (1.0, 0.0)
    syn_convergence: float = Field(1e-6, gt=0, description="SyN: convergence threshold of each level")
    convergence_window: int = Field(10, ge=3, le=50)
    syn_region: Literal["atlas", "brain"] = Field(
        "atlas", description="domain of the deformable stage: the atlas regions' bounding box plus "
        "syn_margin_mm (fast; the regions are all that is measured), or the whole brain")
    syn_margin_mm: float = Field(20.0, ge=0, description="margin around the atlas regions of the SyN domain, mm")
    syn_gradient_step: float = 0.2
    syn_flow_sigma_vox: float = 3.0
    syn_total_sigma_vox: float = 0.0
    syn_metric: Literal["MI", "CC", "MI+CC"] = Field(
        "MI", description="metric of the deformable stage: Mattes mutual information, local "
        "cross-correlation (radius syn_cc_radius_vox), or MI over all levels refined by CC at the "
        "finest level (a second SyN stage)")
    syn_cc_radius_vox: int = 2
    mi_bins: int = 32
    sampling_fraction: float = Field(0.25, gt=0, le=1,
                                     description="share of voxels sampled by the linear stages")
    random_seed: int = 1
    bias_correct: bool = True
    bias_resolution_mm: float = Field(6.0, gt=0.3, le=12.0,
                                      description="N4 bias correction estimates the (smooth) field on about this grid")
    bias_iterations: tuple[int, ...] = Field((50, 50, 30), description="N4 iterations per fitting level")
    bias_convergence: float = Field(1e-3, gt=0, description="N4 convergence threshold per level")
    subject_mask: Literal["auto", "chi", "magnitude", "none"] = Field(
        "auto", description="brain mask of the subject's magnitude: 'chi' = support of the chi "
        "map (the reconstruction mask), 'magnitude' = automatic from the magnitude, 'auto' = "
        "a given mask, else the chi support when plausible, else from the magnitude")
    label_interpolation: Literal["genericLabel", "nearestNeighbor"] = "genericLabel"
    warp_chi_to_template: bool = Field(False, description="also write chi resampled to the template (voxel-wise "
                                       "work); the warp is non-linear only inside the SyN domain, so set "
                                       "syn_region='brain' when the whole brain matters")
    reuse_transforms: bool = Field(True, description="reuse saved transforms when the inputs and settings match")
    min_brain_dice: float = Field(0.85, ge=0, le=1,
                                  description="registration flagged when the warped subject brain overlaps "
                                  "the template brain less than this (Dice)")
    min_nmi: float = Field(1.05, ge=1, le=2,
                           description="registration flagged when the normalised mutual information "
                           "(H(A)+H(B))/H(A,B) inside the template brain is below this")
