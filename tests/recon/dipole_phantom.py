"""Local-field test data from the independent `qsm-forward` model (helper, not a test file).

Imported by name (``tests/recon`` is on pytest's pythonpath, see pyproject.toml) by the
inversion tests, and by ``benchmarks/bench_invert.py``, so both measure the same phantom.

Phantom: ``qsm_forward.generate_susceptibility_phantom`` (a cylinder of tissue holding five
compartments from -0.05 to 0.3 ppm) plus smooth tissue texture and thin vessels (0.4 ppm),
so that the map is not simply piecewise constant. Field: ``qsm_forward.generate_field`` (its
own padded dipole convolution, not ours) for any voxel size and B0 direction. Noise: complex
Gaussian noise added to a 3 T GRE signal at TE = 20 ms by ``qsm_forward.add_noise``, turned
back into field noise through the phase (about 1 ppb at peak SNR 100, as in vivo).
"""

from __future__ import annotations

import numpy as np
import qsm_forward
from scipy import ndimage

from qsmiron import GYROMAGNETIC_RATIO_HZ_PER_T
from qsmiron.recon.dipole import forward_field

FIELD_T = 3.0
TE_S = 0.02


def forward_phantom(voxel_size_mm, b0, *, n=48, peak_snr=100.0, seed=0, n_vessels=None):
    """Return ``(chi_ppm, local_field_ppm, mask, magnitude, field_noise_ppm)`` on an n^3 grid.

    The field is demeaned in the mask; ``n_vessels`` defaults to one per 12 voxels of edge
    (at least 4).
    """
    rng = np.random.default_rng(seed)
    shape = [n, n, n]
    chi = qsm_forward.generate_susceptibility_phantom(shape, 0.0, 0.0, [3, 4, 5, 6, 7],
                                                      [0.05, 0.1, 0.2, -0.05, 0.3]).astype(float)
    z, y, x = np.indices(shape)
    c = n // 2
    mask = ((z - c) ** 2 + (y - c) ** 2 < (0.75 * c) ** 2) & (x >= 0.125 * n) & (x < 0.875 * n)
    texture = ndimage.gaussian_filter(rng.standard_normal(shape), 2.0)
    chi += 0.02 * texture / texture[mask].std()
    for _ in range(max(4, n // 12) if n_vessels is None else n_vessels):
        start = rng.integers(n // 4, 3 * n // 4, 3)
        direction = rng.standard_normal(3)
        direction /= np.linalg.norm(direction)
        for step in np.linspace(-n / 3, n / 3, 4 * n):
            p = tuple(np.round(start + step * direction).astype(int))
            if all(0 <= q < n for q in p) and mask[p]:
                chi[p] = 0.4
    chi = np.where(mask, chi, 0.0)
    field = qsm_forward.generate_field(chi, None, voxel_size=list(voxel_size_mm), B0_dir=list(b0))
    magnitude = np.where(mask, 1.0, 0.0) * np.where(np.abs(chi) > 0.04, 0.7, 1.0)
    to_rad = 2 * np.pi * GYROMAGNETIC_RATIO_HZ_PER_T * FIELD_T * TE_S * 1e-6
    clean = magnitude * np.exp(1j * field * to_rad)
    noisy = qsm_forward.add_noise(clean, peak_snr=peak_snr, rng=rng)
    measured = field + np.angle(noisy * np.conj(clean)) / to_rad
    measured = np.where(mask, measured - measured[mask].mean(), 0.0)
    noise_ppm = np.where(mask, 1.0 / (peak_snr * np.maximum(magnitude, 1e-3)) / to_rad, 0.0)
    return chi, measured.astype(np.float32), mask, magnitude, noise_ppm.astype(np.float32)


def anisotropy_like_error(mask, voxel_size_mm, b0, *, amplitude_ppm=0.02, seed=1):
    """A field no scalar dipole model explains.

    A WM-like texture seen through a kernel tilted by about 30 degrees minus through the true
    one (as orientation-dependent, anisotropic susceptibility does), plus a weak second-order
    residual background.
    """
    rng = np.random.default_rng(seed)
    texture = ndimage.gaussian_filter(rng.standard_normal(mask.shape), 1.5)
    texture = amplitude_ppm * texture / texture[mask].std() * mask
    tilted = np.asarray(b0, float) + np.array([0.5, 0.3, 0.0])
    error = forward_field(texture, voxel_size_mm, tilted) - forward_field(texture, voxel_size_mm, b0)
    x, y, z = [(a - a.mean()) / a.shape[i] for i, a in enumerate(np.indices(mask.shape))]
    return error + 0.003 * (x * x - y * y + 2 * x * z + x) / 0.25


def with_model_error(field, mask, voxel_size_mm, b0):
    """``field`` plus :func:`anisotropy_like_error`, demeaned in the mask (float32)."""
    out = np.where(mask, field + anisotropy_like_error(mask, voxel_size_mm, b0), 0.0)
    return np.where(mask, out - out[mask].mean(), 0.0).astype(np.float32)
