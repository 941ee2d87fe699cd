"""The relapse analyses of a study: every region's outcome models, as tables.

For each region and hemisphere, on the participants of ``relapse.group`` with every value of
the model present (listwise deletion, each exclusion recorded):

- the 0/1 outcome: logistic regression and ROC analysis
  (:func:`qsmiron.stats.relapse.binary_outcome_row`);
- time to event: Cox model, Kaplan-Meier curves and their numbers at risk
  (:func:`qsmiron.stats.survival.time_to_event_row`);
- counts: Poisson or negative binomial regression (:func:`qsmiron.stats.relapse.count_rate_ratio`).

The p-values of each model are Benjamini-Hochberg adjusted over the regions within the
primary and the exploratory family (:mod:`qsmiron.stats.multiple`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from qsmiron.errors import InputError
from qsmiron.stats import relapse as relapse_models
from qsmiron.stats._design import CHI, CHI_LABEL, complete_cases, region_label
from qsmiron.stats.multiple import fdr_bh_within, fdr_families
from qsmiron.stats.study import ALL, RelapseSettings, Study
from qsmiron.stats.survival import time_to_event_row

Curves = dict[tuple[str, str], pd.DataFrame]


@dataclass
class RelapseTables:
    """What the relapse analyses of a study produce (see ``StudyResults`` for the shapes)."""

    relapse: pd.DataFrame
    counts: pd.DataFrame | None = None
    roc_curves: Curves = field(default_factory=dict)
    km_curves: Curves = field(default_factory=dict)
    km_at_risk: Curves = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


def relapse_tables(table: pd.DataFrame, labels: pd.Series, wide: pd.DataFrame, keys, study: Study,
                   excluded: list[dict[str, Any]], source) -> RelapseTables:
    """Every relapse model of every region (``relapse.tsv``, ``relapse_counts.tsv``, curves).

    Parameters
    ----------
    table : DataFrame
        Participants (indexed by participant_id) of both tables.
    labels : Series
        Their group labels.
    wide : DataFrame
        regional value, one column per (region, hemisphere) of ``keys``.
    study : Study
        Resolved.
    excluded : list
        Exclusion records, appended to.
    source : path or None
        The participants table, named in errors.

    Raises
    ------
    InputError
        A non-0/1 outcome or event, negative times, counts that are not counts.
    """
    settings = study.relapse
    columns = relapse_models.relapse_columns(settings.time is not None)
    out = RelapseTables(relapse=pd.DataFrame(columns=columns))
    if settings.outcome is None and settings.time is None and settings.count is None:
        return out
    sample = (table if settings.group == ALL
              else table[(labels == settings.group).to_numpy()]).copy()
    sample = _relapse_sample(sample, settings, source, out.warnings)
    rows, count_rows = [], []
    for key in keys:
        chi = wide.loc[sample.index, key]
        row: dict[str, Any] = {"region": key[0], "hemisphere": key[1]}
        notes: list[str] = []
        if settings.outcome is not None:
            _binary_row(sample, chi, key, study, excluded, row, notes, out)
        if settings.time is not None:
            _time_to_event_row(sample, chi, key, study, excluded, row, notes, out)
        if settings.count is not None:
            count_rows.append(_count_row(sample, chi, key, settings, study.min_group_size, excluded))
        row["note"] = "; ".join(dict.fromkeys(n for n in notes if n))
        rows.append(row)
    if settings.outcome or settings.time:
        out.relapse = _adjusted(pd.DataFrame(rows).reindex(columns=columns), study)
    if settings.count is not None:
        out.counts = _adjusted(pd.DataFrame(count_rows, columns=relapse_models.COUNT_COLUMNS), study)
    return out


def _adjusted(frame: pd.DataFrame, study: Study) -> pd.DataFrame:
    """FDR family and adjusted p of every model's p column in the table."""
    if frame.empty:
        return frame
    frame["family"] = fdr_families(frame["region"], study.primary_regions)
    for p_column in ("p", "hr_p"):
        if p_column in frame.columns:
            frame[f"{p_column}_fdr"] = fdr_bh_within(frame[p_column].to_numpy(float), frame["family"])
    frame["note"] = frame["note"].fillna("")
    return frame


def _check_binary(values: pd.Series, name: str, source) -> None:
    present = values.dropna()
    bad = sorted(set(present[~present.isin([0, 1])].tolist()))
    if bad:
        raise InputError(f"column '{name}' must be 0/1 but holds {', '.join(map(str, bad[:5]))}",
                         source)


