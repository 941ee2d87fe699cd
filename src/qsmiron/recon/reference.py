"""Referencing: susceptibility is relative, so state what zero means.

The consensus (Magn Reson Med 2024;91:1834) recommends the whole-brain mean as the
reference; a reference region (e.g. CSF of the lateral ventricles) is an option, and then
the offset removed is recorded so that whole-brain-referenced values can be recovered.
"""

from __future__ import annotations

import numpy as np

REFERENCE_METHODS = ("mean", "mask")


def reference_susceptibility(chi_ppm: np.ndarray, mask: np.ndarray, *, method: str = "mean",
                             reference_mask: np.ndarray | None = None) -> tuple[np.ndarray, dict]:
    """Subtract the mean susceptibility of the reference region.

    Parameters
    ----------
    chi_ppm : ndarray, shape (X, Y, Z)
    mask : ndarray of bool
        The brain mask; the result is zero outside it.
    method : {"mean", "mask"}
        "mean": the whole-brain mask is the reference; "mask": ``reference_mask`` is.
    reference_mask : ndarray of bool, optional
        Required for ``method="mask"``; only its voxels inside ``mask`` count.

    Returns
    -------
    chi_ppm : ndarray, float32
    info : dict
        ``method``, ``region`` (in words), ``offset_ppm`` removed, ``n_voxels`` of the
        reference, and the whole-brain mean after referencing.
    """
    chi = np.asarray(chi_ppm, dtype=np.float32)
    mask = np.asarray(mask, dtype=bool)
    if mask.shape != chi.shape:
        raise ValueError(f"mask shape {mask.shape} differs from susceptibility shape {chi.shape}")
    if not mask.any():
        raise ValueError("the mask is empty")
    if method == "mean":
        region = mask
        description = "whole brain mask"
    elif method == "mask":
        if reference_mask is None:
            raise ValueError("method 'mask' needs a reference_mask")
        reference_mask = np.asarray(reference_mask, dtype=bool)
        if reference_mask.shape != chi.shape:
            raise ValueError(f"reference mask shape {reference_mask.shape} differs from {chi.shape}")
        region = reference_mask & mask
        if not region.any():
            raise ValueError("the reference mask has no voxel inside the brain mask")
        description = "reference mask"
    else:
        raise ValueError(f"unknown reference method {method!r}; choose one of {REFERENCE_METHODS}")
    offset = float(np.mean(chi[region], dtype=np.float64))
    out = np.where(mask, chi - np.float32(offset), 0.0).astype(np.float32)
    info = {"method": method, "region": description, "offset_ppm": offset,
            "n_voxels": int(region.sum()),
            "whole_brain_mean_ppm": float(np.mean(out[mask], dtype=np.float64))}
    return out, info
