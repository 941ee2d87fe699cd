"""ComBat harmonisation of regional values across sites or scanners, before the statistics.

A study file with ``[harmonise] method = "combat", batch = "site"`` harmonises the regional
mean of every region and hemisphere, each measure (chi under each reference, R2*, chi+, chi-)
on its own, with ComBat (Johnson et al. 2007; Fortin et al. 2017 for
imaging) through its reference implementation, ``neuroCombat`` (called, not re-implemented):
location/scale adjustment per site with empirical Bayes pooling across regions, the group and
the study covariates kept in the model so that their effects are preserved. Each session of
a longitudinal table is harmonised separately.

ComBat has no missing values, so its parameters are estimated from the participants with the
site, the group label, every covariate and every region's value (the complete cases). A
participant missing some regional values (a value the study's QC rule left out,
``exclude_flagged``, :mod:`qsmiron.stats.qc_exclusion`, or a region the scan did not cover) is
harmonised with those estimates for the values it has, as ComBat harmonises data held out from
its fit (neuroHarmonize's ``harmonizationApply``): standardised by the pooled mean, its own
covariate effects and the pooled SD, the site's location and scale removed, then restored.
Leaving it out whole would cost every region a participant for one flagged nucleus. The
missing values stay missing. Participants without site, group or covariates, without any
regional value, or whose site or categorical level no complete case has, are listed in
``exclusions`` and their rows carry no value (``n/a``) in ``regions_harmonised.tsv``: an
unharmonised value beside harmonised ones would reintroduce the site effect; an exclusion of a
flagged value names the flag.

Site effects before and after: per region and measure, the F test of site in OLS
``value ~ site + group + covariates`` (type II: the drop in residual sum of squares
without site), and each site's mean and SD.
"""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from qsmiron.errors import InputError
from qsmiron.io.derivatives import ExtensionPaths
from qsmiron.io.participants import ParticipantsTable, SessionsTable, participants_at_session
from qsmiron.records.extensions import HarmonisationRecord, SiteEffect
from qsmiron.records.regions import MEASURE_UNITS
from qsmiron.records.study import Exclusion
from qsmiron.stats._design import complete_cases, covariate_design
from qsmiron.stats.methods_text import harmonisation_methods
from qsmiron.stats.qc_exclusion import attribute_exclusions, excluded_values
from qsmiron.stats.regions import (CHI, SESSION_COLUMN, STATISTICS, analysed_statistic, select_session, sessions_of,
                                   validate_regions, wide_regions)
from qsmiron.stats.results import exclusion_records
from qsmiron.stats.study import Study, group_labels, resolve_study
from qsmiron.stats.write import plain_values

SITE_EFFECT_COLUMNS = ["session", "measure", "reference", "unit", "region", "hemisphere", "site", "n",
                       "mean_before", "sd_before", "mean_after", "sd_after", "F_before", "p_before", "F_after",
                       "p_after"]


@dataclass
class Harmonisation:
    """Harmonised regions table, site effects before/after, the record, and what was left out."""

    regions: pd.DataFrame
    site_effects: pd.DataFrame
    record: HarmonisationRecord
    exclusions: dict[str | None, list[Exclusion]] = field(default_factory=dict)
    """Session (None without sessions) -> participants not harmonised there."""
    warnings: list[str] = field(default_factory=list)


