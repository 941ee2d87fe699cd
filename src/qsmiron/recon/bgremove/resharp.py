"""Regularisation-enabled SHARP (RESHARP; Sun & Wilman, MRM 2014;71:1151).

SHARP's truncated deconvolution replaced by Tikhonov regularisation:
``min_x ||M_r C (x - f)||^2 + lambda ||x||^2`` with ``C = delta - S`` the SMV high-pass and
``M_r`` the mask eroded by the kernel radius; solved by conjugate gradients. lambda is picked
at the corner of the L-curve over a path of weights (warm-started), as Sun & Wilman did,
so no per-dataset tuning is needed.
"""

from __future__ import annotations

from typing import Literal, Sequence

import numpy as np
from scipy.sparse.linalg import LinearOperator, cg

from qsmiron.errors import InputError
from qsmiron.recon.bgremove._common import eroded_by_sphere, smv_grid, validate
from qsmiron.recon.fill import prepared_total_field
from qsmiron.recon.fourier import irfftn, rfftn, smv_kernel
from qsmiron.recon.invert.regularisation import lcurve_corner
from qsmiron.recon.params import OpenFraction, PositiveFloat, PositiveInt

DEFAULT_LAMBDAS = tuple(float(x) for x in np.logspace(-5, -2, 7))


def default_radius_mm(voxel_size_mm: Sequence[float]) -> float:
    """4 mm, or twice the largest voxel edge when that is larger."""
    return float(max(4.0, 2.0 * max(voxel_size_mm)))


def resharp(field: np.ndarray, mask: np.ndarray, voxel_size_mm: Sequence[float],
            b0_direction: Sequence[float] = (0.0, 0.0, 1.0), *, noise: np.ndarray | None = None,
            radius_mm: PositiveFloat | None = None,
            regularisation: PositiveFloat | Literal["lcurve"] = "lcurve",
            lambdas: Sequence[PositiveFloat] = DEFAULT_LAMBDAS,
            tol: OpenFraction = 1e-4, max_iter: PositiveInt = 200) -> tuple[np.ndarray, np.ndarray, dict]:
    """Remove the background field with RESHARP.

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
        SMV radius; default ``default_radius_mm``.
    regularisation : float or "lcurve"
        lambda, or "lcurve" to choose it from ``lambdas``.
    tol, max_iter : CG settings per lambda.

    Returns
    -------
    local : ndarray, float32, zero outside ``eroded``
    eroded : ndarray of bool
    info : dict
    """
    field, mask, voxel = validate(field, mask, voxel_size_mm)
    field, mask, no_data = prepared_total_field(field, mask, noise, voxel)
    radius = default_radius_mm(voxel) if radius_mm is None else float(radius_mm)
    grid = smv_grid(mask, voxel, radius)
    shape = grid.shape
    kernel = smv_kernel(shape, voxel, radius)
    highpass_kernel = (1.0 - kernel).astype(np.float32)
    mask_pad = grid.pad(mask, dtype=bool)
    eroded = eroded_by_sphere(mask_pad, kernel, shape)
    if not eroded.any():
        raise InputError(f"the brain mask is too thin for a RESHARP ball of {radius:g} mm: nothing "
                         f"is left after its erosion (too few slices, or too small a mask)")
    f = grid.pad(field)

    def c(x: np.ndarray) -> np.ndarray:
        return irfftn(rfftn(x) * highpass_kernel, shape, overwrite=True)

    target = np.where(eroded, c(f), 0.0).astype(np.float32)
    rhs = c(target).ravel()

    def solve(lam: float, x0: np.ndarray | None) -> tuple[np.ndarray, int]:
        def normal(x: np.ndarray) -> np.ndarray:
            x = x.reshape(shape).astype(np.float32)
            return (c(np.where(eroded, c(x), 0.0).astype(np.float32)) + np.float32(lam) * x).ravel()

        operator = LinearOperator((f.size, f.size), matvec=normal, dtype=np.float32)
        count = [0]
        x, _ = cg(operator, rhs, x0=x0, rtol=tol, maxiter=max_iter,
                  callback=lambda _: count.__setitem__(0, count[0] + 1))
        return x, count[0]

    info: dict = {"radius_mm": radius, "tol": tol, "max_iter": max_iter}
    if isinstance(regularisation, str):
        if regularisation != "lcurve":
            raise ValueError(f"regularisation must be a number or 'lcurve', got {regularisation!r}")
        ordered = sorted((float(v) for v in lambdas), reverse=True)
        solutions, residuals, norms, iterations = [], [], [], []
        x = None
        for lam in ordered:
            x, its = solve(lam, x)
            image = x.reshape(shape)
            residuals.append(float(np.linalg.norm(np.where(eroded, c(image), 0.0) - target)))
            norms.append(float(np.linalg.norm(image)))
            solutions.append(image.copy())
            iterations.append(its)
        index = lcurve_corner(ordered, residuals, norms)
        lam = ordered[index]
        local = solutions[index]
        info.update({"lambda": lam, "lambda_rule": "lcurve", "lambdas": ordered,
                     "iterations": iterations})
    else:
        lam = float(regularisation)
        x, its = solve(lam, None)
        local = x.reshape(shape)
        info.update({"lambda": lam, "lambda_rule": "fixed", "iterations": its})
    local = np.where(eroded, local, 0.0).astype(np.float32)
    info.update(no_data)  # empty without a noise map
    return grid.unpad(local), grid.unpad(eroded, dtype=bool), info
