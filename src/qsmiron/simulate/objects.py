"""Objects that are not heads, scanned as a multi-echo GRE magnitude: for the head check.

A QSM study measures brains; a phantom or a spine sent through the pipeline by mistake must
be flagged, not given regional values (``qsmiron.roi.subject.check_head``). These make such scans:

- ``sphere_phantom``: a water-filled sphere (agarose) with a few vials of different T2*
  (the usual susceptibility phantom);
- ``cylinder_phantom``: a long cylinder along the scanner's z axis with a central cord and
  regularly spaced dark discs (a spine-like object: vertebral bodies around a cord).

Both return magnitude and phase (rad) of each echo (a smooth off-resonance of a few tens of Hz,
complex Gaussian noise) and the grid's affine, so that they go through the same files and
steps as a head.
"""

from __future__ import annotations

import numpy as np


def _grid(shape, voxel_mm):
    affine = np.diag([*voxel_mm, 1.0])
    affine[:3, 3] = -np.asarray(voxel_mm) * (np.asarray(shape) - 1) / 2.0
    axes = [(np.arange(n) - (n - 1) / 2.0) * v for n, v in zip(shape, voxel_mm)]
    return affine, np.meshgrid(*axes, indexing="ij")


def _echoes(m0: np.ndarray, r2s: np.ndarray, field_hz: np.ndarray, echo_times_s, noise: float,
            rng) -> tuple[np.ndarray, np.ndarray]:
    """Magnitude and phase (rad) of each echo (last axis), complex Gaussian noise of SD ``noise``."""
    te = np.asarray(echo_times_s, float)
    signal = m0[..., None] * np.exp(-r2s[..., None] * te) * np.exp(2j * np.pi * field_hz[..., None] * te)
    noisy = signal + rng.normal(0, noise, signal.shape) + 1j * rng.normal(0, noise, signal.shape)
    return np.abs(noisy).astype(np.float32), np.angle(noisy).astype(np.float32)


def sphere_phantom(shape=(64, 64, 64), voxel_mm=(3.0, 3.0, 3.0), *, radius_mm=80.0,
                   echo_times_s=(0.004, 0.012, 0.020), seed=0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A sphere of agarose with five vials (T2* 10-40 ms); returns (magnitude, phase_rad, affine), X x Y x Z x E."""
    rng = np.random.default_rng(seed)
    affine, (x, y, z) = _grid(shape, voxel_mm)
    inside = x ** 2 + y ** 2 + z ** 2 <= radius_mm ** 2
    m0 = np.where(inside, 1.0, 0.0)
    r2s = np.full(shape, 15.0)
    for k, rate in enumerate((25.0, 40.0, 60.0, 80.0, 100.0)):
        angle = 2 * np.pi * k / 5
        cx, cy = 0.45 * radius_mm * np.cos(angle), 0.45 * radius_mm * np.sin(angle)
        vial = ((x - cx) ** 2 + (y - cy) ** 2 <= (0.12 * radius_mm) ** 2) & (np.abs(z) < 0.6 * radius_mm)
        r2s[vial] = rate
        m0[vial] = 0.9
    field_hz = 20.0 * (x + 0.5 * y - 0.3 * z) / 100.0  # a shim residual: 20 Hz per 10 cm
    return (*_echoes(m0, r2s, field_hz, echo_times_s, 0.02, rng), affine)


def cylinder_phantom(shape=(48, 48, 96), voxel_mm=(3.0, 3.0, 3.0), *, radius_mm=55.0,
                     echo_times_s=(0.004, 0.012, 0.020), seed=0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A spine-like cylinder along z: soft tissue, a cord, dark discs every 30 mm.

    Returns (magnitude, phase_rad, affine), echoes last.
    """
    rng = np.random.default_rng(seed)
    affine, (x, y, z) = _grid(shape, voxel_mm)
    radial = np.sqrt(x ** 2 + y ** 2)
    m0 = np.where(radial <= radius_mm, 0.8, 0.0)
    r2s = np.full(shape, 30.0)
    body_centre = -0.35 * radius_mm  # vertebral bodies in front of the cord
    bodies = (np.sqrt(x ** 2 + (y - body_centre) ** 2) <= 0.35 * radius_mm) & (np.mod(z, 30.0) < 22.0)
    m0[bodies], r2s[bodies] = 0.35, 120.0  # bone marrow: little signal, fast decay
    cord = np.sqrt(x ** 2 + (y - 0.2 * radius_mm) ** 2) <= 0.12 * radius_mm
    m0[cord], r2s[cord] = 1.0, 20.0
    field_hz = 20.0 * (x + 0.5 * y - 0.3 * z) / 100.0  # a shim residual: 20 Hz per 10 cm
    return (*_echoes(m0, r2s, field_hz, echo_times_s, 0.02, rng), affine)
