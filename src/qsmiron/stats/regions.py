"""The regions table: regional values of every participant, in one tidy long form.

One row per participant, region, hemisphere, ``measure`` and (for chi) ``reference``, with
at least the columns ``participant_id``, ``region``, ``hemisphere``, ``measure``,
``reference`` and ``mean`` (what ``qsmiron run`` writes: a subject's ``qsmiron roi`` table
with a participant column; ``unit``, ``sd`` and counts are ignored here) and, optionally,
``median``, ``interior_median`` and the quality flags (``QUALITY_FLAGS``: analysed as measured
with a warning, or left out under the study's ``exclude_flagged``, :mod:`qsmiron.stats.qc_exclusion`). The statistics analyse one summary of each region's voxels
(``Study.statistic``, :func:`analysed_statistic`): by default, for chi, the interior-weighted
median when the table has it for every value, else the median, else the mean; for the other
measures the median, else the mean.
Measures are ``chi`` (ppm; under the references ``whole_brain``, ``csf``, ``mask``),
``r2star`` (s^-1), ``chi_para`` and ``chi_dia`` (ppm; chi-separation), whose ``reference`` is
``n/a`` (``qsmiron.records.regions``). A table of the form before these measures (a
``mean_ppm`` column, no ``measure``) is read as chi under the whole-brain reference.

``n/a`` in ``mean`` is a missing value (that participant is left out of that region's
analyses and the exclusion reported). Hemispheres are ``L`` and ``R`` (``left`` / ``right``
accepted); a region without sides (midline) may leave the hemisphere empty and is then
labelled ``B``.

A longitudinal dataset adds a ``session`` column (``ses-<label>``, the form ``qsmiron run``
writes; a bare label is accepted): a participant then has one row per region, hemisphere,
measure, reference and session. The statistics compare participants, so they analyse one
session at a time (:func:`select_session`) and one measure (and reference) at a time
(:func:`select_measure`); see :mod:`qsmiron.pipeline.group` for how a cohort with several
sessions is analysed.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from qsmiron.errors import InputError
from qsmiron.io.participants import (MISSING_VALUES, normalise_participant_id, normalise_session_id,
                                     read_text_table)
from qsmiron.records.regions import MEASURE_UNITS, REFERENCES

REQUIRED_COLUMNS = ("participant_id", "region", "hemisphere", "measure", "reference", "mean")
SESSION_COLUMN = "session"
CHI, WHOLE_BRAIN = "chi", "whole_brain"
STATISTICS = ("interior_median", "median", "mean")
"""The summaries of a region's voxels a regions table may hold (``mean`` is required;
``qsmiron.roi.measure`` defines them)."""
DEFAULT_ORDER = {CHI: STATISTICS}
"""Per measure, the summaries the default prefers, first to last (:func:`analysed_statistic`);
a measure not named here prefers ``OTHER_MEASURES_ORDER``."""
OTHER_MEASURES_ORDER = ("median", "mean")
STATISTIC_NAMES = {"interior_median": "interior-weighted median", "median": "median", "mean": "mean"}
"""How the text of the methods and the report names each summary."""
VALUE = "value"
"""The column of the analysed summary in a table of one measure (:func:`select_measure`)."""
QUALITY_FLAGS = {"flag_small": "from few voxels", "flag_partial_coverage": "on part of the region",
                 "flag_registration": "through a registration flagged as an outlier"}
"""Flags of ``qsmiron roi`` kept with a value (True/False; absent or empty reads as False), and
how each is named in the statistics' warnings and exclusions."""
QualityFlag = Literal["flag_small", "flag_partial_coverage", "flag_registration"]
"""The names of ``QUALITY_FLAGS`` as a type (``Study.exclude_flagged``)."""
EXCLUDED_FLAGS = "excluded_flags"
"""Column of the flags (comma-separated) for which a value was left out by the study's QC rule
(:func:`qsmiron.stats.qc_exclusion.exclude_flagged_values`); empty where the value is kept."""
LEGACY_COLUMNS = {"mean_ppm": "mean", "median_ppm": "median", "sd_ppm": "sd"}
"""Columns of the table before the measures (chi only, ppm) and their names now."""
_HEMISPHERES = {"l": "L", "left": "L", "lh": "L", "r": "R", "right": "R", "rh": "R",
                "b": "B", "both": "B", "bilateral": "B", "midline": "B"}


