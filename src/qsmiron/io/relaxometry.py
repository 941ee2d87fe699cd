"""Relaxometry maps a user supplies beside the GRE (a spin-echo R2 map for chi-separation).

Only what the file itself can tell is checked here: readable, 3D, on the GRE's grid. Whether
the values are R2 in s^-1 is judged against the R2* map by
``qsmiron.recon.chisep.check_r2_map``; the pipeline attributes its error to the file with
``InputError.with_path``.
"""

from __future__ import annotations

import os
from typing import Sequence

import numpy as np

from qsmiron.errors import InputError
from qsmiron.io.nifti import load_nifti, same_grid, voxel_size_mm


def load_r2_map(path: str | os.PathLike, shape3d: Sequence[int], affine: np.ndarray) -> np.ndarray:
    """Read an R2 map (s^-1) that must lie on the GRE's voxel grid.

    Parameters
    ----------
    path : path
        3D NIfTI (a 4D file with one volume is accepted).
    shape3d, affine :
        The GRE's grid.

    Returns
    -------
    ndarray of float32

    Raises
    ------
    InputError
        Naming the file: missing or unreadable, not 3D, or on another grid (both grids given).
    """
    volume = load_nifti(path, with_sidecar=False)
    data = volume.data
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise InputError(f"an R2 map must be 3D, got shape {data.shape}", path)
    if not same_grid(volume.affine, affine, data.shape, shape3d):
        raise InputError(f"the R2 map is on another grid (shape {data.shape}, voxel "
                         f"{tuple(round(v, 3) for v in voxel_size_mm(volume.affine))} mm) than the "
                         f"GRE (shape {tuple(shape3d)}, voxel "
                         f"{tuple(round(v, 3) for v in voxel_size_mm(affine))} mm) or its affine "
                         f"differs: register and resample it onto the GRE first", path)
    return np.asarray(data, dtype=np.float32)
