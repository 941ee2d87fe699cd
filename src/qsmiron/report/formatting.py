"""How numbers read in the report: susceptibility to 4 decimals, p-values as 0.012 or <0.001.

One place decides the format of every value so that tables, figure captions and the methods
paragraph agree.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

MISSING = "n/a"
"""How a missing value is shown (as in BIDS tables)."""

SIGNIFICANCE_LEVEL = 0.05
"""FDR-adjusted p below which a result row is marked significant."""


def is_missing(value: Any) -> bool:
    """True for None, NaN and pandas' missing markers."""
    if value is None:
        return True
    try:
        return bool(np.isnan(value))  # floats, NumPy scalars, pd.NA-like floats
    except (TypeError, ValueError):
        pass
    try:
        import pandas as pd

        return bool(pd.isna(value)) if np.ndim(value) == 0 else False
    except (TypeError, ValueError):
        return False


def format_p(p: Any) -> str:
    """p-values as journals print them: ``<0.001``, ``0.012``, ``0.450``, ``1.000``."""
    if is_missing(p):
        return MISSING
    p = float(p)
    if p < 0.001:
        return "<0.001"
    return f"{min(p, 1.0):.3f}"


def format_ppm(value: Any, decimals: int = 4) -> str:
    """Susceptibility (or any ppm quantity) with a fixed number of decimals; ``-0.0000`` avoided."""
    if is_missing(value):
        return MISSING
    text = f"{float(value):.{decimals}f}"
    return text[1:] if text.startswith("-") and float(text) == 0 else text


def format_number(value: Any, decimals: int = 2) -> str:
    """A float with ``decimals`` places; very small or large magnitudes in scientific form."""
    if is_missing(value):
        return MISSING
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    value = float(value)
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    if abs(value) >= 1e6:
        return f"{value:.3g}"
    text = f"{value:.{decimals}f}"
    return text[1:] if text.startswith("-") and float(text) == 0 else text


def format_count(value: Any) -> str:
    if is_missing(value):
        return MISSING
    value = float(value)
    return str(int(round(value))) if value == round(value) else format_number(value, 1)


def format_interval(estimate: Any, low: Any, high: Any, decimals: int = 2) -> str:
    """``0.45 (0.21\u20130.97)`` with an en dash, ``-0.92 (-1.57 to -0.26)`` when a bound is negative
    (a dash next to a minus sign misreads); missing parts shown as n/a."""
    if is_missing(estimate):
        return MISSING
    main = format_number(estimate, decimals)
    if is_missing(low) and is_missing(high):
        return main
    low_text, high_text = format_number(low, decimals), format_number(high, decimals)
    joint = " to " if low_text.startswith("-") or high_text.startswith("-") else "\u2013"
    return f"{main} ({low_text}{joint}{high_text})"


def format_mean_sd(mean: Any, sd: Any, decimals: int = 4) -> str:
    """``0.0612 ± 0.0201`` (ppm)."""
    if is_missing(mean):
        return MISSING
    if is_missing(sd):
        return format_ppm(mean, decimals)
    return f"{format_ppm(mean, decimals)} \u00b1 {format_ppm(sd, decimals)}"


def format_auto(column: str, value: Any) -> str:
    """Format ``value`` by what its column name says it is (used for tables of unknown shape).

    p-value columns (``p``, ``*_p``, ``p_*``) as p-values; counts (``n``, ``n_*``) as integers;
    susceptibility (``*_ppm``, means and SDs) to 4 decimals; other floats to 3 decimals.
    """
    if is_missing(value):
        return MISSING
    name = column.lower()
    if isinstance(value, str):
        return value
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if name == "p" or name.endswith("_p") or name.startswith("p_") or name in {"pvalue", "p_value"}:
        return format_p(value)
    if name == "n" or name.startswith("n_"):
        return format_count(value)
    if (name.endswith("_ppm") or name.startswith(("mean", "sd", "adj_mean", "median"))
            or name in {"chi", "chi_ppm"}):
        return format_ppm(value)
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        return format_number(value, 3)
    return str(value)


def is_significant(p_fdr: Any, level: float = SIGNIFICANCE_LEVEL) -> bool:
    """True when an FDR-adjusted p-value is present and below ``level``."""
    return not is_missing(p_fdr) and float(p_fdr) < level
