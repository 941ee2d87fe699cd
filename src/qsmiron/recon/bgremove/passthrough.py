"""No background removal: the total field passes on, for an inversion that models the
background itself (total field inversion, ``qsmiron.recon.invert.tfi``)."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from qsmiron.recon.bgremove._common import validate


def keep_total_field(field: np.ndarray, mask: np.ndarray, voxel_size_mm: Sequence[float],
                     b0_direction: Sequence[float] = (0.0, 0.0, 1.0)) -> tuple[np.ndarray, np.ndarray, dict]:
    """The total field inside the mask, unchanged, and the mask (nothing eroded).

    Parameters
    ----------
    field : ndarray, shape (X, Y, Z)
        Total field (any unit; returned in the same).
    mask : ndarray of bool
    voxel_size_mm : sequence of 3 floats
    b0_direction : unused; kept for the common signature.

    Returns
    -------
    field : ndarray, float32, zero outside the mask
    mask : ndarray of bool
    info : dict
    """
    field, mask, _ = validate(field, mask, voxel_size_mm)
    return field, mask.copy(), {"background": "left in the field for the inversion to model"}
