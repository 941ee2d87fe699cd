"""R2* mapping (stage ``r2star``): R2*, T2* and S0 from the multi-echo magnitude.

Methods (declared in ``METHODS``; the fit itself, its noise-floor guard and validity rules are
in ``qsmiron.recon.r2star.fit``):

- ``nlls`` (default): weighted log-linear start, then nonlinear least squares on the
  Rician-corrected magnitudes of the echoes above the noise floor;
- ``arlo``: auto-regression on linear operations (Pei et al. 2015), closed form, faster and
  slightly noisier;
- ``none``: no R2* map (and therefore no chi-separation).

Each ``f(magnitude, mask, echo_times_s, **params)`` returns an ``R2starFit`` (None for
``none``). The noise level is measured from each dataset (``noise_sigma``, a stage input
left at "estimate"), so it is not a setting.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from qsmiron.methods import Method
from qsmiron.recon.params import NonNegativeFloat, PositiveFloat, PositiveInt
from qsmiron.recon.r2star.fit import (DEFAULT_FLOOR_FACTOR, DEFAULT_R2STAR_MAX_PER_S, MIN_ECHOES,
                                      R2STAR_METHODS, R2starFit, estimate_noise_sigma, fit_r2star)

__all__ = ["METHODS", "MIN_ECHOES", "R2STAR_METHODS", "R2starFit", "estimate_noise_sigma", "fit_r2star",
           "nlls", "arlo", "no_r2star"]


def nlls(magnitude: np.ndarray, mask: np.ndarray, echo_times_s: Sequence[float], *,
         noise_sigma: PositiveFloat | None = None, floor_factor: NonNegativeFloat = DEFAULT_FLOOR_FACTOR,
         rician_correction: bool = True, r2star_max_per_s: PositiveFloat = DEFAULT_R2STAR_MAX_PER_S,
         max_iter: PositiveInt = 20) -> R2starFit:
    """R2* by nonlinear least squares (``fit_r2star(method="nlls")``; parameters there)."""
    return fit_r2star(magnitude, mask, echo_times_s, method="nlls", noise_sigma=noise_sigma,
                      floor_factor=floor_factor, rician_correction=rician_correction,
                      r2star_max_per_s=r2star_max_per_s, max_iter=max_iter)


def arlo(magnitude: np.ndarray, mask: np.ndarray, echo_times_s: Sequence[float], *,
         noise_sigma: PositiveFloat | None = None, floor_factor: NonNegativeFloat = DEFAULT_FLOOR_FACTOR,
         rician_correction: bool = True,
         r2star_max_per_s: PositiveFloat = DEFAULT_R2STAR_MAX_PER_S) -> R2starFit:
    """R2* by ARLO (``fit_r2star(method="arlo")``; parameters there)."""
    return fit_r2star(magnitude, mask, echo_times_s, method="arlo", noise_sigma=noise_sigma,
                      floor_factor=floor_factor, rician_correction=rician_correction,
                      r2star_max_per_s=r2star_max_per_s)


def no_r2star(magnitude: np.ndarray, mask: np.ndarray, echo_times_s: Sequence[float]) -> None:
    """No R2* map."""
    return None


METHODS = (
    Method("nlls", nlls,
           label="mono-exponential nonlinear least-squares fit (weighted log-linear start, "
                 "Gauss-Newton) of the echoes above the noise floor, Rician-bias corrected",
           description="nonlinear least squares on the echoes above the noise floor (Rician-corrected)",
           citation="Rician bias correction after Gudbjartsson H, Patz S. Magn Reson Med "
                    "1995;34:910-914", doi="10.1002/mrm.1910340618"),
    Method("arlo", arlo, label="ARLO (auto-regression on linear operations) of the echoes above the "
                               "noise floor, Rician-bias corrected",
           description="closed-form auto-regression on linear operations; faster, slightly noisier",
           citation="Pei M, Nguyen TD, Thimmappa ND, et al. Magn Reson Med 2015;73:843-850",
           doi="10.1002/mrm.25137"),
    Method("none", no_r2star, label="none", description="no R2* map (and so no chi-separation)"),
)
"""R2* methods (stage ``r2star``)."""
