"""Phase preparation: scaling detection against phases with a known scaling."""

import numpy as np
import pytest
from pydantic import ValidationError

from qsmiron.errors import InputError
from qsmiron.recon.phase import PHASE_SCALINGS, SCALING_SETTING, phase_to_radians, wrap_to_pi


@pytest.fixture
def true_phase():
    rng = np.random.default_rng(1)
    return rng.uniform(-np.pi, np.pi, size=(24, 20, 16, 2))


def circular_error(a, b):
    return np.abs(np.angle(np.exp(1j * (np.asarray(a, float) - b))))


def test_radians_are_kept_and_wrapped_into_half_open_interval(true_phase):
    values = true_phase.copy()
    values[0, 0, 0, 0] = np.pi
    phase, info = phase_to_radians(values)
    assert info["method"] == "radians"
    assert phase.dtype == np.float32
    assert phase.min() >= -np.pi and phase.max() < np.pi
    assert circular_error(phase, values).max() < 1e-6


def test_radians_in_zero_to_two_pi_map_onto_same_angles(true_phase):
    phase, info = phase_to_radians(np.mod(true_phase, 2 * np.pi))
    assert info["method"] == "radians" and info["range"] == "[0, 2*pi]"
    assert circular_error(phase, true_phase).max() < 1e-6


def test_siemens_signed_levels_minus4096_to_4094_give_radians_within_one_level(true_phase):
    stored = np.clip(2 * np.round(true_phase / np.pi * 2048), -4096, 4094)
    phase, info = phase_to_radians(stored)
    assert info["method"] == "levels" and info["levels"] == 4096 and info["step"] == 2
    assert info["signed"]
    assert circular_error(phase, true_phase).max() <= np.pi / 2048 + 1e-6
    # zero stays zero
    assert phase_to_radians(np.r_[stored.ravel(), 0.0])[0][-1] == 0.0


def test_unsigned_12bit_levels_put_the_middle_level_at_zero(true_phase):
    stored = np.clip(np.round((true_phase + np.pi) / (2 * np.pi) * 4096), 0, 4095)
    phase, info = phase_to_radians(stored.astype(np.uint16))
    assert info["levels"] == 4096 and not info["signed"]
    assert circular_error(phase, true_phase).max() <= np.pi / 2048 + 1e-6


def test_12bit_levels_stored_as_scaled_floats_are_detected(true_phase):
    # Like the real scan: 4096 levels, half-integers times an arbitrary slope.
    q = 1.7946923e-6
    stored = ((np.floor((true_phase + np.pi) / (2 * np.pi) * 4096) - 2047.5) * q).astype(np.float32)
    phase, info = phase_to_radians(stored)
    assert info["method"] == "levels" and info["levels"] == 4096
    assert info["step"] == pytest.approx(q, rel=1e-3)
    assert circular_error(phase, true_phase).max() <= 2 * np.pi / 4096 + 1e-5


def test_forced_integer_scaling_skips_the_radian_test():
    levels = np.arange(-2048, 2048, dtype=float).reshape(16, 16, 16)
    phase, info = phase_to_radians(levels, scaling="integer")
    assert info["levels"] == 4096
    assert np.allclose(phase, levels * np.pi / 2048, atol=1e-6)


@pytest.mark.parametrize("values, reason", [
    (np.random.default_rng(0).rayleigh(100.0, (16, 16, 16)), "neither radians"),
    (np.random.default_rng(0).uniform(-0.5, 0.5, (16, 16, 16)), "neither radians"),
    (np.full((8, 8, 8), 3.0), "neither radians"),
])
def test_phase_that_is_neither_radians_nor_levels_is_rejected(values, reason):
    with pytest.raises(InputError, match=reason) as caught:
        phase_to_radians(values)
    assert caught.value.path is None


def test_nan_phase_is_rejected():
    values = np.zeros((4, 4, 4))
    values[1, 2, 3] = np.nan
    with pytest.raises(InputError, match="NaN"):
        phase_to_radians(values)


