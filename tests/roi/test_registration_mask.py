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
