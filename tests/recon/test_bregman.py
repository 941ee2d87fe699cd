"""wtv_bregman: contrast of an analytic sphere, contrast restored by the Bregman steps, renames."""

import numpy as np
import pytest

from qsmiron.config import load_config
from qsmiron.recon.invert import declared, invert
from qsmiron.recon.dipole import forward_field
from qsmiron.recon.invert._common import DEFAULT_PAD_MM, inconsistency_ppm, setup, truncation_leak_ppm
from qsmiron.recon.invert.bregman import bregman_start, bregman_steps, wtv_bregman
from qsmiron.recon.metrics import nrmse
from qsmiron.recon.invert.wtv import wtv


def analytic_sphere(n=40, radius_mm=6.0, chi_ppm=0.2, b0=(0.0, 0.0, 1.0), noise_ppm=0.001, seed=0):
    """Field of a uniformly magnetised sphere in closed form (zero inside, Lorentz-corrected).

    Outside: chi a^3 / (3 r^3) (3 cos^2 theta - 1) with theta the angle to B0; no FFT kernel
    involved, so the test does not share the inversion's own forward model.
    """
    axes = [np.arange(n) - (n - 1) / 2.0] * 3
    x, y, z = np.meshgrid(*axes, indexing="ij")
    r = np.sqrt(x * x + y * y + z * z)
    b = np.asarray(b0, float) / np.linalg.norm(b0)
    cos = (x * b[0] + y * b[1] + z * b[2]) / np.maximum(r, 1e-9)
    inside = r <= radius_mm
    field = np.where(inside, 0.0, chi_ppm * radius_mm ** 3 / (3 * np.maximum(r, 1e-9) ** 3) * (3 * cos * cos - 1))
    mask = r < 0.42 * n
    field = field + noise_ppm * np.random.default_rng(seed).standard_normal(field.shape)
    chi = np.where(inside, chi_ppm, 0.0)
    return np.where(mask, field, 0.0).astype(np.float32), mask, chi, r


@pytest.mark.parametrize("b0", [(0.0, 0.0, 1.0), (0.3, 0.2, 0.93)])
def test_wtv_bregman_recovers_the_contrast_of_an_analytic_sphere_within_5_percent(b0):
    field, mask, chi, r = analytic_sphere(n=48, radius_mm=8.0, b0=b0)
    result = invert(field, mask, (1, 1, 1), b0, method="wtv_bregman")
    inner = r <= 6.5
    shell = (r > 10.0) & (r < 18.0)
    contrast = result.chi_ppm[inner].mean() - result.chi_ppm[shell].mean()
    assert contrast == pytest.approx(0.2, rel=0.05)
    assert result.info["converged"] and result.info["bregman_steps"] >= 1


def test_bregman_steps_restore_contrast_that_one_tv_solve_at_the_same_weight_shrinks():
    """Same weight, same problem: the single TV solve shrinks contrast, the Bregman steps return it.

    qsm-forward's cylinder phantom (independent field model, five compartments from -0.05 to
    0.3 ppm) with anisotropy-like model error; the regional slope of the compartment means
    against the truth (measured: 0.99 with the steps, 0.96 without).
    """
    qsm_forward = pytest.importorskip("qsm_forward")
    from dipole_phantom import forward_phantom, with_model_error

    voxel, b0 = (1.0, 1.0, 1.0), (0.0, 0.0, 1.0)
    chi, field, mask, magnitude, noise = forward_phantom(voxel, b0, n=48, n_vessels=0)
    field = with_model_error(field, mask, voxel, b0)
    bregman, info = wtv_bregman(field, mask, voxel, b0)
    single, _ = wtv(field, mask, voxel, b0, alpha=info["alpha"])
    compartments = qsm_forward.generate_susceptibility_phantom([48] * 3, 0.0, 0.0, [3, 4, 5, 6, 7],
                                                               [0.05, 0.1, 0.2, -0.05, 0.3])

    def slope(image):
        truth = np.array([chi[mask & (compartments == v)].mean() for v in np.unique(compartments)])
        found = np.array([image[mask & (compartments == v)].mean() for v in np.unique(compartments)])
        truth, found = truth - truth.mean(), found - found.mean()
        return float(truth @ found / (truth @ truth))

    assert info["bregman_steps"] >= 2
    assert abs(slope(bregman) - 1) < 0.02
    assert abs(slope(bregman) - 1) < 0.5 * abs(slope(single) - 1)


def test_a_settings_file_naming_medi_gets_wtv_with_a_future_warning_and_unknown_names_fail(tmp_path):
    """The former name of wtv (never Liu's MEDI) still reads, as the method and as its table."""
    old = tmp_path / "old.toml"
    old.write_text('[recon.inversion]\nmethod = "medi"\n[recon.inversion.medi]\nedge_fraction = 0.2\n')
    with pytest.warns(FutureWarning, match="'medi' is deprecated: the method is now called 'wtv'.*not Liu's MEDI"):
        config = load_config(old)
    assert config.recon.inversion.method == "wtv" and config.recon.inversion.wtv.edge_fraction == 0.2
    with pytest.warns(FutureWarning, match="write 'wtv'"):
        assert declared("medi").name == "wtv"
    with pytest.raises(ValueError, match="unknown inversion method 'medi2'"):
        declared("medi2")


