"""MEDI's per-axis gradient mask: the shrinkage step, the mask itself, and the inversion with it."""

import numpy as np
import pytest
from scipy.optimize import minimize

from qsmiron.config import load_config
from qsmiron.recon.invert import _kernels, invert
from qsmiron.recon.invert._common import data_weights, setup
from qsmiron.recon.invert.bregman import run_bregman_tv
from qsmiron.recon.invert.tv_admm import split_gradient_weights
from qsmiron.recon.invert.wtv import magnitude_edge_weights, padded_edge_weights

from test_bregman import analytic_sphere


def shrink_inputs(seed=0, shape=(4, 3, 3)):
    rng = np.random.default_rng(seed)
    chi = rng.standard_normal(shape).astype(np.float32)
    s = rng.standard_normal((3, *shape)).astype(np.float32)
    threshold = rng.uniform(0.2, 2.0, shape).astype(np.float32)
    penalised = rng.random((3, *shape)) < 0.6
    inv_dx = np.array([1.0, 1.0 / 0.8, 1.0 / 2.5], np.float32)
    return chi, s, threshold, penalised, inv_dx


def forward_gradient(chi, inv_dx):
    return np.stack([(np.roll(chi, -1, axis=a) - chi) * inv_dx[a] for a in range(3)])


def test_the_per_axis_shrinkage_is_the_proximal_step_of_tv_on_the_penalised_components():
    """Against a direct minimisation of 1/2 |z - u|^2 + t |z_P| voxel by voxel (SLSQP)."""
    chi, s, threshold, penalised, inv_dx = shrink_inputs()
    u = forward_gradient(chi.astype(np.float64), inv_dx) + s
    z = np.zeros_like(s)
    s_out = s.copy()
    tv = _kernels.gradient_shrink_by_axis(chi, z, s_out, threshold, penalised.astype(np.uint8), inv_dx)
    assert tv == pytest.approx(np.sqrt((forward_gradient(chi.astype(np.float64), inv_dx) ** 2).sum(axis=0)).sum(),
                               rel=1e-5)
    np.testing.assert_allclose(s_out, u - z, atol=1e-5)
    for index in np.ndindex(chi.shape):
        u_voxel, p, t = u[(slice(None), *index)], penalised[(slice(None), *index)], float(threshold[index])

        def objective(candidate):
            return 0.5 * np.sum((candidate - u_voxel) ** 2) + t * np.sqrt(np.sum(candidate[p] ** 2))

        # Epigraph form (smooth): minimise 1/2 |z - u|^2 + t r subject to r^2 >= |z_P|^2, r >= 0.
        start = np.append(u_voxel, np.sqrt(np.sum(u_voxel[p] ** 2)))
        direct = minimize(lambda x: 0.5 * np.sum((x[:3] - u_voxel) ** 2) + t * x[3], start, method="SLSQP",
                          constraints=[{"type": "ineq", "fun": lambda x: x[3] ** 2 - np.sum(x[:3][p] ** 2)},
                                       {"type": "ineq", "fun": lambda x: x[3]}],
                          options={"ftol": 1e-14, "maxiter": 1000}).x[:3]
        ours = z[(slice(None), *index)].astype(np.float64)
        assert objective(ours) <= objective(direct) + 1e-6
        np.testing.assert_allclose(ours, direct, atol=2e-4)
        np.testing.assert_allclose(ours[~p], u_voxel[~p], atol=1e-6)


def test_with_every_component_penalised_the_per_axis_shrinkage_is_the_isotropic_one():
    chi, s, threshold, _, inv_dx = shrink_inputs(seed=1)
    z_axis, s_axis, z_iso, s_iso = np.zeros_like(s), s.copy(), np.zeros_like(s), s.copy()
    _kernels.gradient_shrink_by_axis(chi, z_axis, s_axis, threshold, np.ones(s.shape, np.uint8), inv_dx)
    _kernels.gradient_shrink(chi, z_iso, s_iso, threshold, inv_dx)
    np.testing.assert_allclose(z_axis, z_iso, atol=1e-6)
    np.testing.assert_allclose(s_axis, s_iso, atol=1e-6)


def test_per_axis_edges_exempt_only_the_components_across_a_magnitude_step():
    """A magnitude that steps along x alone: only x components near the step are edges."""
    shape = (24, 20, 16)
    magnitude = np.ones(shape, np.float32)
    magnitude[12:] = 0.4
    mask = np.ones(shape, bool)
    per_axis = magnitude_edge_weights(magnitude, mask, (1.0, 1.0, 1.0), edge_fraction=0.05, edge_mask="per_axis")
    assert per_axis.shape == (3, *shape)
    assert per_axis[1:].min() == 1.0
    exempt_planes = np.unique(np.nonzero(per_axis[0] == 0)[0])
    assert exempt_planes.min() >= 10 and exempt_planes.max() <= 13
    assert (per_axis == 0).mean() == pytest.approx(0.05, abs=0.01)
    per_voxel = magnitude_edge_weights(magnitude, mask, (1.0, 1.0, 1.0), edge_fraction=0.15)
    assert per_voxel.shape == shape
    assert np.unique(np.nonzero(per_voxel == 0)[0]).tolist() == exempt_planes.tolist()


