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
