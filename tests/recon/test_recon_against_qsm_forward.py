"""Dipole inversion against the independent forward model of the ``qsm-forward`` package.

Phantom: ``qsm_forward.generate_susceptibility_phantom`` (a cylinder of tissue holding five
compartments from -0.05 to 0.3 ppm) plus smooth tissue texture and thin vessels (0.4 ppm),
so that the map is not simply piecewise constant. Field: ``qsm_forward.generate_field``
(its own padded dipole convolution, not ours) for axial B0, an oblique B0 vector and
anisotropic (1 x 1 x 2 mm) voxels. Noise: complex Gaussian noise added to a 3 T GRE signal at
TE = 20 ms by ``qsm_forward.add_noise`` (peak SNR 100), turned back into field noise through
the phase, about 1 ppb as in vivo. Metrics (``qsmiron.recon.metrics``): demeaned NRMSE and
XSIM inside the mask against the true susceptibility.

Bounds are the NRMSE measured for each method on these phantoms plus about 25 %.
"""

import numpy as np
import pytest

qsm_forward = pytest.importorskip("qsm_forward")

from qsmiron import GYROMAGNETIC_RATIO_HZ_PER_T  # noqa: E402
from qsmiron.recon.invert import DEFAULT_INVERSION, invert  # noqa: E402
from qsmiron.recon.metrics import nrmse, xsim  # noqa: E402

FIELD_T = 3.0
TE_S = 0.02


def forward_phantom(voxel_size_mm, b0, *, n=48, peak_snr=100.0, seed=0):
    rng = np.random.default_rng(seed)
    shape = [n, n, n]
    chi = qsm_forward.generate_susceptibility_phantom(shape, 0.0, 0.0, [3, 4, 5, 6, 7],
                                                      [0.05, 0.1, 0.2, -0.05, 0.3]).astype(float)
    z, y, x = np.indices(shape)
    c = n // 2
    radius = c * 0.75
    mask = ((z - c) ** 2 + (y - c) ** 2 < radius ** 2) & (x >= 0.125 * n) & (x < 0.875 * n)
    from scipy import ndimage

    texture = ndimage.gaussian_filter(rng.standard_normal(shape), 2.0)
    chi += 0.02 * texture / texture[mask].std()
    for _ in range(4):
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
    noise_ppm = np.where(mask, 1.0 / (peak_snr * np.maximum(magnitude, 1e-3) / magnitude.max()) / to_rad, 0.0)
    return chi, measured.astype(np.float32), mask, magnitude * mask, noise_ppm.astype(np.float32)


GEOMETRIES = {
    "axial": ((1.0, 1.0, 1.0), (0.0, 0.0, 1.0)),
    "oblique": ((1.0, 1.0, 1.0), (0.34, -0.24, 0.91)),
    "anisotropic": ((1.0, 1.0, 2.0), (0.0, 0.0, 1.0)),
}

# NRMSE bounds (%): measured on these phantoms plus about 25 %. Tikhonov (identity penalty
# since the oblique-B0 fix, see ``recon/invert/tikhonov.py``): 29 / 35 / 24 % measured.
NRMSE_BOUNDS = {"tkd": 42.0, "tikhonov": 44.0, "rts": 50.0, "tv": 20.0, "medi": 19.0}


@pytest.fixture(scope="module", params=sorted(GEOMETRIES))
def reconstructions(request):
    voxel, b0 = GEOMETRIES[request.param]
    chi, field, mask, magnitude, noise = forward_phantom(voxel, b0)
    results = {}
    for method in NRMSE_BOUNDS:
        result = invert(field, mask, voxel, b0, method=method, magnitude=magnitude, noise_ppm=noise)
        results[method] = (nrmse(result.chi_ppm, chi, mask), xsim(result.chi_ppm, chi, mask), result.info)
    return request.param, results


