"""Voxels whose signal the field's spread inside them has dephased, found by their magnitude.

Next to sinuses and bone the field varies inside a voxel; its signal then decays much faster
than tissue's, and its phase is no longer the voxel's mean field. With three or more echoes the
echo fit's chi-square test sees this in the phase. With two (one residual degree of freedom;
the test's limit is then a reduced chi-square of 15) it mostly does not: on family head h06
simulated with echoes at 5 and 20 ms, 1 388 voxels kept a field 0.07 ppm (median) to 0.25 ppm
(p90) off, with a reduced chi-square of 3.9 (median). Their magnitude shows it: the apparent
R2* from the first to the last echo was 93 s^-1 (median), against 20 for the mask's median
and 31 at the 99th percentile of voxels with a right field.

``dephased_voxels`` flags a voxel whose apparent R2* exceeds ``FACTOR`` times the mask's median
by more than three standard deviations of its own noise (from the magnitudes' noise, so that
dark, noisy tissue is not flagged by chance). Iron-rich nuclei stay below: about 2-3 times the
brain's median R2* in adults, at any field strength. The echo fit applies it only when the
chi-square test is weak (at most one residual degree of freedom).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

FACTOR = 4.0
"""How many times the mask's median apparent R2* a voxel must exceed to count as dephased."""

SIGNIFICANCE = 3.0
"""Standard deviations of the voxel's own apparent-R2* noise the excess must also reach."""


def dephased_voxels(magnitude: np.ndarray, mask: np.ndarray, echo_times_s: Sequence[float],
                    noise_sigma: float) -> np.ndarray:
    """Mask voxels whose apparent R2* (s^-1) between the first and last echo exceeds ``FACTOR``
    times the mask's median by ``SIGNIFICANCE`` standard deviations of its noise.

    Parameters
    ----------
    magnitude : ndarray, shape (X, Y, Z, E)
    mask : ndarray of bool, shape (X, Y, Z)
    echo_times_s : E floats, s, increasing
    noise_sigma : float
        The complex noise's SD per channel, in the magnitude's units.
    """
    mask = np.asarray(mask, dtype=bool)
    first = np.asarray(magnitude[..., 0], dtype=np.float64)[mask]
    last = np.asarray(magnitude[..., -1], dtype=np.float64)[mask]
    span = float(echo_times_s[-1]) - float(echo_times_s[0])
    out = np.zeros(mask.shape, bool)
    if span <= 0 or first.size == 0:
        return out
    tiny = np.finfo(np.float64).tiny
    rate = np.log(np.maximum(first, tiny) / np.maximum(last, tiny)) / span
    noise = noise_sigma * np.sqrt(1.0 / np.maximum(first, tiny) ** 2 + 1.0 / np.maximum(last, tiny) ** 2) / span
    limit = FACTOR * float(np.median(rate))
    out[mask] = (rate > limit) & (rate - limit > SIGNIFICANCE * noise)
    return out
