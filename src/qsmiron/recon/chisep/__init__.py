"""Susceptibility source separation (stage ``chisep``): paramagnetic and diamagnetic maps.

Methods (declared in ``METHODS``; the model, the R2' sources and the solver are in
``qsmiron.recon.chisep.separation``):

- ``shin``: chi-separation (Shin et al. 2021) from the local field and R2' = R2* - R2, with a
  measured R2 map when one is given and otherwise the pseudo-R2 approximation (its constants
  are recorded and the result is labelled an approximation);
- ``none`` (the declared default): no separation. At 256 x 256 x 176 x 5 it costs about 11
  CPU-s, more than the dipole inversion (``benchmarks/bench_recon.py --chisep``), which breaks
  the 20 s budget of ``qsmiron recon``: there it is asked for (``[recon.chisep] method =
  "shin"``). ``qsmiron run`` turns it on when the configuration leaves the method unset
  (``qsmiron.pipeline.bids_app.run_defaults``): per subject of a study it is affordable.

``f(local_ppm, r2star_per_s, mask, voxel_size_mm, b0_direction, **params)`` returns a
``ChiSeparation`` (None for ``none``).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from qsmiron.methods import Method
from qsmiron.recon.chisep.separation import (DR_3T_HZ_PER_PPM, PSEUDO_R2_3T, ChiSeparation, check_r2_map,
                                             r2prime_from_r2star, relaxometric_constant,
                                             separate_susceptibility)

__all__ = ["METHODS", "ChiSeparation", "separate_susceptibility", "r2prime_from_r2star", "check_r2_map",
           "relaxometric_constant", "no_separation", "DR_3T_HZ_PER_PPM", "PSEUDO_R2_3T"]


def no_separation(local_ppm: np.ndarray, r2star_per_s: np.ndarray, mask: np.ndarray,
                  voxel_size_mm: Sequence[float], b0_direction: Sequence[float]) -> None:
    """No separation into paramagnetic and diamagnetic sources."""
    return None


METHODS = (
    Method("shin", separate_susceptibility,
           label="chi-separation (field and R2' jointly, non-negative sources, magnitude-weighted "
                 "TV, ADMM)",
           description="paramagnetic and diamagnetic susceptibility from the local field and "
                       "R2' = R2* - R2 (pseudo-R2 approximation without an R2 map)",
           citation="Shin HG, Lee J, Yun YH, et al. NeuroImage 2021;240:118371",
           doi="10.1016/j.neuroimage.2021.118371"),
    Method("none", no_separation, label="none",
           description="no separation into paramagnetic and diamagnetic maps"),
)
"""Chi-separation methods (stage ``chisep``)."""
