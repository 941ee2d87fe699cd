"""FFT helpers: padded grids, the SMV kernel's mean-value property, gradient adjoints."""

import numpy as np
import pytest
import scipy.fft

from qsmiron.recon.fourier import (divergence_adjoint, gradient, irfftn, laplacian_kernel, padded_grid,
                                   rfftn, smv_kernel)


def test_padded_grid_round_trips_the_mask_box_and_uses_fast_lengths():
    mask = np.zeros((40, 50, 30), bool)
    mask[5:20, 10:41, 3:17] = True
    image = np.random.default_rng(0).standard_normal(mask.shape).astype(np.float32) * mask
    grid = padded_grid(mask, 7)
    assert grid.crop_shape == (15, 31, 14)
    for n, c in zip(grid.shape, grid.crop_shape):
        assert n >= c + 7 and n == scipy.fft.next_fast_len(n, real=True)
    np.testing.assert_array_equal(grid.unpad(grid.pad(image)), image)


@pytest.mark.parametrize("voxel_size_mm", [(1.0, 1.0, 1.0), (0.8, 0.8, 2.0)])
def test_smv_kernel_preserves_harmonic_fields_within_half_a_percent(voxel_size_mm):
    """The mean over a sphere of a harmonic function equals its value at the centre."""
    shape = (48, 48, 40)
    axes = [(np.arange(n) - n / 2) * v for n, v in zip(shape, voxel_size_mm)]
    x, y, z = np.meshgrid(*axes, indexing="ij")
    harmonic = (x * x - z * z + 3 * x * y + 2 * y).astype(np.float32)
    kernel = smv_kernel(shape, voxel_size_mm, 5.0)
    assert kernel.flat[0] == pytest.approx(1.0, abs=1e-6)
    mean = irfftn(rfftn(harmonic) * kernel, shape)
    core = (np.abs(x) < 10) & (np.abs(y) < 10) & (np.abs(z) < 10)
    error = np.abs(mean[core] - harmonic[core]).max() / np.abs(harmonic[core]).max()
    assert error < 5e-3


def test_gradient_adjoint_and_laplacian_spectrum_are_consistent():
    rng = np.random.default_rng(1)
    voxel = (1.0, 0.7, 2.0)
    a = rng.standard_normal((12, 10, 8)).astype(np.float32)
    b = rng.standard_normal((3, 12, 10, 8)).astype(np.float32)
    assert np.vdot(gradient(a, voxel), b) == pytest.approx(np.vdot(a, divergence_adjoint(b, voxel)), rel=1e-4)
    direct = divergence_adjoint(gradient(a, voxel), voxel)
    spectral = irfftn(rfftn(a) * laplacian_kernel(a.shape, voxel), a.shape)
    np.testing.assert_allclose(direct, spectral, atol=1e-4)


@pytest.mark.parametrize("shape", [(30, 41, 28), (31, 40, 27), (16, 9, 1)])
def test_irfftn_axis_by_axis_matches_scipy_and_keeps_its_input_unless_told(shape):
    image = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    spectrum = rfftn(image)
    kept = spectrum.copy()
    result = irfftn(spectrum, shape)
    np.testing.assert_array_equal(spectrum, kept)
    assert result.dtype == np.float32 and result.shape == shape
    np.testing.assert_allclose(result, scipy.fft.irfftn(kept, s=shape), atol=2e-6)
    np.testing.assert_allclose(irfftn(spectrum, shape, overwrite=True), image, atol=2e-6)


def test_irfftn_to_another_shape_crops_or_pads_as_scipy_does():
    image = np.random.default_rng(1).standard_normal((12, 10, 8)).astype(np.float32)
    spectrum = rfftn(image)
    for shape in [(14, 10, 8), (12, 8, 9)]:
        np.testing.assert_allclose(irfftn(spectrum, shape), scipy.fft.irfftn(spectrum, s=shape), atol=2e-6)
