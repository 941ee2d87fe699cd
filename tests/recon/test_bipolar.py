"""The odd/even echo phase of a bipolar readout against a known one: found, removed, and not
invented where the readout was monopolar."""

import numpy as np
import pytest

from qsmiron.recon.bipolar import (DETECTION_RAD, estimate_odd_even_phase, odd_even_linear,
                                   remove_odd_even_phase)
from qsmiron.recon.phase import wrap_to_pi

VOXEL_MM = (1.0, 1.2, 1.5)
ECHO_TIMES_S = (0.004, 0.010, 0.016, 0.022, 0.028)
SHAPE = (56, 48, 40)


def _positions_mm():
    return np.meshgrid(*[np.arange(n) * dx for n, dx in zip(SHAPE, VOXEL_MM)], indexing="ij")


def _acquisition(even_phase_rad, *, noise=0.0, seed=0, curvature_rad=0.0):
    """A ball of tissue whose field (up to +-120 Hz, not linear in space) and initial phase wrap
    many times across it; ``even_phase_rad`` (X, Y, Z) added to the 2nd, 4th... echo;
    ``curvature_rad``: every run of three echoes' second difference (a phase growing as TE^2)."""
    x, y, z = _positions_mm()
    centre = [n * dx / 2 for n, dx in zip(SHAPE, VOXEL_MM)]
    r2 = sum((p - c) ** 2 for p, c in zip((x, y, z), centre))
    mask = r2 < 24.0 ** 2
    field_hz = 120.0 * np.sin(x / 9.0) * np.cos(y / 13.0) + 0.05 * r2 / 10.0
    initial = 2.0 * np.cos(z / 7.0)
    rng = np.random.default_rng(seed)
    magnitude = np.empty(SHAPE + (len(ECHO_TIMES_S),), np.float32)
    phase = np.empty_like(magnitude)
    for echo, te in enumerate(ECHO_TIMES_S):
        spacing = ECHO_TIMES_S[1] - ECHO_TIMES_S[0]
        bend = curvature_rad * ((te - ECHO_TIMES_S[0]) / spacing) ** 2 / 2
        signal = np.exp(-te / 0.04) * np.exp(1j * (initial + 2 * np.pi * field_hz * te + bend
                                                    + (even_phase_rad if echo % 2 else 0.0)))
        signal = signal + noise * (rng.standard_normal(SHAPE) + 1j * rng.standard_normal(SHAPE))
        magnitude[..., echo] = np.where(mask, np.abs(signal), 0.0)
        phase[..., echo] = np.angle(signal)
    return magnitude, phase, mask


def _linear(constant, gradient, centre):
    x, y, z = _positions_mm()
    return (constant + sum(g * (p - c) for g, p, c in zip(gradient, (x, y, z), centre))).astype(np.float32)


@pytest.mark.parametrize("noise", [0.0, 0.03])
def test_a_constant_plus_linear_even_echo_phase_is_recovered(noise):
    """0.4 rad plus ramps of 2.4 and 0.6 rad across the ball (readout and slice directions, as
    Li et al. measured them); the field wraps at every echo."""
    centre = [n * dx / 2 for n, dx in zip(SHAPE, VOXEL_MM)]
    truth = _linear(0.4, (0.05, 0.0, -0.0125), centre)
    magnitude, phase, mask = _acquisition(truth, noise=noise)
    model = estimate_odd_even_phase(magnitude, phase, mask, VOXEL_MM)
    found = model.map_rad(SHAPE, VOXEL_MM)
    tolerance = 2e-3 if noise == 0.0 else 1e-2
    assert np.abs(found - truth)[mask].max() < tolerance
    assert model.coherence > (0.99 if noise == 0.0 else 0.9)


