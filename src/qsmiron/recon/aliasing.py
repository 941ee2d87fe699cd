"""Voxels whose fitted field is off by a whole aliasing period of the echo train.

When every echo time is close to a multiple of some ``1 / period`` (echoes at ``n dTE``, or
at 3, 7.5, 12 ... ms = multiples of 1.5 ms), a field off by ``k * period`` Hz gives the same
wrapped phase at every echo: the data cannot tell the two fields apart, the echo fit's residual
stays small, and only the spatial unwrapping decides. Where it decides wrongly (a low-signal
cluster at the brain's edge, next to a sinus) the fitted field is off by one or more periods
(at 7 T with echoes every 4.5 ms from 3 ms: 667 Hz, 2.2 ppm), consistently over the echoes.
The chi-square test of the fit does not see such a voxel by design; its neighbours do: real
fields do not differ by half a period between voxels two millimetres apart inside the brain.

``aliased_voxels`` flags a usable voxel when more of its usable neighbours in a 5 x 5 x 5 cube
differ from it by a whole number of periods (within a quarter period) than agree with it
within half a period. A wrong cluster of up to about 60 voxels is flagged whole; the later
steps then treat it as having no field, as they treat the echo fit's misfit voxels. A voxel in
a steep real field (next to a sinus, at 2 mm) differs from its neighbours by varied amounts,
not by whole periods: in a demo subject two such voxels 0.51-0.53 periods off their
neighbours' median were flagged by half a period alone, and are not by this rule.

On family head h01 simulated at 7 T (``benchmarks/bench_bgremove.py --acquisition 7T``) 13
voxels at the brain's edge were off by 2.24 ppm (one period) and unflagged once the echo fit's
misfit tolerance kept the voxels with a slightly bent phase: Chimap NRMSE 37.6 %. This rule
flags 11 of them: 30.8 % (30.6 % with all 13 marked; 34.2 % before the tolerance, when the
chi-square test flagged 28 of 33 such voxels by chance and 4 615 good ones with them).
"""

from __future__ import annotations

from typing import Sequence

import numba
import numpy as np

from qsmiron.recon.fourier import bounding_box

MAX_PERIOD_HZ = 5000.0
"""Fields that differ by more than this are not looked for: beyond the range of a brain."""

ALIAS_PHASE_RAD = np.pi / 4
"""A frequency aliases when its phase at every echo is within this of a whole turn."""

NEIGHBOURHOOD_RADIUS = 2
"""Half the side of the neighbour cube (5 x 5 x 5 voxels)."""


def aliasing_period_hz(echo_times_s: Sequence[float]) -> float | None:
    """The smallest frequency (Hz) whose phase at every echo time is within ``ALIAS_PHASE_RAD``
    of a whole turn, up to ``MAX_PERIOD_HZ``; None if there is none (or a single echo)."""
    te = np.asarray(echo_times_s, dtype=np.float64)
    if te.size < 2:
        return None
    frequencies = np.arange(1.0, MAX_PERIOD_HZ + 0.25, 0.25)
    turns = np.outer(frequencies, te)
    error = np.abs(turns - np.round(turns)).max(axis=1) * 2.0 * np.pi
    # Low frequencies turn the phase too little to alias: skip the run that starts at zero.
    leaving = np.flatnonzero(error > ALIAS_PHASE_RAD)
    if leaving.size == 0:
        return None
    found = leaving[0] + np.flatnonzero(error[leaving[0]:] <= ALIAS_PHASE_RAD)
    if found.size == 0:
        return None
    # Refine within the run of admissible frequencies around the first one: its best point.
    start = found[0]
    stop = start
    while stop + 1 < frequencies.size and error[stop + 1] <= ALIAS_PHASE_RAD:
        stop += 1
    return float(frequencies[start + int(np.argmin(error[start:stop + 1]))])


def aliased_voxels(field_hz: np.ndarray, usable: np.ndarray, period_hz: float) -> np.ndarray:
    """Usable voxels that differ by a whole number of periods (within a quarter period, and by
    more than half a period) from more of their usable neighbours (5 x 5 x 5 cube) than agree
    with them within half a period: an aliasing error of the spatial unwrapping. Neighbours
    that differ by other amounts (a steep real field) count for neither."""
    usable = np.asarray(usable, dtype=bool)
    out = np.zeros(usable.shape, bool)
    if not usable.any():
        return out
    box = bounding_box(usable, margin=NEIGHBOURHOOD_RADIUS)
    flagged = np.zeros(usable[box].shape, bool)
    _flag_outliers(np.ascontiguousarray(field_hz[box], dtype=np.float32),
                   np.ascontiguousarray(usable[box]), np.float32(period_hz), NEIGHBOURHOOD_RADIUS, flagged)
    out[box] = flagged
    return out


@numba.njit(parallel=True, cache=True)
def _flag_outliers(field, usable, period, radius, flagged):  # pragma: no cover - compiled
    nx, ny, nz = field.shape
    limit = period / 2
    window = period / 4
    # Once more than half of the cube agrees, no count of the rest can flag the voxel.
    enough = ((2 * radius + 1) ** 3 - 1) // 2 + 1
    for x in numba.prange(nx):
        for y in range(ny):
            for z in range(nz):
                if not usable[x, y, z]:
                    continue
                value = field[x, y, z]
                near = 0
                far = 0
                for i in range(max(x - radius, 0), min(x + radius + 1, nx)):
                    if near >= enough:
                        break
                    for j in range(max(y - radius, 0), min(y + radius + 1, ny)):
                        for k in range(max(z - radius, 0), min(z + radius + 1, nz)):
                            if usable[i, j, k] and not (i == x and j == y and k == z):
                                difference = abs(field[i, j, k] - value)
                                if difference <= limit:
                                    near += 1
                                elif abs(difference - period * np.floor(difference / period + 0.5)) < window:
                                    far += 1
                flagged[x, y, z] = far > near