def test_per_axis_weights_that_agree_across_axes_give_the_per_voxel_solution():
    field, mask, _, r = analytic_sphere(n=32, radius_mm=6.0)
    magnitude = np.where(r <= 6.0, 0.6, 1.0).astype(np.float32)
    problem = setup(field, mask, (1, 1, 1), (0, 0, 1), pad_mm=4.0)
    weights, _, _ = data_weights(problem, magnitude, None)
    voxel, _ = padded_edge_weights(problem, magnitude, mask, 0.3)
    parameters = dict(path_step_decades=0.5, path_iterations=3, path_decades=3.5, inner_iterations=7, max_outer=8)
    chi_voxel, info_voxel = run_bregman_tv(problem, weights, voxel, **parameters)
    chi_axis, info_axis = run_bregman_tv(problem, weights, np.stack([voxel] * 3), **parameters)
    assert info_axis["bregman_steps"] == info_voxel["bregman_steps"]
    assert np.abs(chi_axis - chi_voxel).max() < 1e-4 * np.abs(chi_voxel).max()


def test_padded_per_axis_edges_are_uint8_flags_on_the_grid_one_outside_the_mask():
    field, mask, _, r = analytic_sphere(n=32, radius_mm=6.0)
    magnitude = np.where(r <= 6.0, 0.6, 1.0).astype(np.float32)
    problem = setup(field, mask, (1, 1, 1), (0, 0, 1), pad_mm=4.0)
    flags, source = padded_edge_weights(problem, magnitude, mask, 0.3, "per_axis")
    edges = magnitude_edge_weights(magnitude, mask, (1, 1, 1), edge_fraction=0.3, edge_mask="per_axis")
    assert flags.dtype == np.uint8 and flags.shape == (3, *problem.mask.shape)
    assert np.array_equal(flags[(slice(None), *problem.grid.inner)][:, mask[problem.grid.box]],
                          edges[(slice(None), *problem.grid.box)][:, mask[problem.grid.box]])
    assert flags[:, ~problem.mask].min() == 1 and (flags == 0).sum() == (edges == 0).sum() > 0
    assert source.startswith("magnitude edges per axis")


@pytest.mark.parametrize("b0", [(0.0, 0.0, 1.0), (0.3, 0.2, 0.93)])
def test_wtv_bregman_with_per_axis_edges_recovers_an_analytic_sphere_within_5_percent(b0):
    field, mask, _, r = analytic_sphere(n=48, radius_mm=8.0, b0=b0)
    magnitude = np.where(r <= 8.0, 0.6, 1.0).astype(np.float32)
    result = invert(field, mask, (1, 1, 1), b0, method="wtv_bregman", magnitude=magnitude, edge_mask="per_axis")
    inner, shell = r <= 6.5, (r > 10.0) & (r < 18.0)
    contrast = result.chi_ppm[inner].mean() - result.chi_ppm[shell].mean()
    assert contrast == pytest.approx(0.2, rel=0.05)
    assert result.info["edge_mask"] == "per_axis"
    assert result.info["gradient_weights"].startswith("magnitude edges per axis")


def test_per_axis_gradient_weights_must_be_binary_and_fit_the_grid():
    shape = (4, 5, 6)
    with pytest.raises(ValueError, match="0 or 1"):
        split_gradient_weights(np.full((3, *shape), 0.5), shape)
    with pytest.raises(ValueError, match="fit neither"):
        split_gradient_weights(np.ones((2, *shape)), shape)
    voxel, penalised = split_gradient_weights(np.zeros((3, *shape)), shape)
    assert voxel.min() == 1.0 and not penalised.any() and penalised.dtype == np.uint8  # the dtype the loop vectorises
    flags = np.zeros((3, *shape), np.uint8)
    flags[1, 2, 2, 2] = 1
    assert split_gradient_weights(flags, shape)[1] is flags  # uint8 flags are not copied
    with pytest.raises(ValueError, match="0 or 1"):
        split_gradient_weights(np.full((3, *shape), 2, np.uint8), shape)
    with pytest.raises(ValueError, match="edge_mask"):
        magnitude_edge_weights(np.ones(shape), np.ones(shape, bool), (1, 1, 1), edge_mask="diagonal")


def test_the_edge_mask_is_a_setting_of_the_inversion(tmp_path):
    good = tmp_path / "per_axis.toml"
    good.write_text('[recon.inversion]\nmethod = "wtv_bregman"\n[recon.inversion.wtv_bregman]\nedge_mask = "per_axis"\n')
    settings = load_config(good)
    assert settings.recon.inversion.wtv_bregman.edge_mask == "per_axis"
    bad = tmp_path / "bad.toml"
    bad.write_text('[recon.inversion.wtv_bregman]\nedge_mask = "diagonal"\n')
    with pytest.raises(Exception, match="edge_mask"):
        load_config(bad)
