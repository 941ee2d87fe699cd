"""The chi-square quantiles of the echo fits equal scipy.stats' own."""

import pytest
import scipy.stats

from qsmiron.recon.chi2 import chi2_median, chi2_upper_quantile


@pytest.mark.parametrize("dof", [1, 2, 3, 4.5, 7, 30, 1000])
def test_chi2_median_is_scipy_stats_median(dof):
    assert chi2_median(dof) == scipy.stats.chi2.median(dof)


@pytest.mark.parametrize("dof", [1, 3, 8, 200])
@pytest.mark.parametrize("p", [1e-6, 1e-3, 0.05, 0.5, 0.9])
def test_chi2_upper_quantile_is_scipy_stats_isf(p, dof):
    assert chi2_upper_quantile(p, dof) == scipy.stats.chi2.isf(p, dof)


def test_chi2_values_against_tables():
    # Abramowitz & Stegun table 26.8: the 0.05 upper point at 1 and 10 degrees of freedom
    assert chi2_upper_quantile(0.05, 1) == pytest.approx(3.841459, abs=1e-6)
    assert chi2_upper_quantile(0.05, 10) == pytest.approx(18.307038, abs=1e-6)
    # median of chi-square(2) = 2 ln 2
    assert chi2_median(2) == pytest.approx(1.3862944, abs=1e-7)
