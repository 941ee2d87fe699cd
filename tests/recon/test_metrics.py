"""Challenge metrics: demeaned NRMSE, XSIM, HFEN on cases with known answers."""

import numpy as np
import pytest

from qsmiron.recon.metrics import hfen, nrmse, regional_agreement, xsim


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


def _two_regions():
    """Truth 0 / 0.1 / 0.2 ppm in the background and regions 1 and 2; the estimate reads region 2
    0.03 ppm high on the half of it that lies in x < 10."""
    labels = np.zeros((20, 10, 10), int)
    labels[2:6, 2:8, 2:8] = 1
    labels[8:12, 2:8, 2:8] = 2
    truth = np.where(labels == 1, 0.1, np.where(labels == 2, 0.2, 0.0))
    estimate = truth.copy()
    estimate[8:10, 2:8, 2:8] += 0.03
    return labels, truth, estimate


def test_regional_agreement_means_errors_and_slope_match_a_hand_computation():
    labels, truth, estimate = _two_regions()
    mask = np.ones(labels.shape, bool)
    agreement = regional_agreement(estimate, truth, labels, mask)
    assert agreement.labels == (1, 2)
    shift = 0.03 * 72 / 2000  # the estimate's extra mean over the mask, ppm
    expected_errors = np.array([-shift, 0.015 - shift]) * 1e3
    np.testing.assert_allclose([agreement.error_of(1), agreement.error_of(2)], expected_errors, atol=1e-9)
    assert agreement.mean_abs_error_ppb == pytest.approx(np.mean(np.abs(expected_errors)))
    assert agreement.bias_ppb == pytest.approx(np.mean(expected_errors))
    assert agreement.slope == pytest.approx(1.15)  # (0.2 + 0.015 - 0.1) / (0.2 - 0.1)


def test_regional_agreement_leaves_out_regions_below_the_coverage_asked():
    labels, truth, estimate = _two_regions()
    mask = np.ones(labels.shape, bool)
    mask[10:] = False  # half of region 2 outside the mask
    partial = regional_agreement(estimate, truth, labels, mask)
    assert partial.labels == (1, 2)
    covered = regional_agreement(estimate, truth, labels, mask, min_coverage=0.9)
    assert covered.labels == (1,)
    assert covered.error_of(1) == pytest.approx(partial.error_of(1))
    assert regional_agreement(estimate, truth, labels, mask, min_coverage=0.5).labels == (1, 2)
