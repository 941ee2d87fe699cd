"""Fused voxel loops of the TV solvers (numba, parallel over the first axis).

Gradients are periodic forward differences scaled by the voxel size, so that the
least-squares step of ADMM is diagonal in k-space (``qsmiron.recon.fourier.laplacian_kernel``).
Each loop does in one pass what numpy would do in several temporaries.
"""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(inline="always", fastmath=True)
def _gradient_plus_scaled_dual(chi, s, i, j, k, ip, jp, kp, inv_dx):
    """grad chi + s at one voxel, and |grad chi| (the voxel's share of TV)."""
    c = chi[i, j, k]
    gx = (chi[ip, j, k] - c) * inv_dx[0]
    gy = (chi[i, jp, k] - c) * inv_dx[1]
    gz = (chi[i, j, kp] - c) * inv_dx[2]
    size = np.sqrt(gx * gx + gy * gy + gz * gz)
    return gx + s[0, i, j, k], gy + s[1, i, j, k], gz + s[2, i, j, k], size


@numba.njit(parallel=True, cache=True, fastmath=True)
def gradient_shrink(chi, z, s, threshold, inv_dx):
    """z <- shrink(grad chi + s, threshold); s <- grad chi + s - z; returns sum |grad chi| (TV).

    ``threshold`` is a per-voxel array (the regularisation weight over the penalty); the
    shrinkage is isotropic (groups the three components of the gradient).
    """
    nx, ny, nz = chi.shape
    tv = 0.0
    for i in numba.prange(nx):
        ip = i + 1 if i + 1 < nx else 0
        for j in range(ny):
            jp = j + 1 if j + 1 < ny else 0
            for k in range(nz):
                kp = k + 1 if k + 1 < nz else 0
                ux, uy, uz, size = _gradient_plus_scaled_dual(chi, s, i, j, k, ip, jp, kp, inv_dx)
                tv += size
                norm = np.sqrt(ux * ux + uy * uy + uz * uz)
                t = threshold[i, j, k]
                scale = 1.0 - t / norm if norm > t else 0.0
                z[0, i, j, k] = ux * scale
                z[1, i, j, k] = uy * scale
                z[2, i, j, k] = uz * scale
                s[0, i, j, k] = ux - ux * scale
                s[1, i, j, k] = uy - uy * scale
                s[2, i, j, k] = uz - uz * scale
    return tv


@numba.njit(parallel=True, cache=True, fastmath=True)
def gradient_shrink_by_axis(chi, z, s, threshold, penalised, inv_dx):
    """``gradient_shrink`` with TV on chosen components of the gradient only.

    ``penalised`` (0 or 1, shape (3, X, Y, Z); uint8 runs fastest) says which components of each
    voxel's gradient TV acts on: those are shrunk together by ``threshold`` (the exact proximal
    step of ``threshold * ||u_P||_2`` over the penalised components P), the others pass
    unchanged. With all three penalised this is ``gradient_shrink``. The loop over the grid is
    ``gradient_shrink``'s, written out in each kernel as numba's parallel loops need.
    """
    nx, ny, nz = chi.shape
    tv = 0.0
    for i in numba.prange(nx):
        ip = i + 1 if i + 1 < nx else 0
        for j in range(ny):
            jp = j + 1 if j + 1 < ny else 0
            for k in range(nz):
                kp = k + 1 if k + 1 < nz else 0
                ux, uy, uz, size = _gradient_plus_scaled_dual(chi, s, i, j, k, ip, jp, kp, inv_dx)
                tv += size
                px = penalised[0, i, j, k]
                py = penalised[1, i, j, k]
                pz = penalised[2, i, j, k]
                norm2 = 0.0
                if px:
                    norm2 += ux * ux
                if py:
                    norm2 += uy * uy
                if pz:
                    norm2 += uz * uz
                norm = np.sqrt(norm2)
                t = threshold[i, j, k]
                scale = 1.0 - t / norm if norm > t else 0.0
                zx = ux * scale if px else ux
                zy = uy * scale if py else uy
                zz = uz * scale if pz else uz
                z[0, i, j, k] = zx
                z[1, i, j, k] = zy
                z[2, i, j, k] = zz
                s[0, i, j, k] = ux - zx
                s[1, i, j, k] = uy - zy
                s[2, i, j, k] = uz - zz
    return tv