def read_regions(path: str | os.PathLike) -> pd.DataFrame:
    """Read and validate a long regions TSV (see :func:`validate_regions`)."""
    path = Path(path)
    return validate_regions(read_text_table(path, "regions table"), path=path)


def upgrade_regions_table(frame: pd.DataFrame) -> pd.DataFrame:
    """A table of the form before the measures (``mean_ppm``, no ``measure``) in today's form:
    chi under the whole-brain reference, in ppm; today's tables are returned as they are."""
    columns = [str(column).strip() for column in frame.columns]
    if "measure" in columns or "mean_ppm" not in columns:
        return frame
    frame = frame.set_axis(columns, axis=1).rename(columns=LEGACY_COLUMNS)
    at = columns.index("hemisphere") + 1 if "hemisphere" in columns else len(frame.columns)
    for offset, (name, value) in enumerate((("measure", CHI), ("reference", WHOLE_BRAIN),
                                            ("unit", MEASURE_UNITS[CHI]))):
        frame.insert(at + offset, name, value)
    return frame


def _hemisphere(frame: pd.DataFrame, path) -> pd.Series:
    def side(value: object) -> str | None:
        if pd.isna(value) or str(value).strip() in MISSING_VALUES:
            return "B"
        return _HEMISPHERES.get(str(value).strip().lower())

    hemisphere = frame["hemisphere"].map(side)
    if hemisphere.isna().any():
        bad = sorted(set(frame.loc[hemisphere.isna(), "hemisphere"].astype(str)))
        raise InputError(f"column 'hemisphere' holds {', '.join(bad[:5])}; expected L or R", path)
    return hemisphere


def _measure_and_reference(frame: pd.DataFrame, path) -> tuple[pd.Series, pd.Series]:
    """The measure column (known names) and the reference (chi: a known reference; else None)."""
    measure = frame["measure"].map(lambda v: str(v).strip() if pd.notna(v) else "")
    unknown = sorted(set(measure) - set(MEASURE_UNITS))
    if unknown:
        raise InputError(f"column 'measure' holds {', '.join(repr(u) for u in unknown[:5])}; expected "
                         f"{', '.join(MEASURE_UNITS)}", path)
    reference = frame["reference"].map(lambda v: str(v).strip() if pd.notna(v) else None)
    reference = reference.where(measure == CHI, None)
    bad = reference[(measure == CHI) & ~reference.isin(REFERENCES)]
    if len(bad):
        raise InputError(f"column 'reference' holds {', '.join(sorted({str(b) for b in bad})[:5])} on chi "
                         f"rows; expected {', '.join(REFERENCES)}", path)
    return measure, reference


def _values(raw: pd.Series, path, column: str = "mean") -> pd.Series:
    values = pd.to_numeric(raw, errors="coerce")
    text = raw.notna() & values.isna()
    if text.any():
        bad = sorted(set(raw[text].astype(str)))
        raise InputError(f"column '{column}' holds non-numeric value(s) {', '.join(bad[:5])}", path)
    values = values.astype(float)
    infinite = ~np.isfinite(values) & values.notna()
    if infinite.any():
        raise InputError(f"column '{column}' holds {int(infinite.sum())} infinite value(s)", path)
    return values


_FLAG_TEXT = {"true": True, "1": True, "false": False, "0": False, "": False, "n/a": False, "nan": False}


def _flag_values(raw: pd.Series, path, column: str) -> pd.Series:
    """A flag column as booleans: true/false (any case), 1/0; empty or n/a reads as false."""
    text = raw.map(lambda v: "" if v is None else str(v).strip().lower())
    bad = sorted(set(text[~text.isin(list(_FLAG_TEXT))]))
    if bad:
        raise InputError(f"column '{column}' holds {', '.join(bad[:5])}; expected True or False", path)
    return text.map(_FLAG_TEXT).astype(bool)


def _excluded_flags(raw: pd.Series, path) -> pd.Series:
    """The ``EXCLUDED_FLAGS`` column as text: known flag names joined by commas, empty for none."""
    names = raw.map(lambda v: [] if pd.isna(v) or str(v).strip() in MISSING_VALUES
                    else [part.strip() for part in str(v).split(",") if part.strip()])
    unknown = sorted({name for items in names for name in items} - set(QUALITY_FLAGS))
    if unknown:
        raise InputError(f"column '{EXCLUDED_FLAGS}' holds {', '.join(unknown[:5])}; expected "
                         f"{', '.join(QUALITY_FLAGS)}", path)
    return names.map(",".join).astype(object)


