"""R2* mapping against analytic Rician mono-exponentials and qsm-forward's GRE signal model."""

import numpy as np
import pytest
import qsm_forward

from qsmiron.errors import InputError
from qsmiron.recon.r2star import estimate_noise_sigma, fit_r2star

TE = np.array([0.004, 0.010, 0.016, 0.022, 0.028])  # 5 echoes, 4-28 ms (issue 13)


def rician(signal, sigma, rng):
    """|signal + complex Gaussian noise of SD sigma per channel|."""
    noise = rng.standard_normal(signal.shape) + 1j * rng.standard_normal(signal.shape)
    return np.abs(signal + sigma * noise).astype(np.float32)


def sphere_phantom(shape=(32, 32, 32), seed=0):
    """R2* from 10 to 60 s^-1 in four shells of a sphere; air (noise only) around it."""
    rng = np.random.default_rng(seed)
    axes = [np.linspace(-1, 1, n) for n in shape]
    x, y, z = np.meshgrid(*axes, indexing="ij")
    radius = np.sqrt(x ** 2 + y ** 2 + z ** 2)
    mask = radius < 0.8
    bands = np.digitize(radius, [0.2, 0.4, 0.6])
    r2star = np.choose(bands, [60.0, 35.0, 20.0, 10.0]) + 2.0 * np.sin(5 * x)
    return mask, np.where(mask, r2star, 0.0), np.where(mask, 1000.0, 0.0), bands, rng


def snr120_magnitude(mask, r2star, s0, rng, te=TE):
    """SNR 120 as the simulator defines it: mean first-echo brain signal / noise SD."""
    clean = s0[..., None] * np.exp(-r2star[..., None] * te)
    sigma = float(clean[..., 0][mask].mean()) / 120.0
    return rician(clean, sigma, rng), sigma


@pytest.mark.parametrize("method", ["nlls", "arlo"])
def test_r2star_at_snr_120_has_median_error_under_3_percent_and_band_means_within_1_per_s(method):
    mask, r2star, s0, bands, rng = sphere_phantom()
    magnitude, _ = snr120_magnitude(mask, r2star, s0, rng)
    fit = fit_r2star(magnitude, mask, TE, method=method)
    assert fit.valid[mask].all()
    relative = np.abs(fit.r2star_per_s[mask] - r2star[mask]) / r2star[mask]
    assert np.median(relative) <= 0.03
    for band in range(4):
        region = mask & (bands == band)
        assert abs(np.mean(fit.r2star_per_s[region] - r2star[region])) <= 1.0
    assert np.all(fit.r2star_per_s[~mask] == 0)
    t2 = fit.t2star_s[mask]
    np.testing.assert_allclose(t2, 1.0 / fit.r2star_per_s[mask], rtol=1e-5)
    # The standard error matches the spread it predicts (within 25 %).
    z = (fit.r2star_per_s[mask] - r2star[mask]) / fit.r2star_sd_per_s[mask]
    assert 0.75 < np.std(z) < 1.25


def test_fit_recovers_r2star_of_the_qsm_forward_signal_model():
    """qsm-forward's ``generate_signal`` (standard R2* decay with SPGR weighting and a field
    phase), complex noise added, magnitude fitted."""
    mask, r2star, _, _, rng = sphere_phantom(seed=3)
    field_ppm = np.where(mask, 0.05 * np.linspace(-1, 1, mask.shape[0])[:, None, None], 0.0)
    signals = [qsm_forward.generate_signal(field_ppm, B0=3, TR=0.04, TE=te, flip_angle=15,
                                           R1=np.where(mask, 1.0, 0.0), R2star=r2star,
                                           M0=mask.astype(float)) for te in TE]
    clean = np.stack(signals, axis=-1)
    sigma = float(np.abs(clean[..., 0])[mask].mean()) / 120.0
    noise = rng.standard_normal(clean.shape) + 1j * rng.standard_normal(clean.shape)
    magnitude = np.abs(clean + sigma * noise).astype(np.float32)
    fit = fit_r2star(magnitude, mask, TE)
    relative = np.abs(fit.r2star_per_s[mask] - r2star[mask]) / r2star[mask]
    assert np.median(relative) <= 0.03
    assert abs(np.mean(fit.r2star_per_s[mask] - r2star[mask])) <= 0.5
    s0_truth = np.abs(signals[0]) * np.exp(r2star * TE[0])
    assert np.median(np.abs(fit.s0[mask] / s0_truth[mask] - 1)) < 0.02


