"""Multiple comparisons: Benjamini-Hochberg false discovery rate."""

from __future__ import annotations

import numpy as np
from statsmodels.stats.multitest import multipletests


def fdr_bh(p_values) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values (statsmodels ``fdr_bh``), NaN kept in place.

    Rows without a p-value (an analysis that could not be run, with its reason reported)
    are left out of the family: the adjustment runs over the finite p-values only.

    Parameters
    ----------
    p_values : array-like of float

    Returns
    -------
    ndarray of float
        Same shape; adjusted p-values, NaN where the input was NaN.
    """
    p = np.asarray(p_values, dtype=float)
    adjusted = np.full(p.shape, np.nan)
    finite = np.isfinite(p)
    if finite.any():
        adjusted[finite] = multipletests(p[finite], method="fdr_bh")[1]
    return adjusted
