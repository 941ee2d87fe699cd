"""ROMEO-like unwrapping against multi-echo data from the independent qsm-forward model.

The phantom (fieldmap_phantom.py): qsm-forward's cylinder phantom, its dipole field plus a
+-120 Hz second-order background field (the last echo at 20 ms wraps about 3 times), the
qsm-forward phase offset, TE = 4..20 ms at 3 T.
"""


import numpy as np
import pytest

from qsmiron.recon.unwrap import METHODS, unwrap_romeo, unwrap_romeo_full

import fieldmap_phantom as fp  # tests/recon is on pytest's pythonpath (pyproject.toml)



GEOMETRIES = {
    "axial_isotropic": dict(voxel_size_mm=(1.0, 1.0, 1.0), b0_direction=(0.0, 0.0, 1.0)),
    "oblique_anisotropic": dict(voxel_size_mm=(0.8, 1.0, 2.0), b0_direction=(0.3, 0.2, 1.0)),
}


@pytest.mark.parametrize("geometry", GEOMETRIES)
def test_romeo_is_exact_up_to_one_global_turn_per_echo_noise_free(geometry):
    phantom = fp.make_phantom(40, **GEOMETRIES[geometry])
    # The data really wrap: the last echo spans several turns.
    assert np.ptp(phantom.true_phase[..., -1][phantom.mask]) > 4 * np.pi
    result = unwrap_romeo_full(phantom.phase, phantom.magnitude, phantom.mask,
                               phantom.voxel_size_mm, phantom.echo_times_s)
    fractions = fp.exact_fraction(result.unwrapped_rad, phantom.true_phase, phantom.mask)
    assert np.all(fractions >= 0.999), fractions
    # Output = input + an exact multiple of 2*pi in every mask voxel.
    turns = (result.unwrapped_rad - phantom.phase)[phantom.mask] / (2 * np.pi)
    assert np.abs(turns - np.round(turns)).max() < 1e-4
    assert np.all(result.unwrapped_rad[~phantom.mask] == 0)


@pytest.mark.parametrize("geometry", GEOMETRIES)
def test_romeo_stays_exact_in_99_9_percent_of_voxels_at_peak_snr_40(geometry):
    phantom = fp.make_phantom(40, peak_snr=40, seed=3, **GEOMETRIES[geometry])
    unwrapped = unwrap_romeo(phantom.phase, phantom.magnitude, phantom.mask,
                             phantom.voxel_size_mm, phantom.echo_times_s)
    fractions = fp.exact_fraction(unwrapped, phantom.true_phase, phantom.mask)
    assert np.all(fractions >= 0.999), fractions


def test_romeo_echoes_share_one_consistent_turn_relative_to_truth():
    phantom = fp.make_phantom(40, peak_snr=60, seed=5)
    unwrapped = unwrap_romeo(phantom.phase, phantom.magnitude, phantom.mask,
                             phantom.voxel_size_mm, phantom.echo_times_s)
    # With the offset removed the echoes scale with TE: echo n ~ (TE_n / TE_1) echo 1 + c.
    offset = phantom.offset_rad[..., None]
    field_part = (unwrapped - offset)[phantom.mask]
    ratio = np.asarray(phantom.echo_times_s) / phantom.echo_times_s[0]
    predicted = field_part[:, :1] * ratio
    jumps = np.round((field_part - predicted) / (2 * np.pi))
    assert np.mean(jumps == 0) > 0.999


def test_mcpc3ds_offset_matches_the_qsm_forward_offset_inside_the_object():
    import scipy.ndimage

    phantom = fp.make_phantom(40, peak_snr=60, seed=2)
    result = unwrap_romeo_full(phantom.phase, phantom.magnitude, phantom.mask,
                               phantom.voxel_size_mm, phantom.echo_times_s, offset_sigma_mm=2.0)
    inner = scipy.ndimage.binary_erosion(phantom.mask, iterations=4)
    error = np.angle(np.exp(1j * (result.offset_rad - phantom.offset_rad)))[inner]
    # qsm-forward's offset spans pi over this small object; smoothing bias stays < 0.15 rad.
    assert np.sqrt(np.mean(error ** 2)) < 0.15


def test_romeo_single_echo_3d_input_without_magnitude_is_exact():
    phantom = fp.make_phantom(32, with_offset=False, echo_times_s=(0.012,))
    unwrapped = unwrap_romeo(phantom.phase[..., 0], None, phantom.mask, phantom.voxel_size_mm,
                             phantom.echo_times_s)
    assert unwrapped.ndim == 3
    fraction = fp.exact_fraction(unwrapped[..., None], phantom.true_phase, phantom.mask)
    assert fraction[0] >= 0.999


def test_disconnected_mask_parts_are_each_unwrapped():
    phantom = fp.make_phantom(32, with_offset=False)
    mask = phantom.mask.copy()
    mask[:, :, 15:17] = False  # cut the object in two
    result = unwrap_romeo_full(phantom.phase, phantom.magnitude, mask, phantom.voxel_size_mm,
                               phantom.echo_times_s, phase_offset="none")
    assert result.info["n_components"] >= 2
    for part in (mask & (np.arange(32) < 15)[None, None, :], mask & (np.arange(32) > 16)[None, None, :]):
        fractions = fp.exact_fraction(result.unwrapped_rad, phantom.true_phase, part)
        assert np.all(fractions >= 0.999)