def _relapse_sample(sample: pd.DataFrame, settings: RelapseSettings, source, warnings: list[str]
                    ) -> pd.DataFrame:
    """Check the outcome columns (0/1 outcome and event, non-negative times, counts) and censor
    participants without an event and a time at their follow-up."""
    for name in filter(None, (settings.outcome, settings.event)):
        _check_binary(sample[name], name, source)
    if settings.time is not None:
        negative = sample[settings.time].dropna() < 0
        if negative.any():
            raise InputError(f"column '{settings.time}' holds negative times", source)
        if settings.exposure is not None:
            fill = (sample[settings.time].isna() & (sample[settings.event] == 0)
                    & sample[settings.exposure].notna())
            if fill.any():
                sample.loc[fill, settings.time] = sample.loc[fill, settings.exposure]
                warnings.append(f"{int(fill.sum())} participant(s) without an event and without "
                                f"'{settings.time}' were censored at '{settings.exposure}'")
    if settings.count is not None:
        counts = sample[settings.count].dropna()
        if (counts < 0).any() or not np.all(np.mod(counts, 1) == 0):
            raise InputError(f"column '{settings.count}' must hold counts (0, 1, 2, ...)", source)
    return sample


def _binary_row(sample, chi, key, study: Study, excluded, row, notes, out: RelapseTables) -> None:
    """Logistic regression and ROC of one region (into ``row``, ``notes`` and the ROC curves)."""
    settings, covariates = study.relapse, list(study.relapse.covariates)
    frame = sample[[settings.outcome, *covariates]].assign(**{CHI: chi})
    kept = complete_cases(frame, [CHI, settings.outcome, *covariates], "relapse", {CHI: CHI_LABEL},
                          region_label(key))
    excluded.extend(kept.exclusions)
    data = kept.frame
    binary, curve = relapse_models.binary_outcome_row(
        data[settings.outcome].astype(int), data[CHI], data[covariates], settings,
        min_group_size=study.min_group_size, seed=study.seed)
    notes.append(binary.pop("note"))
    row.update(binary)
    if curve is not None:
        out.roc_curves[key] = curve


def _time_to_event_row(sample, chi, key, study: Study, excluded, row, notes, out: RelapseTables) -> None:
    """Cox model, Kaplan-Meier curves and numbers at risk of one region."""
    settings, covariates = study.relapse, list(study.relapse.covariates)
    frame = sample[[settings.time, settings.event, *covariates]].assign(**{CHI: chi})
    kept = complete_cases(frame, [CHI, settings.time, settings.event, *covariates], "time_to_event",
                          {CHI: CHI_LABEL}, region_label(key))
    excluded.extend(kept.exclusions)
    data = kept.frame
    timed, curves, at_risk = time_to_event_row(
        data[settings.time], data[settings.event].astype(int), data[CHI], data[covariates],
        min_group_size=study.min_group_size, min_events=settings.min_events,
        min_epv=settings.min_epv, km_times=settings.km_times)
    notes.append(timed.pop("note"))
    row.update(timed)
    if curves is not None:
        out.km_curves[key], out.km_at_risk[key] = curves, at_risk


def _count_row(sample, chi, key, settings: RelapseSettings, minimum: int, excluded) -> dict[str, Any]:
    label = region_label(key)
    covariates = list(settings.covariates)
    needed = [settings.count, *covariates] + ([settings.exposure] if settings.exposure else [])
    frame = sample[list(dict.fromkeys(needed))].assign(**{CHI: chi})
    kept = complete_cases(frame, [CHI, *dict.fromkeys(needed)], "relapse_count",
                          {CHI: CHI_LABEL}, label)
    excluded.extend(kept.exclusions)
    data = kept.frame
    if settings.exposure:
        positive = data[settings.exposure] > 0
        for pid in data.index[~positive]:
            excluded.append({"participant_id": str(pid), "analysis": "relapse_count",
                             "reason": f"{settings.exposure} is not positive", "where": label})
        data = data[positive]
    row = {"region": key[0], "hemisphere": key[1], "n": len(data)}
    if len(data) < 2 * minimum:
        return {**row, "note": f"{len(data)} participants with counts (at least {2 * minimum} "
                               "needed)"}
    problem = relapse_models.chi_problem(data[CHI].to_numpy())
    if problem:
        return {**row, "note": problem}
    exposure = data[settings.exposure] if settings.exposure else None
    return {**row, **relapse_models.count_rate_ratio(data[settings.count], data[CHI],
                                                     data[covariates], exposure)}
