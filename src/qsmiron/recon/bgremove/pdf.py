"""Projection onto dipole fields (PDF; Liu et al., NMR Biomed 2011;24:1129).

The background field is modelled as the field of susceptibility sources *outside* the mask:
``min_chi_b ||W M (D * (Mbar chi_b) - f)||^2`` solved by conjugate gradients on the normal
equations (scipy.sparse.linalg.cg with FFT operators). The local field is what that fit
leaves inside the mask. The grid is the mask's bounding box zero-padded by ``pad_mm`` on
each side (the region where background sources may sit) so that FFT wrap-around does not
fold sources from one side onto the other.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from scipy.sparse.linalg import LinearOperator, cg

from qsmiron.recon.bgremove._common import validate
from qsmiron.recon.dipole import dipole_kernel
from qsmiron.recon.fourier import irfftn, mm_to_voxels, padded_grid, rfftn


def pdf(field: np.ndarray, mask: np.ndarray, voxel_size_mm: Sequence[float],
        b0_direction: Sequence[float] = (0.0, 0.0, 1.0), *, noise: np.ndarray | None = None,
        pad_mm: float = 40.0, tol: float = 1e-3, max_iter: int = 100) -> tuple[np.ndarray, np.ndarray, dict]:
    """Remove the background field by projection onto dipole fields.

    Parameters
    ----------
    field : ndarray, shape (X, Y, Z)
        Total field (Hz or ppm; the output has the same unit).
    mask : ndarray of bool
    voxel_size_mm : sequence of 3 floats
    b0_direction : sequence of 3 floats
        B0 in voxel axes.
    noise : ndarray, optional
        Field-noise map in the field's unit: data weights 1/noise (normalised).
    pad_mm : float
        Zero padding around the mask's bounding box (room for background sources); 40 mm
        on each side by default (MEDI's PDF pads 40 voxels).
    tol, max_iter : CG relative tolerance and cap.

    Returns
    -------
    local : ndarray, float32, zero outside the mask
    mask : ndarray of bool (PDF does not erode)
    info : dict
    """
    field, mask, voxel = validate(field, mask, voxel_size_mm)
    pads = [2 * p for p in mm_to_voxels(pad_mm, voxel)]
    grid = padded_grid(mask, pads)
    shape = grid.shape
    # Put the box in the middle of the padded grid: sources on every side.
    shift = tuple((n - c) // 2 for n, c in zip(shape, grid.crop_shape))
    inside = np.roll(grid.pad(mask, dtype=bool), shift, axis=(0, 1, 2))
    f = np.roll(grid.pad(field), shift, axis=(0, 1, 2))
    if noise is not None:
        noise_pad = np.roll(grid.pad(np.asarray(noise, dtype=np.float32)), shift, axis=(0, 1, 2))
        good = inside & np.isfinite(noise_pad) & (noise_pad > 0)
        w = np.zeros(shape, np.float32)
        w[good] = 1.0 / noise_pad[good]
        w /= w[inside].mean()
        weights = "1/noise"
    else:
        w = inside.astype(np.float32)
        weights = "uniform"
    w2 = w * w
    outside = ~inside
    d = dipole_kernel(shape, voxel, b0_direction, real=True)
    n_out = int(outside.sum())

    def dipole_field(chi_out: np.ndarray) -> np.ndarray:
        image = np.zeros(shape, np.float32)
        image[outside] = chi_out
        return irfftn(rfftn(image) * d, shape)

    def normal(chi_out: np.ndarray) -> np.ndarray:
        residual = w2 * dipole_field(chi_out)
        return irfftn(rfftn(residual.astype(np.float32)) * d, shape)[outside]

    operator = LinearOperator((n_out, n_out), matvec=normal, dtype=np.float32)
    rhs = irfftn(rfftn((w2 * f).astype(np.float32)) * d, shape)[outside]
    iterations = 0

    def count(_):
        nonlocal iterations
        iterations += 1

    solution, status = cg(operator, rhs, rtol=tol, maxiter=max_iter, callback=count)
    background = dipole_field(solution)
    local = np.where(inside, f - background, 0.0).astype(np.float32)
    local = np.roll(local, [-s for s in shift], axis=(0, 1, 2))
    info = {"pad_mm": pad_mm, "tol": tol, "max_iter": max_iter, "iterations": iterations,
            "converged": status == 0, "weights": weights}
    return grid.unpad(local), mask.copy(), info
