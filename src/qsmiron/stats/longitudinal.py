"""Longitudinal models: a linear mixed model per region over the sessions.

With ``[longitudinal] time = "<column of sessions.tsv>"``, each region and hemisphere gets

    value ~ 1 + group + time + group:time + covariates + (1 | participant)

fitted by REML (statsmodels ``MixedLM``; random intercept per participant). ``group`` is 1 for
group_a and 0 for group_b (treatment coding with group_b as reference), so

- ``group`` is group_a minus group_b at time 0;
- ``time`` is group_b's slope per unit of time;
- ``group:time`` is the slope difference per unit of time, group_a minus group_b.

Covariates are the participants table's (baseline) values. Estimates and standard errors are
those of lme4's ``lmer(..., REML = TRUE)`` on the same data (tested against lme4's published
results); p-values are Wald z tests (statsmodels; lme4 itself gives none, and lmerTest's
Satterthwaite degrees of freedom would make small-sample p-values somewhat larger).
"""

from __future__ import annotations

import warnings as warnings_module
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from qsmiron.errors import InputError
from qsmiron.io.participants import SESSION_ID, ParticipantsTable, SessionsTable
from qsmiron.records.extensions import LongitudinalRecord, LongitudinalTerm
from qsmiron.records.study import Exclusion
from qsmiron.stats._design import covariate_design
from qsmiron.stats.methods_text import longitudinal_methods
from qsmiron.stats.multiple import fdr_bh
from qsmiron.stats.qc_exclusion import excluded_records
from qsmiron.stats.regions import CHI, SESSION_COLUMN, VALUE, region_keys, select_measure, sessions_of, validate_regions
from qsmiron.stats.results import exclusion_records
from qsmiron.stats.study import Study, group_labels, resolve_study
from qsmiron.stats.write import plain_values

LONGITUDINAL_COLUMNS = ["region", "hemisphere", "term", "estimate", "se", "p", "p_fdr", "n", "n_participants",
                        "note"]
INTERACTION = "group:time"


@dataclass
class LongitudinalResults:
    """``longitudinal.tsv`` as a table, its record, and who was left out."""

    table: pd.DataFrame
    record: LongitudinalRecord
    exclusions: list[Exclusion] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def fit_random_intercept(y, exog: pd.DataFrame, groups) -> dict[str, Any]:
    """REML linear mixed model with a random intercept per group (as ``lmer(y ~ X + (1|g))``).

    Parameters
    ----------
    y : array-like, shape (n,)
    exog : DataFrame, shape (n, p)
        Fixed-effect columns, the intercept included.
    groups : array-like, shape (n,)

    Returns
    -------
    dict
        ``estimate``, ``se`` (lme4's: from (X' V^-1 X)^-1 at the REML variances), ``p``
        (Wald z, two-sided), each a Series over the exog columns; ``var_participant``,
        ``var_residual``, ``converged`` and ``note`` (warnings raised by the fit).
    """
    import statsmodels.api as sm
    from scipy import stats

    x = exog.to_numpy(float)
    groups = np.asarray(groups)
    with warnings_module.catch_warnings(record=True) as caught:
        warnings_module.simplefilter("always")
        fit = sm.MixedLM(np.asarray(y, float), x, groups=groups).fit(reml=True)
    notes = sorted({str(w.message).split("\n")[0] for w in caught
                    if issubclass(w.category, (UserWarning, RuntimeWarning)) or "Convergence" in w.category.__name__})
    var_participant, var_residual = float(np.asarray(fit.cov_re)[0, 0]), float(fit.scale)
    # lme4's vcov: (X' V^-1 X)^-1 at the REML variances, V_i = s2 I + tau 11'. statsmodels' bse
    # inverts the Hessian of all parameters instead, which differs by up to ~1 % when the
    # design is unbalanced (measured on statsmodels' own lme4 reference data).
    _, inverse = np.unique(groups, return_inverse=True)
    sums = np.zeros((inverse.max() + 1, x.shape[1]))
    np.add.at(sums, inverse, x)
    sizes = np.bincount(inverse)
    shrink = var_participant / (var_residual + sizes * var_participant)
    information = (x.T @ x - (sums * shrink[:, None]).T @ sums) / var_residual
    se = np.sqrt(np.diag(np.linalg.inv(information)))
    estimate = np.asarray(fit.fe_params)
    names = list(exog.columns)
    return {"estimate": pd.Series(estimate, index=names), "se": pd.Series(se, index=names),
            "p": pd.Series(2 * stats.norm.sf(np.abs(estimate / se)), index=names),
            "var_participant": var_participant, "var_residual": var_residual,
            "converged": bool(fit.converged), "note": "; ".join(notes)}


