"""A subject's native map resampled to the template grid with the transforms the roi step saved.

``roi_from_files`` saves, beside its regions table ``<stem>.tsv``, the subject -> template
transforms ``<stem>_from-MEGRE_to-<template>_mode-image_xfm.mat`` (rigid + affine) and the SyN
warp pair (``...warp.nii.gz``), loaded by :meth:`qsmiron.register.normalise.Registration.load`.
:func:`warp_to_template` applies them to a map (chi, later R2*) in one resampling.

Interpolation is normalised: the map times its mask and the mask itself are resampled
(trilinear) and divided, so voxels at the edge of the subject's mask keep the map's values
instead of being pulled towards the zeros outside; template voxels whose resampled mask is
below ``min_coverage`` have no data (NaN).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from qsmiron.errors import InputError

def warp_to_template(data: np.ndarray, mask: np.ndarray, affine: np.ndarray, registration, *,
                     template_shape: tuple[int, int, int], template_affine: np.ndarray,
                     min_coverage: float = 0.5) -> np.ndarray:
    """Resample a native map onto the template grid.

    Parameters
    ----------
    data : ndarray, shape (X, Y, Z)
        The map (for example chi in ppm) on the subject's grid.
    mask : ndarray of bool, shape (X, Y, Z)
        Where ``data`` is valid (the reconstruction mask).
    affine : ndarray, shape (4, 4)
        Voxel to world (RAS+, mm) of the subject's grid.
    registration : qsmiron.register.normalise.Registration
        The subject -> template transforms.
    template_shape, template_affine
        The template grid (MNI152NLin2009cAsym: 193 x 229 x 193, 1 mm).
    min_coverage : float
        Fewest resampled mask weight for a template voxel to get a value.

    Returns
    -------
    ndarray of float32, shape ``template_shape``
        The map on the template grid, NaN where the subject's mask does not reach.
    """
    from qsmiron.register.images import to_ants
    from qsmiron.register.normalise import to_template

    mask = np.asarray(mask, dtype=bool)
    values = np.where(mask & np.isfinite(data), data, 0.0).astype(np.float32)
    weight = (mask & np.isfinite(data)).astype(np.float32)
    reference = to_ants(np.zeros(template_shape, np.float32), template_affine)
    warped = to_template(to_ants(values, affine), registration, reference).numpy()
    coverage = to_template(to_ants(weight, affine), registration, reference).numpy()
    out = np.full(template_shape, np.nan, dtype=np.float32)
    covered = coverage >= min_coverage
    out[covered] = warped[covered] / coverage[covered]
    return out


def write_template_map(out_path: str | os.PathLike, data: np.ndarray, mask: np.ndarray, affine: np.ndarray,
                       registration, template_img, *, sources: list[str], space: str, units: str = "ppm") -> Path:
    """Write ``data`` warped to the template grid (:func:`warp_to_template`) and its JSON sidecar.

    Parameters
    ----------
    out_path : path
        The name from ``qsmiron.io.derivatives`` (``template_map_path`` in a cohort).
    data, mask, affine, registration
        As :func:`warp_to_template`.
    template_img : nibabel image
        The template defining the grid.
    sources : list of str
        File names the map was made from (the native map, its mask, the transforms).
    """
    from qsmiron.io.nifti import save_nifti

    warped = warp_to_template(data, mask, affine, registration, template_shape=tuple(template_img.shape[:3]),
                              template_affine=template_img.affine)
    sidecar = {"Units": units, "SpatialReference": space, "SkullStripped": True, "Sources": list(sources),
               "Description": "native map resampled to the template with the saved ANTs transforms (SyN warp "
                              "then affine; trilinear, normalised by the resampled mask; NaN where the "
                              "subject's mask does not reach)"}
    return save_nifti(out_path, warped, template_img.affine, sidecar=sidecar, dtype=np.float32)


def template_map_from_files(map_path: str | os.PathLike, mask_path: str | os.PathLike,
                            transforms_stem: str | os.PathLike, out_path: str | os.PathLike, *,
                            template: str | os.PathLike | None = None, space: str = "MNI152NLin2009cAsym",
                            units: str = "ppm") -> Path:
    """Write ``out_path`` (a native map on the template grid) and its JSON sidecar, from files.

    Parameters
    ----------
    map_path, mask_path : path
        The native map and its mask (same grid).
    transforms_stem : path
        The stem the roi step saved its transforms under (its regions table without ``.tsv``).
    out_path : path
        Usually ``qsmiron.io.derivatives.template_map_path`` beside the native map.
    template : path, optional
        Template defining the grid (default: the built-in MNI152NLin2009cAsym brain).

    Raises
    ------
    InputError
        No saved transforms at ``transforms_stem``; map and mask on different grids.
    """
    from qsmiron.atlas.load import load_template
    from qsmiron.io.derivatives import transform_paths
    from qsmiron.io.nifti import load_nifti, same_grid
    from qsmiron.register.normalise import Registration

    registration = Registration.load(transform_paths(transforms_stem, space))
    if registration is None:
        raise InputError("no saved subject-to-template transforms at this stem (run the roi step first)",
                         transforms_stem)
    volume = load_nifti(map_path)
    mask_volume = load_nifti(mask_path)
    if not same_grid(volume.affine, mask_volume.affine, volume.data.shape, mask_volume.data.shape):
        raise InputError(f"the mask is not on the grid of {map_path}", mask_path)
    files = [registration.affine] + ([registration.warp] if registration.warp else [])
    return write_template_map(out_path, volume.data, mask_volume.data > 0, volume.affine, registration,
                              load_template(template), sources=[Path(p).name for p in (map_path, mask_path, *files)],
                              space=space, units=units)
