"""The ellipsoid head: a small analytic head for tests and benchmarks of the reconstruction.

Scalp, a 2 mm skull (dark, -2 ppm), an air sinus (+9.4 ppm relative to tissue) and air around
the head; inside the skull a CSF rim, white matter (-0.03 ppm) and iron-rich nuclei, each with
its R2* at 3 T. The geometry is in millimetres about the head's centre (about 41 x 44 x 35 mm):
callers sample it at their voxel centres (a scanner grid, an oblique grid, or a scaled one).

Its brain edge has no cortex/CSF contrast and its air is smooth at the scale of its voxels:
the kind of head on which iSMV looks best (see ``qsmiron.recon.bgremove``); the realistic
family is ``qsmiron.simulate.heads``.
"""

from __future__ import annotations

import numpy as np

CHI_AIR_PPM = 9.4
"""Air relative to tissue (ppm)."""

NUCLEI = (  # centre (mm), semi-axes (mm), chi (ppm), R2* (1/s)
    ((7, 1, 2), (3, 4, 3), 0.18, 45.0),        # globus pallidus
    ((-7, 1, 2), (3, 4, 3), 0.17, 45.0),
    ((12, 3, 3), (2.5, 5, 3.5), 0.08, 32.0),   # putamen
    ((-12, 3, 3), (2.5, 5, 3.5), 0.08, 32.0),
    ((4.5, 10, 7), (2.5, 3, 3), 0.06, 28.0),   # caudate
    ((-4.5, 10, 7), (2.5, 3, 3), 0.06, 28.0),
    ((4, -7, -3), (2, 3, 2), 0.14, 40.0),      # substantia nigra
    ((-4, -7, -3), (2, 3, 2), 0.14, 40.0),
    ((0, -12, 9), (1.2, 6, 1.2), 0.30, 35.0),  # a vein-like rod
)


def ellipsoid(x, y, z, centre, semi_axes) -> np.ndarray:
    """Inside (True) the ellipsoid of that centre and those semi-axes (same unit as x, y, z)."""
    return (((x - centre[0]) / semi_axes[0]) ** 2 + ((y - centre[1]) / semi_axes[1]) ** 2
            + ((z - centre[2]) / semi_axes[2]) ** 2) <= 1.0


def ellipsoid_head(x, y, z, *, dtype=np.float64):
    """Tissue maps of the ellipsoid head at the positions ``x, y, z`` (mm, broadcastable).

    Returns
    -------
    chi_brain : ndarray
        Susceptibility (ppm) inside the intracranial volume, zero elsewhere.
    chi_total : ndarray
        With the skull (-2 ppm) and the air (+9.4 ppm) around the head and in the sinus.
    brain, head : ndarray of bool
        The intracranial volume and the head.
    m0, r2s : ndarray
        Proton density (arbitrary units) and R2* (1/s at 3 T).
    """
    shape = np.broadcast_shapes(np.shape(x), np.shape(y), np.shape(z))
    head = ellipsoid(x, y, z, (0, 0, 1), (20.5, 22, 17.5))
    sinus = ellipsoid(x, y, z, (0, 15, -11), (5, 4.5, 4.5))
    # Intracranial volume (brain and a rim of CSF) inside a 2 mm skull.
    brain = ellipsoid(x, y, z, (0, -1, 2.5), (17.2, 18.7, 13.7)) & ~sinus
    skull = ellipsoid(x, y, z, (0, -1, 2.5), (19, 20.5, 15.5)) & head & ~brain & ~sinus
    chi = np.zeros(shape, dtype)
    m0 = np.where(head, 0.45, 0.0).astype(dtype)
    r2s = np.full(shape, 25.0, dtype)
    m0[skull] = 0.03  # bone: little signal, fast decay, diamagnetic
    r2s[skull] = 300.0
    wm = ellipsoid(x, y, z, (0, -1, 3), (12, 13.5, 9))
    chi[wm] = -0.03
    m0[brain] = 0.85
    m0[wm] = 0.75
    r2s[wm] = 22.0
    for centre, axes, value, rate in NUCLEI:
        region = ellipsoid(x, y, z, centre, axes) & brain
        chi[region] = value
        m0[region] = 0.65
        r2s[region] = rate
    chi_brain = np.where(brain, chi, 0).astype(dtype)
    chi_total = chi_brain + np.where(~head | sinus, CHI_AIR_PPM, 0.0).astype(dtype)
    chi_total[skull] -= 2.0
    m0[sinus] = 0
    return chi_brain, chi_total, brain, head, m0, r2s