def validate_regions(frame: pd.DataFrame, *, path: str | os.PathLike | None = None) -> pd.DataFrame:
    """Check and normalise a regions table.

    Returns
    -------
    DataFrame
        Columns ``participant_id`` (``sub-`` form), ``region``, ``hemisphere`` (L/R/B),
        ``measure``, ``reference`` (None for measures other than chi) and ``mean`` (float,
        NaN where missing), then ``median`` and the ``QUALITY_FLAGS`` the input has (and
        ``EXCLUDED_FLAGS``, text, when the input has it), in the input's row order, then ``session`` (``ses-<label>``, None where missing) when the input has that column;
        other columns dropped. A table of the earlier form (``mean_ppm``) comes out as chi
        under ``whole_brain``.

    Raises
    ------
    InputError
        Missing columns (named), an empty table, non-numeric ``mean``, ``median`` or
        ``interior_median`` values,
        unknown hemisphere labels, measures or references, or the same participant, region,
        hemisphere, measure, reference (and session) twice.
    """
    frame = upgrade_regions_table(frame)
    columns = [str(column).strip() for column in frame.columns]
    missing = [name for name in REQUIRED_COLUMNS if name not in columns]
    if missing:
        raise InputError(f"regions table lacks column(s) {', '.join(missing)} "
                         f"(columns found: {', '.join(columns) or 'none'})", path)
    with_session = SESSION_COLUMN in columns
    optional = [name for name in STATISTICS if name != "mean" and name in columns]
    flags = [name for name in QUALITY_FLAGS if name in columns] + ([EXCLUDED_FLAGS] if EXCLUDED_FLAGS in columns else [])
    kept = list(REQUIRED_COLUMNS) + optional + flags + ([SESSION_COLUMN] if with_session else [])
    frame = frame.set_axis(columns, axis=1)[kept].copy()
    if frame.empty:
        raise InputError("regions table has no rows", path)

    ids = frame["participant_id"].map(normalise_participant_id)
    if ids.isna().any():
        raise InputError(f"column 'participant_id' is empty on {int(ids.isna().sum())} row(s)", path)
    frame["participant_id"] = ids
    region = frame["region"].map(lambda v: str(v).strip() if pd.notna(v) else "")
    if (region == "").any():
        raise InputError(f"column 'region' is empty on {int((region == '').sum())} row(s)", path)
    frame["region"] = region
    frame["hemisphere"] = _hemisphere(frame, path)
    frame["measure"], frame["reference"] = _measure_and_reference(frame, path)
    for column in ("mean", *optional):
        frame[column] = _values(frame[column], path, column)
    for column in flags:
        frame[column] = (_excluded_flags(frame[column], path) if column == EXCLUDED_FLAGS
                         else _flag_values(frame[column], path, column))

    key = ["participant_id", "region", "hemisphere", "measure", "reference"]
    if with_session:
        frame[SESSION_COLUMN] = frame[SESSION_COLUMN].map(normalise_session_id)
        key.append(SESSION_COLUMN)
    repeated = frame[frame.duplicated(key, keep=False)]
    if not repeated.empty:
        first = repeated.iloc[0]
        where = " ".join(str(first[k]) for k in key if first[k] is not None)
        hint = ("; a table with several sessions needs a 'session' column"
                if not with_session else "")
        raise InputError(f"{where} appears more than once ({len(repeated)} duplicated rows){hint}", path)
    return frame.reset_index(drop=True)


def measures_of(regions: pd.DataFrame) -> list[str]:
    """The measures of a validated regions table with at least one value, in ``MEASURE_UNITS`` order."""
    present = set(regions.loc[regions["mean"].notna(), "measure"])
    return [name for name in MEASURE_UNITS if name in present]


def references_of(regions: pd.DataFrame) -> list[str]:
    """The references of chi in a validated regions table, in ``REFERENCES`` order."""
    present = set(regions.loc[regions["measure"] == CHI, "reference"])
    return [name for name in REFERENCES if name in present]


