"""QC: the similarity score and its outlier flag, and the figures."""

import numpy as np
import pytest

from qsmiron.roi.qc import (atlas_overlay_png, axis_aligned_labels, normalised_mutual_information,
                            registration_metrics, registration_png)


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


def test_aligned_subject_passes_and_a_shifted_one_is_flagged():
    brain = _brain()
    good = registration_metrics(brain, brain * 0.8 + 0.1 * (brain > 0))
    assert not good["outlier"] and good["brain_dice"] == 1.0
    bad = registration_metrics(brain, np.roll(brain, 12, axis=0))
    assert bad["outlier"] and any("Dice" in r for r in bad["outlier_reasons"])


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
