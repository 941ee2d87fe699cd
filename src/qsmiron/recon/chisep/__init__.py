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

The TV edges, checked over varied heads (``benchmarks/bench_chisep.py --family``: 8 heads of
the simulated anatomy at 1, 1.5 and 2 mm and 1 x 1 x 2 and 1 x 1 x 2.5 mm, SNR 40 to 200, axial,
rotated and tilted by up to 25 degrees, 3 T, the true R2; the local field with the echo fit's
noise, no background). Median / worst over the heads of the NRMSE of chi+ and chi- (%) and of
the median and the largest regional |error| (ppb, CIT168 regions, grey and white matter):

====================  ===========  ===========  ===========  ===========  ===========  ===========
edges (fraction)      chi+ NRMSE   chi- NRMSE   chi+ median  chi+ worst   chi- median  chi- worst
====================  ===========  ===========  ===========  ===========  ===========  ===========
per voxel (0.3)       13.4 / 21.0  11.4 / 16.1  1.20 / 1.63  3.33 / 4.91  1.18 / 1.66  3.02 / 4.81
per axis (0.2)        12.8 / 19.2  10.4 / 14.1  0.82 / 1.82  3.06 / 4.58  1.11 / 1.42  2.74 / 4.53
per axis (0.3)        11.9 / 18.0   9.6 / 13.4  0.96 / 1.73  2.77 / 4.82  1.07 / 1.33  2.56 / 4.27
per axis (0.4)        11.3 / 17.6   9.0 / 13.1  0.89 / 1.44  2.54 / 6.19  1.08 / 1.65  2.58 / 4.19
====================  ===========  ===========  ===========  ===========  ===========  ===========

Per axis lowered both maps' NRMSE on every head and both median regional errors on 6 of 8 (not
chi- at 15 degrees, 0.67 against 0.65 ppb, nor either map at 25 degrees and SNR 40, chi+ / chi-
1.73 / 1.24 against 1.63 / 1.09 ppb). The fraction stays 0.3, the dipole inversion's: 0.4 maps
better at the median but its worst region is 6.2 ppb off (chi+ on the 25-degree, SNR 40 head),
and 0.2 maps worse.
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