def analysed_statistic(regions: pd.DataFrame, requested: str | None, *, measure: str = CHI,
                       source: str | os.PathLike | None = None) -> str:
    """The summary of each region's voxels the statistics analyse.

    ``requested`` (``Study.statistic``) when given; by default the first summary of
    ``measure``'s order (``DEFAULT_ORDER``) that the table has wherever it has a mean of that
    measure. For chi: the interior-weighted median (``qsmiron roi`` writes all three), else the
    median, else the mean; for R2* and the chi-separation maps: the median, else the mean. The
    median resists the edge voxels a warped label shares with its surroundings (partial volume,
    misregistration), which pull a small nucleus's mean towards them; the interior weights
    (``qsmiron.roi.measure``) count those voxels less still, where the median of a thin nucleus,
    most of whose voxels lie at its edge, cannot.

    The interior-weighted median against the median (bias against the value each region was
    given, ppb; r and slope of the recovered on the true values over the subjects; left / right):

    - 24 heads of ``benchmarks/validate_family_cohort.py`` (1 x 1 x 1.2 mm), end to end: VeP
      bias -14.4 / -14.7 -> -10.2 / -10.8 (against the truth averaged on the scan grid, -1.6 /
      -3.1 -> +2.6 / +0.8), slope 0.88 / 0.93 -> 0.96 / 0.97, r 0.96 / 0.95 -> 0.96 / 0.96; GPi
      -5.8 / -7.0 -> -2.6 / -4.4; GPe -5.4 / -6.9 -> -4.1 / -6.0; putamen -3.6 / -5.4 -> -3.2 /
      -5.0; SNr -17.3 / -16.6 -> -12.5 / -12.0; STN -6.6 / -8.6 -> -4.7 / -5.5. The cost, over
      all 28 CIT168 rows: r fell by 0.01-0.04 in the hypothalamus, mammillary nuclei and SNc
      (HTH 0.89 / 0.87 -> 0.85 / 0.85), and |bias| rose by up to 0.8 ppb in caudate, EXA, HTH,
      MN and NAC.
    - The demo's two draws (seeds 0 and 1, 40 subjects each at 2 mm; their maps and labels
      measured again): |bias| lower in all 8 target regions x 2 sides on both (GPi -15.2 / -21.4
      -> -9.6 / -12.6 and -16.1 / -21.9 -> -10.5 / -13.5, VeP -39.3 / -37.0 -> -36.6 / -34.3),
      the slope closer to 1 in 15 and 16 of 16 (GPi R 0.65 -> 0.81 and 0.75 -> 0.88, VeP 0.55 /
      0.52 -> 0.60 / 0.61), r higher in 12 of 16 (worst 0.895 -> 0.896 and 0.844 -> 0.852; GPi R
      0.92 -> 0.97). ``qsmiron demo`` end to end (seed 0): the MOH - CM difference planted at
      -20 ppb came out in VeP as -14.9 / -17.8 (median -13.3 / -15.5) and in putamen as -19.6 /
      -22.7 ppb (median -19.1 / -22.2), each planted value inside its 95 % CI.
    - Not for R2*: on the same draws, against the true R2* on the scan grid, r was higher in only
      2 of 16 (RN L 0.35 -> 0.11): R2* differs little between subjects against its voxel noise,
      and the weights shrink the sample. So R2* and the chi-separation maps keep the median.
    - Eroding each label by a voxel instead (``[roi] erode_voxels = 1``): on the family heads VeP
      -5.7 / -8.0 ppb but slope 1.15 / 1.10, and at 2 mm it empties VeP, SNr and STN.

    The median against the mean, measured first:

    Measured on two simulated cohorts with known regional values (slope of the measured
    against the true values over the subjects, left / right; mean -> median):

    - 24 heads of ``benchmarks/validate_family_cohort.py`` (1 x 1 x 1.2 mm, oblique, skull and
      sinuses): putamen 0.80 / 0.79 -> 0.89 / 0.87, GPe 0.78 / 0.80 -> 0.95 / 0.94, GPi 0.71 /
      0.74 -> 0.94 / 0.96, caudate 0.88 / 0.84 -> 0.98 / 0.90, red nucleus 0.83 / 0.83 -> 0.93 /
      0.91, STN 0.84 / 0.76 -> 0.92 / 0.90, SNr 0.77 / 0.77 -> 0.83 / 0.84, VeP 0.83 / 0.87 ->
      0.88 / 0.93. Bias against the true values: GPe -25.9 / -27.5 -> -5.4 / -6.9 ppb, GPi
      -34.4 / -35.4 -> -5.8 / -7.0, putamen -8.4 / -9.4 -> -3.6 / -5.3, VeP -18.3 / -19.3 ->
      -14.4 / -14.6. Correlation higher or within 0.01 (GPi 0.96 -> 0.98).
    - 40 subjects of ``qsmiron demo`` (2 mm, another simulator): putamen 0.82 / 0.83 -> 0.92 /
      0.91, GPe 0.75 / 0.74 -> 0.80 / 0.84, caudate 0.78 / 0.75 -> 0.88 / 0.86, red nucleus
      0.77 / 0.74 -> 0.81 / 0.85, STN 0.62 / 0.64 -> 0.67 / 0.72; GPi, SNr and VeP within 0.03
      (0.52 both in VeP); correlation within 0.02 but for left GPi (0.97 -> 0.95) and left STN
      (0.95 -> 0.93). The MOH - CM difference planted at -20 ppb came out in putamen as
      -19.1 / -22.2 ppb against -16.8 / -20.1, in VeP -13.3 / -15.5 against -12.9 / -14.8.
    - Another 40 subjects of the demo's simulator (``qsmiron demo --seed 1``): putamen 0.83 /
      0.85 -> 0.93 / 0.93, GPe 0.77 / 0.80 -> 0.86 / 0.85, caudate 0.81 / 0.80 -> 0.90 / 0.91,
      red nucleus 0.78 / 0.80 -> 0.89 / 0.88; GPi, SNr and VeP within 0.03. The cost, in the
      smallest regions at 2 mm: correlation VeP 0.91 / 0.89 -> 0.90 / 0.84, SNr 0.91 / 0.91 ->
      0.85 / 0.90 (a median of 15-20 voxels is noisier than their mean). Putamen's difference
      (realised in the sample -14.4 / -16.7 ppb) came out as -14.5 / -16.0 against -12.9 /
      -14.5, VeP's (realised -15.3 / -13.5) as -9.2 / -8.0 against -9.0 / -8.2.
    - R2* (both demo draws, against the true R2* on the scan grid, 8 regions x 2 sides x 2
      draws): the median's correlation was higher in 24 of the 32 and its slope in 27, and it
      lies 0.5-1 s^-1 above the mean (R2* in a region is skewed to high values).

    Raises
    ------
    InputError
        A summary was asked for and the table has none of it.
    """
    if requested is None:
        if "measure" in regions.columns and (regions["measure"] == measure).any():
            regions = regions[regions["measure"] == measure]
        return next(name for name in DEFAULT_ORDER.get(measure, OTHER_MEASURES_ORDER) if _complete(regions, name))
    if requested not in STATISTICS:
        raise ValueError(f"statistic must be one of {', '.join(STATISTICS)}, got {requested!r}")
    if requested not in regions.columns or not bool(regions[requested].notna().any()):
        raise InputError(f"the study analyses each region's {STATISTIC_NAMES[requested]} (statistic = "
                         f"\"{requested}\") but the regions table has no '{requested}' values; give statistic "
                         f"= \"mean\" in the study file", source)
    return requested