def test_removing_it_gives_back_the_monopolar_phase():
    centre = [n * dx / 2 for n, dx in zip(SHAPE, VOXEL_MM)]
    truth = _linear(-0.7, (0.0, 0.03, 0.02), centre)
    monopolar, _ = _acquisition(0.0)[1], None
    magnitude, bipolar, mask = _acquisition(truth)
    corrected, info = odd_even_linear(magnitude, bipolar, mask, VOXEL_MM, ECHO_TIMES_S)
    assert info["readout"] == "bipolar" and info["warnings"]
    assert info["even_echo_phase_rad"] == pytest.approx(-0.7, abs=2e-3)
    error = wrap_to_pi(corrected - monopolar)[mask]
    assert np.abs(error).max() < 5e-3
    assert np.array_equal(corrected[..., 0::2], bipolar[..., 0::2])  # odd echoes as acquired


def test_a_monopolar_acquisition_is_left_as_it_is():
    magnitude, phase, mask = _acquisition(0.0, noise=0.03, seed=3)
    out, info = odd_even_linear(magnitude, phase, mask, VOXEL_MM, ECHO_TIMES_S)
    assert info["readout"] == "monopolar" and "warnings" not in info
    assert out is phase
    assert info["largest_rad"] < DETECTION_RAD / 5


def test_two_echoes_or_unequal_spacing_are_not_checked_and_say_why():
    magnitude, phase, mask = _acquisition(0.3)
    out, info = odd_even_linear(magnitude[..., :2], phase[..., :2], mask, VOXEL_MM, ECHO_TIMES_S[:2])
    assert info == {"readout": "not checked", "reason": "2 echoes; the odd/even phase needs 3"}
    out, info = odd_even_linear(magnitude, phase, mask, VOXEL_MM, (0.004, 0.010, 0.016, 0.024, 0.028))
    assert info["readout"] == "not checked" and info["reason"] == "echo spacing unequal"
    assert out is phase


def test_the_correction_wraps_into_minus_pi_to_pi():
    centre = [n * dx / 2 for n, dx in zip(SHAPE, VOXEL_MM)]
    model = estimate_odd_even_phase(*_acquisition(_linear(1.2, (0.08, 0.0, 0.0), centre)), VOXEL_MM)
    corrected = remove_odd_even_phase(np.full(SHAPE + (3,), 3.1, np.float32), model, VOXEL_MM)
    assert corrected.dtype == np.float32 and corrected.min() >= -np.pi and corrected.max() < np.pi


def test_huge_magnitudes_and_a_tiny_mask_are_handled():
    """Vendor float magnitudes reach 1e10: a product of four would overflow float32."""
    centre = [n * dx / 2 for n, dx in zip(SHAPE, VOXEL_MM)]
    truth = _linear(0.25, (0.02, 0.0, 0.0), centre)
    magnitude, phase, mask = _acquisition(truth)
    model = estimate_odd_even_phase(magnitude * np.float32(1e10), phase, mask, VOXEL_MM)
    assert np.abs(model.map_rad(SHAPE, VOXEL_MM) - truth)[mask].max() < 2e-3
    tiny = np.zeros(SHAPE, bool)
    tiny[20:25, 20:25, 20:25] = True
    out, info = odd_even_linear(magnitude, phase, tiny, VOXEL_MM, ECHO_TIMES_S)
    assert out is phase and info == {"readout": "not checked", "reason": "a mask of 125 voxels (needs 1000)"}


def test_a_phase_that_bends_with_echo_time_is_not_read_as_alternation():
    """A second difference of 0.3 rad common to every run (tissue compartments, fat): with equal
    weights five echoes would read a sixth of it as the even echoes' phase (0.05 rad, the
    detection level); the binomial weights cancel it."""
    magnitude, phase, mask = _acquisition(0.0, curvature_rad=0.3)
    _, info = odd_even_linear(magnitude, phase, mask, VOXEL_MM, ECHO_TIMES_S)
    assert info["readout"] == "monopolar" and info["largest_rad"] < 0.005
    centre = [n * dx / 2 for n, dx in zip(SHAPE, VOXEL_MM)]
    truth = _linear(0.4, (0.02, 0.0, 0.01), centre)
    model = estimate_odd_even_phase(*_acquisition(truth, curvature_rad=0.3), VOXEL_MM)
    assert np.abs(model.map_rad(SHAPE, VOXEL_MM) - truth)[mask].max() < 0.01