def test_forced_radians_outside_the_circle_is_rejected():
    with pytest.raises(InputError, match="not in radians"):
        phase_to_radians(np.linspace(-10, 10, 512), scaling="radians")


def test_wrap_to_pi_folds_any_angle():
    angles = np.linspace(-20, 20, 1001)
    wrapped = wrap_to_pi(angles)
    assert wrapped.min() >= -np.pi and wrapped.max() < np.pi
    assert circular_error(wrapped, angles).max() < 1e-5


def test_whole_milliradians_are_divided_by_1000_not_read_as_8192_levels(true_phase):
    """Philips (after RescaleSlope/Intercept) and GE store -3142..3142: 6285 levels, which the
    power-of-two test alone would take for 8192 per turn (a 23 % scale error)."""
    stored = np.round(true_phase * 1000)
    phase, info = phase_to_radians(stored)
    assert info["method"] == "milliradians"
    assert circular_error(phase, true_phase).max() <= 0.5e-3 + 1e-6


def test_forced_milliradians_take_a_phase_that_covers_a_third_of_the_circle(true_phase):
    """Milliradians of a weak field (+-1 rad, 2001 values) look like 2048 vendor levels, a
    scale error of pi; the setting reads them right."""
    stored = np.round(true_phase / np.pi * 1000)
    _, detected = phase_to_radians(stored)
    assert detected["method"] == "levels" and detected["levels"] == 2048
    phase, info = phase_to_radians(stored, scaling="milliradians")
    assert info["method"] == "milliradians"
    assert circular_error(phase, true_phase / np.pi).max() <= 0.5e-3 + 1e-6


def test_forced_milliradians_beyond_1000_pi_are_rejected_naming_the_setting():
    with pytest.raises(InputError, match=f'not in milliradians; set {SCALING_SETTING} = "auto"'):
        phase_to_radians(np.arange(-4096, 4096, dtype=float), scaling="milliradians")


def test_forced_integer_scaling_skips_the_milliradian_test(true_phase):
    _, info = phase_to_radians(np.round(true_phase * 1000), scaling="integer")
    assert info["method"] == "levels" and info["levels"] == 8192


def test_the_setting_named_in_the_errors_is_the_generated_key_and_takes_every_scaling():
    """``SCALING_SETTING`` is where the declared method's parameter lives in the configuration."""
    from qsmiron.config import QsmironConfig

    stage, method, parameter = SCALING_SETTING.split(".")[1:]
    for scaling in PHASE_SCALINGS:
        config = QsmironConfig.model_validate({"recon": {stage: {method: {parameter: scaling}}}})
        assert getattr(getattr(config.recon, stage), method).scaling == scaling
    with pytest.raises(ValidationError, match=SCALING_SETTING.replace(".", r"\.")):
        QsmironConfig.model_validate({"recon": {stage: {method: {parameter: "degrees"}}}})


@pytest.mark.parametrize("stored, scaling", [
    (np.array([-3.0, -1.0, 0.0, 0.5, 3.1], np.float32), "radians"),
    (np.array([-3141, -1000, 0, 500, 3100], np.int16), "milliradians"),
    (np.arange(-4096, 4096, 2).astype(np.int16), "integer"),
    (np.arange(0, 4096).astype(np.uint16), "integer"),
])
def test_negate_reverses_the_phase_of_every_scaling(stored, scaling):
    from qsmiron.recon.phase import phase_to_radians, wrap_to_pi

    plain, _ = phase_to_radians(stored, scaling=scaling)
    reversed_, info = phase_to_radians(stored, scaling=scaling, negate=True)
    assert info["negated"] is True
    assert np.abs(wrap_to_pi(reversed_ + plain)).max() < 1e-6
    assert reversed_.min() >= -np.pi and reversed_.max() < np.pi