def _complete(regions: pd.DataFrame, statistic: str) -> bool:
    """Whether the table has ``statistic`` wherever it has a mean (the mean always counts): a
    summary present for only some rows (tables of two qsmiron versions joined) is not chosen by
    default, since its missing values would drop those participants."""
    if statistic == "mean":
        return True
    if statistic not in regions.columns:
        return False
    values, means = regions[statistic], regions["mean"]
    return bool(values.notna().any()) and not bool((means.notna() & values.isna()).any())


def select_measure(regions: pd.DataFrame, measure: str = CHI, reference: str | None = WHOLE_BRAIN, *,
                   statistic: str | None = None, source: str | os.PathLike | None = None) -> pd.DataFrame:
    """The rows of one measure (and, for chi, one reference): ``participant_id``, ``region``,
    ``hemisphere``, the summary ``statistic`` as ``value`` (resolved by :func:`analysed_statistic`:
    None is the measure's default), the flags (and ``session``).

    Raises
    ------
    InputError
        The measure, or chi's reference, is not in the table (those present are named), or
        a summary was asked for and the table has none of it.
    """
    statistic = analysed_statistic(regions, statistic, measure=measure, source=source)
    if measure not in set(regions["measure"]):
        raise InputError(f"measure {measure!r} is not in the regions table (measures present: "
                         f"{', '.join(measures_of(regions)) or 'none'})", source)
    selected = regions[regions["measure"] == measure]
    if measure == CHI:
        if reference not in set(selected["reference"]):
            raise InputError(f"chi under reference {reference!r} is not in the regions table (references "
                             f"present: {', '.join(references_of(regions)) or 'none'})", source)
        selected = selected[selected["reference"] == reference]
    summaries = [name for name in STATISTICS if name in selected.columns]
    return (selected.rename(columns={statistic: VALUE})
            .drop(columns=["measure", "reference", *[n for n in summaries if n != statistic]])
            .reset_index(drop=True))