def test_wtv_bregman_rejects_non_positive_iteration_counts():
    field, mask, _, _ = analytic_sphere(n=16, radius_mm=3.0)
    with pytest.raises(ValueError, match="inner_iterations"):
        wtv_bregman(field, mask, (1, 1, 1), (0, 0, 1), inner_iterations=0)


def test_level_crossing_is_exact_for_a_residual_that_is_a_power_of_the_weight():
    from qsmiron.recon.invert.bregman import level_crossing

    def residual(alpha):
        return 3.0 * alpha ** 0.6

    path = [{"alpha": a, "residual_rms_ppm": residual(a)} for a in (1e-1, 10 ** -1.5, 1e-2)]
    level = residual(0.02)
    assert level_crossing(path, level) == pytest.approx(0.02, rel=1e-9)
    # No crossing: the path ends above the level, or it started below it.
    assert level_crossing(path, residual(1e-3)) is None
    assert level_crossing(path[:1], residual(0.5)) is None
    assert level_crossing(path[-2:], residual(0.5)) is None


def test_the_bregman_weight_lies_a_quarter_decade_above_the_interpolated_crossing():
    """The weight moves continuously with the data: it does not snap to the path's weights."""
    field, mask, _, _ = analytic_sphere(n=48, radius_mm=8.0)
    _, info = wtv_bregman(field, mask, (1, 1, 1), (0, 0, 1))
    path, crossing = info["path"], info["level_crossing_alpha"]
    assert path[-1]["residual_rms_ppm"] <= info["level_ppm"] < path[-2]["residual_rms_ppm"]
    assert path[-1]["alpha"] < crossing < path[-2]["alpha"]
    assert info["alpha"] == pytest.approx(crossing * 10 ** (0.25 * (1 + info["weight_raises"])), rel=1e-9)
    assert all(abs(np.log10(info["alpha"] / p["alpha"])) > 1e-3 for p in path)


def test_bregman_start_and_steps_reproduce_wtv_bregman_so_steps_can_be_studied_past_its_stop():
    """``benchmarks/bench_bregman_stop.py`` continues the steps from ``bregman_start``: it must
    start where the default does and, stopped at the level, give the default's map."""
    field, mask, _, _ = analytic_sphere(n=48, radius_mm=8.0, b0=(0.3, 0.2, 0.93))
    chi_default, info = wtv_bregman(field, mask, (1, 1, 1), (0.3, 0.2, 0.93))
    problem = setup(field, mask, (1, 1, 1), (0.3, 0.2, 0.93), pad_mm=DEFAULT_PAD_MM)
    weights = problem.mask.astype(np.float32)
    begin = bregman_start(problem, weights, None, path_step_decades=0.5, path_iterations=3, path_decades=3.5)
    assert begin.alpha == pytest.approx(info["alpha"], rel=1e-12)
    assert begin.level_ppm == pytest.approx(info["level_ppm"], rel=1e-12)
    assert begin.raw_level_ppm == pytest.approx(info["inconsistency_ppm"], rel=1e-12)
    begin.solver.restart(begin.start)
    begin.solver.set_alpha(begin.alpha)
    residuals = bregman_steps(begin.solver, problem.field_ppm, problem.mask, begin.level_ppm,
                              inner_iterations=7, max_outer=8)
    assert residuals == pytest.approx(info["bregman_residual_rms_ppm"], rel=1e-6)
    np.testing.assert_allclose(problem.result(begin.solver.chi), chi_default, atol=1e-7)


def test_a_first_solve_already_at_the_level_raises_the_weight_until_the_bregman_steps_restore_contrast():
    """With one iteration per path weight the path's residuals are far from converged, so the
    interpolated crossing is too low and the first solve alone reaches the level (a plain TV
    solve, contrast 0.184 of 0.2): the weight is raised until the Bregman steps do it."""
    field, mask, _, r = analytic_sphere(n=48, radius_mm=8.0)
    chi, info = wtv_bregman(field, mask, (1, 1, 1), (0, 0, 1), path_iterations=1)
    contrast = chi[r <= 6.5].mean() - chi[(r > 10.0) & (r < 18.0)].mean()
    assert info["weight_raises"] >= 1 and info["bregman_steps"] >= 2
    assert contrast == pytest.approx(0.2, rel=0.05)