def harmonise_regions(regions: pd.DataFrame, participants: ParticipantsTable, study: Study, *,
                      sessions: SessionsTable | None = None) -> Harmonisation:
    """ComBat-harmonised regional means (``mean``) in the form of the regions table, each measure
    and reference on its own.

    Parameters
    ----------
    regions : DataFrame
        Long regions table (:func:`qsmiron.stats.regions.validate_regions`), optionally with sessions.
    participants : ParticipantsTable
        Holding the batch column, the group column and the covariates.
    study : Study
        With a ``harmonise`` section; groups and covariates are resolved from the data.
    sessions : SessionsTable, optional
        Values per session (a site or an age at each visit) replacing the participants
        table's for that session.

    Raises
    ------
    InputError
        No batch column, a batch column with one level, a site with fewer than 2 participants,
        or a site confounded with the group (one line, naming the participants table).
    """
    settings = study.harmonise
    if settings is None:
        raise ValueError("the study has no [harmonise] section")
    regions = validate_regions(regions)
    counted = CHI if (regions["measure"] == CHI).any() else str(regions["measure"].iloc[0])
    statistic = analysed_statistic(regions, study.statistic, measure=counted)
    analysed = participants.frame[participants.frame["participant_id"].isin(set(regions["participant_id"]))]
    resolved = resolve_study(study, analysed.reset_index(drop=True), list(dict.fromkeys(regions["region"])),
                             source=participants.source)
    parts, effects, exclusions, n_harmonised, n_partial, left_out = [], [], {}, 0, 0, set()
    for session in sessions_of(regions) or [None]:
        at_session = participants_at_session(participants, sessions, session)
        if settings.batch not in at_session.frame.columns:
            raise InputError(f"has no column '{settings.batch}' (harmonise.batch); columns: "
                             f"{', '.join(at_session.frame.columns)}", participants.source)
        harmonised, site_effects, dropped, partial = _harmonise_measures(
            select_session(regions, session), at_session.frame.set_index("participant_id"), resolved,
            participants.source, study.statistic)
        with_values = set(harmonised[harmonised["measure"] == counted].dropna(subset=[statistic])["participant_id"])
        n_harmonised += len(with_values)
        left_out |= {item["participant_id"] for item in dropped} - with_values
        n_partial += max((len(p) for (m, _), p in partial.items() if m == counted), default=0)
        if session is not None:
            harmonised.insert(len(harmonised.columns), SESSION_COLUMN, session)
            site_effects.insert(0, "session", session)
            for item in dropped:  # the session beside the value's place, else after the reason
                if item.get("where"):
                    item["where"] += f" {session}"
                else:
                    item["reason"] += f" ({session})"
        parts.append(harmonised)
        effects.append(site_effects)
        if dropped:
            exclusions[session] = exclusion_records(dropped)
    warnings = []
    if left_out:
        flagged = " left by exclude_flagged" if study.exclude_flagged else ""
        warnings.append(f"{len(left_out)} participant(s) could not be harmonised (missing site, group or "
                        f"covariate, no regional value{flagged}, or a site or level no participant with every "
                        "value has) and have no harmonised values")
    site_effects = pd.concat(effects, ignore_index=True).reindex(columns=SITE_EFFECT_COLUMNS)
    preserved = [resolved.groups.column, *resolved.covariates]
    implementation = "neuroCombat " + _version("neuroCombat")
    record = HarmonisationRecord(
        method=settings.method, batch=settings.batch, empirical_bayes=settings.empirical_bayes,
        preserved=preserved, implementation=implementation, sessions=sessions_of(regions),
        n_harmonised=n_harmonised, n_partial=n_partial,
        methods=harmonisation_methods(settings.batch, settings.empirical_bayes, preserved, implementation,
                                      n_partial=n_partial),
        site_effects=[SiteEffect(**plain_values(row)) for row in site_effects.to_dict("records")])
    return Harmonisation(regions=pd.concat(parts, ignore_index=True), site_effects=site_effects, record=record,
                         exclusions=exclusions, warnings=warnings)


def write_harmonisation(result: Harmonisation, paths: ExtensionPaths) -> dict[str, Path]:
    """``regions_harmonised.tsv`` (the regions table's columns) and ``harmonise_site_effects.tsv``;
    the record's ``files`` name them."""
    from qsmiron.io.atomic import write_tsv_atomic

    paths.regions_harmonised.parent.mkdir(parents=True, exist_ok=True)
    written = {"regions_harmonised": write_tsv_atomic(paths.regions_harmonised, result.regions),
               "site_effects": write_tsv_atomic(paths.site_effects, result.site_effects)}
    result.record.files = {role: path.name for role, path in written.items()}
    return written


# ---------------------------------------------------------------------------------------


