"""The study's quality-control rule: regional values flagged by ``qsmiron roi`` left out before analysis.

``qsmiron roi`` flags a value measured from few voxels (``flag_small``), on a region partly
outside the field of view (``flag_partial_coverage``) or through a registration flagged as an
outlier (``flag_registration``); see ``QUALITY_FLAGS``. By default the statistics analyse such
values as measured and warn (:func:`qsmiron.stats.regions.flagged_values_warning`). A study
file's ``exclude_flagged = ["flag_registration", ...]`` fixes the rule before the analysis:

- :func:`exclude_flagged_values` empties (n/a) every summary of each value carrying one of those
  flags and names the flags in the table's ``excluded_flags`` column. It runs once where the
  regions table enters the statistics (``qsmiron.pipeline.group``, and, for callers of the
  Python functions, :func:`qsmiron.stats.analysis.run_measure` and
  :func:`qsmiron.stats.extensions.run_regional_extensions`; a second run changes nothing), so
  harmonisation, the longitudinal and normative models, the group comparison, associations,
  relapse models and the report's figures all see the same table;
- each analysis then leaves the value out as it leaves out a missing one, and
  :func:`attribute_exclusions` gives the exclusion its true reason (``value flagged
  flag_registration (through a registration flagged as an outlier)``, with the region) in
  place of ``missing chi_ppm``;
- :func:`excluded_counts` gives the methods text its numbers (values and participants);
- voxel-wise, where values are maps, only ``flag_registration`` applies: a participant with a
  flagged registration is left out of the contrasts (:func:`voxelwise_exclusions`, read from
  the cohort's ``regions.tsv`` beside the maps).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd

from qsmiron.stats._design import CHI_LABEL
from qsmiron.stats.regions import EXCLUDED_FLAGS, QUALITY_FLAGS, SESSION_COLUMN, STATISTICS, VALUE

VALUE_LABEL = CHI_LABEL
"""How the analyses of one measure name its regional value in their exclusion records."""

Places = dict[tuple[str, str | None, str], list[str]]
"""(participant, place of the record or None, the missing value's label) -> the flags that left it out."""


def flag_reason(flag: str) -> str:
    """The exclusion reason of a value left out for ``flag``."""
    return f"value flagged {flag} ({QUALITY_FLAGS[flag]})"


def exclude_flagged_values(regions: pd.DataFrame, flags: Iterable[str]) -> pd.DataFrame:
    """The regions table with every value carrying one of ``flags`` left out.

    Parameters
    ----------
    regions : DataFrame
        A validated regions table (:func:`qsmiron.stats.regions.validate_regions`), any measures
        and sessions.
    flags : iterable of str
        Names of ``QUALITY_FLAGS`` (``Study.exclude_flagged``); empty: the table as given.

    Returns
    -------
    DataFrame
        A copy in which each row with a value (any summary present) and one of ``flags`` true has
        every summary (``mean``, ``median``, ``interior_median``) n/a and the flags that hit it,
        comma-separated, in ``excluded_flags`` (empty on the other rows). A row already left out
        keeps its ``excluded_flags``: running this twice gives the same table.
    """
    flags = [name for name in QUALITY_FLAGS if name in set(flags)]
    if not flags:
        return regions
    frame = regions.copy()
    if EXCLUDED_FLAGS not in frame.columns:
        at = frame.columns.get_loc(SESSION_COLUMN) if SESSION_COLUMN in frame.columns else len(frame.columns)
        frame.insert(at, EXCLUDED_FLAGS, "")
    summaries = [name for name in (*STATISTICS, VALUE) if name in frame.columns]
    hit = pd.DataFrame({name: frame[name].astype(bool) for name in flags if name in frame.columns},
                       index=frame.index, columns=[name for name in flags if name in frame.columns])
    left_out = hit.any(axis=1) & frame[summaries].notna().any(axis=1)
    if left_out.any():
        names = hit[left_out].apply(lambda row: ",".join(row.index[row.to_numpy(bool)]), axis=1)
        frame.loc[left_out, summaries] = np.nan
        frame.loc[left_out, EXCLUDED_FLAGS] = names
    return frame


def excluded_values(regions: pd.DataFrame) -> dict[tuple[str, str, str], list[str]]:
    """(participant, region, hemisphere) -> the flags for which the value was left out, in a table of
    one measure and session (:func:`qsmiron.stats.regions.select_measure`)."""
    if EXCLUDED_FLAGS not in regions.columns:
        return {}
    rows = regions[regions[EXCLUDED_FLAGS].astype(bool)]
    return {(pid, region, side): names.split(",") for pid, region, side, names in
            rows[["participant_id", "region", "hemisphere", EXCLUDED_FLAGS]].itertuples(index=False)}


def excluded_counts(regions: pd.DataFrame, participants: Iterable[str],
                    keys: Iterable[tuple[str, str]]) -> tuple[int, int]:
    """How many values of ``keys`` (region, hemisphere) of ``participants`` were left out, and of how
    many participants, in a table of one measure and session."""
    chosen, keys = set(participants), set(keys)
    places = [(pid, (region, side)) for pid, region, side in excluded_values(regions)
              if pid in chosen and (region, side) in keys]
    return len(places), len({pid for pid, _ in places})


def attribute_exclusions(records: list[dict[str, Any]], places: Places) -> list[dict[str, Any]]:
    """Exclusion records of listwise deletion (:func:`qsmiron.stats._design.complete_cases`) with each
    value left out by the QC rule given its flag as the reason.

    A record whose ``missing`` labels include such a value becomes one record per flag (``where``:
    the record's place, else the value's label) and, when something else was missing as well, one
    ``missing ...`` record of the rest; the other records are returned as they are.
    """
    out = []
    for record in records:
        pid, where, missing = record["participant_id"], record.get("where"), record.get("missing", [])
        flagged = {label: places[(pid, where, label)] for label in missing if (pid, where, label) in places}
        if not flagged:
            out.append(record)
            continue
        for label, flags in flagged.items():
            out += [{**record, "reason": flag_reason(flag), "where": where or label, "missing": [label]}
                    for flag in flags]
        rest = [label for label in missing if label not in flagged]
        if rest:
            out.append({**record, "reason": "missing " + ", ".join(rest), "missing": rest})
    return out


def region_places(regions: pd.DataFrame, label: str = VALUE_LABEL) -> Places:
    """The places of :func:`attribute_exclusions` for analyses that run region by region (their
    records' ``where`` is ``"VeP L"``, the value's label ``chi_ppm``), from a table of one measure."""
    return {(pid, f"{region} {side}", label): flags for (pid, region, side), flags in excluded_values(regions).items()}


def flag_reasons(names: str | None) -> str:
    """The reasons of an ``excluded_flags`` cell (``"flag_small,flag_registration"``), joined; empty for none."""
    if not isinstance(names, str) or not names:
        return ""
    return "; ".join(flag_reason(name) for name in names.split(","))


def excluded_records(regions: pd.DataFrame, analysis: str, participants: Iterable[str] | None = None,
                     keys: Iterable[tuple[str, str]] | None = None) -> list[dict[str, Any]]:
    """One exclusion record per value left out and flag, for an analysis that drops missing values
    without records of its own (the longitudinal models): ``where`` is the region, with the session
    when the table has one. Only ``participants`` and ``keys`` (region, hemisphere) when given."""
    if EXCLUDED_FLAGS not in regions.columns:
        return []
    rows = regions[regions[EXCLUDED_FLAGS].astype(bool)]
    if participants is not None:
        rows = rows[rows["participant_id"].isin(set(participants))]
    if keys is not None:
        keys = set(keys)
        rows = rows[[(region, side) in keys for region, side in zip(rows["region"], rows["hemisphere"])]]
    sessions = rows[SESSION_COLUMN] if SESSION_COLUMN in rows.columns else [None] * len(rows)
    return [{"participant_id": pid, "analysis": analysis, "reason": flag_reason(flag),
             "where": " ".join(str(part) for part in (region, side, session) if part is not None)}
            for pid, region, side, names, session in zip(rows["participant_id"], rows["region"], rows["hemisphere"],
                                                         rows[EXCLUDED_FLAGS], sessions)
            for flag in names.split(",")]


def rule_warning(regions: pd.DataFrame, flags: Iterable[str]) -> str | None:
    """A warning when the rule names flags the regions table has no column of (a table of another
    tool or of an earlier qsmiron): nothing can be left out for them; None otherwise."""
    absent = [name for name in QUALITY_FLAGS if name in set(flags) and name not in regions.columns]
    if not absent:
        return None
    return (f"exclude_flagged names {', '.join(absent)} but the regions table has no such column: no value was "
            "left out for it")


REGISTRATION_FLAG = "flag_registration"


def flagged_registrations(regions: pd.DataFrame, session: str | None = None) -> list[str]:
    """Participants (at ``session``, when the table has sessions) with a value measured through a
    registration flagged as an outlier: voxel-wise their template-space map came through it too."""
    if REGISTRATION_FLAG not in regions.columns:
        return []
    rows = regions
    if session is not None and SESSION_COLUMN in rows.columns:
        rows = rows[rows[SESSION_COLUMN].astype(str) == str(session)]
    flagged = rows[rows[REGISTRATION_FLAG].astype(bool)]
    return list(dict.fromkeys(str(pid) for pid in flagged["participant_id"]))


def voxelwise_exclusions(regions: pd.DataFrame | None, flags: Iterable[str], session: str | None,
                         source: str) -> tuple[list[str], list[dict[str, Any]], list[str]]:
    """The study's QC rule for voxel-wise analysis: only ``flag_registration`` applies to a map.

    Returns the participants left out, their exclusion records and warnings (the rule names the
    flag but no regions table, ``source``, tells which registrations were flagged).
    """
    if REGISTRATION_FLAG not in set(flags):
        return [], [], []
    if regions is None:
        return [], [], [f"exclude_flagged names {REGISTRATION_FLAG} but there is no regions table ({source}) "
                        "to tell which registrations were flagged: no map was left out"]
    left = flagged_registrations(regions, session)
    reason = f"map through a registration flagged as an outlier ({REGISTRATION_FLAG})"
    records = [{"participant_id": pid, "analysis": "voxelwise", "reason": reason} for pid in left]
    return left, records, []
