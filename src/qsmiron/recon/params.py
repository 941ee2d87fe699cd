"""Bounds of method parameters, written in the signatures that declare them.

A method's parameters are its keyword-only arguments (``qsmiron.methods``); these aliases put
their valid range into the annotation, where the settings read it, so that a value outside it
is rejected when the configuration is read, before any work. They change nothing at run
time: the functions accept what they always did.
"""

from __future__ import annotations

from typing import Annotated

from annotated_types import Ge, Gt, Interval

PositiveFloat = Annotated[float, Gt(0)]
"""A float > 0 (a tolerance, a smoothing width)."""

NonNegativeFloat = Annotated[float, Ge(0)]
"""A float >= 0 (a padding, an opening radius; 0 switches it off)."""

OpenFraction = Annotated[float, Interval(gt=0, lt=1)]
"""A float in (0, 1): a relative tolerance, a truncation level, a probability."""

Fraction = Annotated[float, Interval(ge=0, lt=1)]
"""A float in [0, 1)."""

PositiveInt = Annotated[int, Ge(1)]
"""An int >= 1 (an iteration count)."""

NonNegativeInt = Annotated[int, Ge(0)]
"""An int >= 0 (an index)."""
