"""Referencing: susceptibility is relative, so state what zero means.

The consensus (Magn Reson Med 2024;91:1834) recommends the whole-brain mean as the
reference; a reference region (e.g. CSF of the lateral ventricles) is an option, and then
the offset removed is recorded so that whole-brain-referenced values can be recovered.
"""

from __future__ import annotations

import numpy as np

from qsmiron.methods import Method

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
                             reference_mask: np.ndarray | None = None) -> tuple[np.ndarray, dict]:
    """Reference with the named method (``"mean"``: the whole mask; ``"mask"``: ``reference_mask``).

    Returns
    -------
    chi_ppm : ndarray, float32
    info : dict
        See ``reference_to_mean``.
    """
    if method == "mean":
        return reference_to_mean(chi_ppm, mask)
    if method == "mask":
        return reference_to_mask(chi_ppm, mask, reference_mask=reference_mask)
    raise ValueError(f"unknown reference method {method!r}; choose one of {REFERENCE_METHODS}")
