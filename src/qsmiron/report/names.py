"""How the report names regions, measures and clinical variables for a reader.

Regions are spelled out with the atlas abbreviation in parentheses ("ventral pallidum (VeP)"):
the CIT168 label table (Pauli et al. 2018, doi:10.1038/sdata.2018.63) and the label files
that ship it give abbreviations only, so the full names of its 16 nuclei (and of the two
nuclei the simulator adds) are written here as the atlas paper names them. A region this
table does not know keeps its abbreviation. Clinical variables are named by the
``LongName`` (else ``Description``) of ``participants.json`` with their ``Units``
(:class:`~qsmiron.records.study.ColumnInfo`), else by their column name.
"""

from __future__ import annotations

from typing import Any, Mapping

from qsmiron.report.formatting import is_missing

REGION_NAMES = {
    "Pu": "putamen", "Ca": "caudate nucleus", "NAC": "nucleus accumbens", "EXA": "extended amygdala",
    "GPe": "globus pallidus externus", "GPi": "globus pallidus internus",
    "SNc_PBP_VTA": "substantia nigra pars compacta and ventral tegmental area complex",
    "SNc": "substantia nigra pars compacta", "VTA": "ventral tegmental area", "PBP": "parabrachial pigmented nucleus",
    "RN": "red nucleus", "SNr": "substantia nigra pars reticulata", "VeP": "ventral pallidum",
    "HN": "habenular nuclei", "HTH": "hypothalamus", "MN": "mammillary nucleus", "STH": "subthalamic nucleus",
    "Thal": "thalamus", "DN": "dentate nucleus",
}
"""Full names of the CIT168 nuclei (and the thalamus and dentate nucleus of the simulator).

SNc_PBP_VTA is the atlas's one label for the substantia nigra pars compacta, the
parabrachial pigmented nucleus and the ventral tegmental area, named short here."""

SHORT_NAMES = {"SNc_PBP_VTA": "SNc, PBP and VTA"}
"""Shorter spellings for figure labels where the full name does not fit."""

HEMISPHERE_WORDS = {"L": "left", "R": "right", "B": "bilateral"}

MEASURE_NAMES = {"chi": "susceptibility \u03c7", "r2star": "R2*", "chi_para": "paramagnetic susceptibility \u03c7+",
                 "chi_dia": "diamagnetic susceptibility \u03c7\u2212"}
MEASURE_SYMBOLS = {"chi": "\u03c7", "r2star": "R2*", "chi_para": "\u03c7+", "chi_dia": "\u03c7\u2212"}
MEASURE_UNITS = {"chi": "ppm", "r2star": "s\u207b\u00b9", "chi_para": "ppm", "chi_dia": "ppm"}


def region_name(region: Any) -> str:
    """``ventral pallidum (VeP)``; an unknown abbreviation as it is."""
    text = str(region)
    name = REGION_NAMES.get(text)
    return f"{name} ({text.replace('_', ', ')})" if name else text


def region_label(region: Any, hemisphere: Any = None) -> str:
    """``ventral pallidum (VeP), left``."""
    side = None if is_missing(hemisphere) else HEMISPHERE_WORDS.get(str(hemisphere), str(hemisphere))
    return region_name(region) + (f", {side}" if side else "")


def short_label(region: Any, hemisphere: Any = None) -> str:
    """``VeP L`` for figure axes where the full name does not fit."""
    text = SHORT_NAMES.get(str(region), str(region))
    return text if is_missing(hemisphere) else f"{text} {hemisphere}"


def variable_name(column: str, units: Mapping[str, Any] | None = None, *, with_unit: bool = True) -> str:
    """A clinical column as a reader knows it: its data-dictionary name and unit, else the column."""
    info = (units or {}).get(column)
    name = column
    if info is not None:
        long_name = getattr(info, "long_name", None)
        description = getattr(info, "description", None)
        if long_name:
            name = long_name
        elif description and len(description) <= 50:
            name = description
        unit = getattr(info, "units", None)
        if with_unit and unit:
            return f"{name} ({unit})"
    return name


def variable_short(column: str, units: Mapping[str, Any] | None = None) -> str:
    """An axis label: the column with its unit when the data dictionary gives one."""
    info = (units or {}).get(column)
    unit = getattr(info, "units", None) if info is not None else None
    return f"{column} ({unit})" if unit else column


def unit_text(unit: Any) -> str:
    """A unit as printed: ``s^-1`` -> ``s⁻¹``."""
    return str(unit).replace("^-1", "\u207b\u00b9")


def measure_axis(measure: str = "chi") -> str:
    """``χ (ppm)``, ``R2* (s⁻¹)``."""
    return f"{MEASURE_SYMBOLS.get(measure, measure)} ({MEASURE_UNITS.get(measure, '')})"
