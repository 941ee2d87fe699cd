"""Chi-square quantiles for the noise models of the echo fits.

The formulas of ``scipy.stats.chi2`` (same values, bit for bit), called through
``scipy.special``: importing ``scipy.stats`` took 0.2 s of every command's start-up, on the
path before any input is read.
"""

from __future__ import annotations

import scipy.special


def chi2_median(dof: float) -> float:
    """Median of the chi-square distribution with ``dof`` degrees of freedom."""
    return float(2.0 * scipy.special.gammaincinv(dof / 2.0, 0.5))


def chi2_upper_quantile(p: float, dof: float) -> float:
    """The value a chi-square variable with ``dof`` degrees of freedom exceeds with probability ``p``."""
    return float(scipy.special.chdtri(dof, p))
