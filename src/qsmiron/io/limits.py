"""What an acquisition's metadata may plausibly say: one place for the limits every reader checks.

Both the dataset validator (``qsmiron.io.bids``) and the image loader (``qsmiron.io.gre``)
reject values outside these limits as a units mistake, with the same numbers.
"""

from __future__ import annotations

MIN_ECHOES = 2
"""The fewest echoes a reconstruction accepts: the phase offset needs two to be removed."""

ECHO_TIME_MS_THRESHOLD_S = 1.0
"""Echo times above this (in 'seconds') are almost surely milliseconds."""

FIELD_STRENGTH_RANGE_T = (0.1, 25.0)
"""Field strengths (tesla) outside this range are rejected as a units mistake (mT, gauss):
from low-field scanners to the strongest preclinical magnets."""

MIN_VOXELS_PER_AXIS = 8
"""Fewer voxels along an axis leave nothing after background removal's erosion and the
inversion's padding (a 2 mm ball erodes 2-4 voxels from each side): a 2D image is refused."""

MAX_VOXEL_MM = 10.0
"""Largest plausible voxel edge of an MRI head image; a larger one is a broken header."""
