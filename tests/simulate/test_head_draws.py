"""Held-out heads drawn from the family's ranges (``simulate.head_draws``)."""

import dataclasses

import numpy as np
import pytest

from qsmiron.simulate.head_draws import SLICE_THICKNESSES_MM, drawn_heads, mask_reaches_skull
from qsmiron.simulate.heads import FAMILY

RANGES = {"gm_ppm": (0.010, 0.020), "wm_ppm": (-0.030, -0.020), "texture_ppm": (0.002, 0.008),
          "csf_gap_mm": (1.0, 4.0), "skull_mm": (4.0, 7.0), "skull_ppm": (-2.4, -1.0),
          "cavity_scale": (0.7, 1.4), "cavity_clearance_mm": (1.5, 3.0), "mask_error_mm": (-2.0, 2.0)}


def test_the_draws_lie_in_the_family_ranges_and_spread_over_them():
    heads = drawn_heads(200, draw_seed=3)
    for name, (low, high) in RANGES.items():
        values = np.array([getattr(h, name) for h in heads])
        assert values.min() >= low and values.max() <= high, name
        # uniform draws: 200 of them reach both ends' outer tenths
        assert values.min() < low + 0.1 * (high - low) and values.max() > high - 0.1 * (high - low), name
    tilts = np.array([h.oblique_deg for h in heads])
    assert np.abs(tilts[:, 0]).max() <= 25 and np.abs(tilts[:, 1]).max() <= 6 and np.abs(tilts[:, 0]).max() > 22
    assert np.abs([h.head_rotation_deg for h in heads]).max() <= 4
    assert np.abs([h.cavity_shift_mm for h in heads]).max() <= 6
    assert {h.voxel_size_mm[2] for h in heads} == set(SLICE_THICKNESSES_MM)
    for head in heads:
        ratios = np.asarray(head.fov_mm) / np.asarray(head.voxel_size_mm)
        assert np.allclose(ratios, np.round(ratios)), head.name  # the voxel divides the field of view


def test_the_same_seed_gives_the_same_heads_and_another_seed_others():
    assert drawn_heads(5, 1) == drawn_heads(5, 1)
    assert drawn_heads(3, 1) == drawn_heads(5, 1)[:3]
    first, second = drawn_heads(5, 1), drawn_heads(5, 2)
    assert all(a.oblique_deg != b.oblique_deg for a, b in zip(first, second))
    names = [h.name for h in drawn_heads(50, 0) + drawn_heads(50, 1)]
    seeds = [h.seed for h in drawn_heads(50, 0) + drawn_heads(50, 1)]
    assert len(set(names)) == len(names) and len(set(seeds)) == len(seeds)
    assert not set(seeds) & {h.seed for h in FAMILY}


def test_only_a_mask_dilated_past_the_csf_gap_reaches_the_skull():
    assert [h.name for h in FAMILY if mask_reaches_skull(h)] == ["h09_obl12_thinskull_dil2"]
    head = drawn_heads(1)[0]
    assert mask_reaches_skull(dataclasses.replace(head, csf_gap_mm=1.0, mask_error_mm=1.5))
    assert not mask_reaches_skull(dataclasses.replace(head, csf_gap_mm=1.0, mask_error_mm=1.0))
    assert not mask_reaches_skull(dataclasses.replace(head, csf_gap_mm=1.0, mask_error_mm=-2.0))


@pytest.mark.parametrize("count, seed", [(0, 0), (3, -1)])
def test_bad_counts_and_seeds_are_refused(count, seed):
    with pytest.raises(ValueError):
        drawn_heads(count, seed)