def _harmonise_measures(regions: pd.DataFrame, table: pd.DataFrame, study: Study, source,
                        requested: str | None):
    """One session, each measure (and chi's each reference) harmonised on its own, as ComBat's
    location/scale model is per feature and the measures differ in unit and scale:
    (harmonised long table, site effects, exclusions, (measure, reference) -> participants
    harmonised with the complete cases' estimates). The site effects, exclusions and those
    participants are those of each measure's analysed summary (``requested``, or the measure's
    default)."""
    parts, effects, dropped, partial = [], [], [], {}
    for (measure, reference), rows in regions.groupby(["measure", "reference"], sort=False, dropna=False):
        statistic = analysed_statistic(rows, requested, measure=measure)
        harmonised, site_effects, excluded, partial[measure, reference] = _harmonise_session(
            rows.drop(columns=["measure", "reference"]), table, study, source, measure, statistic)
        unit = MEASURE_UNITS[measure]
        parts.append(harmonised.assign(measure=measure, reference=reference))
        effects.append(site_effects.assign(measure=measure, reference=reference, unit=unit))
        dropped.extend(excluded)
    long = pd.concat(parts, ignore_index=True).reindex(columns=regions.columns)
    return long, pd.concat(effects, ignore_index=True), dropped, partial


def _harmonise_session(regions: pd.DataFrame, table: pd.DataFrame, study: Study, source, measure: str,
                       statistic: str):
    """One session and measure: (harmonised long table, site effects, exclusions, participants
    harmonised with the complete cases' estimates).

    Every summary column the table holds (``STATISTICS``) is harmonised, so that the harmonised
    table serves any later analysis; the site effects, exclusions and participants are those of
    ``statistic``, the one analysed. Site effects are measured on the complete cases.
    """
    long = regions.copy()
    keys = list(zip(long["participant_id"], long["region"], long["hemisphere"]))
    effects, exclusions, partial = None, [], []
    for column in [name for name in STATISTICS if name in regions.columns]:
        wide = wide_regions(regions, column)
        after, data, batch, excluded, applied = _combat(wide, table, study, source, measure)
        lookup = after.stack(level=[0, 1], future_stack=True)
        long[column] = [float(lookup.get(key, np.nan)) for key in keys]
        if column == statistic:
            partial = applied
            effects = _site_effects(wide.loc[data.index], after.loc[data.index], batch,
                                    data[["__group", *study.covariates]])
            # a value the study's QC rule left out is named with its flag, not as missing
            places = {(pid, None, f"{measure} {region} {side}"): flags
                      for (pid, region, side), flags in excluded_values(regions).items()}
            exclusions = attribute_exclusions(excluded, places)
    return long, effects, exclusions, partial


def _combat(wide: pd.DataFrame, table: pd.DataFrame, study: Study, source, measure: str):
    """ComBat on one wide table: (harmonised wide table, the participants it was estimated on,
    their batch, exclusions, participants harmonised with those estimates for the values they have)."""
    settings = study.harmonise
    features = list(wide.columns)
    value_columns = [f"__f{i}" for i in range(len(features))]
    common = [pid for pid in wide.index if pid in table.index]
    group = group_labels(table.loc[common, study.groups.column]).rename("__group")
    frame = table.loc[common, [settings.batch, *study.covariates]].join(group).join(
        wide.loc[common].set_axis(value_columns, axis=1))
    labels = {column: f"{measure} {r} {h}" for column, (r, h) in zip(value_columns, features)}
    described = complete_cases(frame, [settings.batch, "__group", *study.covariates], "harmonisation")
    with_a_value = described.frame[described.frame[value_columns].notna().any(axis=1)]
    kept = complete_cases(described.frame, value_columns, "harmonisation", labels=labels)
    data = kept.frame
    batch = data[settings.batch].map(lambda v: str(v))
    _check_batches(batch, data["__group"], data[study.covariates], settings.batch, source)

    numeric = [c for c in study.covariates if pd.api.types.is_numeric_dtype(data[c])]
    covars = pd.DataFrame({"batch": batch.to_numpy(), "group": data["__group"].to_numpy()}, index=data.index)
    for column in study.covariates:
        covars[column] = data[column].to_numpy() if column in numeric else data[column].astype(str).to_numpy()
    categorical = ["group", *[c for c in study.covariates if c not in numeric]]
    with contextlib.redirect_stdout(io.StringIO()):
        from neuroCombat import neuroCombat

        combat = neuroCombat(data[value_columns].to_numpy(np.float64).T, covars, "batch",
                             categorical_cols=categorical, continuous_cols=numeric,
                             eb=settings.empirical_bayes and len(features) > 1)
    after = pd.DataFrame(combat["data"].T, index=data.index, columns=pd.MultiIndex.from_tuples(features))
    incomplete = with_a_value.loc[[pid for pid in with_a_value.index if pid not in data.index]]
    applicable, refused = _applicable(incomplete, data, settings.batch, ["__group", *study.covariates])
    applied = _apply_combat(applicable, data, combat["estimates"], settings.batch, value_columns,
                            ["__group", *study.covariates])
    after = pd.concat([after, applied.set_axis(after.columns, axis=1)])
    exclusions = described.exclusions + refused + kept.exclusions
    return after, data, batch, exclusions, list(applicable.index)


