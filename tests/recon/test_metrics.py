"""Challenge metrics: demeaned NRMSE, XSIM, HFEN on cases with known answers."""

import numpy as np
import pytest

from qsmiron.recon.metrics import hfen, nrmse, xsim


def test_nrmse_ignores_offsets_and_scales_with_error():
    rng = np.random.default_rng(0)
    mask = np.ones((12, 12, 12), bool)
    ref = rng.standard_normal(mask.shape)
    assert nrmse(ref + 5.0, ref, mask) == pytest.approx(0.0, abs=1e-9)
    assert nrmse(np.zeros_like(ref), ref, mask) == pytest.approx(100.0)
    assert nrmse(1.5 * (ref - ref.mean()), ref, mask) == pytest.approx(50.0)


def test_xsim_is_one_for_identical_maps_and_drops_with_noise():
    rng = np.random.default_rng(1)
    mask = np.zeros((20, 20, 20), bool)
    mask[3:17, 3:17, 3:17] = True
    ref = 0.1 * rng.standard_normal(mask.shape)
    assert xsim(ref, ref, mask) == pytest.approx(1.0)
    assert xsim(ref + 0.1 * rng.standard_normal(mask.shape), ref, mask) < 0.8


def test_hfen_is_zero_for_identical_maps_and_positive_otherwise():
    rng = np.random.default_rng(2)
    mask = np.ones((16, 16, 16), bool)
    ref = rng.standard_normal(mask.shape)
    assert hfen(ref, ref, mask) == pytest.approx(0.0, abs=1e-9)
    assert hfen(ref + 0.5 * rng.standard_normal(mask.shape), ref, mask) > 10
