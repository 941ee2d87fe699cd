"""The permutation engine against nilearn's permuted_ols (the reference implementation)."""

import warnings

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

from qsmiron.stats.permutation import (neighbour_graph, nilearn_permutations, permuted_glm_tfce,
                                       tfce_map)


def _cohort(n=24, shape=(10, 9, 8), seed=0, effect=0.0):
    rng = np.random.default_rng(seed)
    mask = np.zeros(shape, bool)
    mask[1:-1, 1:-1, 1:-1] = True
    mask[4:6, 3:5, :] = False                      # a hole: clusters must go around it
    noise = ndimage.gaussian_filter(rng.normal(size=(n, *shape)), (0, 1, 1, 1))
    group = np.repeat([1.0, 0.0], n // 2)
    noise[group == 1, 2:5, 2:5, 2:5] += effect
    covariates = np.column_stack([rng.normal(40, 9, n), rng.integers(0, 2, n)])
    return mask, noise[:, mask], group, covariates


def test_neighbour_graph_links_face_neighbours_inside_the_mask_only():
    mask = np.zeros((3, 3, 3), bool)
    mask[1, 1, 1] = mask[1, 1, 2] = mask[0, 0, 0] = True
    indptr, indices = neighbour_graph(mask)
    order = {tuple(c): i for i, c in enumerate(np.argwhere(mask))}
    centre, up, corner = order[(1, 1, 1)], order[(1, 1, 2)], order[(0, 0, 0)]
    assert list(indices[indptr[centre]:indptr[centre + 1]]) == [up]
    assert list(indices[indptr[up]:indptr[up + 1]]) == [centre]
    assert indptr[corner + 1] == indptr[corner]


def test_tfce_equals_nilearn_calculate_tfce_on_a_smooth_map():
    from nilearn.mass_univariate._utils import calculate_tfce
    from scipy.ndimage import generate_binary_structure

    mask, data, *_ = _cohort(n=1, seed=3)
    t = data[0] * 3
    volume = np.zeros(mask.shape)
    volume[mask] = t
    reference = calculate_tfce(volume[..., None], generate_binary_structure(3, 1))[..., 0][mask]
    ours = tfce_map(t, *neighbour_graph(mask))
    np.testing.assert_allclose(ours, reference, rtol=1e-10, atol=1e-12)
    assert (ours > 0).any() and (ours < 0).any()


def test_permuted_glm_tfce_equals_nilearn_permuted_ols():
    from nilearn.maskers import NiftiMasker
    from nilearn.mass_univariate import permuted_ols

    mask, data, group, covariates = _cohort(shape=(9, 8, 7), effect=1.5)
    masker = NiftiMasker(nib.Nifti1Image(mask.astype(np.uint8), np.eye(4))).fit()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reference = permuted_ols(group[:, None], data, confounding_vars=covariates, model_intercept=True,
                                 n_perm=20, two_sided_test=True, random_state=7, n_jobs=1, tfce=True,
                                 masker=masker, output_type="dict", verbose=0)
    ours = permuted_glm_tfce(group, data, covariates, neighbour_graph(mask), n_permutations=20, seed=7,
                             batch_bytes=20_000)      # several batches
    np.testing.assert_allclose(ours.t, reference["t"][0], rtol=1e-10)
    np.testing.assert_allclose(ours.tfce, reference["tfce"][0], rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(ours.h0_max_t, reference["h0_max_t"][0], rtol=1e-9)
    np.testing.assert_allclose(ours.h0_max_tfce, reference["h0_max_tfce"][0], rtol=1e-9)
    np.testing.assert_allclose(ours.logp_fwe, reference["logp_max_tfce"][0], rtol=1e-12)
    np.testing.assert_allclose(ours.logp_fwe_t, reference["logp_max_t"][0], rtol=1e-12)
    assert ours.logp_fwe.max() > -np.log10(0.05) > ours.logp_fwe.min()


def test_nilearn_permutations_are_cumulative_shuffles_of_all_rows():
    orders = nilearn_permutations(12, 5, seed=1)
    assert orders.shape == (5, 12)
    assert all(sorted(row) == list(range(12)) for row in orders)
    assert len({tuple(row) for row in orders}) == 5
