"""Rapid two-step dipole inversion (RTS; Kames, Wiggermann & Rauscher, NeuroImage 2018;167:276).

Step 1 recovers the well-conditioned part of k-space (|D| > delta) by a few LSMR iterations
of ``min ||P_wc (D F chi - F f)||`` with chi supported in the mask. Step 2 fills the
ill-conditioned cone with a TV-regularised solution that keeps step 1's well-conditioned
k-space (``min ||grad x||_1 + mu/2 ||P_wc F (x - chi1)||^2``, ADMM). Defaults are the
paper's: delta = 0.15, mu = 1e5, rho = 10, tol = 1e-2, 20 iterations, 4 LSMR iterations.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from scipy.sparse.linalg import LinearOperator, lsmr

from qsmiron.recon.fourier import irfftn, laplacian_kernel, rfftn
from qsmiron.recon.invert import _kernels
from qsmiron.recon.invert._common import DEFAULT_PAD_MM, setup
from qsmiron.recon.params import NonNegativeFloat, PositiveFloat, PositiveInt


def rts(local_ppm: np.ndarray, mask: np.ndarray, voxel_size_mm: Sequence[float],
        b0_direction: Sequence[float], *, delta: PositiveFloat = 0.15, mu: PositiveFloat = 1e5,
        rho: PositiveFloat = 10.0, tol: PositiveFloat = 1e-2, max_iter: PositiveInt = 20,
        lsmr_iter: PositiveInt = 4, pad_mm: NonNegativeFloat = DEFAULT_PAD_MM) -> tuple[np.ndarray, dict]:
    """Susceptibility (ppm) by rapid two-step inversion.

    Parameters
    ----------
    local_ppm : ndarray, shape (X, Y, Z)
        Local field, ppm.
    mask : ndarray of bool
    voxel_size_mm, b0_direction : geometry (voxel axes)
    delta : float
        |D| threshold between well- and ill-conditioned k-space.
    mu, rho : float
        Weight of the well-conditioned data consistency and ADMM penalty of step 2.
    tol, max_iter : step 2 stopping rule (relative change) and cap.
    lsmr_iter : int
        LSMR iterations of step 1.
    pad_mm : float

    Returns
    -------
    chi_ppm : ndarray
    info : dict
    """
    problem = setup(local_ppm, mask, voxel_size_mm, b0_direction, pad_mm=pad_mm)
    shape = problem.grid.shape
    d = problem.dipole
    well = (np.abs(d) > delta).astype(np.float32)
    inside = problem.mask
    n = int(inside.sum())

    # Step 1: LSMR on the mask's voxels; A = P_wc D F M (real: P_wc and D are symmetric).
    def forward(x: np.ndarray) -> np.ndarray:
        image = np.zeros(shape, np.float32)
        image[inside] = x
        return irfftn(rfftn(image) * (d * well), shape).ravel().astype(np.float64)

    def adjoint(y: np.ndarray) -> np.ndarray:
        image = irfftn(rfftn(y.reshape(shape).astype(np.float32)) * (d * well), shape)
        return image[inside].astype(np.float64)

    # float64 at LSMR's interface (its condition estimate overflows in float32); FFTs in float32.
    operator = LinearOperator((int(np.prod(shape)), n), matvec=forward, rmatvec=adjoint, dtype=np.float64)
    rhs = irfftn(rfftn(problem.field_ppm) * well, shape).ravel().astype(np.float64)
    solution = lsmr(operator, rhs, maxiter=lsmr_iter, atol=0, btol=0)
    chi1 = np.zeros(shape, np.float32)
    chi1[inside] = solution[0]

    # Step 2: ADMM, x-step diagonal in k-space.
    inv_dx = np.array([1.0 / v for v in problem.voxel_size_mm], dtype=np.float32)
    lap = laplacian_kernel(shape, problem.voxel_size_mm)
    denominator = np.float32(mu) * well + np.float32(rho) * lap
    denominator.flat[0] = 1.0
    inverse = 1.0 / denominator
    known = rfftn(chi1) * well * np.float32(mu)
    z = np.zeros((3, *shape), np.float32)
    s = np.zeros_like(z)
    rhs_image = np.empty(shape, np.float32)
    threshold = np.full(shape, 1.0 / rho, np.float32)
    x = chi1
    _kernels.gradient_shrink(x, z, s, np.zeros(shape, np.float32), inv_dx)
    s[...] = 0.0
    change = np.inf
    iterations = 0
    for iterations in range(1, max_iter + 1):
        _kernels.gradient_adjoint_of_difference(z, s, inv_dx, rhs_image)
        spectrum = rfftn(rhs_image) * np.float32(rho) + known
        spectrum *= inverse
        new_x = irfftn(spectrum, shape)
        change = float(np.linalg.norm(new_x - x) / max(np.linalg.norm(new_x), 1e-30))
        x = new_x
        _kernels.gradient_shrink(x, z, s, threshold, inv_dx)
        if change < tol:
            break
    info = {"delta": delta, "mu": mu, "rho": rho, "tol": tol, "max_iter": max_iter,
            "lsmr_iter": lsmr_iter, "iterations": iterations, "relative_change": change,
            "converged": bool(change < tol), "pad_mm": pad_mm}
    return problem.result(x), info