def test_each_method_is_under_its_nrmse_bound(reconstructions):
    geometry, results = reconstructions
    for method, (error, similarity, _) in results.items():
        assert error < NRMSE_BOUNDS[method], (geometry, method, error)
        assert 0.0 < similarity <= 1.0


def test_default_beats_tkd_and_tikhonov_defaults_on_nrmse_and_xsim(reconstructions):
    geometry, results = reconstructions
    default_nrmse, default_xsim, _ = results[DEFAULT_INVERSION]
    for baseline in ("tkd", "tikhonov"):
        assert default_nrmse < results[baseline][0], (geometry, baseline)
        assert default_xsim > results[baseline][1], (geometry, baseline)


def test_default_reports_its_automatic_weight(reconstructions):
    _, results = reconstructions
    info = results[DEFAULT_INVERSION][2]
    assert info["method"] == DEFAULT_INVERSION
    assert info["alpha"] > 0 and info["chosen_by"] == "inconsistency discrepancy"
    # the weight is interpolated where the path's residual crosses the measured inconsistency
    path = info["path"]
    assert min(path["alphas"]) <= info["alpha"] <= max(path["alphas"])
    assert path["residual_rms_ppm"][-1] <= info["inconsistency_ppm"] < path["residual_rms_ppm"][0]
    assert info["iterations"] > 0


def anisotropy_like_error(mask, voxel_size_mm, b0, *, amplitude_ppm=0.02, seed=1):
    """A field no scalar dipole model explains: a WM-like texture seen through a kernel tilted
    by about 30 degrees minus through the true one (as orientation-dependent, anisotropic
    susceptibility does), plus a weak second-order residual background."""
    from scipy import ndimage

    from qsmiron.recon.dipole import forward_field

    rng = np.random.default_rng(seed)
    texture = ndimage.gaussian_filter(rng.standard_normal(mask.shape), 1.5)
    texture = amplitude_ppm * texture / texture[mask].std() * mask
    tilted = np.asarray(b0, float) + np.array([0.5, 0.3, 0.0])
    error = forward_field(texture, voxel_size_mm, tilted) - forward_field(texture, voxel_size_mm, b0)
    x, y, z = [(a - a.mean()) / a.shape[i] for i, a in enumerate(np.indices(mask.shape))]
    return error + 0.003 * (x * x - y * y + 2 * x * z + x) / 0.25


def test_default_weight_with_model_error_is_within_4x_of_oracle_and_nrmse_within_3_points():
    """Model error 8x the noise (in vivo: anisotropy, non-dipolar terms, residual background).

    The oracle is the best of a grid of weights (quarter decades) solved the same way; the
    previous rule (L-curve corner / noise-only discrepancy) chose 0.1-0.15x the oracle here
    and lost 3-12 NRMSE points on such phantoms (benchmarks/bench_invert.py).
    """
    voxel, b0 = GEOMETRIES["oblique"]
    chi, field, mask, magnitude, noise = forward_phantom(voxel, b0)
    field = np.where(mask, field + anisotropy_like_error(mask, voxel, b0), 0.0)
    field = np.where(mask, field - field[mask].mean(), 0.0).astype(np.float32)
    auto = invert(field, mask, voxel, b0, magnitude=magnitude, noise_ppm=noise)
    auto_error = nrmse(auto.chi_ppm, chi, mask)
    top = auto.info["path"]["alphas"][0]
    grid = top * 10.0 ** -np.arange(0.5, 2.76, 0.25)
    errors = [nrmse(invert(field, mask, voxel, b0, magnitude=magnitude, noise_ppm=noise,
                           alpha=float(a)).chi_ppm, chi, mask) for a in grid]
    best = int(np.argmin(errors))
    assert 0 < best < grid.size - 1, errors  # the oracle is inside the grid
    assert 0.25 < auto.info["alpha"] / grid[best] < 4.0, (auto.info["alpha"], grid[best])
    assert auto_error < errors[best] + 3.0, (auto_error, errors)
