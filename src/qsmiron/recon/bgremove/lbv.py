"""Laplacian boundary value background removal (LBV; Zhou et al., NMR Biomed 2014;27:312,
doi:10.1002/nbm.3064).

The background field ``b`` is harmonic inside the mask and equals the total field ``f`` on
the mask's boundary. Writing the local field ``x = f - b``: ``L x = L f`` on the interior
voxels (those whose six neighbours all lie in the mask) and ``x = 0`` on the boundary, with
``L`` the 7-point Laplacian (``1/dx^2`` per axis, so anisotropic voxels are exact). The
system ``-L`` restricted to the interior is symmetric positive definite; Zhou et al. solve
it by multigrid, here by conjugate gradients preconditioned with the exact inverse of
``-L`` on the interior's bounding box (a fast Poisson solve by type-I discrete sine
transforms, zero Dirichlet values on the box), which is the exact inverse away from the
mask's edge, so CG only has to fix the edge (as iSMV's preconditioner does).

Like every method that takes the background as the harmonic field matching the data at the
mask's edge, LBV assigns the harmonic part of the local field to the background (see
``qsmiron.recon.bgremove``): the local field it returns vanishes on the boundary, the true
one does not. ``peel`` removes the layers next to the boundary, where the forced zero is
furthest from the truth.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import scipy.fft
from scipy import ndimage
from scipy.sparse.linalg import LinearOperator, cg

from qsmiron.recon.bgremove._common import validate
from qsmiron.recon.fill import prepared_total_field
from qsmiron.recon.fourier import WORKERS, bounding_box
from qsmiron.recon.params import NonNegativeInt, OpenFraction, PositiveInt


def _laplacian(image: np.ndarray, weights: Sequence[float]) -> np.ndarray:
    """7-point Laplacian with zero values outside the array: sum_i w_i (x[+1] - 2 x + x[-1])."""
    out = np.zeros_like(image)
    for axis, w in enumerate(weights):
        w = np.float32(w)
        lower = [slice(None)] * 3
        upper = [slice(None)] * 3
        lower[axis], upper[axis] = slice(0, -1), slice(1, None)
        out -= 2 * w * image
        out[tuple(lower)] += w * image[tuple(upper)]
        out[tuple(upper)] += w * image[tuple(lower)]
    return out


def _dst_poisson_eigenvalues(shape: Sequence[int], weights: Sequence[float]) -> np.ndarray:
    """Eigenvalues of -L on a box with zero Dirichlet values outside (type-I DST basis)."""
    out = np.zeros(tuple(shape), np.float32)
    for axis, (n, w) in enumerate(zip(shape, weights)):
        k = np.arange(1, n + 1)
        view = [1] * 3
        view[axis] = n
        out += (w * (2.0 - 2.0 * np.cos(np.pi * k / (n + 1)))).astype(np.float32).reshape(view)
    return out


def lbv(field: np.ndarray, mask: np.ndarray, voxel_size_mm: Sequence[float],
        b0_direction: Sequence[float] = (0.0, 0.0, 1.0), *, noise: np.ndarray | None = None,
        tol: OpenFraction = 1e-3, max_iter: PositiveInt = 500,
        peel: NonNegativeInt = 1) -> tuple[np.ndarray, np.ndarray, dict]:
    """Remove the background field by solving the Laplacian boundary value problem.

    Parameters
    ----------
    field : ndarray, shape (X, Y, Z)
        Total field (any unit; the output has the same).
    mask : ndarray of bool
    voxel_size_mm : sequence of 3 floats
    b0_direction : unused (the Laplacian does not depend on it); kept for the common signature.
    noise : ndarray, optional
        Field-noise map in the field's unit. Voxels of infinite noise (no usable field, e.g. the
        echo fit's misfit) are filled from their neighbours where usable voxels enclose them, and
        left out of the mask where they reach its edge (``qsmiron.recon.fill.prepared_total_field``),
        so their values do not enter the boundary values.
    tol : float
        Relative residual at which CG stops. From 1e-3 to 1e-5 the local field changes by
        0.1 % (sphere phantom, 3 -> 8 iterations) and 0.4 % (head with a sinus, 6 -> 11) of
        the true local field's norm.
    max_iter : int
        Cap on CG iterations (``info["converged"]`` says whether ``tol`` was reached).
    peel : int
        Voxel layers removed from the mask's edge after the solve (the boundary itself,
        where the local field is forced to zero, always goes).

    Returns
    -------
    local : ndarray, float32, zero outside ``eroded``
    eroded : ndarray of bool
        The interior of the mask, peeled by ``peel`` more layers.
    info : dict
    """
    field, mask, voxel = validate(field, mask, voxel_size_mm)
    field, mask, no_data = prepared_total_field(field, mask, noise, voxel)
    if peel < 0:
        raise ValueError(f"peel must be >= 0, got {peel}")
    cross = ndimage.generate_binary_structure(3, 1)
    interior = ndimage.binary_erosion(mask, cross, border_value=0)
    if not interior.any():
        raise ValueError("the mask has no interior voxel for LBV")
    box = bounding_box(interior)
    # One voxel of the mask around the interior's box: the Laplacian of f at interior voxels
    # reads their neighbours, which all lie in the mask.
    outer = tuple(slice(max(s.start - 1, 0), min(s.stop + 1, n)) for s, n in zip(box, mask.shape))
    inner = tuple(slice(s.start - o.start, s.stop - o.start) for s, o in zip(box, outer))
    weights = tuple(1.0 / (v * v) for v in voxel)
    support = interior[box]
    rhs = -_laplacian(field[outer], weights)[inner][support]
    eigenvalues = _dst_poisson_eigenvalues(support.shape, weights)
    n = int(support.sum())

    def scatter(values: np.ndarray) -> np.ndarray:
        image = np.zeros(support.shape, np.float32)
        image[support] = values
        return image

    def operator(values: np.ndarray) -> np.ndarray:
        return -_laplacian(scatter(values), weights)[support]

    def preconditioner(values: np.ndarray) -> np.ndarray:
        spectrum = scipy.fft.dstn(scatter(values), type=1, workers=WORKERS)
        spectrum /= eigenvalues
        return scipy.fft.idstn(spectrum, type=1, workers=WORKERS)[support]

    count = [0]
    solution, status = cg(LinearOperator((n, n), matvec=operator, dtype=np.float32), rhs, rtol=tol,
                          maxiter=max_iter,
                          M=LinearOperator((n, n), matvec=preconditioner, dtype=np.float32),
                          callback=lambda _: count.__setitem__(0, count[0] + 1))
    eroded = interior if peel == 0 else ndimage.binary_erosion(interior, cross, iterations=peel,
                                                                border_value=0)
    local = np.zeros(mask.shape, np.float32)
    local[box] = scatter(solution.astype(np.float32))
    local[~eroded] = 0.0
    info = {"tol": tol, "max_iter": max_iter, "peel": peel, "iterations": count[0],
            "converged": status == 0}
    if status != 0:
        info["warnings"] = [f"LBV stopped after {count[0]} iterations before reaching tol {tol}"]
    info.update(no_data)  # empty without a noise map
    return local, eroded, info
