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

# NRMSE bounds (%): measured on these phantoms plus about 25 %.
NRMSE_BOUNDS = {"tkd": 42.0, "tikhonov": 76.0, "rts": 50.0, "tv": 20.0, "medi": 19.0}


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
    assert info["alpha"] > 0 and info["chosen_by"] in ("lcurve", "discrepancy")
    assert info["alpha"] in info["path"]["alphas"]
    assert info["iterations"] > 0