@numba.njit(parallel=True, cache=True, fastmath=True)
def gradient_adjoint_of_difference(z, s, inv_dx, out):
    """out <- G^T (z - s), the adjoint of the forward-difference gradient."""
    nx, ny, nz = out.shape
    for i in numba.prange(nx):
        im = i - 1 if i > 0 else nx - 1
        for j in range(ny):
            jm = j - 1 if j > 0 else ny - 1
            for k in range(nz):
                km = k - 1 if k > 0 else nz - 1
                ax = (z[0, im, j, k] - s[0, im, j, k]) - (z[0, i, j, k] - s[0, i, j, k])
                ay = (z[1, i, jm, k] - s[1, i, jm, k]) - (z[1, i, j, k] - s[1, i, j, k])
                az = (z[2, i, j, km] - s[2, i, j, km]) - (z[2, i, j, k] - s[2, i, j, k])
                out[i, j, k] = ax * inv_dx[0] + ay * inv_dx[1] + az * inv_dx[2]


@numba.njit(parallel=True, cache=True, fastmath=True)
def data_update(dchi, s, field, w2, mu, out):
    """Quadratic data term: v <- (w2 f + mu (D chi + s)) / (w2 + mu); s <- D chi + s - v.

    Writes ``v - s`` (what the next least-squares step needs) into ``out`` and returns
    sum w2 (D chi - f)^2, the weighted data misfit.
    """
    nx, ny, nz = dchi.shape
    misfit = 0.0
    for i in numba.prange(nx):
        for j in range(ny):
            for k in range(nz):
                d = dchi[i, j, k]
                w = w2[i, j, k]
                f = field[i, j, k]
                misfit += w * (d - f) * (d - f)
                u = d + s[i, j, k]
                v = (w * f + mu * u) / (w + mu)
                s[i, j, k] = u - v
                out[i, j, k] = v - (u - v)
    return misfit


@numba.njit(parallel=True, cache=True, fastmath=True)
def data_update_nonlinear(dchi, s, field, w2, mu, out, newton_steps):
    """Nonlinear (complex exponential) data term, field in radians of phase.

    v minimises w2 |exp(i v) - exp(i f)|^2 + mu (v - u)^2 with u = D chi + s, i.e.
    ``2 w2 sin(v - f) + mu (v - u) = 0``, solved by Newton steps from v = u (Milovic et
    al., FANSI nonlinear, MRM 2018). Returns sum w2 |exp(i D chi) - exp(i f)|^2.
    """
    nx, ny, nz = dchi.shape
    misfit = 0.0
    for i in numba.prange(nx):
        for j in range(ny):
            for k in range(nz):
                d = dchi[i, j, k]
                w = w2[i, j, k]
                f = field[i, j, k]
                misfit += w * 2.0 * (1.0 - np.cos(d - f))
                u = d + s[i, j, k]
                v = u
                for _ in range(newton_steps):
                    g = 2.0 * w * np.sin(v - f) + mu * (v - u)
                    h = 2.0 * w * np.cos(v - f) + mu
                    if h < mu * 0.5:
                        h = mu * 0.5
                    v -= g / h
                s[i, j, k] = u - v
                out[i, j, k] = v - (u - v)
    return misfit


@numba.njit(parallel=True, cache=True)
def relative_change(new, old):
    """||new - old|| / ||new|| in one pass (float64 sums), 0 when ``new`` is zero."""
    nx, ny, nz = new.shape
    num = 0.0
    den = 0.0
    for i in numba.prange(nx):
        for j in range(ny):
            for k in range(nz):
                a = np.float64(new[i, j, k])
                d = a - np.float64(old[i, j, k])
                num += d * d
                den += a * a
    return np.sqrt(num / den) if den > 0 else 0.0
