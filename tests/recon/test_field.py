"""Total field (unwrap + echo fit + mask refinement) against qsm-forward truth."""


import numpy as np
import pytest
import scipy.ndimage

from qsmiron.errors import InputError
from qsmiron.recon.field import total_field
from qsmiron.recon.settings import ReconSettings

import fieldmap_phantom as fp  # tests/recon is on pytest's pythonpath (pyproject.toml)




@pytest.mark.parametrize("geometry", [
    dict(voxel_size_mm=(1.0, 1.0, 1.0), b0_direction=(0.0, 0.0, 1.0)),
    dict(voxel_size_mm=(0.8, 1.0, 2.0), b0_direction=(0.3, 0.2, 1.0)),
])
def test_total_field_within_half_hertz_rms_of_truth_at_peak_snr_50(geometry):
    phantom = fp.make_phantom(40, peak_snr=50, seed=7, **geometry)
    result = total_field(phantom.magnitude, phantom.phase, phantom.mask,
                         phantom.voxel_size_mm, phantom.echo_times_s)
    inner = scipy.ndimage.binary_erosion(result.mask, iterations=2)
    error = result.field_hz - phantom.field_hz
    error -= np.median(error[inner])
    # The field spans about +-100 Hz; qsm-forward's offset (pi over 40 voxels) leaves a
    # smoothing bias of a few tenths of a Hz on top of the noise (~0.2 Hz).
    assert np.sqrt(np.mean(error[inner] ** 2)) < 0.5
    assert np.percentile(np.abs(error[inner]), 99) < 1.5
    # Noise map: the right size (the noise part of the error is ~ noise_hz).
    assert 0.05 < np.median(result.noise_hz[inner]) < 0.5
    assert [step.step for step in result.steps] == ["readout", "unwrap", "echo_fit", "mask_refinement"]


def test_refinement_removes_a_noise_only_rim_but_not_for_a_user_mask():
    phantom = fp.make_phantom(40, peak_snr=50, seed=8)
    # A generous mask: the object plus a 2-voxel rim of pure noise around it.
    generous = scipy.ndimage.binary_dilation(phantom.mask, iterations=2)
    rng = np.random.default_rng(0)
    rim = generous & ~phantom.mask
    magnitude = phantom.magnitude.copy()
    phase = phantom.phase.copy()
    magnitude[rim] = np.abs(rng.normal(0, 0.02, (rim.sum(), 5)))
    phase[rim] = rng.uniform(-np.pi, np.pi, (rim.sum(), 5))
    auto = total_field(magnitude, phase, generous, phantom.voxel_size_mm, phantom.echo_times_s)
    assert auto.mask[rim].mean() < 0.1
    assert auto.mask[scipy.ndimage.binary_erosion(phantom.mask, iterations=2)].all()
    user = total_field(magnitude, phase, generous, phantom.voxel_size_mm, phantom.echo_times_s,
                       user_mask=True)
    assert np.array_equal(user.mask, generous)
    assert user.step("mask_refinement").method == "none"


def test_voxels_with_a_phase_jump_stay_in_the_mask_but_carry_no_field():
    """A block whose signal changes sign from the fourth echo on (a sinc of a steep
    intravoxel gradient) keeps its place in a user's mask, but the misfit map flags it and
    the noise handed to background removal and inversion is infinite there; the noise map
    itself stays finite. A noise-only rim is not a misfit: its noise map already says it."""
    phantom = fp.make_phantom(40, peak_snr=50, seed=8)
    inner = scipy.ndimage.binary_erosion(phantom.mask, iterations=4)
    block = np.zeros(inner.shape, bool)
    centre = np.argwhere(inner).mean(0).astype(int)
    block[tuple(slice(c - 2, c + 2) for c in centre)] = True
    phase = phantom.phase.copy()
    phase[block, 3:] = np.angle(np.exp(1j * (phase[block, 3:] + np.pi)))
    user = total_field(phantom.magnitude, phase, phantom.mask, phantom.voxel_size_mm, phantom.echo_times_s,
                       user_mask=True)
    assert user.mask[block].all()
    assert user.misfit[block].all()
    # The smoothed phase offset carries the jump up to 2 voxels around the block; beyond 3
    # voxels nothing is flagged (nor anywhere without the block).
    away = scipy.ndimage.distance_transform_edt(~block) > 3
    assert not user.misfit[inner & away].any()
    assert np.isposinf(user.data_noise_hz[user.misfit]).all()
    assert np.isfinite(user.noise_hz).all()
    assert user.step("mask_refinement").notes["misfit_voxels_kept_without_field"] == int(user.misfit.sum())
    # The inversion's noise: the same, times the fit's local misfit factor (>= 1; > 1 around the
    # block, whose smoothed offset spills over it).
    factor = user.misfit_factor
    assert factor.shape == user.mask.shape and (factor >= 1).all()
    finite = np.isfinite(user.data_noise_hz)
    assert np.allclose(user.inversion_noise_hz[finite], user.data_noise_hz[finite] * factor[finite])
    assert np.isposinf(user.inversion_noise_hz[user.misfit]).all()
    assert np.median(factor[inner & away]) < 1.1 and factor[inner & ~away & ~user.misfit].max() > 1.2
    notes = user.step("mask_refinement").notes["misfit_factor"]
    assert notes["neighbourhood_voxels"] == 5
    assert notes["median"] == pytest.approx(np.median(factor[user.mask & ~user.misfit]), abs=1e-4)


def test_laplacian_total_field_runs_and_tracks_the_local_field():
    phantom = fp.make_phantom(40, peak_snr=80, seed=9)
    settings = ReconSettings()
    settings.unwrap.method = "laplacian"
    result = total_field(phantom.magnitude, phantom.phase, phantom.mask, phantom.voxel_size_mm,
                         phantom.echo_times_s, settings=settings)
    assert result.step("unwrap").method == "laplacian"
    inner = scipy.ndimage.binary_erosion(result.mask, iterations=3)
    # Laplacian unwrapping drops harmonic (background-like) parts: compare Laplacians.
    def lap(v):
        return sum(np.roll(v, 1, a) + np.roll(v, -1, a) - 2 * v for a in range(3))
    smooth = lambda v: scipy.ndimage.gaussian_filter(v, 1.0)  # noqa: E731
    truth = lap(smooth(phantom.field_hz))[inner]
    ours = lap(smooth(result.field_hz.astype(float)))[inner]
    assert np.corrcoef(truth, ours)[0, 1] > 0.9


def test_empty_mask_is_an_input_error():
    phantom = fp.make_phantom(24)
    with pytest.raises(InputError, match="empty"):
        total_field(phantom.magnitude, phantom.phase, np.zeros(phantom.mask.shape, bool),
                    phantom.voxel_size_mm, phantom.echo_times_s)
