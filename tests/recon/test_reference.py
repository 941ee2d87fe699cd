"""Referencing: whole-brain mean by default, a reference mask as an option."""

import numpy as np
import pytest

from qsmiron.recon.reference import reference_susceptibility


def test_whole_brain_reference_gives_zero_mean_and_records_the_offset():
    rng = np.random.default_rng(0)
    mask = np.zeros((10, 10, 10), bool)
    mask[2:8, 2:8, 2:8] = True
    chi = rng.standard_normal(mask.shape).astype(np.float32) + 0.3
    out, info = reference_susceptibility(chi, mask)
    assert abs(out[mask].mean()) < 1e-6
    assert np.all(out[~mask] == 0)
    assert info["offset_ppm"] == pytest.approx(chi[mask].mean(), abs=1e-6)
    assert info["region"] == "whole brain mask" and info["n_voxels"] == mask.sum()


def test_reference_mask_sets_its_mean_to_zero_and_keeps_differences():
    mask = np.ones((6, 6, 6), bool)
    chi = np.zeros(mask.shape, np.float32)
    chi[:3] = 0.1
    chi[3:] = -0.02  # "CSF"
    csf = np.zeros_like(mask)
    csf[3:] = True
    out, info = reference_susceptibility(chi, mask, method="mask", reference_mask=csf)
    assert out[csf].mean() == pytest.approx(0.0, abs=1e-7)
    assert out[0, 0, 0] == pytest.approx(0.12, abs=1e-6)
    assert info["offset_ppm"] == pytest.approx(-0.02, abs=1e-7)
    assert info["whole_brain_mean_ppm"] == pytest.approx(0.06, abs=1e-6)


def test_reference_mask_outside_the_brain_is_rejected():
    mask = np.zeros((4, 4, 4), bool)
    mask[:2] = True
    with pytest.raises(ValueError, match="no voxel inside"):
        reference_susceptibility(np.zeros((4, 4, 4)), mask, method="mask", reference_mask=~mask)
    with pytest.raises(ValueError, match="needs a reference_mask"):
        reference_susceptibility(np.zeros((4, 4, 4)), mask, method="mask")
