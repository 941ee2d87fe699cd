"""Weighted least-squares echo fit against analytic multi-echo phase with known noise."""

import numpy as np
import pytest

from qsmiron.recon.echofit import fit_field, local_misfit_factor

TE = (0.004, 0.008, 0.012, 0.016, 0.020)
VOXEL = (1.0, 1.0, 1.5)


def make_data(shape=(32, 32, 24), te=TE, sigma=0.0, offset_kind="smooth", seed=0):
    """Complex signal m exp(i(offset + 2 pi f TE)) + complex noise sigma; phase unwrapped
    analytically (the noise-free phase plus the noise's phase perturbation)."""
    rng = np.random.default_rng(seed)
    axes = [np.linspace(-1, 1, n) for n in shape]
    x, y, z = np.meshgrid(*axes, indexing="ij")
    mask = x ** 2 + y ** 2 + z ** 2 < 0.8
    field_hz = 40 * x - 25 * y * z + 15 * np.sin(3 * z)
    offset = {"smooth": 0.8 * x + 0.5 * y ** 2 - 0.3, "none": np.zeros(shape)}[offset_kind]
    m0 = 1.0 + 0.5 * x  # magnitude varies, so do the weights
    te = np.asarray(te)
    magnitude = m0[..., None] * np.exp(-30 * te)
    clean = offset[..., None] + 2 * np.pi * field_hz[..., None] * te
    noise = sigma * (rng.standard_normal(clean.shape) + 1j * rng.standard_normal(clean.shape))
    signal = magnitude * np.exp(1j * clean) + noise
    phase = clean + np.angle(signal * np.exp(-1j * clean))
    return dict(phase=phase.astype(np.float32), magnitude=np.abs(signal).astype(np.float32),
                mask=mask, field_hz=field_hz, offset=offset, m=magnitude, te=te)


@pytest.mark.parametrize("mode", ["fit", "smooth"])
def test_noise_free_fit_recovers_field_and_offset(mode):
    data = make_data()
    fit = fit_field(data["phase"], data["magnitude"], data["mask"], TE, offset=mode,
                    voxel_size_mm=VOXEL)
    m = data["mask"]
    error = fit.field_hz[m] - data["field_hz"][m]
    offset_error = np.angle(np.exp(1j * (fit.offset_rad[m] - data["offset"][m])))
    if mode == "fit":
        assert np.abs(error).max() < 1e-3
        assert np.abs(offset_error).max() < 1e-4
    else:
        # "smooth" is exact for the linear part of the offset; its curvature (0.5 y^2) leaves
        # a smoothing bias of second order: mostly uniform (harmless: removed with the
        # background), spatially varying with sd < 0.2 Hz on a +-60 Hz field.
        assert abs(np.mean(error)) < 0.3
        assert np.std(error) < 0.2
        assert np.std(offset_error) < 0.02


def test_through_origin_fit_when_offset_is_zero_is_exact():
    data = make_data(offset_kind="none")
    fit = fit_field(data["phase"], data["magnitude"], data["mask"], TE, offset="none")
    assert np.abs(fit.field_hz - data["field_hz"])[data["mask"]].max() < 1e-3


def test_noise_map_matches_the_empirical_field_error_at_snr_20():
    data = make_data(sigma=0.05, offset_kind="none", seed=1)
    m = data["mask"]
    fit = fit_field(data["phase"], data["magnitude"], m, TE, offset="none")
    # Propagated noise: sigma / (2 pi sqrt(sum m^2 TE^2)).
    expected = 0.05 / (2 * np.pi * np.sqrt(np.sum(data["m"] ** 2 * data["te"] ** 2, axis=-1)))
    assert fit.info["noise_sigma"] == pytest.approx(0.05, rel=0.05)
    assert np.median(fit.noise_hz[m] / expected[m]) == pytest.approx(1.0, rel=0.06)
    z = (fit.field_hz[m] - data["field_hz"][m]) / fit.noise_hz[m]
    assert np.std(z) == pytest.approx(1.0, rel=0.1)
    # Where the noise map says the field is noisier, it is: error spread in the noisiest
    # third of the voxels vs the quietest third.
    order = np.argsort(fit.noise_hz[m])
    errors = (fit.field_hz[m] - data["field_hz"][m])[order]
    third = errors.size // 3
    predicted_ratio = np.mean(fit.noise_hz[m][order][-third:]) / np.mean(fit.noise_hz[m][order][:third])
    assert np.std(errors[-third:]) / np.std(errors[:third]) == pytest.approx(predicted_ratio, rel=0.15)


