"""Brain mask from magnitude and its refinement by phase quality, on phantoms with known truth."""

import numpy as np
import pytest

from qsmiron.recon.mask import (MASK_METHODS, METHODS, brain_mask, ellipsoid, magnitude_mask,
                               refine_mask_by_phase_quality, restrict_to_template_brain)


def head(shape=(48, 48, 40), voxel=(1.0, 1.0, 1.0), snr=20.0, seed=0):
    """A 'brain' ellipsoid, a dark skull shell, a bright scalp shell, Rayleigh background."""
    rng = np.random.default_rng(seed)
    axes = [(np.arange(n) - (n - 1) / 2) * d for n, d in zip(shape, voxel)]
    x, y, z = np.meshgrid(*axes, indexing="ij")
    r = np.sqrt((x / 16) ** 2 + (y / 19) ** 2 + (z / 15) ** 2)
    brain = r <= 1
    skull = (r > 1) & (r <= 1.2)
    scalp = (r > 1.2) & (r <= 1.35)
    clean = np.where(brain, 1.0 - 0.3 * (np.abs(x) < 4), 0.0) + np.where(scalp, 1.2, 0.0) \
        + np.where(skull, 0.02, 0.0)
    sigma = 1.0 / snr
    noisy = np.abs(clean + sigma * (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)))
    return noisy.astype(np.float32), brain


@pytest.mark.parametrize("voxel", [(1.0, 1.0, 1.0), (0.8, 0.8, 1.6)])
def test_brain_mask_separates_brain_from_scalp_with_dice_above_0_95(voxel):
    shape = tuple(int(round(n / (v / 1.0))) for n, v in zip((48, 48, 40), voxel))
    magnitude, brain = head(shape, voxel)
    four_d = np.stack([magnitude, 0.8 * magnitude], axis=-1)
    mask = brain_mask(four_d, voxel)
    dice = 2 * np.sum(mask & brain) / (mask.sum() + brain.sum())
    assert dice > 0.95


def test_brain_mask_of_an_all_tissue_crop_keeps_nearly_everything():
    rng = np.random.default_rng(2)
    tissue = 0.7 + 0.3 * (rng.random((30, 30, 20)) > 0.5)  # grey/white texture, no background
    mask = brain_mask(tissue.astype(np.float32), (1.0, 1.0, 1.0))
    assert mask.mean() > 0.98


def test_dark_hole_inside_the_brain_is_filled():
    magnitude, brain = head()
    magnitude[20:26, 20:26, 18:22] = 0.0  # a dark vein / haemorrhage inside
    mask = brain_mask(magnitude, (1.0, 1.0, 1.0))
    assert mask[22, 22, 20]


def test_ellipsoid_structuring_element_respects_anisotropic_voxels():
    ball = ellipsoid(2.0, (1.0, 1.0, 2.0))
    assert ball.shape == (5, 5, 3)
    assert ball[2, 2, 0] and ball[0, 2, 1] and not ball[0, 0, 0]


def test_refinement_peels_noisy_edge_but_keeps_noisy_interior():
    shape = (40, 40, 40)
    axes = [np.arange(n) - 19.5 for n in shape]
    x, y, z = np.meshgrid(*axes, indexing="ij")
    r = np.sqrt(x ** 2 + y ** 2 + z ** 2)
    mask = r < 16
    noise = np.where(mask, 1.0, 0.0)
    noise[(r >= 13) & mask] = 10.0            # unreliable outer shell
    noise[(r < 3)] = 10.0                     # unreliable core (e.g. a vein): interior
    refined, info = refine_mask_by_phase_quality(mask, (1, 1, 1), noise_hz=noise)
    assert not refined[(r >= 13.5) & mask].any()
    assert refined[r < 12].all()
    assert info["removed_voxels"] == mask.sum() - refined.sum()


@pytest.mark.parametrize("voxel", [(1.0, 1.0, 1.0), (1.05, 1.05, 1.2)])
def test_the_edge_erosion_peels_one_voxel_layer_and_keeps_the_field_of_views_edge(voxel):
    mask = np.zeros((30, 30, 12), bool)
    mask[5:25, 5:25, 0:8] = True                # a slab cut by the z = 0 face
    quality = np.where(mask, 0.9, 0.0)          # no unreliable voxel: only the erosion acts
    kept, info = refine_mask_by_phase_quality(mask, voxel, quality=quality, opening_mm=0.0, edge_erosion_mm=0.0)
    np.testing.assert_array_equal(kept, mask)
    eroded, info = refine_mask_by_phase_quality(mask, voxel, quality=quality, opening_mm=0.0, edge_erosion_mm=1.0)
    expected = np.zeros_like(mask)
    expected[6:24, 6:24, 0:7] = True
    np.testing.assert_array_equal(eroded, expected)
    assert info["edge_erosion_mm"] == 1.0 and info["removed_voxels"] == mask.sum() - expected.sum()
    assert info["edge_eroded_voxels"] == info["removed_voxels"]