def longitudinal_models(regions: pd.DataFrame, participants: ParticipantsTable, sessions: SessionsTable | None,
                        study: Study, *, regions_source: str | None = None) -> LongitudinalResults:
    """Per-region mixed models of the study's groups over time (see the module docstring).

    Parameters
    ----------
    regions : DataFrame
        Long regions table with at least two sessions.
    participants : ParticipantsTable
        Groups and (baseline) covariates.
    sessions : SessionsTable or None
        Holding ``longitudinal.time`` for each participant's session.
    study : Study
        With a ``longitudinal`` section.
    regions_source : str, optional
        The regions table's file, named in errors.

    Raises
    ------
    InputError
        No sessions table or no time column in it (naming the file), a non-numeric time,
        a regions table without sessions.
    """
    settings = study.longitudinal
    if settings is None:
        raise ValueError("the study has no [longitudinal] section")
    # The mixed models follow chi under the study's reference (the study's primary measure).
    regions = select_measure(validate_regions(regions), CHI, study.reference, statistic=study.statistic,
                             source=regions_source)
    if len(sessions_of(regions)) < 2:
        raise InputError("longitudinal models need a regions table with a 'session' column and at least 2 sessions",
                         regions_source)
    times = _session_times(sessions, settings.time, participants.source)
    frame = participants.frame
    analysed = frame[frame["participant_id"].isin(set(regions["participant_id"]))].reset_index(drop=True)
    resolved = resolve_study(study, analysed, list(dict.fromkeys(regions["region"])), source=participants.source)
    covariates = list(settings.covariates if settings.covariates is not None else resolved.covariates)
    group_a, group_b = resolved.groups.compare
    table = frame.set_index("participant_id")
    labels = group_labels(table[resolved.groups.column])

    long = regions.merge(times, left_on=["participant_id", SESSION_COLUMN], right_on=["participant_id", SESSION_ID],
                         how="left")
    exclusions, notes = [], []
    untimed = long[long["__time"].isna()][["participant_id", SESSION_COLUMN]].drop_duplicates()
    for pid, session in untimed.itertuples(index=False):
        exclusions.append({"participant_id": pid, "analysis": "longitudinal",
                           "reason": f"no '{settings.time}' for {session} in the sessions table"})
    long = long[long["__time"].notna()]
    long = long[long["participant_id"].map(labels).isin([group_a, group_b])]
    frame = long.join(table[covariates], on="participant_id")
    incomplete = frame[frame[covariates].isna().any(axis=1)]["participant_id"].unique()
    for pid in incomplete:
        exclusions.append({"participant_id": pid, "analysis": "longitudinal", "reason": "missing covariate"})
    frame = frame[~frame["participant_id"].isin(set(incomplete))]
    frame["__group"] = (frame["participant_id"].map(labels) == group_a).astype(float)
    keys = region_keys(regions, resolved.regions)
    exclusions += excluded_records(frame, "longitudinal", keys=keys)  # values the study's QC rule left out

    rows = []
    for key in keys:
        data = frame[(frame["region"] == key[0]) & (frame["hemisphere"] == key[1]) & frame[VALUE].notna()]
        rows += _region_rows(key, data, covariates, resolved.min_group_size)
    out = pd.DataFrame(rows, columns=LONGITUDINAL_COLUMNS)
    out["p_fdr"] = np.nan
    for _, index in out.groupby("term", sort=False).groups.items():
        out.loc[index, "p_fdr"] = fdr_bh(out.loc[index, "p"].to_numpy(float))
    if untimed.shape[0]:
        notes.append(f"{untimed.shape[0]} session(s) have no '{settings.time}' in the sessions table and were left out")
    record = LongitudinalRecord(
        time=settings.time, group_column=resolved.groups.column, group_a=group_a, group_b=group_b,
        covariates=covariates, sessions=sessions_of(regions),
        methods=longitudinal_methods(settings.time, group_a, group_b),
        terms=[LongitudinalTerm(**plain_values(row)) for row in out.to_dict("records")])
    return LongitudinalResults(table=out, record=record, exclusions=exclusion_records(exclusions), warnings=notes)


def write_longitudinal(results: LongitudinalResults, path: Path) -> Path:
    """``longitudinal.tsv`` (``qsmiron.io.derivatives.ExtensionPaths.longitudinal``); the record's ``files`` names it."""
    from qsmiron.io.atomic import write_tsv_atomic

    path.parent.mkdir(parents=True, exist_ok=True)
    results.record.files = {"longitudinal": path.name}
    return write_tsv_atomic(path, results.table)


# ---------------------------------------------------------------------------------------


def _session_times(table: SessionsTable | None, column: str, participants_source) -> pd.DataFrame:
    if table is None:
        raise InputError(f"longitudinal.time = '{column}' needs the sessions tables (sub-<label>/sub-<label>"
                         "_sessions.tsv or --sessions) with that column; none was given", participants_source)
    source, sessions = table.source, table.frame
    if column not in sessions.columns:
        raise InputError(f"has no column '{column}' (longitudinal.time); columns: {', '.join(sessions.columns)}",
                         source)
    if not pd.api.types.is_numeric_dtype(sessions[column]):
        examples = ", ".join(sessions[column].dropna().astype(str).unique()[:3])
        raise InputError(f"column '{column}' (longitudinal.time) must be numeric, holds {examples}", source)
    return sessions[["participant_id", SESSION_ID, column]].rename(columns={column: "__time"})


def _region_rows(key, data: pd.DataFrame, covariates: list[str], minimum: int) -> list[dict[str, Any]]:
    base = {"region": key[0], "hemisphere": key[1], "n": len(data),
            "n_participants": int(data["participant_id"].nunique())}
    per_group = data.drop_duplicates("participant_id")["__group"].value_counts()
    if per_group.get(1.0, 0) < minimum or per_group.get(0.0, 0) < minimum:
        return [{**base, "term": INTERACTION, "note": f"too few participants per group (at least {minimum} needed)"}]
    design = covariate_design(data, covariates)
    exog = pd.DataFrame({"intercept": 1.0, "group": data["__group"], "time": data["__time"],
                         INTERACTION: data["__group"] * data["__time"]}, index=data.index).join(design.matrix)
    if np.linalg.matrix_rank(exog.to_numpy(float)) < exog.shape[1] or len(data) <= exog.shape[1] + 1:
        return [{**base, "term": INTERACTION, "note": "the design cannot be estimated (collinear terms or too few "
                                                      "observations)"}]
    fit = fit_random_intercept(data[VALUE], exog, data["participant_id"])
    note = "; ".join(filter(None, [*design.notes, fit["note"]]))
    return [{**base, "term": term, "estimate": float(fit["estimate"][term]), "se": float(fit["se"][term]),
             "p": float(fit["p"][term]), "note": note} for term in exog.columns]
