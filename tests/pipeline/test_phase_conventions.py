"""Exports' phase conventions through the whole reconstruction, on qsm-forward's head: a bipolar
readout (the even echoes' phase shifted as gradient delays shift it) and a phase stored with the
opposite sign, against the head as simulated."""

import numpy as np
import pytest
from gre_phantom import FIELD_STRENGTH_T, TES, nrmse_percent, simulate_gre

from qsmiron.recon.chain import reconstruct_arrays
from qsmiron.recon.phase import wrap_to_pi
from qsmiron.recon.settings import ReconSettings

SHAPE, VOXEL_MM = (48, 48, 40), (1.0, 1.0, 1.0)
EVEN_ECHO_RAD, RAMP_RAD = 0.3, 2.0
"""The even echoes' extra phase at the grid's centre and its ramp across the readout (x) axis."""


@pytest.fixture(scope="module")
def acquisitions():
    sim = simulate_gre(SHAPE, VOXEL_MM)
    monopolar = sim["phase"].astype(np.float32) * np.float32(np.pi / 4096)
    x_mm = np.arange(SHAPE[0]) * VOXEL_MM[0]
    ramp = (EVEN_ECHO_RAD + RAMP_RAD * (x_mm - x_mm.mean()) / (SHAPE[0] * VOXEL_MM[0]))[:, None, None]
    bipolar = monopolar.copy()
    bipolar[..., 1::2] = wrap_to_pi(bipolar[..., 1::2] + ramp[..., None].astype(np.float32))
    return sim, monopolar, bipolar


def _recon(sim, phase, readout="odd_even_linear", negate=False):
    settings = ReconSettings()
    settings.readout.method = readout
    settings.phase.rescale.negate = negate
    # The surface layer's erosion removes the same voxels whatever the phase: left out, the
    # refinement's count is what the phase tests flag.
    settings.mask_refinement.phase_quality.edge_erosion_mm = 0.0
    result = reconstruct_arrays(sim["magnitude"], phase, VOXEL_MM, sim["b0"], TES, FIELD_STRENGTH_T,
                                settings=settings)
    region = result.mask & sim["brain"]
    return result, nrmse_percent(result.chi_ppm, sim["chi_brain"], region)


def _step(result, name):
    return next(step for step in result.steps if step.step == name)


def test_a_bipolar_readout_is_found_reported_and_corrected(acquisitions):
    """Uncorrected, the alternation reads as noise: the echo fit's noise estimate triples and the
    phase-quality refinement removes 1.8 times the voxels (measured 14.4 against 4.5, 1936 against
    1067); the map of this small head changes little because most of the error is a field linear
    in space, which background removal takes out (on the family heads of
    ``benchmarks/bench_bipolar.py`` it does not)."""
    sim, monopolar, bipolar = acquisitions
    reference, reference_nrmse = _recon(sim, monopolar)
    corrected, corrected_nrmse = _recon(sim, bipolar)
    uncorrected, _ = _recon(sim, bipolar, readout="none")
    assert _step(reference, "readout").notes["readout"] == "monopolar"
    assert reference.readout_info.polarity == "monopolar" and corrected.readout_info.polarity == "bipolar"
    assert uncorrected.readout_info.reason == "switched off"
    notes = _step(corrected, "readout").notes
    assert notes["readout"] == "bipolar" and _step(corrected, "readout").warnings
    assert notes["even_echo_phase_rad"] == pytest.approx(EVEN_ECHO_RAD, abs=0.02)
    assert notes["even_echo_gradient_rad_per_mm"][0] == pytest.approx(RAMP_RAD / SHAPE[0], rel=0.05)
    assert _step(uncorrected, "readout").notes == {"readout": "not checked", "reason": "switched off"}

    def noise(result):
        return _step(result, "echo_fit").notes["noise_sigma"]

    def removed(result):
        return _step(result, "mask_refinement").notes["removed_voxels"]

    # The total field: within 0.05 Hz of the monopolar one (measured 0.011 Hz at most), against
    # 1.2 Hz (median) to 3.6 Hz uncorrected.
    assert np.abs(corrected.field_hz - reference.field_hz)[reference.mask].max() < 0.05
    both = reference.mask & uncorrected.mask
    assert np.median(np.abs(uncorrected.field_hz - reference.field_hz)[both]) > 0.5
    assert noise(corrected) == pytest.approx(noise(reference), rel=0.02)
    assert removed(corrected) == pytest.approx(removed(reference), rel=0.02)
    assert noise(uncorrected) > 2 * noise(reference) and removed(uncorrected) > 1.5 * removed(reference)
    # The inversion's weight follows the field's inconsistency, so even this field's 0.01 Hz
    # moves the map's NRMSE by a few tenths (measured 27.9 and 27.6 %).
    assert corrected_nrmse == pytest.approx(reference_nrmse, abs=1.0)


def test_a_phase_stored_with_the_opposite_sign_inverts_the_map_until_negate_is_set(acquisitions):
    sim, monopolar, _ = acquisitions
    reference, _ = _recon(sim, monopolar)
    inverted, _ = _recon(sim, -monopolar)
    restored, _ = _recon(sim, -monopolar, negate=True)
    assert _step(restored, "phase").notes["negated"] is True
    assert np.array_equal(restored.chi_ppm, reference.chi_ppm)
    both = reference.mask & inverted.mask
    assert np.corrcoef(inverted.chi_ppm[both], reference.chi_ppm[both])[0, 1] < -0.9