def test_the_edge_erosion_leaves_2_mm_voxels_whose_centres_lie_1_mm_deep_and_says_so():
    mask = np.zeros((20, 20, 20), bool)
    mask[4:16, 4:16, 4:16] = True
    quality = np.where(mask, 0.9, 0.0)
    refined, info = refine_mask_by_phase_quality(mask, (2.0, 2.0, 2.0), quality=quality, opening_mm=0.0)
    np.testing.assert_array_equal(refined, mask)
    assert info["edge_erosion_mm"] == 1.0 and info["edge_eroded_voxels"] == 0


def test_refinement_uses_quality_and_residual_evidence():
    mask = np.zeros((30, 30, 30), bool)
    mask[5:25, 5:25, 5:25] = True
    quality = np.where(mask, 0.9, 0.0)
    quality[5:8] = 0.1                        # an incoherent face
    chi2 = np.where(mask, 1.0, np.nan)
    chi2[:, 22:25] = 50.0                     # phase not linear in TE on another face
    refined, info = refine_mask_by_phase_quality(mask, (1, 1, 1), quality=quality,
                                                 reduced_chi2=chi2, dof=3)
    assert not refined[5:8].any() and not refined[:, 22:25].any()
    assert refined[10:20, 10:20, 10:20].all()
    assert info["flagged_quality"] > 0 and info["flagged_residual"] > 0


def test_refinement_keeps_a_misfit_face_whose_implied_field_error_is_within_the_tolerance():
    mask = np.zeros((30, 30, 30), bool)
    mask[5:25, 5:25, 5:25] = True
    chi2 = np.where(mask, 1.0, np.nan)
    chi2[:, 22:25] = 50.0                     # significant misfit on two faces ...
    chi2[:, :, 5:8] = 50.0
    noise = np.where(mask, 0.01, 0.0)
    noise[:, :, 5:8] = 0.2                    # ... implying 0.07 and 1.4 Hz of field error
    refined, info = refine_mask_by_phase_quality(mask, (1, 1, 1), reduced_chi2=chi2, dof=3, noise_hz=noise,
                                                 noise_factor=100.0, misfit_tolerance_hz=0.5, edge_erosion_mm=0.0)
    assert refined[10:20, 22:25, 10:20].all() and not refined[10:20, 10:20, 5:8].any()
    assert info["flagged_residual"] == int((mask[:, :, 5:8]).sum())


def test_mask_methods_selectable_from_the_settings_are_the_automatic_one():
    assert MASK_METHODS == {"magnitude": magnitude_mask}
    assert [method.name for method in METHODS] == ["magnitude", "magnitude_template", "given"]


def test_restricting_to_a_shifted_template_brain_drops_the_neck_and_keeps_the_brain():
    """A head mask = brain ellipsoid + neck cylinder; the template brain is the ellipsoid shifted
    by 3 mm (an imperfect affine): with the 4 mm margin no brain is lost and the neck goes."""
    shape, voxel = (60, 60, 70), (2.0, 2.0, 2.0)
    x, y, z = np.meshgrid(*[(np.arange(n) - (n - 1) / 2) * d for n, d in zip(shape, voxel)], indexing="ij")
    brain = (x / 40) ** 2 + (y / 48) ** 2 + ((z - 20) / 36) ** 2 <= 1
    neck = (x / 25) ** 2 + (y / 25) ** 2 <= 1
    head = brain | (neck & (z < -5))
    template = ((x - 3) / 40) ** 2 + (y / 48) ** 2 + ((z - 20) / 36) ** 2 <= 1
    restricted, info = restrict_to_template_brain(head, template.astype(np.float32), voxel, margin_mm=4.0)
    assert (restricted & brain).sum() == brain.sum()
    assert (restricted & ~brain).sum() < 0.05 * brain.sum()
    assert info["volume_after_ml"] < info["volume_before_ml"] and info["outside_template_brain_before"] > 0.1
    with pytest.raises(ValueError, match="shape"):
        restrict_to_template_brain(head, template[:-1], voxel)
