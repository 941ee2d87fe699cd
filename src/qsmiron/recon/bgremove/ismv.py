"""Iterative spherical mean value background removal (iSMV; Wen et al., MRM 2014;72:1065).

Inside the eroded mask ``M_r`` the background field keeps the spherical mean value property
(``b = S * b``), and outside it the field is all background, ``b = f``. Writing the local
field ``x = f - b`` (supported in ``M_r``) this is ``M_r (delta - S) x = M_r (delta - S) f``,
which Wen et al. solve by the fixed-point iteration ``x <- M_r ((delta - S) f + S x)``. The
same symmetric positive-definite system is solved here by preconditioned conjugate
gradients: the preconditioner is SHARP's own deconvolution, ``M_r F^-1 1/max(1 - S, t) F M_r``
(``1 - S >= 0`` for a ball, so it is symmetric positive definite), which is the exact inverse
away from the edge, so CG only has to fix the edge. At 256 x 256 x 176 (1 mm, an adult-sized
brain) this reaches the tolerance in 9 iterations instead of about 30, with the same local
field (1.3 s CPU).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from scipy.sparse.linalg import LinearOperator, cg

from qsmiron.errors import InputError
from qsmiron.recon.bgremove._common import eroded_by_sphere, smv_grid, validate
from qsmiron.recon.fill import prepared_total_field
from qsmiron.recon.fourier import irfftn, rfftn, smv_kernel
from qsmiron.recon.params import OpenFraction, PositiveFloat, PositiveInt


def default_radius_mm(voxel_size_mm: Sequence[float]) -> float:
    """Twice the largest voxel edge (QSM.jl's default; the erosion of V-SHARP's smallest sphere).

    A smaller ball is no longer a sphere on the grid; a larger one erodes more of the brain.
    On the phantoms of the tests, 4 mm instead of 2 mm at 1 mm voxels lowers the error over
    the (smaller) mask but costs a fifth to a third of the brain; inside the common core the
    2 mm result is as good or better (head: 12 % against 17 %; 256 x 256 x 176 head: 13 %
    for both).
    """
    return 2.0 * max(float(v) for v in voxel_size_mm)


def ismv(field: np.ndarray, mask: np.ndarray, voxel_size_mm: Sequence[float],
         b0_direction: Sequence[float] = (0.0, 0.0, 1.0), *, noise: np.ndarray | None = None,
         radius_mm: PositiveFloat | None = None, tol: OpenFraction = 1e-3, max_iter: PositiveInt = 500,
         threshold: OpenFraction = 0.01) -> tuple[np.ndarray, np.ndarray, dict]:
    """Remove the background field with iterative SMV.

    Parameters
    ----------
    field : ndarray, shape (X, Y, Z)
        Total field (any unit; the output has the same).
    mask : ndarray of bool
    voxel_size_mm : sequence of 3 floats
    b0_direction : unused; kept for the common signature.
    noise : ndarray, optional
        Field-noise map in the field's unit. Voxels of infinite noise (no usable field, e.g. the
        echo fit's misfit) are filled from their neighbours where usable voxels enclose them, and
        left out of the mask where they reach its edge (``qsmiron.recon.fill.prepared_total_field``),
        so the unweighted SMV steps do not spread their values.
    radius_mm : float, optional
        SMV radius; default ``default_radius_mm``: twice the largest voxel edge.
    tol, max_iter : CG relative tolerance (on the residual of the system) and cap.
        Tightening ``tol`` from 1e-3 to 1e-4 changes the local-field NRMSE by under 0.2
        percentage points on the phantoms of the tests.
    threshold : float
        Floor of ``1 - S`` in the preconditioner (SHARP's truncated deconvolution). It
        changes only the speed of convergence, not the solution (0.01: 9 iterations at
        256 x 256 x 176 with a 2 mm ball, 12 with 0.05).

    Returns
    -------
    local : ndarray, float32, zero outside ``eroded``
    eroded : ndarray of bool
    info : dict
    """
    field, mask, voxel = validate(field, mask, voxel_size_mm)
    field, mask, no_data = prepared_total_field(field, mask, noise, voxel)
    if not 0 < threshold < 1:
        raise ValueError(f"threshold must lie in (0, 1), got {threshold}")
    radius = default_radius_mm(voxel) if radius_mm is None else float(radius_mm)
    grid = smv_grid(mask, voxel, radius)
    shape = grid.shape
    kernel = smv_kernel(shape, voxel, radius)
    highpass_kernel = (1.0 - kernel).astype(np.float32)
    eroded = eroded_by_sphere(grid.pad(mask, dtype=bool), kernel, shape)
    if not eroded.any():
        raise InputError(f"the brain mask is too thin for an iSMV ball of {radius:g} mm: nothing "
                         f"is left after its erosion (too few slices, or too small a mask)")
    n = int(eroded.sum())
    inverse_kernel = (1.0 / np.maximum(highpass_kernel, np.float32(threshold))).astype(np.float32)

    def on_support(values: np.ndarray, spectrum_kernel: np.ndarray) -> np.ndarray:
        image = np.zeros(shape, np.float32)
        image[eroded] = values
        return irfftn(rfftn(image) * spectrum_kernel, shape, overwrite=True)[eroded]

    rhs = irfftn(rfftn(grid.pad(field)) * highpass_kernel, shape)[eroded]
    operator = LinearOperator((n, n), matvec=lambda v: on_support(v, highpass_kernel), dtype=np.float32)
    preconditioner = LinearOperator((n, n), matvec=lambda v: on_support(v, inverse_kernel),
                                    dtype=np.float32)
    count = [0]
    solution, status = cg(operator, rhs, rtol=tol, maxiter=max_iter, M=preconditioner,
                          callback=lambda _: count.__setitem__(0, count[0] + 1))
    local = np.zeros(shape, np.float32)
    local[eroded] = solution
    info = {"radius_mm": radius, "tol": tol, "max_iter": max_iter, "threshold": threshold,
            "iterations": count[0],
            "converged": status == 0}
    info.update(no_data)  # empty without a noise map
    return grid.unpad(local), grid.unpad(eroded, dtype=bool), info
