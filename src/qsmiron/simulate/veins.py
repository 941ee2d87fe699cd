"""Deep cerebral veins for the simulated heads (``HeadSpec.veins``).

The deep nuclei a migraine study measures sit among veins: the basal vein of Rosenthal begins
under the anterior perforated substance, a few millimetres below the ventral pallidum, and
winds round the cerebral peduncle beside the substantia nigra; the internal cerebral and
thalamostriate veins run over the thalamus and along the caudate. Venous blood is one of the
strongest sources in the brain, so its field (and the streaks an inversion can make of it)
reaches the nuclei. The heads of ``simulate.heads`` had none.

Each vein is a tube along a polyline of MNI152 points (mm; approximate courses from the
anatomy, placed against the CIT168 nuclei of the phantom: the basal vein's first point lies
6 mm below the ventral pallidum's centroid, its blood 2-3 mm from the nucleus's voxels),
rasterised with its partial volume (a one-voxel linear ramp at the wall). Blood replaces the
tissue it overlaps.

- Susceptibility +0.40 ppm relative to water: haematocrit 0.4 x the deoxy-oxy difference 3.39
  ppm (SI; 0.27 ppm cgs, Spees et al., MRM 2001;45:533) x (1 - Y) at oxygenation Y = 0.7,
  0.41 ppm; the middle of the 0.3-0.5 ppm QSM measures in cerebral veins.
- R2* 40 s^-1 at 3 T (venous blood T2* about 25 ms at Y = 0.7), scaled with the field strength
  like the tissue's.

What they showed (``benchmarks/bench_bgremove.py --veins``, the 11 family heads, ``pdf_ismv``):
VeP reads 2-7 ppb lower on every head (|VeP error| median / worst 4.8 / 18.0 -> 10.7 / 20.1 ppb),
the other regions move little (regional error 3.7 / 6.8 -> 4.3 / 7.8 ppb, slopes 0.96-1.01); in
the scanner frame VeP reads 1.4-6.1 ppb lower (6.1 / 17.8 -> 9.8 / 20.0 ppb).
Inverting the true local field, the veins change VeP by under 0.3 ppb; from the true local field
alone iSMV's VeP goes -6.2 / -3.2 -> -11.0 / -6.0 ppb on h03: iSMV takes the basal vein's field
at its eroded mask's edge (the vein runs 5 mm inside the mask there) for background.
"""

from __future__ import annotations

import numpy as np

from qsmiron.io.nifti import box_through_affine

VEIN_CHI_PPM = 0.40
VEIN_R2STAR_3T_PER_S = 40.0

_PAIRED = (  # (name, radius mm, polyline in the left hemisphere, x < 0; mirrored for the right)
    ("basal vein of Rosenthal", 1.25, ((-14, 4, -15), (-20, -6, -13), (-21, -18, -9), (-16, -30, -2),
                                        (-8, -38, 3), (0, -42, 5))),
    ("internal cerebral vein", 1.25, ((-2, -2, 17), (-2, -15, 19), (-2, -28, 16), (-1, -38, 8), (0, -42, 5))),
    ("thalamostriate vein", 1.0, ((-20, -22, 18), (-15, -10, 17), (-8, -2, 16), (-2, -2, 17))),
)
_MIDLINE = (("great cerebral vein (Galen)", 2.0, ((0, -42, 5), (0, -50, 2))),)


def deep_veins() -> tuple[tuple[str, float, np.ndarray], ...]:
    """Every vein as (name, radius mm, polyline (n, 3) in MNI mm), both hemispheres."""
    veins = []
    for name, radius, points in _PAIRED:
        left = np.asarray(points, float)
        veins.append((f"{name} L", radius, left))
        veins.append((f"{name} R", radius, left * [-1.0, 1.0, 1.0]))
    veins += [(name, radius, np.asarray(points, float)) for name, radius, points in _MIDLINE]
    return tuple(veins)


def _segment_distance(points: np.ndarray, start: np.ndarray, stop: np.ndarray) -> np.ndarray:
    direction = stop - start
    along = np.clip((points - start) @ direction / float(direction @ direction), 0.0, 1.0)
    return np.linalg.norm(points - (start + along[:, None] * direction), axis=1)


def vein_fraction(shape, affine: np.ndarray, veins=None) -> np.ndarray:
    """Fraction (0-1, float32) of each voxel of a grid (``affine``: voxel -> MNI mm) that is
    venous blood: clip(radius + half a voxel - distance to the centreline, 0, 1). ``veins``:
    (name, radius mm, polyline) tuples, ``deep_veins()`` by default."""
    affine = np.asarray(affine, float)
    inverse = np.linalg.inv(affine)
    voxel_mm = float(np.cbrt(abs(np.linalg.det(affine[:3, :3]))))
    fraction = np.zeros(tuple(shape), np.float32)
    for _, radius, polyline in deep_veins() if veins is None else veins:
        for start, stop in zip(polyline[:-1], polyline[1:]):
            reach = radius + voxel_mm
            first, last = box_through_affine(np.minimum(start, stop) - reach, np.maximum(start, stop) + reach,
                                             inverse)
            low = np.clip(np.floor(first).astype(int), 0, shape)
            high = np.clip(np.ceil(last).astype(int) + 1, 0, shape)
            box = tuple(slice(int(a), int(b)) for a, b in zip(low, high))
            grid = np.stack(np.meshgrid(*[np.arange(s.start, s.stop) for s in box], indexing="ij"), -1)
            if grid.size == 0:
                continue
            mm = grid.reshape(-1, 3) @ affine[:3, :3].T + affine[:3, 3]
            part = np.clip(radius + 0.5 * voxel_mm - _segment_distance(mm, start, stop), 0.0, voxel_mm) / voxel_mm
            fraction[box] = np.maximum(fraction[box], part.reshape(grid.shape[:3]).astype(np.float32))
    return fraction