def test_smooth_offset_is_less_noisy_than_a_free_offset_and_unbiased():
    data = make_data(sigma=0.05, seed=2)
    m = data["mask"]
    free = fit_field(data["phase"], data["magnitude"], m, TE, offset="fit")
    smooth = fit_field(data["phase"], data["magnitude"], m, TE, offset="smooth",
                       voxel_size_mm=VOXEL)
    free_err = free.field_hz[m] - data["field_hz"][m]
    smooth_err = smooth.field_hz[m] - data["field_hz"][m]
    # Theory for 5 echoes at 4..20 ms: a free offset inflates the sd by sqrt(880/160) = 2.35.
    assert np.std(free_err) / np.std(smooth_err) > 1.8
    assert abs(np.mean(smooth_err)) < 0.3  # the uniform curvature bias, as noise-free


def test_two_echoes_with_given_offset_and_single_echo_work():
    data = make_data(te=(0.005, 0.010), offset_kind="smooth")
    m = data["mask"]
    fit = fit_field(data["phase"], data["magnitude"], m, (0.005, 0.010), offset="none",
                    offset_rad=data["offset"])
    assert np.abs(fit.field_hz[m] - data["field_hz"][m]).max() < 1e-3
    free = fit_field(data["phase"], data["magnitude"], m, (0.005, 0.010), offset="fit")
    assert np.abs(free.field_hz[m] - data["field_hz"][m]).max() < 1e-3
    assert free.info["dof"] == 0 and free.reduced_chi2 is None
    single = make_data(te=(0.010,), offset_kind="none")
    one = fit_field(single["phase"][..., 0], single["magnitude"][..., 0], m, (0.010,))
    assert np.abs(one.field_hz[m] - single["field_hz"][m]).max() < 1e-3


def test_reduced_chi2_flags_a_voxel_with_a_wrong_echo():
    data = make_data(sigma=0.02, offset_kind="none", seed=4)
    m = data["mask"]
    phase = data["phase"].copy()
    phase[16, 16, 12, 3] += 2 * np.pi  # one temporal unwrapping error
    fit = fit_field(phase, data["magnitude"], m, TE, offset="none")
    assert fit.reduced_chi2[16, 16, 12] > 100
    assert np.median(fit.reduced_chi2[m]) == pytest.approx(
        1.0 * 3.357 / 4, rel=0.1)  # median of chi2(4) / 4


def test_misfit_map_flags_phase_jumps_and_keeps_its_false_alarm_rate_on_pure_noise():
    """A voxel whose signal is a sinc of a steep intravoxel gradient has a pi jump of phase
    between echoes: the misfit map must flag every such voxel. On data that follow the model
    it flags voxels at the stated rate p (binomial: 3 sigma)."""
    data = make_data(shape=(48, 48, 40), sigma=0.02, offset_kind="none", seed=5)
    m = data["mask"]
    phase = data["phase"].copy()
    jumps = np.zeros(m.shape, bool)
    jumps[20:24, 20:24, 18:22] = True
    phase[jumps, 3:] += np.pi  # sign flip of the signal from the fourth echo on
    p = 1e-3
    fit = fit_field(phase, data["magnitude"], m, TE, offset="none", misfit_p=p)
    assert fit.misfit[jumps].all()
    clean = m & ~jumps
    expected = p * clean.sum()
    assert abs(fit.misfit[clean].sum() - expected) < 3 * np.sqrt(expected) + 1
    assert fit.info["misfit_voxels"] == int(fit.misfit.sum())
    assert not fit.misfit[~m].any()


