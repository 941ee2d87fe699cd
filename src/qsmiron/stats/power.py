"""Minimal detectable effects: what a study of this size could have found.

Each function answers "how large must the true effect be for this test to reach
significance at ``alpha`` (two-sided) with probability ``power``?", given the analysed
sample. They state the design sensitivity of a study; they are not post-hoc power of the
observed effect (which is a function of the p-value and says nothing new).

- **Group comparison** (Cohen's d): the two-sample t-test at the group sizes n_a, n_b,
  power from the noncentral t distribution (statsmodels ``TTestIndPower``) with
  n_a + n_b - 2 - k degrees of freedom for k covariate columns. The covariates are assumed
  to explain none of the variance (conservative: a covariate that explains some of it makes
  the ANCOVA more sensitive than this).
- **Association** (r): Fisher's z approximation, atanh(r) sqrt(n - 3 - k) ~ N, solved with
  statsmodels ``NormalIndPower`` (one sample); k covariate columns of a partial correlation
  cost k degrees of freedom. For Spearman's rho this is the usual approximation (its
  variance is slightly larger: the true minimal effect is a little larger).
- **Relapse** (odds ratio per SD of chi): Hsieh, Bloch & Larsen (1998, Stat Med 17:1623)
  for one normally distributed predictor, n = (z_{1-alpha/2} + z_power)^2 /
  (p (1 - p) b^2) with p the event proportion and b the log odds ratio per SD, solved for b;
  covariates assumed uncorrelated with chi.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from scipy import optimize, stats
from statsmodels.stats.power import NormalIndPower, TTestIndPower

ALPHA = 0.05
POWER = 0.8


@lru_cache(maxsize=1024)  # rows of one study share their sizes
def min_detectable_d(n_a: int, n_b: int, *, n_covariates: int = 0, alpha: float = ALPHA,
                     power: float = POWER) -> float:
    """Smallest |Cohen's d| detected with ``power`` by a two-sided test at ``alpha``.

    Parameters
    ----------
    n_a, n_b : int
        Group sizes.
    n_covariates : int
        Covariate columns of the ANCOVA (each costs one residual degree of freedom).

    Returns
    -------
    float
        NaN when there are no residual degrees of freedom.
    """
    df = n_a + n_b - 2 - n_covariates
    if n_a < 2 or n_b < 2 or df < 1:
        return float("nan")
    analysis = TTestIndPower()

    def shortfall(d: float) -> float:
        return analysis.power(d, n_a, alpha, ratio=n_b / n_a, df=df) - power

    upper = 1.0
    while shortfall(upper) < 0:
        upper *= 2.0
    return float(optimize.brentq(shortfall, 1e-9, upper, xtol=1e-10))


@lru_cache(maxsize=1024)
def min_detectable_r(n: int, *, n_covariates: int = 0, alpha: float = ALPHA,
                     power: float = POWER) -> float:
    """Smallest |r| (partial r with ``n_covariates`` columns) detected with ``power``.

    Fisher's z: atanh(r) sqrt(n - 3 - k) must reach the two-sided normal test's power.
    NaN when n - 3 - k < 1.
    """
    effective = n - 3 - n_covariates
    if effective < 1:
        return float("nan")
    z_effect = NormalIndPower().solve_power(effect_size=None, nobs1=effective, alpha=alpha,
                                            power=power, ratio=0.0)
    return float(np.tanh(z_effect))


def min_detectable_odds_ratio(n: int, n_events: int, *, alpha: float = ALPHA,
                              power: float = POWER) -> float:
    """Smallest odds ratio per SD of a logistic regression (> 1; its inverse is as detectable).

    Hsieh et al. (1998) for a standard normal predictor with event proportion p = events / n.
    NaN without events or non-events.
    """
    if n < 1 or n_events < 1 or n_events >= n:
        return float("nan")
    p = n_events / n
    z = stats.norm.ppf(1 - alpha / 2) + stats.norm.ppf(power)
    return float(np.exp(z / np.sqrt(n * p * (1 - p))))
