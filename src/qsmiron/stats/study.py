"""The study design: which groups, covariates, regions, clinical variables and outcomes.

A study file (TOML, or JSON) holds any subset of the settings below; unknown keys are an
error that names them. What the file leaves out is decided from the data by
:func:`resolve_study`, and the resolved study is what the results and the report record::

    covariates = ["age", "sex"]
    regions = []                      # empty or absent: all regions
    primary_regions = ["VeP", "Pu"]   # confirmatory FDR family (both hemispheres)
    session = "baseline"              # longitudinal data: the session analysed
    seed = 0                          # bootstrap and cross-validation draws
    measures = ["chi", "r2star"]      # absent: every measure of the regions table
    reference = "whole_brain"         # the reference of chi: whole_brain, csf or mask
    exclude_flagged = ["flag_registration"]  # QC rule: flagged regional values left out

    [groups]
    column = "group"
    compare = ["MOH", "CM"]           # group_a, group_b
    [associations]
    group = "MOH"                     # or "all" for the pooled sample
    variables = ["sds", "disease_duration", "hit6"]
    primary_variables = ["sds"]       # with primary_regions: the confirmatory associations
    method = "spearman"               # or "pearson"
    [relapse]
    group = "MOH"
    outcome = "relapse"               # 0/1
    time = "time_to_relapse"          # optional, with event = "relapse"
    count = "relapse_count"           # optional
    logistic = "auto"                 # Firth when events per variable < firth_below_epv
    km_times = [0, 3, 6, 9, 12]       # numbers at risk at these times (unit of `time`)
    [voxelwise]                       # optional sections, see qsmiron.stats.study_sections
    [harmonise]
    [longitudinal]
    [normative]

Defaults (when a key is absent)
-------------------------------
- ``groups.compare``: the two values of ``groups.column``, most frequent first (ties in
  alphabetical order); more than two values is an error asking for ``compare``.
- ``covariates``: ``age`` and ``sex`` when the participants table has them.
- ``regions``: every region of the regions table.
- ``primary_regions``: none (every row is one exploratory FDR family; see
  :mod:`qsmiron.stats.multiple`). Named regions must be among the analysed ones.
- ``associations.primary_variables``: every association variable.
- ``session``: the regions table's only session; with several sessions ``qsmiron run`` and
  ``qsmiron stats`` analyse each session separately (see :mod:`qsmiron.pipeline.group`).
- ``measures``: every measure of the regions table (chi, r2star, chi_para, chi_dia), each
  analysed on its own (:mod:`qsmiron.stats.measures`); ``reference``: ``whole_brain``.
- ``exclude_flagged``: none (values flagged by ``qsmiron roi`` are analysed as measured, with a
  warning counting them); see :mod:`qsmiron.stats.qc_exclusion`.
- ``associations.group``: ``group_a`` (the first compared group);
  ``associations.variables``: the numeric columns among :data:`KNOWN_CLINICAL_VARIABLES`
  that have values in that group.
- ``relapse.outcome``: ``relapse`` when that column exists (otherwise no relapse models);
  ``relapse.group``: the compared group that has outcome values when only one has, else
  ``all``; ``relapse.time``: ``time_to_relapse``, ``relapse.event``: the outcome,
  ``relapse.count``: ``relapse_count``, ``relapse.exposure``: ``followup_months``, each when
  the column exists.
"""

from __future__ import annotations

import os
import warnings
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import Field, PrivateAttr, field_validator

from qsmiron.errors import InputError
from qsmiron.io.participants import normalise_session_id
from qsmiron.settings_base import Settings, read_settings_file, validate_settings
from qsmiron.stats.regions import QUALITY_FLAGS, QualityFlag
from qsmiron.stats.study_sections import (HarmoniseSettings, LongitudinalSettings, NormativeSettings,
                                          VoxelwiseSettings)

KNOWN_CLINICAL_VARIABLES = (
    "disease_duration", "headache_days", "hit6", "midas", "sds", "ldq", "vas", "nrs",
    "hama", "hamd", "psqi",
)
"""Clinical columns used for associations when the study file does not list them."""

DEFAULT_COVARIATES = ("age", "sex")
ALL = "all"


def _labels(values: Any) -> Any:
    """Group labels may be written as numbers in TOML (``compare = [1, 2]``): keep them as text."""
    if values is None:
        return None
    if isinstance(values, (str, int, float)):
        return label_text(values)
    return [label_text(value) for value in values]


