"""Referencing: susceptibility is relative, so state what zero means.

The consensus (Magn Reson Med 2024;91:1834) recommends the whole-brain mean as the
reference; a reference region (CSF of the lateral ventricles, or a user's mask) is an
option, and then the offset removed is recorded so that whole-brain-referenced values can be
recovered. Referencing subtracts a constant, so values under several references follow
from one map and the offsets of :func:`reference_offsets`.

The ventricle CSF comes from a prior of the lateral ventricles brought into subject space by
the registration (``qsmiron.atlas.ventricles``), cleaned here with the subject's own images
(:func:`ventricle_csf_mask`): CSF has the lowest R2* of the brain (long T2*, no iron or
myelin) and a homogeneous signal, and its border with tissue is partial volume.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
from scipy import ndimage

from qsmiron.errors import InputError
from qsmiron.methods import Method
from qsmiron.recon.params import NonNegativeInt, OpenFraction, PositiveFloat, PositiveInt


def _check(chi_ppm: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    chi = np.asarray(chi_ppm, dtype=np.float32)
    mask = np.asarray(mask, dtype=bool)
    if mask.shape != chi.shape:
        raise ValueError(f"mask shape {mask.shape} differs from susceptibility shape {chi.shape}")
    if not mask.any():
        raise ValueError("the mask is empty")
    return chi, mask


def _subtract_mean_of(chi: np.ndarray, mask: np.ndarray, region: np.ndarray, method: str,
                      description: str) -> tuple[np.ndarray, dict]:
    offset = float(np.mean(chi[region], dtype=np.float64))
    out = np.where(mask, chi - np.float32(offset), 0.0).astype(np.float32)
    info = {"method": method, "region": description, "offset_ppm": offset,
            "n_voxels": int(region.sum()),
            "whole_brain_mean_ppm": float(np.mean(out[mask], dtype=np.float64))}
    return out, info


def reference_to_mean(chi_ppm: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, dict]:
    """Subtract the mean susceptibility of the whole mask (the consensus reference).

    Returns
    -------
    chi_ppm : ndarray, float32, zero outside the mask
    info : dict
        ``method``, ``region`` (in words), ``offset_ppm`` removed, ``n_voxels`` of the
        reference, and the whole-brain mean after referencing.
    """
    chi, mask = _check(chi_ppm, mask)
    return _subtract_mean_of(chi, mask, mask, "mean", "whole brain mask")


def reference_to_mask(chi_ppm: np.ndarray, mask: np.ndarray, *,
                      reference_mask: np.ndarray | None = None) -> tuple[np.ndarray, dict]:
    """Subtract the mean susceptibility of a reference region (its voxels inside ``mask``).

    Returns the same as ``reference_to_mean``.
    """
    chi, mask = _check(chi_ppm, mask)
    if reference_mask is None:
        raise ValueError("method 'mask' needs a reference_mask")
    reference_mask = np.asarray(reference_mask, dtype=bool)
    if reference_mask.shape != chi.shape:
        raise ValueError(f"reference mask shape {reference_mask.shape} differs from {chi.shape}")
    region = reference_mask & mask
    if not region.any():
        raise ValueError("the reference mask has no voxel inside the brain mask")
    return _subtract_mean_of(chi, mask, region, "mask", "reference mask")


METHODS = (
    Method("mean", reference_to_mean, label="mean over the whole brain mask",
           description="subtract the mean susceptibility of the brain mask (consensus)",
           citation="QSM Consensus Organization Committee. Magn Reson Med 2024;91:1834-1862",
           doi="10.1002/mrm.30006"),
    Method("mask", reference_to_mask, label="mean over a reference mask",
           description="subtract the mean susceptibility of a given reference region"),
)
"""Referencing methods (stage ``reference``)."""

REFERENCE_METHODS = tuple(method.name for method in METHODS)


def reference_susceptibility(chi_ppm: np.ndarray, mask: np.ndarray, *, method: str = "mean",
                             reference_mask: np.ndarray | None = None,
                             voxel_size_mm: Sequence[float] | None = None
                             ) -> tuple[np.ndarray, dict]:
    """Reference with the named method.

    ``"mean"``: the whole mask; ``"mask"``: a user's ``reference_mask``; ``"csf"``:
    ``reference_mask`` holds the CSF of the lateral ventricles (:func:`ventricle_csf_mask`).
    With ``voxel_size_mm`` the info also gives the reference's ``volume_ml``.

    Returns
    -------
    chi_ppm : ndarray, float32
    info : dict
        See ``reference_to_mean``.
    """
    if method == "mean":
        chi, info = reference_to_mean(chi_ppm, mask)
    elif method == "mask":
        chi, info = reference_to_mask(chi_ppm, mask, reference_mask=reference_mask)
    elif method == "csf":
        checked, brain = _check(chi_ppm, mask)
        region = _inside(reference_mask, checked.shape, brain, "csf")
        chi, info = _subtract_mean_of(checked, brain, region, "csf", "CSF of the lateral ventricles")
    else:
        raise ValueError(f"unknown reference method {method!r}; choose one of "
                         f"{REFERENCE_METHODS + ('csf',)}")
    if voxel_size_mm is not None:
        info["volume_ml"] = info["n_voxels"] * float(np.prod(voxel_size_mm)) / 1000.0
    return chi, info


def _inside(reference_mask: np.ndarray | None, shape, mask: np.ndarray, method: str) -> np.ndarray:
    if reference_mask is None:
        raise ValueError(f"method {method!r} needs a reference_mask")
    reference_mask = np.asarray(reference_mask, dtype=bool)
    if reference_mask.shape != shape:
        raise ValueError(f"reference mask shape {reference_mask.shape} differs from {shape}")
    region = reference_mask & mask
    if not region.any():
        raise ValueError("the reference mask has no voxel inside the brain mask")
    return region


def _region_size(region: np.ndarray, voxel_size_mm: Sequence[float] | None) -> dict[str, Any]:
    n = int(np.count_nonzero(region))
    size: dict[str, Any] = {"n_voxels": n}
    if voxel_size_mm is not None:
        size["volume_ml"] = n * float(np.prod(voxel_size_mm)) / 1000.0
    return size


def reference_offsets(chi_ppm: np.ndarray, mask: np.ndarray, regions: dict[str, np.ndarray | None], *,
                      voxel_size_mm: Sequence[float] | None = None) -> dict[str, dict[str, Any]]:
    """The offset each reference region would remove, to carry values under several references.

    Parameters
    ----------
    chi_ppm : ndarray
        Susceptibility (any reference).
    mask : ndarray of bool
        The brain mask.
    regions : dict name -> mask or None
        Reference regions by name; None stands for the whole brain mask. Voxels outside
        ``mask`` are ignored.
    voxel_size_mm : 3 floats, optional

    Returns
    -------
    dict name -> {"offset_ppm", "n_voxels"[, "volume_ml"]}
        A regional value under reference R is ``value - offset_R`` (both measured on the same
        map). A region without voxels in the brain has ``offset_ppm`` NaN and ``n_voxels`` 0.
    """
    chi = np.asarray(chi_ppm, dtype=np.float64)
    mask = np.asarray(mask, dtype=bool)
    out = {}
    for name, region in regions.items():
        region = mask if region is None else (np.asarray(region, dtype=bool) & mask)
        values = chi[region & np.isfinite(chi)]
        out[name] = {"offset_ppm": float(values.mean()) if values.size else float("nan"),
                     **_region_size(region, voxel_size_mm)}
    return out


def ventricle_csf_mask(prior: np.ndarray, mask: np.ndarray, voxel_size_mm: Sequence[float], *,
                       r2star_per_s: np.ndarray | None = None, magnitude: np.ndarray | None = None,
                       r2star_fraction: OpenFraction = 0.5, magnitude_mads: PositiveFloat = 3.0,
                       erode_voxels: NonNegativeInt = 1, max_components: PositiveInt = 2,
                       min_voxels: PositiveInt = 20) -> tuple[np.ndarray, dict]:
    """CSF of the lateral ventricles in subject space: a prior cleaned by the subject's images.

    Parameters
    ----------
    prior : ndarray, shape (X, Y, Z)
        Lateral-ventricle prior on the subject grid (labels or probabilities: > 0.5 counts).
    mask : ndarray of bool
        The brain mask.
    voxel_size_mm : 3 floats
    r2star_per_s : ndarray, optional
        R2* map (s^-1, NaN where not fitted): keep voxels below ``r2star_fraction`` x the
        brain median (CSF about 2-5 s^-1 against about 20 s^-1 for tissue at 3 T; the ratio
        holds at other field strengths because both scale with B0).
    magnitude : ndarray, optional
        A magnitude image: keep voxels within ``magnitude_mads`` robust SDs (1.4826 MAD) of
        the median of the candidates (homogeneous CSF; drops vessels, plexus, tissue).
    erode_voxels : int
        6-connected erosion against partial volume at the ventricle walls. At coarse voxels
        (3 mm) a lateral ventricle is two or three voxels thick and erosion would empty it;
        when the eroded mask would fall below ``min_voxels`` the low-R2*, consistent-magnitude
        voxels are kept uneroded (``info["erosion_skipped"]`` says so): the R2* criterion has
        already left out the voxels that are mostly tissue.
    max_components : int
        Keep this many largest connected components (two lateral ventricles), each at least
        a tenth of the largest, chosen before the erosion.
    min_voxels : int
        Fewer voxels left -> InputError.

    Returns
    -------
    csf : ndarray of bool
    info : dict
        Voxels left after each step, thresholds, ``n_voxels``, ``volume_ml``, ``n_components``.

    Raises
    ------
    InputError
        The mask comes out empty or smaller than ``min_voxels`` (the step that emptied it is
        named).
    """
    mask = np.asarray(mask, dtype=bool)
    prior = np.asarray(prior)
    if prior.shape != mask.shape:
        raise ValueError(f"prior shape {prior.shape} differs from the mask's {mask.shape}")
    candidate = (prior > 0.5) & mask
    steps: dict[str, int] = {"prior_in_mask": int(candidate.sum())}
    info: dict[str, Any] = {"parameters": {"r2star_fraction": r2star_fraction,
                                           "magnitude_mads": magnitude_mads,
                                           "erode_voxels": erode_voxels,
                                           "max_components": max_components,
                                           "min_voxels": min_voxels}}
    if r2star_per_s is not None:
        r2s = np.asarray(r2star_per_s, dtype=np.float32)
        brain = r2s[mask & np.isfinite(r2s)]
        level = r2star_fraction * float(np.median(brain)) if brain.size else np.inf
        candidate &= np.isfinite(r2s) & (r2s < level)
        info["r2star_threshold_per_s"] = level
        steps["low_r2star"] = int(candidate.sum())
    if magnitude is not None and candidate.any():
        values = np.asarray(magnitude, dtype=np.float32)
        inside = values[candidate]
        centre = float(np.median(inside))
        spread = 1.4826 * float(np.median(np.abs(inside - centre)))
        candidate &= np.abs(values - centre) <= magnitude_mads * max(spread, 1e-12 * abs(centre))
        info["magnitude_range"] = [centre - magnitude_mads * spread, centre + magnitude_mads * spread]
        steps["consistent_magnitude"] = int(candidate.sum())
    # The ventricles are picked before the erosion: a thin ventricle (a few voxels across)
    # erodes into pieces, and picking the largest pieces afterwards would drop most of its core.
    candidate, n_components = _largest_components(candidate, max_components)
    steps["largest_components"] = int(candidate.sum())
    if erode_voxels > 0:
        eroded = ndimage.binary_erosion(candidate, ndimage.generate_binary_structure(3, 1),
                                        iterations=int(erode_voxels))
        if eroded.sum() >= min_voxels or candidate.sum() < min_voxels:
            candidate = eroded
            steps["eroded"] = int(candidate.sum())
        else:
            info["erosion_skipped"] = (f"eroding by {erode_voxels} voxel(s) would leave "
                                       f"{int(eroded.sum())} voxels (fewer than {min_voxels}): kept uneroded")
    info["voxels_after_step"] = steps
    info["n_components"] = n_components
    info.update(_region_size(candidate, voxel_size_mm))
    if info["n_voxels"] < min_voxels:
        emptied = next((name for name, n in steps.items() if n < min_voxels), "eroded")
        raise InputError(f"the ventricle CSF mask is empty or too small ({info['n_voxels']} voxels, "
                         f"at least {min_voxels} needed; it fell below at step '{emptied}': "
                         f"{', '.join(f'{k} {v}' for k, v in steps.items())}); use the whole-brain "
                         f"reference or give a reference mask")
    return candidate, info


def _largest_components(mask: np.ndarray, keep: int) -> tuple[np.ndarray, int]:
    """The ``keep`` largest 6-connected components, each at least a tenth of the largest."""
    labels, n = ndimage.label(mask)
    if n == 0:
        return mask, 0
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    order = np.argsort(sizes)[::-1][:keep]
    chosen = [int(i) for i in order if sizes[i] > 0 and sizes[i] >= 0.1 * sizes[order[0]]]
    return np.isin(labels, chosen), len(chosen)
