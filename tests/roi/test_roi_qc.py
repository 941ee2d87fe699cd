"""QC: the similarity score and its outlier flag, and the figures."""

import numpy as np
import pytest

from scipy import ndimage

from qsmiron.roi.qc import (atlas_overlay_png, axis_aligned_labels, normalised_mutual_information,
                            registration_metrics, registration_png, residual_shift)


def _brain():
    x, y, z = np.mgrid[-20:20, -24:24, -20:20]
    inside = (x / 18) ** 2 + (y / 22) ** 2 + (z / 18) ** 2 < 1
    texture = 1 + 0.5 * np.sin(x / 3.0) * np.cos(y / 4.0)
    return np.where(inside, texture, 0.0)


def test_nmi_is_2_for_identical_images_and_near_1_for_independent_noise():
    rng = np.random.default_rng(1)
    a = rng.normal(size=50_000)
    assert np.isclose(normalised_mutual_information(a, a), 2.0)
    # (H(A) + H(B)) / H(A, B) is 1 for independent images; a histogram estimate lies just above.
    assert 1.0 <= normalised_mutual_information(a, rng.normal(size=50_000)) < 1.02


def test_aligned_subject_passes_and_a_shifted_one_is_flagged(textured_brain):
    brain = textured_brain
    good = registration_metrics(brain, brain * 0.8 + 0.1 * (brain > 0), (2.0, 2.0, 2.0))
    assert not good["outlier"] and good["brain_dice"] == 1.0 and good["residual_shift_mm"] < 0.2
    bad = registration_metrics(brain, np.roll(brain, 12, axis=0), (2.0, 2.0, 2.0))
    assert bad["outlier"] and any("Dice" in r for r in bad["outlier_reasons"])


@pytest.fixture(scope="module")
def textured_brain():
    """A template-like brain on a 2 mm grid: an ellipsoid of smooth random structure, zero outside."""
    grid = np.indices((56, 64, 52)) - np.array([28, 32, 26])[:, None, None, None]
    inside = (grid[0] / 24) ** 2 + (grid[1] / 28) ** 2 + (grid[2] / 22) ** 2 <= 1
    texture = ndimage.gaussian_filter(np.random.default_rng(3).normal(size=inside.shape), 1.5)
    return np.where(inside, 2.0 + texture / texture.std(), 0.0)


def _moved(image, shift_vox, axis=0, rotation_deg=0.0):
    """``image`` shifted by ``shift_vox`` (linear interpolation, fractions allowed) or rotated about its centre."""
    if rotation_deg:
        return ndimage.rotate(image, rotation_deg, axes=(0, 1), reshape=False, order=1)
    shift = [0.0, 0.0, 0.0]
    shift[axis] = shift_vox
    return ndimage.shift(image, shift, order=1)


@pytest.mark.parametrize("shift_vox", [0.0, 0.75, 1.5, 2.25])
def test_residual_shift_finds_a_known_shift_whatever_the_contrast(textured_brain, shift_vox):
    """2 mm voxels: the block optimum refined by a parabola recovers a shift within 0.5 mm (a quarter
    voxel: the parabola is biased towards whole voxels), for the template's own contrast and for a noisy
    inverted one (T2*-like against a T1w template)."""
    rng = np.random.default_rng(4)
    moved = _moved(textured_brain, shift_vox, axis=1)
    inverted = np.where(moved > 0.5, 6.0 - moved + 0.6 * rng.normal(size=moved.shape), 0.0)
    for subject in (moved, inverted):
        found = residual_shift(textured_brain, subject, (2.0, 2.0, 2.0))
        assert found["shift_median_mm"] == pytest.approx(2.0 * shift_vox, abs=0.5)
        assert found["blocks"] >= 20


def test_a_low_contrast_aligned_subject_passes_and_a_high_contrast_shifted_one_is_flagged(textured_brain):
    """What the NMI threshold got wrong: an aligned subject with little contrast and much noise (a
    short-TE 3 mm scan) has a lower NMI than a crisp one 3 mm off; the residual shift tells them apart,
    and so it does for a 10 degree rotation."""
    rng = np.random.default_rng(5)
    spacing = (2.0, 2.0, 2.0)
    inside = textured_brain > 0
    faint = np.where(inside, 10.0 + 0.7 * textured_brain + rng.normal(size=inside.shape), 0.0)
    aligned = registration_metrics(textured_brain, faint, spacing)
    shifted = registration_metrics(textured_brain, _moved(textured_brain, 1.5, axis=2), spacing)
    rotated = registration_metrics(textured_brain, _moved(textured_brain, 0, rotation_deg=10.0), spacing)
    assert aligned["nmi"] < 1.04 < shifted["nmi"]  # 1.04: the real 3 mm scan's NMI, well registered
    assert not aligned["outlier"] and aligned["residual_shift_mm"] < 1.0
    for wrong in (shifted, rotated):
        assert wrong["outlier"] and wrong["brain_dice"] > 0.85  # Dice alone would pass them
        assert any("residual misalignment" in reason for reason in wrong["outlier_reasons"])


def test_qc_figures_are_pngs(tmp_path):
    brain = _brain()
    labels = np.zeros(brain.shape, int)
    labels[10:15, 20:26, 18:22] = 1
    labels[25:30, 20:26, 18:22] = 101
    affine = np.diag([-2.0, 2.0, 2.0, 1.0])  # stored right-to-left: shown left on the left
    atlas_overlay_png(brain * 0.1, labels, affine, tmp_path / "a.png")
    registration_png(brain, brain, np.eye(4), tmp_path / "r.png")
    for name in ("a.png", "r.png"):
        assert (tmp_path / name).read_bytes()[:4] == b"\x89PNG"


def test_labels_of_an_oblique_grid_are_boxed_and_aligned_once_where_the_world_has_them():
    """The outlines are drawn from one nearest-neighbour resampling of the labelled box."""
    labels = np.zeros((60, 60, 40), np.int32)
    labels[20:28, 30:36, 15:20] = 3
    labels[34:40, 30:36, 15:20] = 103
    angle = np.deg2rad(20.0)
    affine = np.eye(4)
    affine[:3, :3] = np.array([[1, 0, 0], [0, np.cos(angle), -np.sin(angle)],
                               [0, np.sin(angle), np.cos(angle)]]) @ np.diag([1.0, 1.0, 1.2])
    affine[:3, 3] = (-30.0, -30.0, -20.0)
    aligned, aligned_affine = axis_aligned_labels(labels, affine)
    assert np.allclose(aligned_affine[:3, :3], np.diag(np.diag(aligned_affine[:3, :3])))
    assert aligned.size < labels.size / 10
    for value in (3, 103):
        def centre(image, grid):
            return (grid @ np.append(np.argwhere(image == value).mean(0), 1.0))[:3]
        assert np.allclose(centre(aligned, aligned_affine), centre(labels, affine), atol=1.0)
        volume = (aligned == value).sum() * abs(np.linalg.det(aligned_affine[:3, :3]))
        assert volume == pytest.approx((labels == value).sum() * 1.2, rel=0.15)
