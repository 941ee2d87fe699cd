"""Held-out heads: the family's ranges drawn at random, for checking the defaults chosen on it.

``simulate.heads.FAMILY`` is twelve hand-placed heads, and the reconstruction's defaults were
chosen on them. Defaults chosen on one set of phantoms can fail on another, so heads drawn
independently from the same ranges, never used to choose anything, tell whether the figures
carry over. Every property the family varies is drawn uniformly and independently over the
family's own range:

- slab tilt about x in [-25, 25] degrees and about y in [-6, 6]; head rotation in the slab
  [-4, 4] degrees about each axis;
- slice thickness one of 1, 1.2, 1.5, 2 and 2.5 mm (1 x 1 mm in plane);
- grey matter +0.010 to +0.020 ppm, white matter -0.030 to -0.020 ppm, texture 0.002 to
  0.008 ppm;
- CSF gap 1 to 4 mm, skull 4 to 7 mm thick at -2.4 to -1.0 ppm;
- air cavities scaled 0.7 to 1.4, moved up to 6 mm along each axis, 1.5 to 3 mm from the brain;
- brain-mask error -2 to +2 mm in half-millimetre steps.

The draws are independent, so a dilated mask can reach through a thin CSF gap into the skull
(``mask_reaches_skull``): the family holds one such head on purpose (h09), which no
background method survives, and a summary should name these heads rather than mix them in.
"""

from __future__ import annotations

import numpy as np

from qsmiron.simulate.heads import HeadSpec

SLICE_THICKNESSES_MM = (1.0, 1.2, 1.5, 2.0, 2.5)
"""Slice thicknesses drawn from (each divides the family's 180 mm field of view)."""

SEED_BASE = 1000
"""Head seeds are ``SEED_BASE * (draw_seed + 1) + index``: never one of the family's (1-12)."""


def _uniform(rng: np.random.Generator, low: float, high: float, digits: int) -> float:
    return round(float(rng.uniform(low, high)), digits)


def drawn_head(rng: np.random.Generator, index: int, draw_seed: int) -> HeadSpec:
    """One head with every varied property drawn from the family's range (module docstring)."""
    tilt = (_uniform(rng, -25.0, 25.0, 1), _uniform(rng, -6.0, 6.0, 1))
    rotation = tuple(_uniform(rng, -4.0, 4.0, 1) for _ in range(3))
    slice_mm = float(rng.choice(SLICE_THICKNESSES_MM))
    mask_error = float(rng.integers(-4, 5)) / 2.0
    spec = dict(
        oblique_deg=tilt, head_rotation_deg=rotation, voxel_size_mm=(1.0, 1.0, slice_mm),
        gm_ppm=_uniform(rng, 0.010, 0.020, 4), wm_ppm=_uniform(rng, -0.030, -0.020, 4),
        texture_ppm=_uniform(rng, 0.002, 0.008, 4), csf_gap_mm=_uniform(rng, 1.0, 4.0, 1),
        skull_mm=_uniform(rng, 4.0, 7.0, 1), skull_ppm=_uniform(rng, -2.4, -1.0, 2),
        cavity_scale=_uniform(rng, 0.7, 1.4, 2),
        cavity_shift_mm=tuple(_uniform(rng, -6.0, 6.0, 1) for _ in range(3)),
        cavity_clearance_mm=_uniform(rng, 1.5, 3.0, 1), mask_error_mm=mask_error)
    name = f"d{draw_seed}-{index:02d}_obl{abs(tilt[0]):.0f}_{slice_mm:g}mm_mask{mask_error:+g}"
    return HeadSpec(name, seed=SEED_BASE * (draw_seed + 1) + index, **spec)


def drawn_heads(count: int, draw_seed: int = 0) -> tuple[HeadSpec, ...]:
    """``count`` held-out heads; the same ``draw_seed`` gives the same heads."""
    if count < 1:
        raise ValueError(f"count must be at least 1, got {count}")
    if draw_seed < 0:
        raise ValueError(f"draw_seed must not be negative, got {draw_seed}")
    rng = np.random.default_rng([draw_seed, 9])
    return tuple(drawn_head(rng, index, draw_seed) for index in range(1, count + 1))


def mask_reaches_skull(spec: HeadSpec) -> bool:
    """The given mask, dilated by ``mask_error_mm``, crosses the CSF gap into the skull."""
    return spec.mask_error_mm > spec.csf_gap_mm