def test_arlo_and_nlls_are_exact_without_noise_for_uneven_echo_spacing():
    te = np.array([0.003, 0.007, 0.015, 0.020, 0.031, 0.040])
    r2star = np.linspace(5.0, 80.0, 16).reshape(16, 1, 1) * np.ones((16, 2, 2))
    magnitude = (500.0 * np.exp(-r2star[..., None] * te)).astype(np.float64)
    mask = np.ones(r2star.shape, bool)
    nlls = fit_r2star(magnitude, mask, te, noise_sigma=0.0)
    np.testing.assert_allclose(nlls.r2star_per_s, r2star, rtol=1e-4)
    np.testing.assert_allclose(nlls.s0, 500.0, rtol=1e-4)
    # ARLO integrates with a quadratic rule: exact to within half a percent for R2* TE-steps
    # up to 0.9 (80 s^-1 x 11 ms).
    arlo = fit_r2star(magnitude, mask, te, method="arlo", noise_sigma=0.0)
    np.testing.assert_allclose(arlo.r2star_per_s, r2star, rtol=5e-3)


def test_noise_floor_guard_removes_most_of_the_rician_bias_of_fast_decay():
    """R2* = 110 s^-1 at SNR 15: the last echoes sit in the noise floor, which flattens the
    decay and biases an unguarded fit low."""
    rng = np.random.default_rng(7)
    shape = (40, 40, 20)
    mask = np.ones(shape, bool)
    clean = 100.0 * np.exp(-110.0 * TE) * np.ones((*shape, 1))
    sigma = clean[..., 0].mean() / 15.0
    magnitude = rician(clean, sigma, rng)
    guarded = fit_r2star(magnitude, mask, TE, noise_sigma=sigma)
    naive = fit_r2star(magnitude, mask, TE, noise_sigma=sigma, floor_factor=0.0,
                       rician_correction=False)
    bias_naive = np.mean(naive.r2star_per_s[naive.valid]) - 110.0
    bias_guarded = np.mean(guarded.r2star_per_s[guarded.valid]) - 110.0
    assert bias_naive < -3.0
    assert abs(bias_guarded) < abs(bias_naive) / 3
    assert abs(bias_guarded) < 0.015 * 110.0
    assert guarded.valid.mean() > 0.9
    assert np.mean(guarded.echoes_used[guarded.valid] == 5) < 0.01  # the last echo is in the floor


def test_noise_level_from_the_air_matches_the_simulated_noise_within_5_percent():
    mask, r2star, s0, _, rng = sphere_phantom(shape=(48, 48, 40))
    magnitude, sigma = snr120_magnitude(mask, r2star, s0, rng)
    assert estimate_noise_sigma(magnitude, mask) == pytest.approx(sigma, rel=0.05)
    fit = fit_r2star(magnitude, mask, TE)
    assert fit.info["noise_estimate"].startswith("air")


def test_noise_level_comes_from_the_residuals_when_the_air_is_zero_filled():
    mask, r2star, s0, _, rng = sphere_phantom()
    magnitude, sigma = snr120_magnitude(mask, r2star, s0, rng)
    magnitude *= mask[..., None]  # background masked to zero by the scanner
    assert estimate_noise_sigma(magnitude, mask) is None
    fit = fit_r2star(magnitude, mask, TE)
    assert fit.info["noise_estimate"].startswith("fit residuals")
    # Median RSS over the chi-square median with E - 2 = 3 degrees of freedom: within 5 %
    # (measured 0.2 %). E degrees of freedom would give 0.74 sigma, the chi-square mean 0.89.
    assert fit.info["noise_sigma"] == pytest.approx(sigma, rel=0.05)
    assert fit.info["warnings"]


def test_unfittable_voxels_are_masked_as_nan_and_counted_by_reason():
    te = TE
    mask = np.ones((4, 1, 1), bool)
    magnitude = np.zeros((4, 1, 1, 5), np.float32)
    magnitude[0, 0, 0] = 100.0 * np.exp(-20.0 * te)          # fine
    magnitude[1, 0, 0] = 0.1                                  # noise only: in the floor
    magnitude[2, 0, 0] = 100.0 * np.exp(+20.0 * te)          # rises with TE
    magnitude[3, 0, 0] = 100.0 * np.exp(-200.0 * te)         # decays faster than the maximum
    fit = fit_r2star(magnitude, mask, te, noise_sigma=0.1, r2star_max_per_s=100.0)
    assert fit.valid[:, 0, 0].tolist() == [True, False, False, False]
    assert np.isnan(fit.r2star_per_s[1:, 0, 0]).all() and np.isnan(fit.t2star_s[1:, 0, 0]).all()
    assert fit.r2star_per_s[0, 0, 0] == pytest.approx(20.0, rel=1e-3)
    assert fit.info["masked"] == {"fewer_than_3_echoes_above_noise_floor": 1, "fit_failed": 0,
                                  "signal_rises_with_echo_time": 1, "r2star_above_maximum": 1}
    assert fit.info["n_valid"] == 1


def test_fewer_than_three_echoes_is_a_one_line_input_error():
    with pytest.raises(InputError, match="at least 3 echoes.*has 2"):
        fit_r2star(np.ones((4, 4, 4, 2)), np.ones((4, 4, 4), bool), [0.005, 0.010])


def test_echo_times_in_milliseconds_are_refused():
    with pytest.raises(ValueError, match="seconds"):
        fit_r2star(np.ones((4, 4, 4, 3)), np.ones((4, 4, 4), bool), [5.0, 10.0, 15.0])
