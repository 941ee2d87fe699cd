"""Brain mask from magnitude (threshold + morphology), refined by phase quality.

``brain_mask`` is deliberately generous: it keeps everything bright enough and connected
to the largest object, then ``refine_mask_by_phase_quality`` (called by
the stage ``mask_refinement`` once the field has been fitted) peels off the edge
voxels whose phase is unreliable: high field noise, low unwrapping quality, or phase not
linear in echo time. Interior voxels are never removed by the refinement (a dark vein or
iron-rich nucleus inside the brain is tissue, not background). Morphology uses radii in mm,
so anisotropic voxels get ellipsoidal structuring elements.
"""

from __future__ import annotations

from typing import Annotated, Any, Callable, Sequence

import numba
import numpy as np
import scipy.ndimage
from annotated_types import Gt, Interval
from skimage.filters import threshold_otsu

from qsmiron.errors import InputError
from qsmiron.methods import Method
from qsmiron.recon.echofit import misfit_voxels, reduced_chi2_limit
from qsmiron.recon.morphology import (crop_box, dilate, ellipsoid, erode_keeping_edges, filled_holes,
                                      largest_component, open_keeping_edges, surface_layer_element)
from qsmiron.recon.params import Fraction, NonNegativeFloat, OpenFraction

__all__ = ["brain_mask", "magnitude_mask", "restrict_to_template_brain", "refine_mask_by_phase_quality",
           "given_mask", "keep_mask", "METHODS", "REFINEMENT_METHODS", "MASK_METHODS", "ellipsoid"]


@numba.njit(parallel=True, cache=True)
def _root_sum_of_squares(magnitude, out):
    """out = sqrt(sum over echoes of magnitude^2) in float32; False if any is not finite."""
    nx, ny, nz, ne = magnitude.shape
    bad = 0
    for x in numba.prange(nx):
        for y in range(ny):
            for z in range(nz):
                acc = np.float32(0.0)
                for n in range(ne):
                    v = np.float32(magnitude[x, y, z, n])
                    acc += v * v
                r = np.sqrt(acc)
                out[x, y, z] = r
                if not np.isfinite(r):
                    bad += 1
    return bad == 0


ThresholdCap = Annotated[float, Interval(gt=0, le=1)]
"""The cap of the magnitude threshold, a fraction of the 99th percentile, in (0, 1]."""


