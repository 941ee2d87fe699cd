"""Projection onto dipole fields, solved coarse to fine (PDF; Liu et al., NMR Biomed
2011;24:1129, doi:10.1002/nbm.1670).

The background is the field of susceptibility sources outside the mask:
``min_chi ||W M (D * (Mbar chi) - f)||^2`` (``M`` the mask, ``Mbar`` its complement, ``W``
the data weights 1/noise, normalised to mean 1); the local field is what the fit leaves
inside the mask. Solved by CGLS (two real FFT pairs per iteration, float32 arrays, float64
scalars) on:

- **the grid the kernel needs**: the mask's bounding box with ``pad_mm`` of room for
  sources on every side (``qsmiron.recon.sourcegrid``). Sources in the margin wrap around
  periodically but stay outside the mask, so they are part of the model, not an error.
- **a cascade of grids**: the same problem on grids 4x and 2x coarser (64x and 8x fewer
  voxels; masks by majority, fields by weighted block means), each solution repeated onto
  the next grid as its starting point, then at most ``max_iter`` iterations at full
  resolution. The background's large scales converge on the cheap grids; the full grid
  only adds the detail near the mask's edge.

Stopping rule at every level: an iteration must change the fitted background by less than
``tol`` times the current residual (the local-field estimate). The background is often
10-100 times the local field, so a tolerance relative to the initial residual (CG's usual
rule) stops while the fitted background is still wrong by more than the local field.

Speed and accuracy against the single-grid CGLS this replaces (same model and stopping
rule; family heads of ``benchmarks/bench_bgremove.py``, total field from the echo fit,
local-field NRMSE in the mask, CPU seconds on a shared machine):

=====================  ========================  ========================
                       h01 (1 mm, axial)         h03 (25 deg, 1.2 mm)
=====================  ========================  ========================
single grid, tol 0.01  45.1 %, 99 it., 32.8 s    52.8 %, 215 it., 53.3 s
cascade, tol 0.01      44.9 %, 53 it., 19.9 s    52.7 %, 194 it., 49.8 s
cascade, tol 0.02      45.0 %, 23 it., 8.6 s     54.1 %, 68 it., 17.6 s
=====================  ========================  ========================

At the same tolerance the cascade is as accurate or better and 1.1-1.6x faster (the full
grid still does most of the work where the background has detail near the edge, as next to
h03's sinuses); ``tol = 0.02`` makes it 3-4x faster for up to 1.3 points. A diagonal
(Jacobi) scaling of the outside sources was tried as a preconditioner and made it worse:
53.5 % against 35.7 % after 300 iterations on the axial head of the tests; its fourth root,
milder, stopped at a worse fit (54.6 % against 46.9 % on a noise-free h04). So there is none.
Fusing the iteration's voxel passes into numba loops (four parallel passes instead of about
twelve numpy ones) was measured and not kept: on h03 PDF went from 5.9-6.0 to 6.6 s with
numba's OpenMP threads spinning between loops (they take the cores from the FFT's threads),
to 5.2 s with ``OMP_WAIT_POLICY=PASSIVE``; in ``qsmiron recon`` of head_obl15 the background step
took 13.2-13.3 s, and 12.3-12.9 s passive, against 12.4-13.9 s before: within the spread.
Nor converging the coarse grids further, to spare full-resolution iterations: with the coarse
tolerance at 1 x and 0.3 x ``tol`` instead of 3 x (``pdf_ismv``, ``tol`` 0.03, family heads h03,
h04 and h10) the coarse grids ran 122-200 iterations instead of 42-77, and the full grid still
needed 34-36, 50 and 41-44 (35, 50 and 44 before), for the same Chimap NRMSE (46.0-46.1, 47.2-47.3,
45.2 %) and 0.6-3.4 s more background CPU. What the full grid adds is the detail near the mask's
edge, which the coarse grids cannot represent. Nor, for that reason, solving the full grid only
for the sources within 5 mm of the mask, the farther ones held at the coarse grids' solution
(``pdf_ismv``, family heads with their own masks, scanner frame): it did not take fewer
iterations (h01 50 and 50, h02 37 against 39, h03 25 and 25, h04 40 against 39, h05 44 against 45,
h06 50 and 50) and h04 read 38.9 against 37.6 % (the others within 0.3 point).

Accuracy. PDF's bias is at the mask's edge, where part of a local field is
indistinguishable from the field of sources just outside (Liu 2011; 44.5 % local-field
NRMSE on the QSM-CI head phantom). PDF fits the background with the same discrete dipole
kernel that FFT-based simulators use, so it also absorbs their non-harmonic background
error that defeats SHARP-type methods (see ``qsmiron.recon.bgremove``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from qsmiron.recon.bgremove._common import validate
from qsmiron.recon.dipole import dipole_kernel
from qsmiron.recon.fill import check_noise_shape
from qsmiron.recon.fourier import irfftn, rfftn
from qsmiron.recon.params import NonNegativeFloat, OpenFraction, PositiveInt
from qsmiron.recon.sourcegrid import coarsen, source_grid, upsample

COARSE_LEVELS = 2
"""Coarser grids before the full one (4x and 2x); the grid is padded to a multiple of 4."""

COARSE_TOL_FACTOR = 3.0
"""The coarse grids only start the next one: they stop at 3 x ``tol``."""


SUM_BLOCK = 8192
"""Voxels per float32 partial sum in ``_sq_norm``; the partial sums add in float64."""


def _sq_norm(x: np.ndarray) -> float:
    """Squared 2-norm with float64 accuracy at float32 speed.

    A float32 sum over 10^7 voxels loses digits, and einsum with a float64 accumulator is
    4-5 times slower than summing blocks of 8192 in float32 and the block sums in float64
    (relative error about 1e-8 on 7 x 10^6 voxels).
    """
    flat = x.ravel()
    whole = flat.size - flat.size % SUM_BLOCK
    blocks = flat[:whole].reshape(-1, SUM_BLOCK)
    tail = flat[whole:].astype(np.float64)
    return float(np.einsum("ij,ij->i", blocks, blocks).sum(dtype=np.float64) + tail @ tail)


@dataclass
class _Level:
    """The PDF problem on one grid: ``A chi = W M D (Mbar chi)``.

    The operators work in place where they can: at full resolution each CGLS iteration is
    two FFT pairs and a dozen passes over 10^7 voxels, and a boolean-indexed assignment
    alone costs as much as an FFT.
    """

    inside: np.ndarray
    weights: np.ndarray
    field: np.ndarray
    kernel: np.ndarray

    def __post_init__(self) -> None:
        self.outside = (~self.inside).astype(np.float32)

    def _convolve(self, image: np.ndarray) -> np.ndarray:
        spectrum = rfftn(image)
        spectrum *= self.kernel
        return irfftn(spectrum, self.inside.shape, overwrite=True)

    def forward(self, chi: np.ndarray) -> np.ndarray:
        out = self._convolve(chi)
        out *= self.weights
        return out

    def adjoint(self, residual: np.ndarray) -> np.ndarray:
        out = self._convolve(self.weights * residual)
        out *= self.outside
        return out

    def background(self, chi: np.ndarray) -> np.ndarray:
        return self._convolve(chi)


def _cgls(level: _Level, chi: np.ndarray, tol: float, max_iter: int) -> tuple[np.ndarray, int, bool, float]:
    """CGLS on min ||A chi - W f|| from ``chi``; stops when the fit has settled to ``tol``."""
    residual = level.weights * level.field - level.forward(chi)
    s = level.adjoint(residual)
    direction = s.copy()
    gamma = _sq_norm(s)
    iterations, converged, change = 0, False, float("nan")
    while gamma > 0 and iterations < max_iter:
        iterations += 1
        q = level.forward(direction)
        q_norm2 = _sq_norm(q)
        if q_norm2 == 0:
            break
        alpha = gamma / q_norm2
        chi += np.float32(alpha) * direction
        q *= np.float32(alpha)
        residual -= q
        change = alpha * np.sqrt(q_norm2 / max(_sq_norm(residual), np.finfo(float).tiny))
        if change < tol:
            converged = True
            break
        s = level.adjoint(residual)
        gamma_new = _sq_norm(s)
        direction *= np.float32(gamma_new / gamma)
        direction += s
        gamma = gamma_new
    return chi, iterations, converged, change


def fit_outside_sources(field: np.ndarray, mask: np.ndarray, voxel_size_mm: Sequence[float],
                        b0_direction: Sequence[float], *, noise: np.ndarray | None = None,
                        pad_mm: float = 10.0, tol: float = 1e-2, max_iter: int = 500,
                        coarse_max_iter: int = 200):
    """PDF's fit: the outside susceptibility on its grid, the fitted background, the details.

    Returns ``(grid, chi, background, info)``: the ``SourceGrid`` (a multiple of 4 long), the
    outside sources (ppm, zero in the mask), their field on the grid and a dict of the
    iterations per level and whether the full-resolution level reached ``tol``.
    """
    field, mask, voxel = validate(field, mask, voxel_size_mm)
    check_noise_shape(noise, field)
    if not 0 < tol < 1:
        raise ValueError(f"tol must lie in (0, 1), got {tol}")
    grid = source_grid(mask, voxel, pad_mm, multiple=2 ** COARSE_LEVELS)
    inside = grid.embed(mask, bool)
    f = grid.embed(field)
    if noise is not None:
        noise_grid = grid.embed(np.asarray(noise, dtype=np.float32))
        good = inside & np.isfinite(noise_grid) & (noise_grid > 0)
        weights = np.where(good, 1.0 / np.where(good, noise_grid, 1.0), 0.0).astype(np.float32)
        weights /= np.float32(weights[inside].mean())
    else:
        weights = inside.astype(np.float32)
    levels = [(inside, weights, f, voxel)]
    for _ in range(COARSE_LEVELS):
        inside_c, weights_c, f_c = coarsen(*levels[-1][:3])
        levels.append((inside_c, weights_c, f_c, tuple(2.0 * v for v in levels[-1][3])))
    chi, counts = None, []
    for depth, (inside_l, weights_l, f_l, voxel_l) in enumerate(reversed(levels)):
        level = _Level(inside_l, weights_l, f_l, dipole_kernel(inside_l.shape, voxel_l, b0_direction, real=True))
        start = np.zeros(inside_l.shape, np.float32) if chi is None else upsample(chi) * ~inside_l
        finest = depth == COARSE_LEVELS
        chi, iterations, converged, change = _cgls(level, start.astype(np.float32),
                                                   tol if finest else COARSE_TOL_FACTOR * tol,
                                                   max_iter if finest else coarse_max_iter)
        counts.append(iterations)
    info = {"iterations": counts[-1], "coarse_iterations": counts[:-1], "converged": converged,
            "last_relative_change": round(float(change), 6), "grid": list(grid.shape),
            "weights": "1/noise" if noise is not None else "uniform"}
    return grid, chi, level.background(chi), info


def pdf(field: np.ndarray, mask: np.ndarray, voxel_size_mm: Sequence[float],
        b0_direction: Sequence[float] = (0.0, 0.0, 1.0), *, noise: np.ndarray | None = None,
        pad_mm: NonNegativeFloat = 10.0, tol: OpenFraction = 1e-2, max_iter: PositiveInt = 500,
        coarse_max_iter: PositiveInt = 200) -> tuple[np.ndarray, np.ndarray, dict]:
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
        Field-noise map in the field's unit: data weights 1/noise (normalised to mean 1).
    pad_mm : float
        Room for background sources around the mask's bounding box, on each side. 10 mm:
        on the phantoms of the tests 5, 10, 20 and 40 mm give the same local field to
        0.5 %, while the cost grows with the grid.
    tol : float
        Stop a level when an iteration changes the fitted background by less than ``tol``
        times the current residual.
    max_iter : int
        Cap on CGLS iterations at full resolution (``info["converged"]`` says whether
        ``tol`` was reached there).
    coarse_max_iter : int
        Cap on CGLS iterations on each coarser grid.

    Returns
    -------
    local : ndarray, float32, zero outside the mask
    mask : ndarray of bool (PDF does not erode)
    info : dict
    """
    grid, _, background, fit = fit_outside_sources(field, mask, voxel_size_mm, b0_direction,
                                                   noise=noise, pad_mm=pad_mm, tol=tol,
                                                   max_iter=max_iter, coarse_max_iter=coarse_max_iter)
    inside = grid.embed(mask, bool)
    local = np.where(inside, grid.embed(field) - background, 0.0).astype(np.float32)
    info = {"pad_mm": pad_mm, "tol": tol, "max_iter": max_iter, "coarse_max_iter": coarse_max_iter, **fit}
    if not fit["converged"]:
        info["warnings"] = [f"PDF stopped after {fit['iterations']} full-resolution iterations "
                            f"before the background fit settled (relative change "
                            f"{fit['last_relative_change']:.2g} > tol {tol})"]
    return grid.extract(local), np.asarray(mask, dtype=bool).copy(), info