def label_text(value: Any) -> str:
    """The text form of a group label: ``1``, ``1.0`` and ``"1"`` are all ``"1"``."""
    if isinstance(value, (bool, np.bool_)):
        return str(value)
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))
    return str(value).strip()


class GroupSettings(Settings):
    """The two groups compared."""

    column: str = "group"
    compare: list[str] | None = Field(
        default=None, description="[group_a, group_b]; default: the two values of `column`")

    @field_validator("compare", mode="before")
    @classmethod
    def _compare_as_text(cls, value: Any) -> Any:
        return _labels(value)

    @field_validator("compare")
    @classmethod
    def _two_groups(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and (len(value) != 2 or value[0] == value[1]):
            raise ValueError("needs exactly two different group labels")
        return value


class AssociationSettings(Settings):
    """Partial correlations of regional susceptibility with clinical variables."""

    group: str | None = Field(default=None, description="a group label or 'all'; default group_a")
    variables: list[str] | None = None
    primary_variables: list[str] | None = Field(
        default=None, description="variables whose rows in the primary regions form the "
                                  "confirmatory FDR family; default: every variable")
    method: Literal["spearman", "pearson"] = "spearman"
    covariates: list[str] | None = Field(
        default=None, description="default: the study covariates")

    @field_validator("group", mode="before")
    @classmethod
    def _group_as_text(cls, value: Any) -> Any:
        return _labels(value)


class RelapseSettings(Settings):
    """Outcome models: logistic + ROC on a 0/1 outcome, Cox on time to event, counts."""

    group: str | None = None
    outcome: str | None = None
    time: str | None = None
    event: str | None = None
    count: str | None = None
    exposure: str | None = Field(
        default=None, description="follow-up column: offset of the count model and the "
                                  "censoring time where `time` is missing for non-events")
    covariates: list[str] | None = Field(
        default=None, description="default: the study covariates")
    roc_direction: Literal["auto", "higher", "lower"] = Field(
        default="auto", description="which chi values predict the outcome; 'auto' takes the "
                                    "direction with AUC >= 0.5 (as pROC does)")
    logistic: Literal["auto", "firth", "ml"] = Field(
        default="auto", description="'auto': Firth's penalised likelihood when events per "
        "variable < firth_below_epv or the data are separated, maximum likelihood otherwise")
    firth_below_epv: float = Field(default=10.0, gt=0)
    min_epv: float = Field(default=2.0, ge=0, description="fewer events per variable: no "
                                                          "logistic model")
    min_events: int = Field(default=5, ge=3, description="fewest events and non-events for "
                            "any outcome model, the cross-validated cut-off and corrected AUC")
    cv_folds: int = Field(default=5, ge=2, description="folds of the cut-off's cross-validation")
    cv_repeats: int = Field(default=20, ge=1)
    bootstrap: int = Field(default=200, ge=20, description="bootstrap samples of the "
                                                           "optimism-corrected AUC")
    km_times: list[float] | None = Field(
        default=None, description="times of the numbers at risk (unit of `time`); default: "
                                  "round steps from 0 to the longest follow-up")

    @field_validator("group", mode="before")
    @classmethod
    def _group_as_text(cls, value: Any) -> Any:
        return _labels(value)


class Study(Settings):
    """A study design. ``None`` means "decide from the data" (see :func:`resolve_study`)."""

    covariates: list[str] | None = None
    regions: list[str] = Field(default_factory=list)
    primary_regions: list[str] = Field(
        default_factory=list, description="regions of the confirmatory hypotheses: their rows "
        "(both hemispheres) form the primary FDR family, the other rows the exploratory one")
    seed: int = Field(default=0, ge=0, description="seed of the bootstrap and cross-validation")
    session: str | None = Field(
        default=None, description="the session (time point) analysed when the regions table holds "
        "several, as ses-<label> or <label>; default: each session separately")
    measures: list[Literal["chi", "r2star", "chi_para", "chi_dia"]] | None = Field(
        default=None, description="the measures analysed, each with its own false-discovery-rate "
        "families; default: every measure of the regions table")
    reference: Literal["whole_brain", "csf", "mask"] = Field(
        default="whole_brain", description="the reference region of chi analysed (the regions "
        "table's reference column)")
    statistic: Literal["interior_median", "median", "mean"] | None = Field(
        default=None, description="the summary of each region's voxels analysed: interior_median (the "
        "median with each voxel weighted by the square of the share of its 3 x 3 x 3 neighbourhood inside "
        "the region), median or mean; default: for chi the first of these the regions table has for every "
        "value (qsmiron roi writes all three), for R2* and chi-separation the median, else the mean. Edge "
        "voxels share partial volume and misregistered tissue with the surroundings, which pull a small "
        "nucleus's mean towards them; the median resists them and the interior weights count them less "
        "still (measured in qsmiron.stats.regions.analysed_statistic)")
    exclude_flagged: list[QualityFlag] = Field(
        default_factory=list, description="quality-control rule fixed before the analysis: regional values "
        "carrying any of these qsmiron roi flags (" + "; ".join(f"{name}: {meaning}" for name, meaning in
                                                       QUALITY_FLAGS.items()) + ") are left out of every analysis "
        "of regional values and each is listed among the exclusions with its flag; default: none, flagged values "
        "are analysed as measured with a warning")
    alpha: float = Field(default=0.05, gt=0, lt=1,
                         description="FDR level at which rows are called significant")
    min_group_size: int = Field(default=3, ge=3,
                                description="fewest subjects per group (or outcome class)")
    groups: GroupSettings = Field(default_factory=GroupSettings)
    associations: AssociationSettings = Field(default_factory=AssociationSettings)
    relapse: RelapseSettings = Field(default_factory=RelapseSettings)
    voxelwise: VoxelwiseSettings | None = None
    harmonise: HarmoniseSettings | None = None
    longitudinal: LongitudinalSettings | None = None
    normative: NormativeSettings | None = None

    _source: str | None = PrivateAttr(default=None)

    @field_validator("session", mode="before")
    @classmethod
    def _session_label(cls, value: Any) -> Any:
        if value is None:
            return None
        text = label_text(value)
        if not text or not text.removeprefix("ses-").isalnum():
            raise ValueError("must be a BIDS session label (letters and digits, optionally after 'ses-')")
        return normalise_session_id(text)

    @property
    def source(self) -> str | None:
        """The study file this came from (None for defaults)."""
        return self._source


def study_from_dict(payload: dict[str, Any], *, source: str | os.PathLike | None = None) -> Study:
    """Validate a study given as a dict (as parsed from TOML or JSON)."""
    study = validate_settings(Study, payload, what="study settings", source=source)
    study._source = None if source is None else os.fspath(source)
    return study


def load_study(path: str | os.PathLike | None = None) -> Study:
    """The study from a TOML (or ``.json``) file; the all-defaults study when ``path`` is None."""
    if path is None:
        return Study()
    return study_from_dict(read_settings_file(path, "study file"), source=path)


# ---------------------------------------------------------------------------------------
# Defaults decided from the data


def group_labels(column: pd.Series) -> pd.Series:
    """A group column as text labels (NaN kept), so that 1, 1.0 and "1" compare equal."""
    return column.map(lambda v: label_text(v) if pd.notna(v) else np.nan)


def resolve_study(study: Study, participants: pd.DataFrame, region_names: list[str], *,
                  source: str | os.PathLike | None = None) -> Study:
    """Fill every default of ``study`` from the data and check what the study names exists.

    Parameters
    ----------
    study : Study
    participants : DataFrame
        As from :func:`qsmiron.io.participants.read_participants`.
    region_names : list of str
        Regions present in the regions table, in table order.
    source : path, optional
        The participants table's file, named in errors.

    Returns
    -------
    Study
        A copy with no ``None`` left where the data decides (relapse columns stay None when
        the data has no such column).

    Raises
    ------
    InputError
        A named column, group label or region is not in the data; more than two groups and
        no ``groups.compare``.
    """
    table = source
    where = study.source or table
    resolved = study.model_copy(deep=True)
    resolved._source = study.source
    columns = set(participants.columns)
    labels, counts = _resolve_groups(resolved, participants, table)
    if resolved.covariates is None:
        resolved.covariates = [c for c in DEFAULT_COVARIATES
                               if c in columns and participants[c].notna().any()]
    _require_columns(resolved.covariates, columns, "covariates", table)
    _require_numbers_where_numeric(participants, resolved.covariates, "covariates", table)
    if resolved.groups.column in resolved.covariates:
        raise InputError(f"covariates include the group column '{resolved.groups.column}'", where)
    resolved.covariates = _varying_covariates(participants, resolved.covariates, table)
    if resolved.regions:
        by_lower = {name.lower(): name for name in region_names}
        unknown = [name for name in resolved.regions if name.lower() not in by_lower]
        if unknown:
            raise InputError(f"regions {', '.join(repr(u) for u in unknown)} are not in the "
                             f"regions table (present: {', '.join(region_names)})", where)
        resolved.regions = list(dict.fromkeys(by_lower[name.lower()] for name in resolved.regions))
    else:
        resolved.regions = list(region_names)
    resolved.primary_regions = _resolve_primary_regions(resolved.primary_regions,
                                                        resolved.regions, where)
    _resolve_associations(resolved, participants, labels, counts, table, where)
    _resolve_relapse(resolved, participants, labels, counts, table, where)
    return resolved


def _resolve_groups(resolved: Study, participants: pd.DataFrame, table) -> tuple[pd.Series, pd.Series]:
    """The two groups compared (default: the column's two values, most frequent first)."""
    group_column = resolved.groups.column
    if group_column not in participants.columns:
        raise InputError(f"has no group column '{group_column}' (groups.column); columns: "
                         f"{', '.join(participants.columns)}", table)
    labels = group_labels(participants[group_column])
    counts = labels.value_counts()
    if resolved.groups.compare is None:
        if len(counts) != 2:
            found = ", ".join(f"{label} ({n})" for label, n in counts.items()) or "none"
            raise InputError(f"column '{group_column}' has {len(counts)} group(s) ({found}); "
                             "say which two to compare with groups.compare in a study file",
                             table)
        order = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
        resolved.groups.compare = [order[0][0], order[1][0]]
    missing = [label for label in resolved.groups.compare if label not in counts.index]
    if missing:
        found = ", ".join(f"{label} ({n})" for label, n in counts.items()) or "none"
        raise InputError(f"groups.compare names {', '.join(repr(m) for m in missing)}, not found "
                         f"in column '{group_column}' (labels present: {found})", table)
    return labels, counts


def _resolve_associations(resolved: Study, participants: pd.DataFrame, labels, counts, table, where) -> None:
    """Association group, covariates and variables (default: the known clinical columns)."""
    columns = set(participants.columns)
    assoc = resolved.associations
    if assoc.group is None:
        assoc.group = resolved.groups.compare[0]
    if assoc.group != ALL and assoc.group not in counts.index:
        raise InputError(f"associations.group {assoc.group!r} is not a label of column "
                         f"'{resolved.groups.column}' (present: {', '.join(counts.index)}) nor 'all'", table)
    if assoc.covariates is None:
        assoc.covariates = list(resolved.covariates)
    _require_columns(assoc.covariates, columns, "associations.covariates", table)
    _require_numbers_where_numeric(participants, assoc.covariates, "associations.covariates", table)
    if assoc.variables is None:
        in_group = participants if assoc.group == ALL else participants[labels == assoc.group]
        assoc.variables = [name for name in KNOWN_CLINICAL_VARIABLES
                           if name in columns and pd.api.types.is_numeric_dtype(participants[name])
                           and in_group[name].notna().any()]
    _require_columns(assoc.variables, columns, "associations.variables", table)
    if assoc.primary_variables is not None:
        unknown = [name for name in assoc.primary_variables if name not in assoc.variables]
        if unknown:
            raise InputError(f"associations.primary_variables {', '.join(map(repr, unknown))} "
                             f"are not association variables ({', '.join(assoc.variables)})",
                             where)
    _require_numeric(participants, assoc.variables, "associations.variables", table)


def _resolve_relapse(resolved: Study, participants: pd.DataFrame, labels, counts, table, where) -> None:
    """Relapse columns (default: the conventional names when present), covariates and group."""
    columns = set(participants.columns)
    relapse = resolved.relapse
    group_a, group_b = resolved.groups.compare
    if relapse.outcome is None and "relapse" in columns:
        relapse.outcome = "relapse"
    for key, default in (("time", "time_to_relapse"), ("count", "relapse_count"),
                         ("exposure", "followup_months")):
        if getattr(relapse, key) is None and default in columns:
            setattr(relapse, key, default)
    if relapse.time is not None and relapse.event is None:
        relapse.event = relapse.outcome
    named = {key: getattr(relapse, key) for key in ("outcome", "time", "event", "count", "exposure")}
    for key, column in named.items():
        if column is not None:
            _require_columns([column], columns, f"relapse.{key}", table)
            _require_numeric(participants, [column], f"relapse.{key}", table)
    if relapse.time is not None and relapse.event is None:
        raise InputError("relapse.time is set but there is no event column (relapse.event or "
                         "relapse.outcome)", where)
    if relapse.covariates is None:
        relapse.covariates = list(resolved.covariates)
    _require_columns(relapse.covariates, columns, "relapse.covariates", table)
    _require_numbers_where_numeric(participants, relapse.covariates, "relapse.covariates", table)
    if relapse.group is None:
        outcome_columns = [c for c in (relapse.outcome, relapse.event, relapse.count) if c]
        if outcome_columns:
            with_outcome = [label for label in (group_a, group_b)
                            if participants.loc[labels == label, outcome_columns].notna().any().any()]
            relapse.group = with_outcome[0] if len(with_outcome) == 1 else ALL
        else:
            relapse.group = group_a
    if relapse.group != ALL and relapse.group not in counts.index:
        raise InputError(f"relapse.group {relapse.group!r} is not a label of column "
                         f"'{resolved.groups.column}' (present: {', '.join(counts.index)}) nor 'all'", table)


def _resolve_primary_regions(primary: list[str], analysed: list[str], where: Any) -> list[str]:
    """Primary regions as spelled in the regions table (any case), each analysed."""
    by_lower = {name.lower(): name for name in analysed}
    unknown = [name for name in primary if name.lower() not in by_lower]
    if unknown:
        raise InputError(f"primary_regions {', '.join(repr(u) for u in unknown)} are not among "
                         f"the analysed regions ({', '.join(analysed)})", where)
    return list(dict.fromkeys(by_lower[name.lower()] for name in primary))


def _require_columns(names: list[str], columns: set[str], key: str, path: Any) -> None:
    missing = [name for name in names if name not in columns]
    if missing:
        raise InputError(f"has no column(s) {', '.join(repr(m) for m in missing)} named by the "
                         f"study setting {key}", path)


def _varying_covariates(participants: pd.DataFrame, names: list[str], path: Any) -> list[str]:
    """The covariates that vary; one with a single value for every participant cannot adjust
    any model, and the study's covariates (which the report's "adjusted for" names) drop it,
    with a warning."""
    kept = []
    for name in names:
        present = participants[name].dropna()
        if present.nunique() >= 2:
            kept.append(name)
            continue
        first = present.iloc[0] if len(present) else None
        first = first.item() if isinstance(first, np.generic) else first
        value = "" if first is None else f" {first!r}"
        warnings.warn(f"{path}: covariate {name!r} has the single value{value} for every participant; it "
                      f"cannot adjust any model and is left out of the study's covariates", UserWarning, stacklevel=2)
    return kept


def _require_numeric(frame: pd.DataFrame, names: list[str], key: str, path: Any) -> None:
    """Every present value of each column is a number, or the first that is not is named."""
    for name in names:
        if not pd.api.types.is_numeric_dtype(frame[name]):
            _raise_first_non_number(frame, name, key, path)


def _require_numbers_where_numeric(frame: pd.DataFrame, names: list[str], key: str,
                                   path: Any) -> None:
    """Covariates may be text (sex, site); one whose values are mostly numbers is numeric,
    and a value in it that is not a number (``NA``, ``unknown``, a typo such as ``4O``) would
    silently turn it into one dummy per value, so it is an error naming the cell."""
    for name in names:
        values = frame[name]
        if pd.api.types.is_numeric_dtype(values):
            continue
        present = values.dropna().astype(str)
        if len(present) and present.map(_is_number).mean() >= 0.5:
            _raise_first_non_number(frame, name, key, path)


def _raise_first_non_number(frame: pd.DataFrame, name: str, key: str, path: Any) -> None:
    present = frame[name].dropna().astype(str)
    bad = present[~present.map(_is_number)]
    if bad.empty:
        return
    position = frame.index.get_loc(bad.index[0])
    who = frame["participant_id"].iloc[position] if "participant_id" in frame else None
    row = f"row {position + 1}" + (f" ({who})" if who is not None else "")
    others = f" and {len(bad) - 1} more" if len(bad) > 1 else ""
    raise InputError(f"column '{name}' ({key}) must be numeric: {row} holds {bad.iloc[0]!r}"
                     f"{others}; write a missing value as n/a", path)


def _is_number(text: str) -> bool:
    try:
        return bool(np.isfinite(float(text)))
    except ValueError:
        return False
