"""What other reconstruction methods may use of the dipole inversion's machinery.

Chi-separation (``qsmiron.recon.chisep``) solves a dipole problem of the same kind: it sets
the problem up on the same padded grid, weights the field the same way and shares the TV
kernels. Those parts are private to this package; this module is their public face, so that
a change inside the package shows here.
"""

from qsmiron.recon.invert._common import (DEFAULT_PAD_MM, data_weights, estimate_noise_ppm,
                                          inconsistency_ppm, setup)
from qsmiron.recon.invert._kernels import gradient_adjoint_of_difference, gradient_shrink

__all__ = ["DEFAULT_PAD_MM", "data_weights", "estimate_noise_ppm", "inconsistency_ppm", "setup",
           "gradient_adjoint_of_difference", "gradient_shrink"]
