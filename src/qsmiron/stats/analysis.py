"""Every analysis of a study, from the regions and participants tables to ``StudyResults``."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import numpy as np
import pandas as pd

from qsmiron.errors import InputError
from qsmiron.io.participants import ParticipantsTable, normalise_participant_id
from qsmiron.records.study import AnalysisSettings, ColumnInfo, Exclusion, ParticipantCounts
from qsmiron.stats._design import CHI, CHI_LABEL, complete_cases, region_label
from qsmiron.stats.answers import study_answers
from qsmiron.stats.associations import ASSOCIATION_COLUMNS, associate
from qsmiron.stats.group import GROUP_COLUMNS, compare_groups
from qsmiron.stats.methods_text import statistics_methods
from qsmiron.stats.multiple import fdr_bh_within, fdr_families
from qsmiron.stats.outcomes import relapse_tables
from qsmiron.stats.qc_exclusion import (attribute_exclusions, exclude_flagged_values, excluded_counts, region_places,
                                        rule_warning)
from qsmiron.stats.regions import (analysed_statistic, flagged_values_warning, region_keys, select_measure,
                                   select_session, sessions_of, validate_regions, wide_regions)
from qsmiron.stats.results import StudyResults, exclusion_counts
from qsmiron.stats.study import ALL, Study, group_labels, resolve_study
from qsmiron.stats.table1 import describe_groups
from qsmiron.stats.units import column_info
from qsmiron.versions import software_versions


def run_study(regions: pd.DataFrame, participants: ParticipantsTable | pd.DataFrame,
              study: Study | None = None, *, regions_source: str | None = None) -> StudyResults:
    """Every analysis of :func:`run_measure` for each measure the study analyses, in one result.

    The measures are ``study.measures`` (default: every measure of the regions table), chi
    under ``study.reference``; each measure's tables carry ``measure`` and ``unit`` as their
    first columns and its own FDR families (:mod:`qsmiron.stats.measures`). Parameters,
    returns and errors as :func:`run_measure`; a measure the study names that the table lacks
    is an ``InputError``.
    """
    from qsmiron.stats.measures import analysed_measures, combine

    study = study or Study()
    regions = validate_regions(regions)
    measures = analysed_measures(regions, study, regions_source)
    return combine({measure: run_measure(regions, participants, study, regions_source=regions_source,
                                         measure=measure, reference=study.reference)
                    for measure in measures}, study.reference if "chi" in measures else None)


def run_measure(regions: pd.DataFrame, participants: ParticipantsTable | pd.DataFrame,
                study: Study | None = None, *, regions_source: str | None = None, measure: str = "chi",
                reference: str | None = "whole_brain") -> StudyResults:
    """Run Table 1, the group comparison, the associations and the relapse models on one measure.

    Parameters
    ----------
    regions : DataFrame
        Long regions table (participant_id, region, hemisphere, measure, reference, mean,
        optionally session; see :mod:`qsmiron.stats.regions`). A table of several sessions is
        analysed at ``study.session``.
    participants : ParticipantsTable or DataFrame
        As from :func:`qsmiron.io.participants.read_participants`; for a session, the
        participants' values at that session (:func:`qsmiron.io.participants.participants_at_session`).
        A bare DataFrame is a table of unknown origin.
    study : Study, optional
        The design (defaults decided from the data when None or partly given).
    regions_source : str, optional
        The regions table's file, recorded in the results.
    measure, reference : str
        The measure analysed and, for chi, its reference.

    Returns
    -------
    StudyResults
        Rows that could not be computed carry NaN statistics and a ``note`` saying why, and
        appear in ``warnings``; every participant left out of an analysis is in
        ``exclusions``, a value left out by ``study.exclude_flagged`` with its flag
        (:mod:`qsmiron.stats.qc_exclusion`).

    Raises
    ------
    InputError
        Missing columns, unknown group labels or regions, a non-0/1 outcome, no participant
        in both tables, several sessions and no ``study.session``, or a session not in the table.
    """
    study = study or Study()
    regions = exclude_flagged_values(validate_regions(regions), study.exclude_flagged)
    # Participants are compared at one time point: a longitudinal table is cut to one session.
    sessions = sessions_of(regions)
    regions = select_session(regions, study.session, source=regions_source)
    statistic = analysed_statistic(regions, study.statistic, measure=measure, source=regions_source)
    regions = select_measure(regions, measure, reference, statistic=statistic, source=regions_source)
    session = study.session or (sessions[0] if sessions else None)
    if not isinstance(participants, ParticipantsTable):
        participants = ParticipantsTable(participants)
    source = participants.source
    table_of = participants
    participants = _check_participants(participants.frame, source)
    warnings: list[str] = []
    exclusions: list[dict[str, Any]] = []
    in_regions = list(dict.fromkeys(regions["participant_id"]))
    in_table = list(participants["participant_id"])
    region_ids = set(in_regions)
    common = _participants_in_both(in_regions, in_table, source, exclusions, warnings)

    region_names = list(dict.fromkeys(regions["region"]))
    analysed = participants[participants["participant_id"].isin(region_ids)]
    resolved = resolve_study(study, analysed, region_names, source=source)
    resolved.session = session
    resolved.statistic = statistic
    keys = region_keys(regions, resolved.regions)
    table = participants.set_index("participant_id").loc[common]
    wide = wide_regions(regions).reindex(common)
    labels = group_labels(table[resolved.groups.column])
    group_a, group_b = resolved.groups.compare

    _check_groups(labels, resolved, exclusions, warnings)

    compared = labels.isin([group_a, group_b]).to_numpy()
    table1 = describe_groups(table.reset_index(), labels.reset_index(drop=True),
                             group_a=group_a, group_b=group_b,
                             exclude=("participant_id", resolved.groups.column))

    rows_excluded: list[dict[str, Any]] = []
    group_table = _group_comparison(table[compared], labels[compared], wide[compared], keys,
                                    resolved, rows_excluded)
    association_table = _associations(table, labels, wide, keys, resolved, rows_excluded)
    outcomes = relapse_tables(table, labels, wide, keys, resolved, rows_excluded, source)
    warnings.extend(outcomes.warnings)
    exclusions.extend(_compress_exclusions(attribute_exclusions(rows_excluded, region_places(regions)), keys))

    warnings.extend(_row_warnings(group_table, association_table, outcomes.relapse, outcomes.counts))
    warnings.extend(filter(None, (flagged_values_warning(regions, common),
                                  rule_warning(regions, study.exclude_flagged))))
    units = _units(table_of, resolved, warnings)

    settings = AnalysisSettings(
        **resolved.model_dump(), study_file=resolved.source,
        methods=statistics_methods(resolved, excluded_counts(regions, common, keys)),
        participants_table=source, regions_table=regions_source, sessions_in_regions_table=sessions,
        sessions_table=table_of.sessions_source, sex_coding=table_of.sex_coding,
        n_participants=ParticipantCounts(regions_table=len(in_regions), participants_table=len(in_table),
                                         both=len(common), per_group={group_a: int((labels == group_a).sum()),
                                                                      group_b: int((labels == group_b).sum())}))
    results = StudyResults(
        settings=settings, table1=table1, group_comparison=group_table,
        associations=association_table, relapse=outcomes.relapse, relapse_counts=outcomes.counts,
        roc_curves=outcomes.roc_curves, km_curves=outcomes.km_curves, km_at_risk=outcomes.km_at_risk,
        units=units, exclusions=[Exclusion(**item) for item in exclusions], warnings=warnings,
        versions=software_versions())
    results.exclusion_counts = exclusion_counts(results.exclusions)
    results.answers = study_answers(results)
    return results


def _units(participants: ParticipantsTable, study: Study, warnings: list[str]) -> dict[str, ColumnInfo]:
    """The ``participants.json`` entry of every column the analyses read; a warning for a time
    column without Units."""
    relapse = study.relapse
    used = [*study.covariates, *study.associations.variables, *study.associations.covariates,
            relapse.outcome, relapse.time, relapse.event, relapse.count, relapse.exposure,
            *relapse.covariates]
    units = column_info(participants.data_dictionary, used)
    if relapse.time is not None and units[relapse.time].units is None:
        warnings.append(f"the time column '{relapse.time}' has no Units in participants.json: "
                        "times are reported without a unit")
    return units


# ---------------------------------------------------------------------------------------


def _participants_in_both(in_regions: list[str], in_table: list[str], source, exclusions: list, warnings: list
                          ) -> list[str]:
    """The participants of both tables (table order); the others excluded from every analysis."""
    region_ids, table_ids = set(in_regions), set(in_table)
    only_regions = [pid for pid in in_regions if pid not in table_ids]
    only_table = [pid for pid in in_table if pid not in region_ids]
    for pid in only_regions:
        exclusions.append({"participant_id": pid, "analysis": "all",
                           "reason": "in the regions table but not in the participants table"})
    for pid in only_table:
        exclusions.append({"participant_id": pid, "analysis": "all",
                           "reason": "in the participants table but has no regional values"})
    if only_regions:
        warnings.append(f"{len(only_regions)} participant(s) of the regions table are not in the "
                        f"participants table and were left out: {_few(only_regions)}")
    if only_table:
        warnings.append(f"{len(only_table)} participant(s) of the participants table have no "
                        f"regional values: {_few(only_table)}")
    common = [pid for pid in in_table if pid in region_ids]
    if not common:
        raise InputError("no participant_id is in both the regions table and the participants "
                         "table", source)
    return common


def _check_groups(labels: pd.Series, resolved: Study, exclusions: list, warnings: list) -> None:
    """Exclude the unlabelled from the group comparison; warn of other groups and small groups."""
    group_a, group_b = resolved.groups.compare
    for pid in labels.index[labels.isna()].tolist():
        exclusions.append({"participant_id": pid, "analysis": "group_comparison",
                           "reason": f"missing {resolved.groups.column}"})
    others = labels[labels.notna() & ~labels.isin([group_a, group_b])].value_counts()
    if len(others):
        warnings.append("participants of other groups are not part of the group comparison: "
                        + ", ".join(f"{label} ({n})" for label, n in others.items()))
    for label in (group_a, group_b):
        n = int((labels == label).sum())
        if n < resolved.min_group_size:
            warnings.append(f"group {label} has {n} participant(s) with regional values; at "
                            f"least {resolved.min_group_size} are needed for the group comparison")


def _check_participants(participants: pd.DataFrame, source: str | None) -> pd.DataFrame:
    if "participant_id" not in participants.columns:
        raise InputError("participants table has no 'participant_id' column", source)
    frame = participants.copy()
    frame["participant_id"] = frame["participant_id"].map(normalise_participant_id)
    if frame["participant_id"].isna().any():
        raise InputError("participants table has rows without participant_id", source)
    repeated = frame["participant_id"][frame["participant_id"].duplicated()].unique().tolist()
    if repeated:
        raise InputError(f"participants table repeats {_few(repeated)}", source)
    return frame


def _group_comparison(table, labels, wide, keys, study: Study, excluded) -> pd.DataFrame:
    group_a, group_b = study.groups.compare
    rows = []
    for key in keys:
        frame = table[study.covariates].assign(**{CHI: wide[key]})
        frame = frame[labels.notna()]
        kept = complete_cases(frame, [CHI, *study.covariates],
                              "group_comparison", {CHI: CHI_LABEL}, region_label(key))
        excluded.extend(kept.exclusions)
        data = kept.frame
        row = compare_groups(data[CHI], labels.loc[data.index], data[study.covariates],
                             group_a=group_a, group_b=group_b, min_group_size=study.min_group_size)
        rows.append({"region": key[0], "hemisphere": key[1], **row})
    frame = pd.DataFrame(rows, columns=GROUP_COLUMNS)
    frame["family"] = fdr_families(frame["region"], study.primary_regions)
    frame["p_fdr"] = fdr_bh_within(frame["p"].to_numpy(float), frame["family"])
    return frame


def _associations(table, labels, wide, keys, study: Study, excluded) -> pd.DataFrame:
    settings = study.associations
    rows = []
    sample = table if settings.group == ALL else table[(labels == settings.group).to_numpy()]
    for variable in settings.variables:
        covariates = [c for c in settings.covariates if c != variable]
        dropped = "" if len(covariates) == len(settings.covariates) else (
            f"{variable} is also a covariate and was not controlled for")
        for key in keys:
            frame = sample[[variable, *covariates]].assign(**{CHI: wide.loc[sample.index, key]})
            kept = complete_cases(frame, [CHI, variable, *covariates],
                                  f"associations {variable}", {CHI: CHI_LABEL},
                                  region_label(key))
            excluded.extend(kept.exclusions)
            data = kept.frame
            row = associate(data[CHI], data[variable], data[covariates],
                            method=settings.method, min_n=study.min_group_size)
            if dropped:
                row["note"] = "; ".join(filter(None, [dropped, row["note"]]))
            rows.append({"region": key[0], "hemisphere": key[1], "group": settings.group,
                         "variable": variable, "method": settings.method, **row})
    frame = pd.DataFrame(rows, columns=ASSOCIATION_COLUMNS)
    frame["family"] = fdr_families(frame["region"], study.primary_regions,
                                   variables=frame["variable"],
                                   primary_variables=settings.primary_variables)
    frame["p_fdr"] = fdr_bh_within(frame["p"].to_numpy(float), frame["group"], frame["family"])
    return frame


def _row_warnings(group_table, association_table, relapse_table, counts_table) -> list[str]:
    """One warning per distinct note of each table, naming the rows it applies to.

    A row without statistics is never silent: its note (the reason) becomes a warning, and
    a note shared by every row of a table (a covariate constant in the sample) is said once.
    """
    out = []
    for name, frame, extra in (("group comparison", group_table, ()),
                               ("association", association_table, ("variable",)),
                               ("relapse", relapse_table, ()),
                               ("relapse count", counts_table, ())):
        if frame is None or frame.empty:
            continue
        grouped: dict[str, list[str]] = defaultdict(list)
        for _, row in frame.iterrows():
            if not row["note"]:
                continue
            # a relapse row can lack the logistic model yet have the Cox model: say the note
            no_statistics = not np.isfinite(row["p"]) and name != "relapse"
            text = f"no statistics ({row['note']})" if no_statistics else row["note"]
            grouped[text].append(" ".join(str(row[c]) for c in ("region", "hemisphere", *extra)))
        for text, places in grouped.items():
            where = "every row" if len(places) == len(frame) and len(frame) > 1 else ", ".join(places)
            out.append(f"{name} {where}: {text}")
    return out


def _compress_exclusions(records: list[dict[str, Any]], keys) -> list[dict[str, Any]]:
    """One record per participant, analysis family and reason, naming the regions affected.

    A participant missing a covariate is left out of every region's model: that is one record
    ("missing age", all regions), not one per region.
    """
    every = {region_label(key) for key in keys}
    grouped: dict[tuple[str, str, str], list[str]] = defaultdict(list)
    for record in records:
        grouped[(record["participant_id"], record["analysis"], record["reason"])].append(
            record.get("where"))
    out = []
    for (pid, analysis, reason), places in grouped.items():
        places = [p for p in dict.fromkeys(places) if p]
        if places and set(places) != every:
            reason = f"{reason} ({', '.join(places)})"
        out.append({"participant_id": pid, "analysis": analysis, "reason": reason})
    return out


def _few(items: list[str], limit: int = 5) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")