def sessions_of(regions: pd.DataFrame) -> list[str]:
    """The sessions of a validated regions table, sorted (empty without a session column)."""
    if SESSION_COLUMN not in regions.columns:
        return []
    return sorted({s for s in regions[SESSION_COLUMN] if s is not None})


def select_session(regions: pd.DataFrame, session: str | None, *,
                   source: str | os.PathLike | None = None) -> pd.DataFrame:
    """The rows of one session, without the session column: a table the statistics accept.

    Parameters
    ----------
    regions : DataFrame
        A validated regions table (see :func:`validate_regions`).
    session : str or None
        ``ses-<label>`` or a bare label. None is allowed only when the table holds at most one
        session (the table is then returned without its session column).
    source : path, optional
        The file the table came from, named in errors.

    Raises
    ------
    InputError
        The session is not in the table (the sessions present are named), or None was given
        for a table of several sessions.
    """
    present = sessions_of(regions)
    if session is None:
        if len(present) > 1:
            raise InputError(f"regions table holds {len(present)} sessions ({', '.join(present)}); "
                             "participants are compared within one session: choose it with "
                             "session = \"<label>\" in the study file", source)
        selected = regions
    else:
        session = normalise_session_id(session)
        if session not in present:
            raise InputError(f"session {session!r} is not in the regions table (sessions present: "
                             f"{', '.join(present) or 'none'})", source)
        selected = regions[regions[SESSION_COLUMN] == session]
    return selected.drop(columns=[SESSION_COLUMN], errors="ignore").reset_index(drop=True)


def region_keys(regions: pd.DataFrame, names: list[str] | None = None) -> list[tuple[str, str]]:
    """The (region, hemisphere) pairs in table order (first appearance), L before R.

    Parameters
    ----------
    names : list of str, optional
        Keep only these regions, in this order.
    """
    pairs = list(dict.fromkeys(zip(regions["region"], regions["hemisphere"])))
    order = {"L": 0, "R": 1, "B": 2}
    first_seen = {name: i for i, name in enumerate(dict.fromkeys(regions["region"]))}
    if names is not None:
        first_seen = {name: i for i, name in enumerate(names)}
        pairs = [pair for pair in pairs if pair[0] in first_seen]
    return sorted(pairs, key=lambda pair: (first_seen[pair[0]], order.get(pair[1], 3)))


def flagged_values_warning(regions: pd.DataFrame, participants) -> str | None:
    """One line naming, per region, how many of the analysed participants' values carry a
    ``QUALITY_FLAGS`` flag (they are analysed as measured); None when none does. A value the
    study's QC rule left out (``exclude_flagged``) has no value here and is not counted.

    ``regions`` is a table of one measure (:func:`select_measure`).
    """
    rows = regions[regions["participant_id"].isin(set(participants)) & regions[VALUE].notna()]
    parts = []
    for flag, meaning in QUALITY_FLAGS.items():
        if flag not in rows.columns or not rows[flag].any():
            continue
        counts = rows[rows[flag]].groupby(["region", "hemisphere"], sort=False).size()
        listed = ", ".join(f"{region} {side} {n}" for (region, side), n in counts.items())
        parts.append(f"{int(counts.sum())} measured {meaning} ({flag}: {listed})")
    if not parts:
        return None
    return ("regional values flagged by qsmiron roi are analysed as measured: " + "; ".join(parts)
            + "; see each subject's regions table")


def wide_regions(regions: pd.DataFrame, column: str = VALUE) -> pd.DataFrame:
    """``participant_id`` index, one column per (region, hemisphere), values from ``column``:
    the table of one measure (:func:`select_measure`) and one session."""
    return regions.pivot(index="participant_id", columns=["region", "hemisphere"], values=column)
