"""Dephased voxels found by their magnitude's decay: fast decay flagged, iron-rich tissue and
noisy dark tissue not, and the echo fit uses the rule only when its chi-square test is weak."""

import numpy as np

from qsmiron.recon.dephasing import dephased_voxels
from qsmiron.recon.echofit import fit_field

TE2 = (0.005, 0.020)


def _two_echo_scan(sigma=0.002, seed=0):
    rng = np.random.default_rng(seed)
    shape = (30, 30, 20)
    mask = np.zeros(shape, bool)
    mask[2:28, 2:28, 2:18] = True
    rate = np.full(shape, 20.0)
    dephased = np.zeros(shape, bool)
    dephased[5:9, 5:9, 5:9] = True
    iron = np.zeros(shape, bool)
    iron[15:19, 15:19, 5:9] = True
    dark = np.zeros(shape, bool)
    dark[5:9, 18:22, 10:14] = True
    rate[dephased] = 120.0                   # six times the tissue's: the field's spread inside
    rate[iron] = 60.0                        # three times: a pallidum
    m0 = np.where(dark, 0.01, 1.0)           # SNR 5 at the first echo
    rate[dark] = 40.0
    te = np.asarray(TE2)
    clean = m0[..., None] * np.exp(-rate[..., None] * te) * np.exp(2j * np.pi * 5.0 * te)
    noise = sigma * (rng.standard_normal(clean.shape) + 1j * rng.standard_normal(clean.shape))
    signal = clean + noise
    return np.abs(signal).astype(np.float32), mask, dephased, iron, dark, np.angle(signal).astype(np.float32)


def test_fast_decay_is_flagged_and_iron_rich_or_noisy_dark_tissue_is_not():
    magnitude, mask, dephased, iron, dark, _ = _two_echo_scan()
    flagged = dephased_voxels(magnitude, mask, TE2, noise_sigma=0.002)
    assert flagged[dephased].all()
    assert not flagged[iron].any() and not flagged[dark].any()
    assert flagged.sum() == dephased.sum()


def test_the_echo_fit_applies_the_rule_only_when_its_chi_square_test_is_weak():
    magnitude, mask, dephased, _, _, phase = _two_echo_scan()
    two = fit_field(phase, magnitude, mask, TE2, offset="none")
    assert two.info["dof"] == 1 and two.info["dephased_voxels"] == int(dephased.sum())
    assert two.misfit[dephased].all()
    te5 = (0.005, 0.010, 0.015, 0.020, 0.025)
    five = fit_field((2 * np.pi * 5.0 * np.asarray(te5) * np.ones(mask.shape + (5,))).astype(np.float32),
                     np.repeat(magnitude[..., :1], 5, axis=-1), mask, te5, offset="none")
    assert "dephased_voxels" not in five.info