def _ellipsoid_head(voxel_mm):
    """Smooth sources and a step inside an ellipsoidal mask, on a grid of the given voxel."""
    shape = [int(round(extent / v)) for extent, v in zip((72, 72, 80), voxel_mm)]
    x, y, z = np.meshgrid(*[(np.arange(n) - (n - 1) / 2.0) * v for n, v in zip(shape, voxel_mm)], indexing="ij")
    mask = (x / 30) ** 2 + (y / 30) ** 2 + (z / 34) ** 2 < 1
    chi = (0.1 * np.exp(-((x - 8) ** 2 + y ** 2 + (z + 6) ** 2) / 40.0)
           - 0.05 * np.exp(-((x + 10) ** 2 + (y - 8) ** 2 + z ** 2) / 30.0) + 0.03 * (x > 5))
    return np.where(mask, chi, 0).astype(np.float32), mask


@pytest.mark.parametrize("voxel", [(1.0, 1.0, 1.0), (1.0, 1.0, 2.5)])
def test_without_the_truncation_leak_of_the_true_field_the_cone_measures_the_noise(voxel):
    """White noise of SD sigma added to the exact field of sources inside the mask: the cone's
    RMS also holds the leak of cutting that field at the mask's edge (measured: 0.54 ppb at 1
    mm, 0.96 ppb at 1 x 1 x 2.5 mm); less the true field's leak it is sigma."""
    chi, mask = _ellipsoid_head(voxel)
    exact = forward_field(chi, voxel, (0, 0, 1))
    sigma = 0.001
    noisy = np.where(mask, exact + sigma * np.random.default_rng(1).standard_normal(mask.shape), 0)
    problem = setup(noisy.astype(np.float32), mask, voxel, (0, 0, 1), pad_mm=16.0)
    raw = inconsistency_ppm(problem)
    leak = truncation_leak_ppm(problem, problem.pad(exact))
    assert raw > 1.1 * sigma
    assert np.sqrt(raw ** 2 - leak ** 2) == pytest.approx(sigma, rel=0.05)


def test_wtv_bregman_stops_at_a_level_nearer_the_noise_than_the_raw_cone_level_on_thick_slices():
    """The leak of the solver's own iterate stands in for the true field's (measured: level 1.20
    ppb against the raw 1.40 ppb, noise 1 ppb)."""
    voxel = (1.0, 1.0, 2.5)
    chi, mask = _ellipsoid_head(voxel)
    sigma = 0.001
    noisy = np.where(mask, forward_field(chi, voxel, (0, 0, 1))
                     + sigma * np.random.default_rng(1).standard_normal(mask.shape), 0).astype(np.float32)
    _, info = wtv_bregman(noisy, mask, voxel, (0, 0, 1))
    assert info["level_ppm"] < info["inconsistency_ppm"]
    assert abs(info["level_ppm"] - sigma) < 0.6 * abs(info["inconsistency_ppm"] - sigma)
    assert info["level_ppm"] == pytest.approx(sigma, rel=0.25)
    assert info["converged"]


def test_wtv_weight_meets_the_same_leak_corrected_level_and_keeps_thick_slice_contrast():
    """wtv's one TV solve takes the weight whose residual meets the cone level less the leak of
    the map at the raw level's crossing, as wtv_bregman. On the thick-slice head (noise 1 ppb):
    level 1.20 against the raw 1.40 ppb, Chimap NRMSE 30.2 % against 41.8 % at the raw level."""
    voxel = (1.0, 1.0, 2.5)
    chi, mask = _ellipsoid_head(voxel)
    noisy = np.where(mask, forward_field(chi, voxel, (0, 0, 1))
                     + 0.001 * np.random.default_rng(1).standard_normal(mask.shape), 0).astype(np.float32)
    result = invert(noisy, mask, voxel, (0, 0, 1), method="wtv")
    info = result.info
    assert info["level_ppm"] == pytest.approx(
        np.sqrt(info["inconsistency_ppm"] ** 2 - info["truncation_leak_ppm"] ** 2), rel=1e-6)
    assert info["level_ppm"] == pytest.approx(0.001, rel=0.25)
    assert info["path"]["residual_rms_ppm"][-1] <= info["level_ppm"] < info["path"]["residual_rms_ppm"][-2]
    assert nrmse(result.chi_ppm, chi, mask) < 34.0



def test_the_inconsistency_level_does_not_depend_on_which_axis_is_stored_last():
    """The cone's mean power over the full spectrum: counted on rfftn's half spectrum without the
    interior last-axis bins' second copy, white noise at 1 x 1 x 2 mm read 1.0765 against 1.0580
    (x 1e-3) with its axes in another order."""
    rng = np.random.default_rng(0)
    field = (rng.standard_normal((20, 24, 12)) * 1e-3).astype(np.float32)
    as_stored = setup(field, np.ones(field.shape, bool), (1.0, 1.0, 2.0), (0.0, 0.0, 1.0))
    moved = np.ascontiguousarray(np.transpose(field, (2, 0, 1)))
    slices_first = setup(moved, np.ones(moved.shape, bool), (2.0, 1.0, 1.0), (1.0, 0.0, 0.0))
    level = inconsistency_ppm(as_stored)
    assert inconsistency_ppm(slices_first) == pytest.approx(level, rel=1e-6)
    assert level == pytest.approx(1e-3, rel=0.1)  # white noise: the level is its SD
