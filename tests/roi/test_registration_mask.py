"""Which brain mask prepares the subject's magnitude for registration to a brain-extracted template."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from qsmiron.roi.subject import subject_brain_mask


def _ball(shape, radius_vox: float) -> np.ndarray:
    grid = np.indices(shape) - (np.asarray(shape)[:, None, None, None] - 1) / 2.0
    return np.sqrt((grid ** 2).sum(0)) <= radius_vox


def test_auto_prefers_the_reconstructions_brain_mask_to_the_eroded_chi_support():
    """Background removal erodes the chi support; the brain before erosion is what matches the template."""
    shape, voxel = (64, 64, 64), (2.0, 2.0, 2.0)
    brain = _ball(shape, 28)
    support = ndimage.binary_erosion(brain, iterations=2)
    r2star_valid = brain.copy()
    r2star_valid[30:34, 30:34, 30:34] = False  # a fit that failed inside (a dark vein): filled
    magnitude = np.where(brain, 1000.0, 5.0)[..., None].repeat(2, axis=-1)
    chosen, source = subject_brain_mask(magnitude, voxel, chi_support=support, given=None, mode="auto",
                                        brain_hint=r2star_valid)
    assert source.startswith("brain mask of the reconstruction")
    assert np.array_equal(chosen, brain)
    assert chosen.sum() / support.sum() > 1.2  # what the support alone would have lost


def test_without_a_brain_mask_auto_grows_the_support_back_to_the_magnitudes_brain_but_not_to_a_scalp():
    shape, voxel = (64, 64, 64), (2.0, 2.0, 2.0)
    brain = _ball(shape, 24)
    support = ndimage.binary_erosion(brain, iterations=2)  # 0.77 of the brain
    magnitude = np.where(brain, 1000.0, 5.0)
    chosen, source = subject_brain_mask(magnitude, voxel, chi_support=support, given=None, mode="auto")
    assert source.startswith("brain mask of the magnitude")
    assert (chosen ^ brain).sum() < 1e-3 * brain.sum()  # the brain, up to the mask's 2 mm opening
    # A head: the scalp, 4 voxels out, is as bright as the brain and joined to it.
    head = _ball(shape, 31)
    magnitude = np.where(brain | (head & ~_ball(shape, 27)), 1000.0, 5.0)
    magnitude[30:34, 30:34, :] = 1000.0
    chosen, source = subject_brain_mask(magnitude, voxel, chi_support=support, given=None, mode="auto")
    assert source.startswith("support of the chi map") and np.array_equal(chosen, support)


def test_chi_mode_and_a_given_mask_ignore_the_magnitude():
    shape, voxel = (64, 64, 64), (2.0, 2.0, 2.0)
    brain = _ball(shape, 28)
    support = ndimage.binary_erosion(brain, iterations=2)
    magnitude = np.where(brain, 1000.0, 5.0)
    chosen, source = subject_brain_mask(magnitude, voxel, chi_support=support, given=None, mode="chi",
                                        brain_hint=brain)
    assert source.startswith("support of the chi map") and np.array_equal(chosen, support)
    given = _ball(shape, 20)
    chosen, source = subject_brain_mask(magnitude, voxel, chi_support=support, given=given, mode="auto")
    assert source == "given mask" and np.array_equal(chosen, given)
    chosen, source = subject_brain_mask(magnitude, voxel, chi_support=support, given=given, mode="auto",
                                        brain_hint=brain)  # a measurement mask is eroded too: the brain wins
    assert source.startswith("brain mask of the reconstruction") and np.array_equal(chosen, brain)


def test_a_given_measurement_mask_grows_back_to_the_magnitudes_brain_as_the_support_does():
    """``qsmiron roi --mask`` takes the reconstruction's (eroded) mask: registering the brain cut
    to it pulls the template's edge inwards, so the magnitude's brain around it is used."""
    shape, voxel = (64, 64, 64), (2.0, 2.0, 2.0)
    brain = _ball(shape, 24)
    given = ndimage.binary_erosion(brain, iterations=2)
    magnitude = np.where(brain, 1000.0, 5.0)
    chosen, source = subject_brain_mask(magnitude, voxel, chi_support=given, given=given, mode="auto")
    assert source.startswith("brain mask of the magnitude (holds the given mask")
    assert (chosen ^ brain).sum() < 1e-3 * brain.sum()


def _images_with_a_scalp(tmp_path):
    """A subject whose magnitude brain cannot be told from its scalp, with its eroded QSM mask as chi's
    support and the total field map non-zero on the whole brain, as a 2-echo reconstruction writes them."""
    from qsmiron.io.nifti import save_nifti
    from qsmiron.roi.subject import load_inputs

    shape, affine = (64, 64, 64), np.diag([2.0, 2.0, 2.0, 1.0])
    brain = _ball(shape, 24)
    support = ndimage.binary_erosion(brain, iterations=2)
    head = _ball(shape, 31)
    magnitude = np.where(brain | (head & ~_ball(shape, 27)), 1000.0, 5.0)
    magnitude[30:34, 30:34, :] = 1000.0
    paths = {name: tmp_path / f"{name}.nii.gz" for name in ("chi", "mag", "field")}
    save_nifti(paths["chi"], np.where(support, 0.01, 0.0).astype(np.float32), affine)
    save_nifti(paths["mag"], magnitude.astype(np.float32), affine)
    save_nifti(paths["field"], np.where(brain, 3.5, 0.0).astype(np.float32), affine)  # Hz
    return load_inputs(paths["chi"], paths["mag"]), paths, brain


def test_without_r2star_the_brain_before_erosion_comes_from_the_given_brain_mask(tmp_path):
    from qsmiron.roi.api import _brain_hint
    from qsmiron.roi.subject import load_brain_extent

    images, paths, brain = _images_with_a_scalp(tmp_path)
    chosen, source = subject_brain_mask(images.magnitude, images.voxel_size_mm, chi_support=images.chi_support,
                                        given=None, mode="auto", **_brain_hint(images))
    assert source.startswith("support of the chi map")  # before: the eroded support, 0.77 of the brain
    images = load_brain_extent(images, paths["field"], paths["chi"])
    chosen, source = subject_brain_mask(images.magnitude, images.voxel_size_mm, chi_support=images.chi_support,
                                        given=None, mode="auto", **_brain_hint(images))
    assert source == "brain mask of the reconstruction (the given brain mask with the chi mask, holes filled)"
    assert np.array_equal(chosen, brain)
    images.r2star_valid = images.chi_support  # R2*, when there is one, keeps its precedence
    assert _brain_hint(images)["brain_hint"] is images.r2star_valid


def test_an_empty_brain_mask_or_one_on_another_grid_is_one_line_naming_the_file(tmp_path):
    import pytest

    from qsmiron.errors import InputError
    from qsmiron.io.nifti import save_nifti
    from qsmiron.roi.subject import load_brain_extent

    images, paths, _ = _images_with_a_scalp(tmp_path)
    empty, other = tmp_path / "empty.nii.gz", tmp_path / "other.nii.gz"
    save_nifti(empty, np.zeros((64, 64, 64), np.float32), np.diag([2.0, 2.0, 2.0, 1.0]))
    save_nifti(other, np.ones((32, 32, 32), np.float32), np.diag([4.0, 4.0, 4.0, 1.0]))
    with pytest.raises(InputError, match="brain mask is empty") as raised:
        load_brain_extent(images, empty, paths["chi"])
    assert "empty.nii.gz" in raised.value.one_line()
    with pytest.raises(InputError, match="not on the grid of the chi map") as raised:
        load_brain_extent(images, other, paths["chi"])
    assert "other.nii.gz" in raised.value.one_line()
