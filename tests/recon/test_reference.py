"""Referencing: whole-brain mean by default; CSF of the lateral ventricles or a user mask."""

import numpy as np
import pytest
from scipy import ndimage

from qsmiron.errors import InputError
from qsmiron.recon.reference import reference_offsets, reference_susceptibility, ventricle_csf_mask


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


def test_csf_reference_is_named_and_reports_the_region_size():
    mask = np.ones((6, 6, 6), bool)
    chi = np.full(mask.shape, 0.05, np.float32)
    csf = np.zeros_like(mask)
    csf[2:4, 2:4, 2:4] = True
    chi[csf] = -0.01
    out, info = reference_susceptibility(chi, mask, method="csf", reference_mask=csf,
                                         voxel_size_mm=(1.0, 1.0, 2.0))
    assert info["region"] == "CSF of the lateral ventricles"
    assert info["offset_ppm"] == pytest.approx(-0.01) and info["n_voxels"] == 8
    assert info["volume_ml"] == pytest.approx(0.016)
    assert out[0, 0, 0] == pytest.approx(0.06)
    with pytest.raises(ValueError, match="'csf' needs a reference_mask"):
        reference_susceptibility(chi, mask, method="csf")


def test_offsets_carry_values_under_each_reference_as_referencing_would():
    rng = np.random.default_rng(1)
    mask = np.zeros((12, 12, 12), bool)
    mask[1:11, 1:11, 1:11] = True
    chi = rng.normal(0.02, 0.05, mask.shape).astype(np.float32)
    csf = np.zeros_like(mask)
    csf[4:7, 4:7, 4:7] = True
    user = np.zeros_like(mask)
    user[:, :, :3] = True  # partly outside the brain: only the inside counts
    region = np.zeros_like(mask)
    region[7:10, 2:5, 5:9] = True
    offsets = reference_offsets(chi, mask, {"whole_brain": None, "csf": csf, "user": user},
                                voxel_size_mm=(1, 1, 1))
    for name, method, ref in (("whole_brain", "mean", None), ("csf", "csf", csf), ("user", "mask", user)):
        referenced, info = reference_susceptibility(chi, mask, method=method, reference_mask=ref)
        assert offsets[name]["offset_ppm"] == pytest.approx(info["offset_ppm"], abs=1e-7)
        assert offsets[name]["n_voxels"] == info["n_voxels"]
        expected = float(chi[region].mean()) - offsets[name]["offset_ppm"]
        assert referenced[region].mean() == pytest.approx(expected, abs=1e-6)
    assert offsets["user"]["n_voxels"] == 10 * 10 * 2
    assert reference_offsets(chi, mask, {"none": ~mask})["none"]["n_voxels"] == 0


def _ventricle_scene():
    """A 40^3 brain with two ellipsoidal ventricles (R2* 3 s^-1, bright), tissue (R2* 20 s^-1),
    a vessel (R2* 40 s^-1, dark) running through the left ventricle, and a prior that is the
    true ventricles dilated by two voxels (registration error)."""
    shape = (40, 40, 40)
    x, y, z = np.meshgrid(*[np.arange(n, dtype=float) for n in shape], indexing="ij")
    mask = (x - 19.5) ** 2 + (y - 19.5) ** 2 + (z - 19.5) ** 2 < 18 ** 2
    ventricles = np.zeros(shape, bool)
    for cx in (13.0, 26.0):
        ventricles |= ((x - cx) / 4) ** 2 + ((y - 19.5) / 9) ** 2 + ((z - 19.5) / 5) ** 2 <= 1
    vessel = (np.abs(x - 13) <= 1) & (np.abs(z - 19.5) <= 1)
    rng = np.random.default_rng(3)
    r2star = np.where(ventricles, 3.0, 20.0) + rng.normal(0, 0.5, shape)
    magnitude = np.where(ventricles, 200.0, 100.0) + rng.normal(0, 3.0, shape)
    r2star[vessel & ventricles] = 40.0
    magnitude[vessel & ventricles] = 50.0
    prior = ndimage.binary_dilation(ventricles, iterations=2)
    return mask, ventricles, vessel, prior, r2star, magnitude


def test_ventricle_csf_mask_keeps_the_csf_core_and_drops_tissue_vessels_and_walls():
    mask, ventricles, vessel, prior, r2star, magnitude = _ventricle_scene()
    csf, info = ventricle_csf_mask(prior, mask, (1.0, 1.0, 1.0), r2star_per_s=r2star,
                                   magnitude=magnitude)
    assert not (csf & ~ventricles).any()          # no tissue from the misregistered prior
    assert not (csf & vessel).any()               # no vessel
    walls = ventricles & ~ndimage.binary_erosion(ventricles)
    assert not (csf & walls).any()                # eroded against partial volume
    core = ndimage.binary_erosion(ventricles & ~vessel)
    assert csf.sum() >= 0.8 * core.sum()         # but most of the CSF core is kept
    assert info["n_components"] == 2 and info["r2star_threshold_per_s"] == pytest.approx(10, abs=0.5)
    steps = info["voxels_after_step"]
    assert steps["prior_in_mask"] > steps["low_r2star"] >= steps["consistent_magnitude"] > steps["eroded"]
    assert info["volume_ml"] == pytest.approx(csf.sum() / 1000.0)


def test_ventricle_csf_mask_that_comes_out_empty_is_an_input_error_naming_the_step():
    mask, ventricles, _, _, r2star, magnitude = _ventricle_scene()
    misplaced = np.zeros_like(mask)
    misplaced[18:22, 2:6, 18:22] = True  # a prior over tissue only
    with pytest.raises(InputError, match="ventricle CSF mask is empty.*low_r2star"):
        ventricle_csf_mask(misplaced, mask, (1.0, 1.0, 1.0), r2star_per_s=r2star, magnitude=magnitude)
