"""Susceptibility source separation (stage ``chisep``): paramagnetic and diamagnetic maps.

Methods (declared in ``METHODS``; the model, the R2' sources and the solver are in
``qsmiron.recon.chisep.separation``):

- ``shin``: chi-separation (Shin et al. 2021) from the local field and R2' = R2* - R2, with a
  measured R2 map when one is given and otherwise the pseudo-R2 approximation (its constants
  are recorded and the result is labelled an approximation);
- ``none`` (default): no separation. It is asked for (``[recon.chisep] method = "shin"``), in
  ``qsmiron recon`` and in ``qsmiron run`` alike, because it costs more than the rest of a
  subject's processing: on the simulated head at 1.5 mm, 35-37 CPU-s per subject (200 ADMM
  iterations) against 4-5 for the dipole inversion, about 8 for the whole reconstruction
  without it and about 31 for registration and regions; at 1 mm (3.4 times the voxels) about
  120 CPU-s, which would break both recon's 20 s and a study's 90 s per subject.

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
