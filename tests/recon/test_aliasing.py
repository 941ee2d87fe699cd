"""Aliasing of the echo train: the period found from the echo times, and wrong clusters found
by their neighbours, against fields built with a known period error."""

import numpy as np
import pytest

from qsmiron.recon.aliasing import aliased_voxels, aliasing_period_hz
from qsmiron.recon.echofit import fit_field


@pytest.mark.parametrize("echo_times_s, period_hz", [
    ((0.004, 0.008, 0.012, 0.016, 0.020), 250.0),       # echoes at n dTE: 1 / dTE
    ((0.004, 0.010, 0.016, 0.022, 0.028), 500.0),       # multiples of 2 ms
    ((0.003, 0.0075, 0.012, 0.0165, 0.021), 2000 / 3),  # multiples of 1.5 ms
    ((0.005, 0.020), 200.0),
])
def test_the_period_is_the_smallest_frequency_every_echo_turns_whole(echo_times_s, period_hz):
    found = aliasing_period_hz(echo_times_s)
    assert found == pytest.approx(period_hz, abs=0.25)
    turns = found * np.asarray(echo_times_s)
    assert np.abs(turns - np.round(turns)).max() < 0.01


def test_no_period_for_one_echo():
    assert aliasing_period_hz((0.005,)) is None


def test_a_cluster_off_by_a_period_is_flagged_whole_and_a_steep_real_field_is_not():
    shape = (40, 40, 40)
    x, y, z = np.meshgrid(*[np.arange(n, dtype=np.float32) for n in shape], indexing="ij")
    usable = (x - 20) ** 2 + (y - 20) ** 2 + (z - 20) ** 2 < 18 ** 2
    field = 8.0 * x + 20.0 * np.sin(y / 4.0)                # up to 13 Hz per voxel: steep, real
    wrong = usable & (x >= 30) & (x < 34) & (y >= 18) & (y < 21) & (z >= 18) & (z < 21)
    field = np.where(wrong, field + 250.0, field).astype(np.float32)
    flagged = aliased_voxels(field, usable, 250.0)
    assert wrong.sum() == 36 and flagged[wrong].all()
    assert not flagged[usable & ~wrong].any()
    assert not aliased_voxels(field, usable & ~wrong, 250.0).any()


def test_a_voxel_in_a_steep_real_field_is_not_taken_for_an_aliasing_error():
    """Half a period and a little more off its neighbours' median, as next to a sinus at 2 mm,
    but not a whole period off any of them: not flagged."""
    shape = (20, 20, 20)
    x, y, z = np.meshgrid(*[np.arange(n, dtype=np.float32) for n in shape], indexing="ij")
    usable = np.ones(shape, bool)
    field = (30.0 * x).astype(np.float32)                   # 30 Hz per voxel, up to 60 over the cube
    field[10, 10, 10] += 135.0                              # 0.54 of a 250 Hz period
    assert not aliased_voxels(field, usable, 250.0)[10, 10, 10]
    field[10, 10, 10] += 115.0                              # now a whole period
    assert aliased_voxels(field, usable, 250.0)[10, 10, 10]


def _a_cluster_a_period_off(te):
    """A smooth field in a ball with a 27-voxel cluster 250 Hz (1 / 4 ms) too high, as unwrapped
    phase at ``te``: the mask, the cluster and the phase (rad, echoes last)."""
    shape = (32, 32, 24)
    x, y, z = np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij")
    field_hz = 40 * x - 25 * y * z
    wrong = np.zeros(shape, bool)
    wrong[20:23, 14:17, 10:13] = True
    unwrapped = 2 * np.pi * np.where(wrong, field_hz + 250.0, field_hz)[..., None] * np.asarray(te)
    return x ** 2 + y ** 2 + z ** 2 < 0.8, wrong, unwrapped


def test_the_echo_fit_marks_a_cluster_that_unwrapping_put_a_period_off():
    """Echoes at n dTE: a field 1 / dTE higher turns every echo by whole turns, so the phase fits
    it perfectly (no chi-square misfit); its neighbours give it away and the fit marks it."""
    te = (0.004, 0.008, 0.012, 0.016, 0.020)
    mask, wrong, unwrapped = _a_cluster_a_period_off(te)
    rng = np.random.default_rng(0)
    unwrapped = (unwrapped + 0.002 * rng.standard_normal(unwrapped.shape)).astype(np.float32)
    magnitude = np.ones(unwrapped.shape, np.float32)
    fit = fit_field(unwrapped, magnitude, mask, te, offset="none")
    assert fit.info["aliasing_period_hz"] == pytest.approx(250.0)
    assert fit.info["aliased_voxels"] == 27 and fit.misfit[wrong].all()
    assert fit.reduced_chi2[wrong].max() < fit.info["misfit_limit"]  # the chi-square test alone misses them
    assert fit.misfit.sum() <= 27 + 5


def test_the_misfit_count_includes_aliased_voxels_when_no_chi_square_test_ran():
    """Two echoes with a fitted offset leave no residual degree of freedom, so only the aliasing
    test marks voxels; the recorded misfit count must still be the map's."""
    mask, wrong, unwrapped = _a_cluster_a_period_off((0.004, 0.008))
    fit = fit_field(unwrapped.astype(np.float32), None, mask, (0.004, 0.008), offset="fit")
    assert fit.info["dof"] == 0 and fit.reduced_chi2 is None
    assert fit.misfit[wrong].all()
    assert fit.info["misfit_voxels"] == int(fit.misfit.sum()) == fit.info["aliased_voxels"]
