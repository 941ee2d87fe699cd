"""Parameters of normalisation to the template."""

from __future__ import annotations

import warnings
from typing import Any, Literal

from pydantic import Field, model_validator

from qsmiron.settings_base import Settings


class RegistrationSettings(Settings):
    """ANTs registration of the subject's magnitude to the template.

    Rigid and affine stages with Mattes mutual information on the whole-brain template resampled
    to ``linear_resolution_mm`` (a 12-parameter motion needs no fine grid), then SyN on the
    template resampled to ``resolution_mm`` and cropped to the atlas regions plus a margin
    (``syn_region``). Labels are then brought to the subject's own grid by one resampling
    through the saved transforms.

    The subject is a GRE magnitude and the template a T1w image. Their intensities are related
    by a mapping that differs between tissues: iron shortens T2*, so the iron-rich nuclei (the
    regions that are measured) are darker in the magnitude than the T1w image predicts for
    tissue of their T1. Mutual information assumes one mapping for the whole domain and shifts
    the nuclei's boundaries towards their surroundings to fit it. Local cross-correlation in
    3 x 3 x 3 voxel windows (``syn_cc_radius_vox=1``) ignores an intensity scale and offset
    that are constant over a window, so the default SyN (``syn_metric="MI+CC"``) uses MI at
    the coarse level (4 mm: the large-scale shape, where the contrast of small nuclei hardly
    counts) and CC at the finest (2 mm). A local metric's gradient is noisier than MI's, hence
    the smoother update field (``syn_flow_sigma_vox=4``, 8 mm) and a small elastic
    regularisation of the total field (``syn_total_sigma_vox=1``; without it the phantom below
    gives 11.2 % instead of 6.8 %).

    Why these values (``benchmarks/bench_roi.py``: a 1 mm phantom made from the template by a
    known rigid + smooth non-linear warp, GRE-like contrast with T2* darkening; median relative
    error of the CIT168 region means, 2 ITK threads, five warps: four draws of phases and pose,
    amplitude 2.5 or 4 mm): MI at every level gives 11.5-16.2 % (ventral pallidum up to
    37.4 %). A finer SyN grid does not help MI (1.5 mm: 12.4-13.4 %; 1 mm with a third level:
    12.1-13.4 %; 1.7-2.5 x the CPU time): the bias is mostly in the metric (without the T2*
    darkening MI gives 8.0 %), not in the grid. MI at the coarse level and 20 CC iterations at
    2 mm give 6.4-8.1 % (ventral pallidum <= 17.1 %) for 42-47 s of CPU per subject (27 s wall
    on an idle 2-core machine; MI only: 28 s CPU); 10 CC iterations cost about what MI alone
    does (28-33 s CPU) but give 7.1-10.5 %. On simulated subjects (another contrast model,
    rigid pose only) the median error of the region means falls from 7.5 % to 2.9 %.

    Measured and not kept: registering the R2* fit's S0 (the magnitude at echo time 0, without
    the T2* darkening) instead of the first echo, same brain masks, mean error of the region
    means (ppb, left / right). On the 24 subjects of the family cohort
    (``benchmarks/validate_family_cohort.py``) it placed the internal pallidum better (Dice 0.83
    / 0.83 -> 0.90 / 0.89, -19.4 / -21.1 -> -11.6 / -13.7) and the substantia nigra (-10.0 /
    -8.6 -> -4.1 / -5.1), not the external pallidum (-12.3 / -15.0 -> -13.1 / -17.1), and the
    ventral pallidum's Dice fell from 0.85 / 0.83 to 0.76 / 0.79 (-6.4 / -8.7 -> -7.2 / -8.3).
    On 12 subjects of the demo's simulator (``qsmiron demo``, another contrast model, 2 mm) it
    was worse almost everywhere: external pallidum -1.1 / -4.5 -> -6.0 / -8.4, internal -2.2 /
    -4.0 -> -5.9 / -8.9, subthalamic nucleus -4.2 / -8.7 -> -9.2 / -15.1. One family's gain,
    the other's loss: not made the default.
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
        (40, 20), description="SyN iterations per level (coarse to fine; with syn_metric='MI+CC' the "
        "finest level's are CC's); () skips the deformable stage")
    syn_shrink_factors: tuple[int, ...] = (2, 1)
    syn_smoothing_vox: tuple[float, ...] = (1.0, 0.0)
    syn_convergence: float = Field(1e-6, gt=0, description="SyN: convergence threshold of each level")
    convergence_window: int = Field(10, ge=3, le=50)
    syn_region: Literal["atlas", "brain"] = Field(
        "atlas", description="domain of the deformable stage: the atlas regions' bounding box plus "
        "syn_margin_mm (fast; the regions are all that is measured), or the whole brain")
    syn_margin_mm: float = Field(20.0, ge=0, description="margin around the atlas regions of the SyN domain, mm")
    syn_gradient_step: float = 0.2
    syn_flow_sigma_vox: float = Field(4.0, ge=0, description="SyN: Gaussian smoothing of the update field, "
                                      "voxels of the SyN grid")
    syn_total_sigma_vox: float = Field(1.0, ge=0, description="SyN: Gaussian smoothing of the total field "
                                       "(elastic regularisation), voxels of the SyN grid")
    syn_metric: Literal["MI", "CC", "MI+CC"] = Field(
        "MI+CC", description="metric of the deformable stage: Mattes mutual information, local "
        "cross-correlation (radius syn_cc_radius_vox), or MI at the coarser levels and CC at the finest")
    syn_cc_radius_vox: int = Field(1, ge=1, description="radius of the CC window, voxels of the SyN grid "
                                   "(1: 3 x 3 x 3 voxels)")
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
        "map (the reconstruction mask, eroded by background removal), 'magnitude' = automatic from "
        "the magnitude, 'auto' = the reconstruction's brain mask before erosion (valid R2* voxels with the "
        "chi mask, when the R2* map is given), else the magnitude's brain mask when it holds the given mask "
        "(or the chi support) at most 1.35 times over, else the given mask, else the chi support when "
        "plausible, else from the magnitude")
    label_interpolation: Literal["genericLabel", "nearestNeighbor"] = "genericLabel"
    warp_chi_to_template: bool = Field(True, description="also write chi on the template grid, "
                                       "sub-<label>[_ses-<label>]_space-<space>_Chimap.nii.gz beside the native map "
                                       "(what qsmiron voxelwise analyses); the warp is non-linear only inside the "
                                       "SyN domain (syn_region)")
    reuse_transforms: bool = Field(True, description="reuse saved transforms when the inputs and settings match")
    # The brain Dice is a backstop for gross failures (good 0.941-0.974, affine alone 0.911; a 10 %
    # shrinking 0.758-0.818, registered without a brain mask 0.49-0.60).
    min_brain_dice: float = Field(0.85, ge=0, le=1,
                                  description="registration flagged when the warped subject brain overlaps "
                                  "the template brain less than this (Dice)")
    # Not a head (benchmarks/bench_head_check.py): in the template brain's core (10 mm inside its
    # outline) a registered head shares ventricles, deep grey and white matter with the template:
    # absolute correlation |r| 0.59-0.97 over simulated, template-warped and real 3 mm heads. A
    # sphere phantom or a spine-like cylinder deformed onto the brain reaches 0.15 at most (the
    # cylinder's cord and vertebrae, bent by SyN onto the template's structures). The threshold
    # is the geometric middle of 0.15 and 0.59. The normalised mutual information is recorded
    # too but not used: on the few core voxels a thin object covers its estimate is biased
    # upwards (a 30 mm cylinder: 1.06, above a real 3 mm head's 1.05).
    head_min_correlation: float = Field(0.30, ge=0, le=1,
                                        description="not a head: a subject whose magnitude, registered to the "
                                        "template, correlates with the template's brain core (10 mm inside the brain) "
                                        "less than this (absolute Pearson r) fails the regions step instead of being "
                                        "measured (a phantom, a spine, or a failed registration); 0 disables the check")
    # Registration outlier (benchmarks/bench_registration_qc.py): the registration found as a run
    # makes it (SyN in the atlas regions plus syn_margin_mm) against the same composed with known
    # errors in template space, over the real Philips 3 mm scan, the template-warped phantom,
    # three simulated subjects and three family heads (h04, h05, h08). Residual shift by block
    # matching, median over 27 blocks of the SyN domain (where the regions are measured and SyN
    # refines; the whole template brain when syn_region = "brain"): good 0.08-0.85 mm (median
    # 0.09; the worst the Philips scan); bad at least 1.94 for a 2 mm shift, 2.77 for 3 mm, 6.24
    # for 10 mm, 1.75 for a 3 degree rotation, 3.03 for 5, 6.02 for 10, 4.93 / 6.04 for a 10 / 15 %
    # scaling, 1.57 for a left-right flip (the template's asymmetry), 3.87 for the Philips scan
    # registered without a brain mask (its brain Dice 0.58 flags it too). Errors of 2 mm matter: the
    # ventral pallidum then overlaps its own copy with Dice 0.35-0.68 (the median region 0.61-0.65).
    # The threshold, 1.5, lies between the worst good (0.85) and the 2 mm shift (1.94) and below the
    # flip. Measured over the whole template brain instead (as before), the cortex outside the SyN
    # domain, aligned by the affine alone, decided the median: the Philips scan through
    # ``qsmiron run`` read 1.66 mm there and was flagged, its outer blocks 2-8.5 mm at NMI peaks
    # of 1.03-1.05 (noise on a TE 2.3 ms, 3 mm magnitude), its central ones 0.3-1.0 mm; in the SyN
    # domain it reads 1.19 mm. Earlier, with 2 echoes and no R2*, its QSM mask (1.03 L, eroded by
    # background removal) was the registration's mask and it read 4.1 mm over the whole brain; the
    # total field's support is used since (``subject_brain_mask``). Not separating good from 2-3 mm
    # errors: the NMI (good from 1.053, the Philips scan; a 3 mm shift 1.068-1.083, the flip
    # 1.081), the core correlation (good from 0.672; a 3 mm shift 0.690) and the brain Dice (good
    # from 0.915; a 6 mm shift 0.927).
    max_residual_shift_mm: float = Field(1.5, gt=0, le=6.0,
                                         description="registration flagged as an outlier when the subject, warped "
                                         "to the template, still lies further than this from it: the median over "
                                         "27 blocks of the SyN domain (the atlas regions plus syn_margin_mm; the "
                                         "template brain when syn_region is brain) of the shift (mm) that best "
                                         "matches each block (block matching by normalised mutual information, "
                                         "searched to 6 mm)")

    @model_validator(mode="after")
    def _one_value_per_level(self) -> "RegistrationSettings":
        """Each stage's iterations, shrink factors and smoothing describe the same levels (no SyN
        iterations skip SyN, whatever its other lists hold)."""
        for stage in ("linear", "syn") if self.syn_iterations else ("linear",):
            names = [f"{stage}_{name}" for name in ("iterations", "shrink_factors", "smoothing_vox")]
            counts = [len(getattr(self, name)) for name in names]
            if len(set(counts)) > 1:
                raise ValueError(f"{', '.join(names[:2])} and {names[2]} need one value per level "
                                 f"({', '.join(map(str, counts[:2]))} and {counts[2]} given)")
        return self

    @model_validator(mode="before")
    @classmethod
    def _former_nmi_threshold(cls, values: Any) -> Any:
        """A configuration written before the residual shift (beside earlier outputs) still loads."""
        if isinstance(values, dict) and "min_nmi" in values:
            values = {key: value for key, value in values.items() if key != "min_nmi"}
            warnings.warn("registration.min_nmi is no longer used and was ignored: a registration is flagged "
                          "by its residual misalignment (registration.max_residual_shift_mm) and brain Dice; "
                          "the NMI is recorded", FutureWarning, stacklevel=2)
        return values
