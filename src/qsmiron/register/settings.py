"""Parameters of normalisation to the template."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from qsmiron.settings_base import Settings


class RegistrationSettings(Settings):
    """ANTs registration of the subject's magnitude to the template.

    Rigid, affine and SyN stages, all with Mattes mutual information (the subject is a GRE
    magnitude, the template a T1w image: their intensities are related, not equal). The
    template is resampled to ``resolution_mm`` for every stage; the deformation is smooth at
    that scale, and the labels are then brought to the subject's own grid.
    """

    resolution_mm: float = Field(2.0, gt=0.3, le=8.0,
                                 description="grid of the template during registration, mm")
    linear_iterations: tuple[int, ...] = Field(
        (500, 250), description="rigid and affine iterations per level (coarse to fine); the "
        "linear stages stop at twice the registration grid, SyN refines below that")
    linear_shrink_factors: tuple[int, ...] = (4, 2)
    linear_smoothing_vox: tuple[float, ...] = (2.0, 1.0)
    syn_iterations: tuple[int, ...] = Field(
        (60, 30), description="SyN iterations per level; () skips the deformable stage")
    syn_shrink_factors: tuple[int, ...] = (4, 2)
    syn_smoothing_vox: tuple[float, ...] = (2.0, 1.0)
    syn_gradient_step: float = 0.2
    syn_flow_sigma_vox: float = 3.0
    syn_total_sigma_vox: float = 0.0
    syn_metric: Literal["MI", "CC"] = Field(
        "MI", description="metric of the deformable stage: Mattes mutual information, or local "
        "cross-correlation (radius syn_cc_radius_vox) for subjects whose contrast follows the template's")
    syn_cc_radius_vox: int = 2
    mi_bins: int = 32
    sampling_fraction: float = Field(0.25, gt=0, le=1,
                                     description="share of voxels sampled by the linear stages")
    random_seed: int = 1
    bias_correct: bool = True
    subject_mask: Literal["auto", "chi", "magnitude", "none"] = Field(
        "auto", description="brain mask of the subject's magnitude: 'chi' = support of the chi "
        "map (the reconstruction mask), 'magnitude' = automatic from the magnitude, 'auto' = "
        "a given mask, else the chi support when plausible, else from the magnitude")
    label_interpolation: Literal["genericLabel", "nearestNeighbor"] = "genericLabel"
    warp_chi_to_template: bool = Field(False, description="also write chi resampled to the template (voxel-wise work)")
    reuse_transforms: bool = Field(True, description="reuse saved transforms when the inputs and settings match")
    min_brain_dice: float = Field(0.85, ge=0, le=1,
                                  description="registration flagged when the warped subject brain overlaps "
                                  "the template brain less than this (Dice)")
    min_nmi: float = Field(1.05, ge=1, le=2,
                           description="registration flagged when the normalised mutual information "
                           "(H(A)+H(B))/H(A,B) inside the template brain is below this")
