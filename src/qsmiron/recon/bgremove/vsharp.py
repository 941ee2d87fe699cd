"""Variable-radius SHARP (V-SHARP; Wu et al., MRM 2012;67:137; Li et al., NeuroImage 2011).

A background field is harmonic inside the brain, so a spherical mean value (SMV) filter
leaves it unchanged: ``(delta - S) * f`` keeps only the local field's high-pass part. Deep
inside, the largest sphere is used (least deconvolution error); towards the edge, where a
large sphere would reach outside the mask, smaller spheres take over. The high-pass field
is deconvolved with the largest kernel, truncated where ``|1 - S(k)| <= threshold``.

This is the published algorithm as implemented in STI Suite, the JHU/KKI toolbox
(``VSHARP_k``: the same reliability tolerance of 1e-3, deconvolution with the largest
radius) and QSM.jl (the same default radii and threshold 0.05); checked against them in
issue 2. Its known weakness (QSM-CI: 42.6 % local-field NRMSE against 20.7 % for RESHARP)
is the rim: a voxel near the edge gets the high-pass of a small sphere, deconvolved with the
largest kernel's inverse, and near an air interface the background is far from the ideal
harmonic field at 2 voxels. On a head phantom with an air sinus the error inside the 4 mm
core is 25 % against 40 % over the whole V-SHARP mask. The threshold hardly matters there
(0.02-0.2 change it by 1 point); that is why iSMV, not V-SHARP, is the default.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from qsmiron.errors import InputError
from qsmiron.recon.bgremove._common import default_radii_mm, eroded_by_sphere, smv_grid, validate
from qsmiron.recon.fill import prepared_total_field
from qsmiron.recon.fourier import irfftn, rfftn, smv_kernel
from qsmiron.recon.params import OpenFraction, PositiveFloat

MIN_CORE_FRACTION = 0.1
"""The largest radius used is the first whose eroded core still holds 10 % of the mask.

The whole high-pass field is deconvolved with the largest kernel; when that kernel fits only
in a small core (a small brain, a thin slab) the deconvolution no longer matches the
smaller kernels used over most of the mask and the local field is biased. For an adult
brain at 1 mm the default 18 mm sphere keeps about 40 % of the mask and is used.
"""


def vsharp(field: np.ndarray, mask: np.ndarray, voxel_size_mm: Sequence[float],
           b0_direction: Sequence[float] = (0.0, 0.0, 1.0), *, noise: np.ndarray | None = None,
           radii_mm: Sequence[PositiveFloat] | None = None,
           threshold: OpenFraction = 0.05) -> tuple[np.ndarray, np.ndarray, dict]:
    """Remove the background field with V-SHARP.

    Parameters
    ----------
    field : ndarray, shape (X, Y, Z)
        Total field inside the mask (any unit: Hz or ppm; the output has the same).
    mask : ndarray of bool
    voxel_size_mm : sequence of 3 floats
    b0_direction : unused (SHARP filtering does not depend on it); kept for the common signature.
    noise : ndarray, optional
        Field-noise map in the field's unit. Voxels of infinite noise (no usable field, e.g. the
        echo fit's misfit) are filled from their neighbours where usable voxels enclose them, and
        left out of the mask where they reach its edge (``qsmiron.recon.fill.prepared_total_field``),
        so the unweighted SMV steps do not spread their values.
    radii_mm : sequence of float, optional
        Kernel radii, mm, largest first. Default: 18 x the smallest voxel down to 2 x the
        largest; leading radii whose eroded core is under ``MIN_CORE_FRACTION`` of the mask
        are skipped (``info["radii_mm"]`` lists those used).
    threshold : float
        Truncation of the deconvolution by ``1 - S`` of the largest kernel.

    Returns
    -------
    local : ndarray, float32
        Local field, zero outside ``eroded``.
    eroded : ndarray of bool
        The mask eroded by the smallest radius (where the result is valid).
    info : dict
    """
    field, mask, voxel = validate(field, mask, voxel_size_mm)
    field, mask, no_data = prepared_total_field(field, mask, noise, voxel)
    radii = sorted((float(r) for r in (radii_mm or default_radii_mm(voxel))), reverse=True)
    if not 0 < threshold < 1:
        raise ValueError(f"threshold must lie in (0, 1), got {threshold}")
    grid = smv_grid(mask, voxel, radii[0])
    shape = grid.shape
    mask_pad = grid.pad(mask, dtype=bool)
    spectrum = rfftn(grid.pad(field))
    mask_spectrum = rfftn(mask_pad.astype(np.float32))
    highpass = np.zeros(shape, np.float32)
    done = np.zeros(shape, bool)
    deconvolution = None
    n_mask = int(mask_pad.sum())
    used = []
    for radius in radii:
        kernel = smv_kernel(shape, voxel, radius)
        inside = (irfftn(mask_spectrum * kernel, shape) > 1.0 - 1e-3) & mask_pad
        if deconvolution is None and inside.sum() < MIN_CORE_FRACTION * n_mask and radius != radii[-1]:
            continue  # this sphere fits only in a small core: skip it (see MIN_CORE_FRACTION)
        used.append(radius)
        new = inside & ~done
        if new.any():
            filtered = irfftn(spectrum * (1.0 - kernel), shape)
            highpass[new] = filtered[new]
            done |= new
        if deconvolution is None:
            deconvolution = 1.0 - kernel
    if not done.any():
        raise InputError("the brain mask is too thin for the smallest V-SHARP ball: nothing is "
                         "left after its erosion (too few slices, or too small a mask)")
    inverse = np.where(np.abs(deconvolution) > threshold, 1.0 / np.where(deconvolution == 0, 1, deconvolution), 0.0)
    local = irfftn(rfftn(highpass) * inverse.astype(np.float32), shape)
    local = np.where(done, local, 0.0).astype(np.float32)
    info = {"radii_mm": used, "threshold": threshold}
    info.update(no_data)  # empty without a noise map
    return grid.unpad(local), grid.unpad(done, dtype=bool), info