def _applicable(incomplete: pd.DataFrame, data: pd.DataFrame, batch: str, model: list[str]):
    """The participants missing some regional values whose site and model levels the complete
    cases have (ComBat's estimates exist for them), and exclusion records for the others."""
    sites = set(data[batch].map(str))
    levels = {c: set(data[c].astype(str)) for c in model if not pd.api.types.is_numeric_dtype(data[c])}
    keep, refused = [], []
    for pid, row in incomplete.iterrows():
        if str(row[batch]) not in sites:
            reason = f"{batch} {row[batch]} has no participant with every regional value"
        else:
            unseen = [f"{c} {row[c]}" for c, seen in levels.items() if str(row[c]) not in seen]
            reason = f"{', '.join(unseen)} not among the participants with every regional value" if unseen else None
        if reason is None:
            keep.append(pid)
        else:
            refused.append({"participant_id": str(pid), "analysis": "harmonisation", "reason": reason,
                            "where": None, "missing": []})
    return incomplete.loc[keep], refused


def _apply_combat(rows: pd.DataFrame, data: pd.DataFrame, estimates: dict, batch: str,
                  value_columns: list[str], model: list[str]) -> pd.DataFrame:
    """ComBat's adjustment, with the estimates of the complete cases ``data``, of each value the
    participants in ``rows`` have (missing ones stay missing): standardise by the pooled mean,
    the participant's own covariate effects and the pooled SD, remove the site's location and
    scale, and restore. neuroCombat keeps each covariate effect only as its value per complete
    case (``mod.mean``); regressing those on the model's columns recovers the coefficients
    exactly (they are a linear function of them), which the participants' columns then apply to."""
    if rows.empty:
        return pd.DataFrame(index=rows.index, columns=value_columns, dtype=float)
    combined = covariate_design(pd.concat([data[model], rows[model]]), model).matrix.to_numpy(float)
    design = np.column_stack([np.ones(len(combined)), combined])
    effects = np.asarray(estimates["mod.mean"], dtype=float).T          # complete cases x features
    coefficients, *_ = np.linalg.lstsq(design[:len(data)], effects, rcond=None)
    residual = np.max(np.abs(design[:len(data)] @ coefficients - effects), initial=0.0)
    if residual > 1e-6 * max(1.0, float(np.max(np.abs(effects), initial=0.0))):
        raise RuntimeError(f"ComBat's covariate effects are not linear in the model's columns ({residual:.3g})")
    own_effects = design[len(data):] @ coefficients
    pooled_mean = np.asarray(estimates["stand.mean"], dtype=float)[:, 0]
    pooled_sd = np.sqrt(np.asarray(estimates["var.pooled"], dtype=float)[:, 0])
    site_index = {site: i for i, site in enumerate(sorted(set(data[batch].map(str))))}
    index = [site_index[str(site)] for site in rows[batch]]
    location = np.asarray(estimates["gamma.star"], dtype=float)[index]
    scale = np.sqrt(np.asarray(estimates["delta.star"], dtype=float)[index])
    expected = pooled_mean + own_effects
    standardised = (rows[value_columns].to_numpy(float) - expected) / pooled_sd
    harmonised = (standardised - location) / scale * pooled_sd + expected
    return pd.DataFrame(harmonised, index=rows.index, columns=value_columns)