def test_a_slight_bend_at_high_snr_keeps_its_field_and_a_pi_jump_does_not():
    """At high SNR the chi-square test flags a phase that bends slightly over the echoes (the
    intravoxel dephasing next to a sinus), although its fitted field is right to a fraction of
    the tolerance; the tolerance keeps those voxels and still flags the pi jumps."""
    data = make_data(shape=(48, 48, 40), sigma=0.001, offset_kind="none", seed=6)
    m = data["mask"]
    phase = data["phase"].copy()
    bend, jumps = np.zeros(m.shape, bool), np.zeros(m.shape, bool)
    bend[14:18, 20:24, 18:22] = True
    jumps[28:32, 20:24, 18:22] = True
    phase[bend] += 0.01 * (np.arange(5) - 2.0) ** 2      # 0.04 rad at the first and last echo
    phase[jumps, 3:] += np.pi
    tolerance_ppm, tesla = 0.005, 3.0
    tolerance_hz = tolerance_ppm * 1e-6 * 42.577478e6 * tesla
    chi2_alone = fit_field(phase, data["magnitude"], m, TE, offset="none", misfit_tolerance_ppm=0.0,
                           field_strength_t=tesla)
    with_tolerance = fit_field(phase, data["magnitude"], m, TE, offset="none", field_strength_t=tesla)
    without_b0 = fit_field(phase, data["magnitude"], m, TE, offset="none")
    assert chi2_alone.misfit[bend].all() and without_b0.misfit[bend].all()
    assert not with_tolerance.misfit[bend].any()
    assert with_tolerance.misfit[jumps].all()
    assert with_tolerance.info["misfit_tolerance_hz"] == pytest.approx(tolerance_hz, rel=1e-4)
    assert np.abs(with_tolerance.field_hz[bend] - data["field_hz"][bend]).max() < 0.5 * tolerance_hz
    assert np.abs(with_tolerance.field_hz[jumps] - data["field_hz"][jumps]).min() > tolerance_hz


def test_no_misfit_map_without_residual_degrees_of_freedom():
    data = make_data(te=TE[:2], offset_kind="smooth", seed=6)
    fit = fit_field(data["phase"], data["magnitude"], data["mask"], TE[:2], offset="fit")
    assert fit.misfit is None


def test_local_misfit_factor_is_the_root_of_the_local_mean_reduced_chi_square_of_usable_voxels():
    chi2 = np.ones((30, 30, 30), np.float32)
    usable = np.ones(chi2.shape, bool)
    chi2[5:20, 5:20, 5:20] = 4.0  # phase systematically off a line: twice the SD
    chi2[25:28, 25:28, 25:28] = 100.0  # beyond the misfit limit: not usable, not pooled
    usable[25:28, 25:28, 25:28] = False
    chi2[2, 2, 25] = np.nan  # no degrees of freedom there
    factor = local_misfit_factor(chi2, usable, size_voxels=5)
    assert np.allclose(factor[8:17, 8:17, 8:17], 2.0)  # whole cube inside the block
    assert np.allclose(factor[22:25, 5:20, 5:20], 1.0) and np.allclose(factor[23:30, 23:30, 22:30], 1.0)
    assert factor[2, 2, 25] == 1.0 and factor[2, 3, 25] == 1.0
    # Half-way across the block's face the cube holds 3 of 5 planes inside: sqrt((3 * 4 + 2) / 5).
    assert factor[19, 12, 12] == pytest.approx(np.sqrt((3 * 4.0 + 2 * 1.0) / 5), rel=1e-5)
    assert (factor >= 1.0).all() and factor.dtype == np.float32


def test_local_misfit_factor_stays_near_one_where_the_echoes_follow_the_noise_model():
    data = make_data(shape=(48, 48, 40), sigma=0.02, offset_kind="none", seed=7)
    fit = fit_field(data["phase"], data["magnitude"], data["mask"], TE, offset="none")
    usable = data["mask"] & ~fit.misfit
    factor = local_misfit_factor(fit.reduced_chi2, usable)
    inner = usable & (np.abs(factor - 1) >= 0)  # every usable voxel
    assert np.median(factor[inner]) < 1.05 and np.mean(factor[inner] > 1.2) < 0.005
    assert (factor[~usable] == 1.0).all()