def test_declared_methods_are_romeo_and_laplacian():
    assert [method.name for method in METHODS] == ["romeo", "laplacian"]


def _head_with_air_rim(n: int = 64, brain_radius: float = 18.0, rim_radius: float = 26.0):
    """A ball of tissue inside a mask that reaches into a dark rim with a steep field (air, skull).

    The echo difference rises 2.5 rad per voxel across the rim: unambiguous to unwrap, but
    large enough that the mean over the mask lies more than pi from the tissue's value.
    """
    grid = np.indices((n, n, n), dtype=np.float64) - (n - 1) / 2.0
    radius = np.sqrt((grid ** 2).sum(0))
    mask = radius <= rim_radius
    tissue = radius <= brain_radius
    te = np.array([0.004, 0.010])
    delta_rad = 0.3 * grid[0] / n + np.where(tissue, 0.0, 2.5 * (radius - brain_radius))
    field_hz = delta_rad / (2 * np.pi * (te[1] - te[0]))
    offset_rad = 1.0 + 0.02 * grid[1]
    phase = np.stack([offset_rad + 2 * np.pi * field_hz * t for t in te], axis=-1)
    phase = np.angle(np.exp(1j * phase)).astype(np.float32)
    magnitude = np.repeat(np.where(tissue, 1.0, 0.02)[..., None], 2, axis=-1).astype(np.float32)
    return phase, magnitude, mask, tissue, te, offset_rad, delta_rad


def test_a_mask_reaching_into_air_does_not_shift_the_tissue_by_a_turn():
    """Family head h09 (mask 2 mm into a thin skull): a mean over the mask moved the echo
    difference by 2 pi and 39 % of the brain's field by a whole cycle per echo spacing."""
    from qsmiron.recon.unwrap.romeo import mcpc3ds_offset

    phase, magnitude, mask, tissue, te, offset_true, delta_true = _head_with_air_rim()
    assert abs(delta_true[mask].mean()) > np.pi  # what a plain mean over the mask would follow
    offset = mcpc3ds_offset(phase, magnitude, mask, (1.0, 1.0, 1.0), te)
    core = tissue & (np.sqrt(((np.indices(tissue.shape) - 31.5) ** 2).sum(0)) <= 12)
    error = np.angle(np.exp(1j * (offset - offset_true)))
    assert np.abs(error[core]).max() < 0.1
    result = unwrap_romeo_full(phase, magnitude, mask, (1.0, 1.0, 1.0), te)
    field_turns = (result.unwrapped_rad[..., 1] - result.unwrapped_rad[..., 0] - delta_true) / (2 * np.pi)
    assert np.abs(field_turns[tissue]).max() < 0.01


def _sorted_weighted_median(values: np.ndarray, weights: np.ndarray) -> float:
    """The definition: sort, and take the first value whose cumulative weight reaches half."""
    order = np.argsort(values, kind="stable")
    cumulative = np.cumsum(weights[order])
    if cumulative[-1] <= 0:
        return float(np.median(values))
    return float(values[order][np.searchsorted(cumulative, 0.5 * cumulative[-1])])


@pytest.mark.parametrize("seed", range(4))
def test_component_weighted_medians_match_the_sorted_definition(seed):
    from qsmiron.recon.unwrap._common import component_weighted_medians

    rng = np.random.default_rng(seed)
    for trial in range(300):
        n = int(rng.integers(1, 300))
        labels = rng.integers(0, int(rng.integers(2, 7)), n).astype(np.int32)
        # integer values give ties; a third of the weights are zero; some labels have none
        values = (rng.integers(-4, 5, n) if trial % 2 else rng.normal(size=n)).astype(np.float32)
        weights = rng.random(n).astype(np.float32) * (rng.random(n) > 0.3)
        weights[labels == 1] *= trial % 3 != 0
        got = component_weighted_medians(values, labels, weights)
        unweighted = component_weighted_medians(values, labels)
        assert got.shape == (max(int(labels.max()), 0) + 1,) and got[0] == 0.0
        for label in range(1, got.size):
            inside = labels == label
            if not inside.any():
                assert got[label] == 0.0
                continue
            v = values[inside].astype(np.float64)
            assert got[label] == pytest.approx(_sorted_weighted_median(v, weights[inside].astype(np.float64)), abs=1e-12)
            assert unweighted[label] == pytest.approx(_sorted_weighted_median(v, np.ones(v.size)), abs=1e-12)


def test_component_weighted_medians_skip_non_finite_values_and_weights():
    from qsmiron.recon.unwrap._common import component_weighted_medians

    values = np.array([np.nan, 1.0, 2.0, 3.0, 100.0, np.inf], np.float32)
    labels = np.array([1, 1, 1, 1, 1, 1], np.int32)
    weights = np.array([5.0, 1.0, 1.0, 1.0, np.nan, 9.0], np.float32)
    assert component_weighted_medians(values, labels, weights)[1] == 2.0
    assert component_weighted_medians(values, labels)[1] == 2.0  # of 1, 2, 3, 100 (with inf: 3)