def _check_batches(batch: pd.Series, group: pd.Series, covariates: pd.DataFrame, name: str, source) -> None:
    counts = batch.value_counts()
    if len(counts) < 2:
        only = counts.index[0] if len(counts) else "none"
        raise InputError(f"column '{name}' has a single level ('{only}') among the participants with complete "
                         "data: there is nothing to harmonise (remove [harmonise] or check the column)", source)
    small = counts[counts < 2]
    if len(small):
        raise InputError(f"{name} {', '.join(repr(s) for s in small.index)} has fewer than 2 participants with "
                         f"complete data ({', '.join(f'{s}: {n}' for s, n in small.items())}); ComBat estimates "
                         "each site's mean and variance and needs at least 2 per site", source)
    sites = pd.get_dummies(batch).to_numpy(float)
    groups = pd.get_dummies(group).to_numpy(float)[:, 1:]
    if np.linalg.matrix_rank(np.column_stack([sites, groups])) < sites.shape[1] + groups.shape[1]:
        by_site = "; ".join(f"{site}: {', '.join(sorted(set(group[batch == site])))}" for site in counts.index)
        raise InputError(f"the group is confounded with {name} (groups per site: {by_site}): ComBat would remove "
                         "the group difference with the site effect", source)
    design = covariate_design(covariates, list(covariates.columns)).matrix.to_numpy(float)
    full = np.column_stack([sites, groups, design])
    if np.linalg.matrix_rank(full) < full.shape[1]:
        raise InputError(f"the covariates are collinear with {name} and group among the participants with "
                         "complete data: ComBat cannot separate their effects", source)


def _site_effects(before: pd.DataFrame, after: pd.DataFrame, batch: pd.Series, model: pd.DataFrame) -> pd.DataFrame:
    design = covariate_design(model, list(model.columns)).matrix.to_numpy(float)
    sites = pd.get_dummies(batch).to_numpy(float)
    rows = []
    for key in before.columns:
        tests = {stage: _site_test(values[key].to_numpy(float), sites, design)
                 for stage, values in (("before", before), ("after", after))}
        for site in sorted(batch.unique()):
            chosen = (batch == site).to_numpy()
            rows.append({"region": key[0], "hemisphere": key[1], "site": site, "n": int(chosen.sum()),
                         "mean_before": float(before[key][chosen].mean()),
                         "sd_before": float(before[key][chosen].std(ddof=1)),
                         "mean_after": float(after[key][chosen].mean()),
                         "sd_after": float(after[key][chosen].std(ddof=1)),
                         "F_before": tests["before"][0], "p_before": tests["before"][1],
                         "F_after": tests["after"][0], "p_after": tests["after"][1]})
    return pd.DataFrame(rows)


def _site_test(y: np.ndarray, sites: np.ndarray, design: np.ndarray) -> tuple[float, float]:
    """Type-II F of site in OLS y ~ site + (group and covariates in ``design``)."""
    full = np.column_stack([sites, design])
    reduced = np.column_stack([np.ones(len(y)), design])
    rss_full = float(np.sum((y - full @ np.linalg.lstsq(full, y, rcond=None)[0]) ** 2))
    rss_reduced = float(np.sum((y - reduced @ np.linalg.lstsq(reduced, y, rcond=None)[0]) ** 2))
    df_site = sites.shape[1] - 1
    df_resid = len(y) - np.linalg.matrix_rank(full)
    if df_resid < 1 or rss_full <= 0:
        return float("nan"), float("nan")
    f_value = (rss_reduced - rss_full) / df_site / (rss_full / df_resid)
    return float(f_value), float(stats.f.sf(f_value, df_site, df_resid))


def _version(package: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return "(not installed)"
