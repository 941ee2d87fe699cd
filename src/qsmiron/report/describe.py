"""How the methods paragraph words values: one value, a range across scans, or counts.

Values that differ between scans are given as ranges (numbers) or as the distinct values
with their counts; a value no scan has is None, and the caller calls it unknown.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Any, Callable, Iterable, Mapping, Sequence

from qsmiron.report.formatting import is_missing

UNIT_SUFFIXES = {"_mm": "mm", "_per_s": "s^-1", "_s": "s", "_ms": "ms", "_hz": "Hz", "_ppm": "ppm", "_rad": "rad",
                 "_deg": "\u00b0", "_vox": "voxels", "_ml": "mL", "_t": "T"}
"""A parameter's unit, read from its name (units are in names throughout qsmiron)."""


def present(values: Iterable[Any]) -> list[Any]:
    """The values that are there (not None, not empty text, not NaN)."""
    out = []
    for value in values:
        if value is None or (isinstance(value, str) and not value.strip()):
            continue
        if not isinstance(value, (list, tuple, dict, str)) and is_missing(value):
            continue
        out.append(value)
    return out


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def join(items: Sequence[str], last: str = "and") -> str:
    items = [i for i in items if i]
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + f" {last} " + items[-1]


def plural(n: int, word: str, plural_form: str | None = None) -> str:
    return f"{n} {word if n == 1 else (plural_form or word + 's')}"


def sig(value: float, digits: int = 4) -> str:
    """A parameter value: up to ``digits`` significant digits, no trailing noise."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if value == 0:
        return "0"
    return f"{value:.{digits}g}"


def describe_values(values: Iterable[Any], fmt: Callable[[Any], str] = str, unit: str = "") -> str | None:
    """One value, a range across scans, or the distinct values with their counts.

    Returns None when no value is present (the caller then says "unknown").
    """
    values = present(values)
    if not values:
        return None
    suffix = f" {unit}" if unit else ""
    texts = [fmt(v) for v in values]
    counts = Counter(texts)
    if len(counts) == 1:
        return texts[0] + suffix
    if all(is_number(v) for v in values):
        low, high = min(values), max(values)
        return f"{fmt(low)}\u2013{fmt(high)}{suffix} (varying across scans)"
    return "; ".join(f"{text}{suffix} ({plural(n, 'scan')})" for text, n in counts.most_common())


def milliseconds(seconds: float) -> str:
    return f"{seconds * 1000:.2f}"


def triple(value: Any, fmt: Callable[[float], str]) -> str | None:
    if not isinstance(value, (list, tuple)) or not value:
        return None
    return " \u00d7 ".join(fmt(float(v)) for v in value)


def parameter_unit(key: str) -> str:
    for suffix, unit in UNIT_SUFFIXES.items():
        if key.endswith(suffix) and len(key) > len(suffix):
            return unit
    return ""


def format_parameter(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if is_number(value):
        return sig(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(format_parameter(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{k}: {format_parameter(v)}" for k, v in value.items()) + "}"
    return "none" if value is None else str(value)


def summarise_parameter(key: str, values: list[Any], varying: str = "set per scan") -> str | None:
    """``name = value unit``, a range with its median, or the values with their counts."""
    unit = parameter_unit(key)
    suffix = f" {unit}" if unit else ""
    texts = [format_parameter(v) for v in values]
    if not texts:
        return None
    if len(set(texts)) == 1:
        if values[0] is None:
            # A setting left unset means "the method's own default" (recorded separately).
            return f"{key} = method default"
        return f"{key} = {texts[0]}{suffix}"
    numbers = [v for v in values if is_number(v)]
    unset = sum(v is None for v in values)
    if numbers and len(numbers) + unset == len(values) and len(set(numbers)) > 1:
        # A number per scan, or none where the method found none: the range, and how many had none
        # (not every value listed, which for a data-driven weight is one per scan).
        ordered = sorted(numbers)
        mid = len(ordered) // 2
        median = ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2
        missing = f"; none in {plural(unset, 'scan')}" if unset else ""
        return (f"{key} = {sig(min(numbers))}\u2013{sig(max(numbers))}{suffix} ({varying}, median "
                f"{sig(median)}{missing})")
    counts = Counter(texts)
    return f"{key} = " + " or ".join(f"{t}{suffix} ({plural(n, 'scan')})" for t, n in counts.most_common())


def summarise_mappings(mappings: list[Mapping[str, Any]], keep: Callable[[str, Any], bool] = lambda k, v: True,
                       varying: str = "set per scan") -> list[str]:
    """One ``summarise_parameter`` per key of the mappings (in first-seen order) that ``keep`` accepts."""
    keys = list(dict.fromkeys(k for m in mappings for k, v in m.items() if keep(k, v)))
    texts = [summarise_parameter(k, [m[k] for m in mappings if k in m], varying) for k in keys]
    return [t for t in texts if t]
