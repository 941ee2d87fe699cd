"""Benjamini-Hochberg adjustment: the textbook step-up definition, NaN rows left out."""

import numpy as np
import pytest

from qsmiron.stats.multiple import fdr_bh


def step_up(p):
    """BH by its definition: p_(i) m / i, then the running minimum from the largest down."""
    p = np.asarray(p, float)
    order = np.argsort(p)
    m = p.size
    scaled = p[order] * m / np.arange(1, m + 1)
    adjusted = np.minimum.accumulate(scaled[::-1])[::-1]
    out = np.empty(m)
    out[order] = np.minimum(adjusted, 1.0)
    return out


def test_fdr_bh_matches_step_up_definition():
    p = np.array([0.001, 0.008, 0.039, 0.041, 0.042, 0.06, 0.074, 0.205, 0.212, 0.216])
    assert fdr_bh(p) == pytest.approx(step_up(p), rel=1e-12)


def test_fdr_bh_leaves_nan_rows_out_of_the_family():
    p = np.array([0.01, np.nan, 0.04, 0.03])
    adjusted = fdr_bh(p)
    assert np.isnan(adjusted[1])
    assert adjusted[[0, 2, 3]] == pytest.approx(step_up([0.01, 0.04, 0.03]))
    assert np.all(np.isnan(fdr_bh([np.nan, np.nan])))
