"""The numba morphology of recon/morphology.py gives exactly scipy.ndimage's results.

``binary_opening`` (erosion and dilation stamping the element on edge voxels) claims the result of
``scipy.ndimage.binary_opening``, ``dilate`` that of ``scipy.ndimage.binary_dilation`` and
``filled_holes`` (one labelling pass) that of ``scipy.ndimage.binary_fill_holes``; all are
compared voxel for voxel on random masks (noise, blobs, thin shells) and structuring elements
(balls of several radii on isotropic and anisotropic grids, random symmetric elements, and an
asymmetric one, which falls back to scipy).
"""

import numpy as np
import pytest
from scipy import ndimage

from qsmiron.recon.morphology import (_ball_like, binary_opening, dilate, ellipsoid, erode_keeping_edges,
                                      filled_holes, surface_layer_element)


def random_masks(seed: int):
    rng = np.random.default_rng(seed)
    shape = tuple(int(n) for n in rng.integers(14, 26, 3))
    noise = rng.random(shape) < rng.uniform(0.2, 0.8)
    blobs = ndimage.gaussian_filter(rng.standard_normal(shape), rng.uniform(1.0, 2.5)) > 0
    shell = np.zeros(shape, bool)
    centre = np.array(shape) / 2
    distance = np.linalg.norm(np.indices(shape).T - centre, axis=-1).T
    shell[(distance > 4) & (distance < 5.5)] = True
    shell |= rng.random(shape) < 0.02
    return {"noise": noise, "blobs": blobs, "shell": shell}


def random_symmetric_element(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    half = rng.integers(1, 3, 3)
    element = rng.random(tuple(2 * half + 1)) < 0.5
    element = element | element[::-1, ::-1, ::-1]
    element[tuple(half)] = True
    return element


ELEMENTS = {
    "ball r1 iso": ellipsoid(1.0, (1.0, 1.0, 1.0)),
    "ball r2 iso": ellipsoid(2.0, (1.0, 1.0, 1.0)),
    "ball r2 aniso": ellipsoid(2.0, (0.8, 1.0, 2.0)),
    "ball r3 aniso": ellipsoid(3.0, (1.5, 1.5, 1.0)),
    "ball r4 aniso": ellipsoid(4.0, (1.0, 1.2, 2.5)),
    "random 1": random_symmetric_element(1),
    "random 2": random_symmetric_element(2),
    "asymmetric": np.pad(np.ones((2, 1, 1), bool), ((0, 1), (0, 0), (0, 0))),
}


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("element", sorted(ELEMENTS))
def test_binary_opening_equals_scipy_on_random_masks(seed, element):
    ball = ELEMENTS[element]
    for kind, mask in random_masks(seed).items():
        expected = ndimage.binary_opening(mask, structure=ball)
        np.testing.assert_array_equal(binary_opening(mask, ball), expected, err_msg=f"{kind}, {element}")


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("element", ["ball r2 aniso", "ball r3 aniso", "ball r4 aniso", "random 1"])
def test_dilate_equals_scipy_on_random_masks(seed, element):
    ball = ELEMENTS[element]
    for kind, mask in random_masks(seed).items():
        expected = ndimage.binary_dilation(mask, structure=ball)
        np.testing.assert_array_equal(dilate(mask, ball), expected, err_msg=f"{kind}, {element}")


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_filled_holes_equals_scipy_on_random_masks(seed):
    for kind, mask in random_masks(seed).items():
        np.testing.assert_array_equal(filled_holes(mask), ndimage.binary_fill_holes(mask), err_msg=kind)


def test_the_comparison_can_fail_an_opening_without_the_dilation_differs_from_scipy():
    mask = random_masks(0)["blobs"]
    ball = ELEMENTS["ball r2 iso"]
    assert not np.array_equal(ndimage.binary_erosion(mask, structure=ball), binary_opening(mask, ball))


@pytest.mark.parametrize("voxel", [(1.0, 1.0, 1.0), (0.8, 1.0, 2.0), (1.5, 0.7, 1.2)])
def test_every_ellipsoid_is_stamped_on_edges_and_a_ragged_element_goes_to_scipy(voxel):
    for radius in (1.0, 1.7, 2.0, 3.0, 4.0, 6.5):
        assert _ball_like(ellipsoid(radius, voxel)), (radius, voxel)
    ragged = np.ones((5, 5, 5), bool)
    ragged[2, 2, 0] = ragged[2, 2, 4] = ragged[2, 1, 0] = ragged[2, 3, 4] = False  # an axis tip missing
    assert not _ball_like(ragged)


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("element", ["ball r1 iso", "ball r2 aniso", "ball r4 aniso", "random 1"])
def test_erode_keeping_edges_equals_scipy_erosion_of_the_edge_replicated_mask(seed, element):
    ball = ELEMENTS[element]
    pad = [(n // 2, n // 2) for n in ball.shape]
    for kind, mask in random_masks(seed).items():
        padded = np.pad(mask, pad, mode="edge")
        expected = ndimage.binary_erosion(padded, structure=ball)[tuple(slice(p, p + n) for (p, _), n in
                                                                        zip(pad, mask.shape))]
        np.testing.assert_array_equal(erode_keeping_edges(mask, ball), expected, err_msg=f"{kind}, {element}")


def test_erosion_peels_a_surface_layer_but_not_where_the_object_meets_the_array_edge():
    mask = np.zeros((12, 12, 12), bool)
    mask[3:9, 3:9, 0:9] = True  # touches the z = 0 face
    eroded = erode_keeping_edges(mask, ellipsoid(1.0, (1.0, 1.0, 1.0)))
    assert eroded[4:8, 4:8, 0:8].all() and eroded.sum() == 4 * 4 * 8


@pytest.mark.parametrize("voxel, layers", [((1.0, 1.0, 1.0), (1, 1, 1)), ((1.0, 1.0, 1.2), (1, 1, 1)),
                                           ((1.05, 1.05, 3.0), (1, 1, 0)), ((1.0, 1.0, 2.0), (1, 1, 0)),
                                           ((0.5, 0.5, 1.5), (2, 2, 1))])
def test_the_surface_layer_removes_the_voxels_centred_within_the_depth_of_the_surface(voxel, layers):
    """A box eroded by the element loses, along each axis, the layers whose centres lie within
    1 mm of its surface: the k-th layer's centre is (k - 1/2) voxels deep."""
    element = surface_layer_element(1.0, voxel)
    assert _ball_like(element)
    mask = np.zeros((16, 16, 16), bool)
    mask[2:14, 2:14, 2:14] = True
    eroded = erode_keeping_edges(mask, element)
    for axis, expected in enumerate(layers):
        profile = eroded.any(axis=tuple(a for a in range(3) if a != axis))
        assert profile.sum() == 12 - 2 * expected, (axis, voxel)
        depths = (np.arange(16)[profile].min() - 2 + 0.5) * voxel[axis]
        assert depths >= 1.0 - 1e-9 and (expected == 0 or depths - voxel[axis] < 1.0)
