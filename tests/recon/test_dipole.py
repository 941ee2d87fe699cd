"""The forward dipole model against the analytic field of a uniformly magnetised sphere.

Reference: a sphere of susceptibility chi and radius a in B0 produces, outside it, the
relative field chi * a^3 / (3 r^3) * (3 cos^2(theta) - 1) with theta the angle to B0, and
(with the Lorentz sphere correction built into D(k) = 1/3 - (k.b)^2/k^2) zero field inside.
"""

import numpy as np
import pytest

from qsmiron.recon.dipole import dipole_kernel, forward_field


def sphere_phantom(shape, voxel_size_mm, radius_mm, chi_ppm=1.0, supersample=4):
    """A sphere with partial-volume edges (each voxel's filled fraction from sub-samples)."""
    axes = [(np.arange(n) - (n - 1) / 2.0) * dx for n, dx in zip(shape, voxel_size_mm)]
    x, y, z = np.meshgrid(*axes, indexing="ij")
    r = np.sqrt(x * x + y * y + z * z)
    offsets = (np.arange(supersample) + 0.5) / supersample - 0.5
    filled = np.zeros(shape, np.float32)
    for ox in offsets:
        for oy in offsets:
            for oz in offsets:
                xs = x + ox * voxel_size_mm[0]
                ys = y + oy * voxel_size_mm[1]
                zs = z + oz * voxel_size_mm[2]
                filled += (xs * xs + ys * ys + zs * zs) <= radius_mm ** 2
    return filled / supersample ** 3 * chi_ppm, (x, y, z), r


def analytic_sphere_field(coords, r, radius_mm, chi_ppm, b0):
    x, y, z = coords
    b0 = np.asarray(b0, float) / np.linalg.norm(b0)
    with np.errstate(invalid="ignore", divide="ignore"):
        cos_theta = (x * b0[0] + y * b0[1] + z * b0[2]) / r
        outside = chi_ppm * radius_mm ** 3 / (3.0 * r ** 3) * (3.0 * cos_theta ** 2 - 1.0)
    return np.where(r > radius_mm, outside, 0.0)


@pytest.mark.parametrize(
    "voxel_size_mm, b0",
    [
        ((1.0, 1.0, 1.0), (0.0, 0.0, 1.0)),
        ((0.8, 0.8, 1.6), (0.0, 0.0, 1.0)),  # anisotropic voxels
        ((1.0, 1.0, 1.0), (0.3, -0.2, 0.93)),  # oblique B0 in voxel axes
    ],
)
def test_forward_field_matches_analytic_sphere_outside_within_2_percent(voxel_size_mm, b0):
    shape = (64, 64, 48) if voxel_size_mm[2] > 1.2 else (64, 64, 64)
    radius = 8.0
    chi, coords, r = sphere_phantom(shape, voxel_size_mm, radius, chi_ppm=0.5)
    field = forward_field(chi, voxel_size_mm, b0)
    truth = analytic_sphere_field(coords, r, radius, 0.5, b0)
    shell = (r > 1.5 * radius) & (r < 2.5 * radius)
    error = np.linalg.norm(field[shell] - truth[shell]) / np.linalg.norm(truth[shell])
    assert error < 0.02
    # Inside, far from the partial-volume edge, the Lorentz-corrected field vanishes.
    core = r < 0.5 * radius
    assert np.abs(field[core]).max() < 0.02 * 0.5


def test_dipole_kernel_has_magic_angle_zero_and_dc_zero():
    kernel = dipole_kernel((16, 16, 16), (1.0, 1.0, 1.0), (0, 0, 1))
    assert kernel[0, 0, 0] == 0.0
    # Along B0 D = 1/3 - 1 = -2/3; perpendicular D = 1/3.
    assert kernel[0, 0, 1] == pytest.approx(-2.0 / 3.0)
    assert kernel[1, 0, 0] == pytest.approx(1.0 / 3.0)


def test_forward_field_is_free_of_fft_wraparound_near_the_edge():
    """A source at the grid edge must not put field on the opposite edge."""
    chi = np.zeros((48, 48, 48), np.float32)
    chi[2:6, 22:26, 22:26] = 1.0
    field = forward_field(chi, (1.0, 1.0, 1.0), (0, 0, 1))
    # The dipole field decays as r^-3: 40 voxels away it is below 1e-4 of the source.
    assert np.abs(field[-3:, 22:26, 22:26]).max() < 1e-4


@pytest.mark.parametrize("shape", [(8, 8, 8), (8, 9, 6), (7, 10, 12)])
def test_dipole_kernel_is_even_in_k_on_every_grid_with_an_oblique_b0(shape):
    """D(k) = D(-k), which a real kernel of a real convolution must be, including the Nyquist
    bins of even axes, where -1/2 cycle per voxel also stands for +1/2 (the cross terms of
    (k . b0)^2 with a Nyquist frequency average out)."""
    b0 = (0.3, np.sin(0.35), np.cos(0.35))
    kernel = dipole_kernel(shape, (1.0, 1.2, 2.0), b0)
    mirrored = kernel[tuple(np.ix_(*[(-np.arange(n)) % n for n in shape]))]
    assert np.abs(kernel - mirrored).max() < 1e-6
    half = dipole_kernel(shape, (1.0, 1.2, 2.0), b0, real=True)
    assert np.abs(half - kernel[..., : shape[-1] // 2 + 1]).max() < 1e-6


def test_the_field_of_a_mirrored_head_is_the_mirrored_field():
    """Reversing an axis and B0's component along it mirrors the field: 36 % off on white noise
    before the Nyquist bins were made even."""
    rng = np.random.default_rng(3)
    chi = rng.standard_normal((16, 16, 16)).astype(np.float32)
    b0 = np.array([0.0, np.sin(0.35), np.cos(0.35)])
    field = forward_field(chi, (1.0, 1.0, 1.0), b0, pad_factor=0.0)
    mirrored = forward_field(chi[:, ::-1].copy(), (1.0, 1.0, 1.0), b0 * [1, -1, 1], pad_factor=0.0)[:, ::-1]
    assert np.linalg.norm(mirrored - field) / np.linalg.norm(field) < 1e-5