def brain_mask(magnitude: np.ndarray, voxel_size_mm: Sequence[float], *, threshold_cap: ThresholdCap = 0.25,
               opening_mm: NonNegativeFloat = 2.0, fill_holes: bool = True) -> np.ndarray:
    """Brain (object) mask from the magnitude: robust threshold, opening, largest component.

    1. The echoes are combined as the root sum of squares (the best SNR for a threshold).
    2. Threshold: Otsu's threshold of the combined magnitude, capped at ``threshold_cap``
       times its 99th percentile. Otsu separates background noise from the head when the
       field of view holds background; when it holds only tissue (a crop), Otsu would split
       grey from white matter, and the cap keeps all tissue.
    3. Opening with a ball of ``opening_mm`` (ellipsoidal in voxels): detaches the scalp and
       thin bridges through the skull and removes isolated noise voxels.
    4. Largest connected component (6-connectivity), then holes filled.

    Parameters
    ----------
    magnitude : ndarray, shape (X, Y, Z) or (X, Y, Z, E)
        Magnitude, any units, echoes last.
    voxel_size_mm : 3 floats, mm
    threshold_cap : float
        Upper bound of the threshold, as a fraction of the 99th percentile.
    opening_mm : float
        Radius of the opening, mm (0 to skip).
    fill_holes : bool
        Fill enclosed holes (dark veins, sinuses inside the brain are kept in the mask).

    Returns
    -------
    mask : ndarray of bool, shape (X, Y, Z)
    """
    mag = np.asarray(magnitude)
    if mag.ndim == 4:
        combined = np.empty(mag.shape[:3], np.float32)
        finite = _root_sum_of_squares(mag, combined)
    elif mag.ndim == 3:
        combined = np.abs(mag).astype(np.float32, copy=False)
        finite = bool(np.all(np.isfinite(combined)))
    else:
        raise ValueError(f"magnitude must be 3D or 4D, got shape {mag.shape}")
    if not finite:
        raise ValueError("magnitude holds NaN or infinite values")
    flat = combined.reshape(-1)
    sample = flat[:: max(1, flat.size // 2_000_000)]
    positive = sample[sample > 0]
    if positive.size < 2 or np.ptp(positive) == 0:
        raise ValueError("magnitude is constant or empty: no mask can be derived from it")
    p99 = float(np.percentile(positive, 99))
    threshold = min(float(threshold_otsu(positive)), threshold_cap * p99)
    mask = combined > threshold
    del combined
    if opening_mm > 0:
        ball = ellipsoid(opening_mm, voxel_size_mm)
        box = crop_box(mask, margin=max(ball.shape))
        opened = open_keeping_edges(mask[box], ball)
        mask = np.zeros_like(mask)
        mask[box] = opened
    box = crop_box(mask, margin=1)
    inner = largest_component(mask[box])
    if fill_holes:
        inner = filled_holes(inner)
    mask = np.zeros(mask.shape, bool)
    mask[box] = inner
    return mask


def restrict_to_template_brain(mask: np.ndarray, brain_probability: np.ndarray,
                               voxel_size_mm: Sequence[float], *, threshold: float = 0.5,
                               margin_mm: float = 4.0) -> tuple[np.ndarray, dict[str, Any]]:
    """Keep the part of a magnitude mask that lies in the (registered) template brain.

    The template brain is ``brain_probability >= threshold`` grown by ``margin_mm`` (an
    ellipsoidal dilation in mm), which absorbs the misalignment of a fast affine registration
    and of brains whose shape the affine cannot follow; the magnitude mask inside it is kept,
    its largest component taken and holes filled. Skull base, sinus walls, face and neck, which
    a magnitude threshold keeps and whose phase makes the inversion streak, fall outside.

    Parameters
    ----------
    mask : ndarray of bool, shape (X, Y, Z)
        The magnitude mask.
    brain_probability : ndarray, shape (X, Y, Z)
        The template's brain on this grid (e.g. a binary brain mask resampled with linear
        interpolation), 0..1.
    voxel_size_mm : 3 floats, mm
    threshold : float
        Probability at which a voxel counts as template brain.
    margin_mm : float
        Growth of the template brain before the intersection, mm.

    Returns
    -------
    restricted : ndarray of bool
    info : dict
        Volumes (mL) before and after, the share of the magnitude mask outside the template
        brain (before), and the parameters.
    """
    mask = np.asarray(mask, dtype=bool)
    probability = np.asarray(brain_probability, dtype=np.float32)
    if probability.shape != mask.shape:
        raise ValueError(f"brain_probability shape {probability.shape} differs from the mask's {mask.shape}")
    brain = np.nan_to_num(probability) >= threshold
    voxel_ml = float(np.prod(voxel_size_mm)) / 1000.0
    outside = float((mask & ~brain).sum() / max(mask.sum(), 1))
    info: dict[str, Any] = {"threshold": threshold, "margin_mm": margin_mm,
                            "volume_before_ml": round(float(mask.sum()) * voxel_ml, 3),
                            "outside_template_brain_before": round(outside, 4)}
    if margin_mm > 0:
        brain = dilate(brain, ellipsoid(margin_mm, voxel_size_mm))
    restricted = mask & brain
    if restricted.any():
        box = crop_box(restricted, margin=1)
        inner = filled_holes(largest_component(restricted[box]))
        restricted = np.zeros(mask.shape, bool)
        restricted[box] = inner
    info["volume_after_ml"] = round(float(restricted.sum()) * voxel_ml, 3)
    return restricted, info


def magnitude_mask(magnitude: np.ndarray, voxel_size_mm: Sequence[float], *,
                   brain_probability: np.ndarray | Callable[[], np.ndarray | None] | None = None,
                   threshold_cap: ThresholdCap = 0.25, opening_mm: NonNegativeFloat = 2.0,
                   fill_holes: bool = True, template_brain: bool = True, template_threshold: OpenFraction = 0.5,
                   template_margin_mm: NonNegativeFloat = 4.0) -> tuple[np.ndarray, dict[str, Any]]:
    """The magnitude's brain mask (``brain_mask``), restricted to a registered template brain.

    On a whole-head scan the magnitude threshold keeps skull base, sinus walls, face and neck;
    the template's brain, registered to the magnitude by the pipeline
    (``qsmiron.register.brainmask``) and passed in as ``brain_probability``, removes them
    (``restrict_to_template_brain``). Without it (a crop or slab, no template installed, a
    failed registration) or with ``template_brain`` off, the magnitude mask is returned as it
    is, and ``info`` says why.

    Parameters
    ----------
    magnitude : ndarray, shape (X, Y, Z) or (X, Y, Z, E)
    voxel_size_mm : 3 floats, mm
    brain_probability : ndarray, shape (X, Y, Z), or a function returning it (or None), optional
        The template brain on this grid, 0..1 (a stage input, not a setting). A function is
        called once the magnitude mask is made, so that a registration running in another
        thread overlaps the threshold and the morphology.
    threshold_cap, opening_mm, fill_holes
        Those of ``brain_mask``.
    template_brain : bool
        Restrict to the template brain (the pipeline registers the template only when on).
    template_threshold, template_margin_mm
        ``threshold`` and ``margin_mm`` of ``restrict_to_template_brain``.

    Returns
    -------
    mask : ndarray of bool, shape (X, Y, Z)
    info : dict
        ``template_brain``: ``used`` and, when used, the volumes before and after; otherwise
        the ``reason``.
    """
    mask = np.asarray(brain_mask(magnitude, voxel_size_mm, threshold_cap=threshold_cap, opening_mm=opening_mm,
                                 fill_holes=fill_holes), dtype=bool)
    if not template_brain:
        return mask, {"template_brain": {"used": False, "reason": "switched off (template_brain = false)"}}
    if callable(brain_probability):
        brain_probability = brain_probability()
    if brain_probability is None:
        return mask, {"template_brain": {"used": False, "reason": "no template brain was given"}}
    restricted, info = restrict_to_template_brain(mask, brain_probability, voxel_size_mm,
                                                  threshold=template_threshold, margin_mm=template_margin_mm)
    if not restricted.any():
        return mask, {"template_brain": {"used": False, **info, "reason": "the template brain does not "
                                         "overlap the magnitude mask; magnitude mask only"}}
    return restricted, {"template_brain": {"used": True, **info}}


def refine_mask_by_phase_quality(mask: np.ndarray, voxel_size_mm: Sequence[float], *,
                                 noise_hz: np.ndarray | None = None,
                                 quality: np.ndarray | None = None,
                                 reduced_chi2: np.ndarray | None = None,
                                 dof: int = 0, misfit_tolerance_hz: float = 0.0,
                                 noise_factor: Annotated[float, Gt(1)] = 3.0,
                                 min_quality: Fraction = 0.25, chi2_p: OpenFraction = 1e-4,
                                 opening_mm: NonNegativeFloat = 1.0,
                                 edge_erosion_mm: NonNegativeFloat = 1.0) -> tuple[np.ndarray, dict[str, Any]]:
    """Remove the unreliable edge of a mask, judged by the phase.

    A voxel is unreliable when any of these holds:

    - its field noise exceeds ``noise_factor`` times the median field noise in the mask
      (its magnitude-weighted SNR is a third of typical brain or worse);
    - its unwrapping quality (mean ROMEO edge quality, 0..1) is below ``min_quality``;
    - its echo-fit residual is implausible for Gaussian noise: reduced chi-square above the
      ``1 - chi2_p`` quantile of the chi-square distribution with ``dof`` degrees of freedom
      (phase not linear in TE), and, with ``misfit_tolerance_hz`` > 0, a field SD implied by
      its residuals above that (the echo fit's ``misfit_tolerance_ppm``).

    Unreliable voxels connected to the outside of the mask through other unreliable voxels
    are removed (the edge is peeled); unreliable voxels enclosed by reliable tissue stay.
    Then an opening of ``opening_mm`` smooths the new edge, the voxels whose centres lie within
    ``edge_erosion_mm`` of the mask's surface are removed (``morphology.surface_layer_element``;
    not where the mask meets the field of view's edge), the largest component is kept and holes
    are filled.

    Why the edge erosion. A magnitude mask ends where the signal does: at the inner surface of
    the skull and at the walls of air cavities, with the CSF between brain and bone inside it.
    There the background field is steepest (family head h01: 0.48 ppm RMS in the mask's outer
    millimetre, 0.09 ppm deeper than 10 mm) while the phase stays clean, so no phase test flags
    it, and background removal leaves part of it in the local field; iSMV's 2-voxel erosion
    then keeps too little distance from it when voxels are small. The default reconstruction
    with its own mask (``benchmarks/bench_bgremove.py --own-mask``, Chimap NRMSE median / worst,
    regional error in ppb): on the 12 family heads 44.3 / 168.9 % without the erosion (h01 87 %,
    h08 75 %, h09 169 %), 37.0 / 42.9 % with 1 mm, 38.0 / 42.5 % with 2 mm (before the centre
    rule, in whole millimetres), regional error 3.3 / 13.5, 3.4 / 4.8 and 3.6 / 5.9 ppb; on 12
    held-out heads (``simulate.head_draws``) 44.1 / 63.6 % without and 41.8 / 49.1 % with 1 mm,
    regional error 4.6 / 7.4 and 4.3 / 8.4 ppb (the 2 and 2.5 mm heads, which lose an in-plane
    layer but no slice, read 0.5-1 ppb worse). Peeling at least one whole layer, slices of 2.5
    mm included, took a held-out head's VeP from -15.7 to -22.5 ppb; hence the centre rule,
    which leaves voxels of 2 mm or more along an axis alone. Measured and not kept: a depth of
    3 mm less iSMV's radius (2 voxels), none for voxels of 1.5 mm or more: family 35.8 / 45.1 %
    (h10, 2 mm slices), regional error 3.3 / 4.0 ppb; held out 41.9 / 48.9 %, 4.0 / 7.4 ppb. Its
    regional figures are better, its worst map worse, and it ties the mask to one background
    method's kernel. Nor keeping the voxels the chi-square test flags (``chi2_p`` 1e-300: they
    stay in the mask without a field, as in a given mask): on h10 (2 mm slices, sinus 2 mm from
    the brain; slab frame), where their field is 0.022 ppm off (median) already between the first
    two echoes, the slope over all regions went from 0.92 to 1.00 because the nuclei of the basal
    forebrain were no longer cut, but VeP read -17.7 instead of -0.3 ppb, measured on the field
    filled in from its neighbours, and the Chimap NRMSE rose from 38.9 to 40.7 %.

    Parameters
    ----------
    mask : ndarray of bool, shape (X, Y, Z)
    voxel_size_mm : 3 floats, mm
    noise_hz, quality, reduced_chi2 : ndarray, shape (X, Y, Z), optional
        Evidence maps (any may be None).
    dof : int
        Residual degrees of freedom of the echo fit (for ``reduced_chi2``).
    misfit_tolerance_hz : float
        The echo fit's misfit tolerance in Hz (0: the chi-square test alone).
    edge_erosion_mm : float
        Depth of the surface layer removed last (0: none).

    Returns
    -------
    refined : ndarray of bool
    info : dict
        Voxel counts flagged and removed, and the criteria.
    """
    full_mask = np.asarray(mask, dtype=bool)
    info: dict[str, Any] = {"noise_factor": noise_factor, "min_quality": min_quality,
                            "chi2_p": chi2_p, "opening_mm": opening_mm, "edge_erosion_mm": edge_erosion_mm}
    if not full_mask.any():
        info.update(removed_voxels=0, removed_fraction=0.0)
        return full_mask.copy(), info
    # Work in the mask's bounding box (plus a margin of one voxel of background).
    box = crop_box(full_mask, margin=1)
    mask = full_mask[box]
    noise_hz = None if noise_hz is None else noise_hz[box]
    quality = None if quality is None else quality[box]
    reduced_chi2 = None if reduced_chi2 is None else reduced_chi2[box]
    unreliable = np.zeros(mask.shape, bool)
    if noise_hz is not None and mask.any():
        limit = noise_factor * float(np.median(noise_hz[mask]))
        flagged = mask & (noise_hz > limit)
        info["noise_limit_hz"] = limit
        info["flagged_noise"] = int(flagged.sum())
        unreliable |= flagged
    if quality is not None:
        flagged = mask & (quality < min_quality)
        info["flagged_quality"] = int(flagged.sum())
        unreliable |= flagged
    if reduced_chi2 is not None and dof > 0:
        flagged = misfit_voxels(reduced_chi2, mask, dof, chi2_p, noise_hz=noise_hz,
                                tolerance_hz=misfit_tolerance_hz if noise_hz is not None else 0.0)
        info["chi2_limit"] = reduced_chi2_limit(chi2_p, dof)
        info["flagged_residual"] = int(flagged.sum())
        unreliable |= flagged
    # Peel: unreliable voxels reachable from outside the mask through unreliable voxels.
    # The volume border counts as outside (a mask may touch the edge of the field of view).
    region = np.pad(~mask | unreliable, 1, constant_values=True)
    labels, _ = scipy.ndimage.label(region)
    outside_labels = np.unique(labels[np.pad(~mask, 1, constant_values=True)])
    outside_labels = outside_labels[outside_labels > 0]
    peeled = unreliable & np.isin(labels[1:-1, 1:-1, 1:-1], outside_labels)
    del labels, region
    refined = mask & ~peeled
    if opening_mm > 0 and refined.any():
        refined = open_keeping_edges(refined, ellipsoid(opening_mm, voxel_size_mm))
    if edge_erosion_mm > 0 and refined.any():
        peeled_layer = refined & ~erode_keeping_edges(refined, surface_layer_element(edge_erosion_mm, voxel_size_mm))
        info["edge_eroded_voxels"] = int(peeled_layer.sum())
        refined &= ~peeled_layer
    if refined.any():
        refined = filled_holes(largest_component(refined)) & mask
    info["removed_voxels"] = int(mask.sum() - refined.sum())
    info["removed_fraction"] = float(info["removed_voxels"] / max(1, int(mask.sum())))
    out = np.zeros(full_mask.shape, bool)
    out[box] = refined
    return out, info


def given_mask(magnitude: np.ndarray, voxel_size_mm: Sequence[float], *,
               mask: np.ndarray) -> np.ndarray:
    """A mask given by the user, checked against the data: same grid, not empty.

    Raises
    ------
    ValueError
        Another shape than the magnitude's.
    InputError
        An empty mask.
    """
    mask = np.asarray(mask).astype(bool)
    shape = np.shape(magnitude)[:3]
    if mask.shape != shape:
        raise ValueError(f"mask shape {mask.shape} differs from the data's {shape}")
    if not mask.any():
        raise InputError("the brain mask is empty")
    return mask


def keep_mask(mask: np.ndarray, voxel_size_mm: Sequence[float]) -> tuple[np.ndarray, dict[str, Any]]:
    """No refinement: the mask as it is (for a user's mask, or when refinement is off)."""
    return np.asarray(mask, dtype=bool), {"removed_voxels": 0, "removed_fraction": 0.0}


OTSU = ("Otsu N. IEEE Trans Syst Man Cybern 1979;9:62-66", "10.1109/TSMC.1979.4310076")

METHODS = (
    Method("magnitude", magnitude_mask, label="from the magnitude (Otsu threshold, opening, largest component)",
           description="threshold of the echo-combined magnitude (Otsu, capped), opening, largest "
                       "component, holes filled; on whole-head scans restricted to the registered "
                       "template brain",
           citation=OTSU[0], doi=OTSU[1]),
    Method("magnitude_template", magnitude_mask,
           label="from the magnitude (Otsu threshold, opening, largest component), restricted to the "
                 "MNI152NLin2009cAsym brain registered affinely to the magnitude with ANTs and grown by "
                 "a margin",
           description="the magnitude mask inside the registered template brain (recorded when the "
                       "restriction was applied)",
           citation="Fonov VS, Evans AC, Botteron K, et al. NeuroImage 2011;54:313-327",
           doi="10.1016/j.neuroimage.2010.07.033",
           also_cites=(("Avants BB, Tustison NJ, Song G, et al. NeuroImage 2011;54:2033-2044",
                        "10.1016/j.neuroimage.2010.09.025"), OTSU), selectable=False),
    Method("given", given_mask, label="user-supplied mask", description="the mask given with --mask",
           selectable=False),
)
"""Brain-mask methods (stage ``mask``): a selectable one is ``f(magnitude, voxel_size_mm, **params)
-> (mask, info)``; ``magnitude_template`` is what the record names when ``magnitude`` applied the
template brain, ``given`` the user's mask."""

REFINEMENT_METHODS = (
    Method("phase_quality", refine_mask_by_phase_quality,
           label="removal of edge voxels with unreliable phase (field noise, unwrapping quality, "
                 "echo-fit residual), then of the voxels centred within the edge erosion depth of "
                 "the mask's surface",
           description="peel edge voxels whose field noise, ROMEO quality or echo-fit residual "
                       "marks the phase as unreliable, then the mask's surface layer (next to bone "
                       "and air, where the background field is steepest)"),
    Method("none", keep_mask, label="none", description="keep the mask as it is"),
)
"""Mask refinement methods (stage ``mask_refinement``), after the echo fit."""

MASK_METHODS = {method.name: method.function for method in METHODS if method.selectable}
"""Name -> mask function, from ``METHODS``."""
