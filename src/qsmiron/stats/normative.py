"""Normative scores: how far each participant's regional value lies from the study's reference group.

With ``[normative] reference_group = "<label>"``, each region and hemisphere gets an OLS model
``value ~ 1 + age + sex`` (the section's ``covariates``; value the regional summary analysed,
``Study.statistic``) fitted in the reference group.
Every participant's value is then a predictive t statistic

    t = (y - x' b) / (s sqrt(1 + x' (X'X)^-1 x)),

the residual over the prediction standard error (the model's uncertainty about its mean at x
plus the residual spread), with n - p degrees of freedom; reference-group members are scored
out of sample, by the model fitted without them (leave-one-out: the externally studentised
residual, n - p - 1 degrees of freedom). The z-score is the standard normal quantile of the
same tail probability, z = Phi^-1(F_t(t)), so that |z| > 2.5 means the same rarity whatever
the reference group's size. Values beyond ``outlier_z`` are flagged.

The reference is the study's own group, not a population norm.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from qsmiron.errors import InputError
from qsmiron.io.participants import ParticipantsTable
from qsmiron.records.extensions import NormativeOutlier, NormativeSession
from qsmiron.stats._design import covariate_design
from qsmiron.stats.methods_text import normative_methods
from qsmiron.stats.qc_exclusion import flag_reasons
from qsmiron.stats.regions import (CHI, EXCLUDED_FLAGS, region_keys, select_measure, select_session, validate_regions,
                                   wide_regions)
from qsmiron.stats.study import Study, group_labels, label_text

NORMATIVE_COLUMNS = ["participant_id", "group", "region", "hemisphere", "chi_ppm", "expected_ppm",
                     "prediction_se_ppm", "t", "df", "z", "outlier", "in_reference", "note"]


@dataclass
class NormativeResults:
    """One session's scores (``normative.tsv`` rows), how many were scored, the model's terms."""

    table: pd.DataFrame
    summary: NormativeSession
    terms: list[str]

    def outliers(self) -> list[NormativeOutlier]:
        """The flagged values, most extreme first."""
        flagged = self.table[self.table["outlier"].astype(bool)]
        flagged = flagged.reindex(flagged["z"].abs().sort_values(ascending=False).index)
        return [NormativeOutlier(participant_id=row.participant_id, session=self.summary.session,
                                 group=None if pd.isna(row.group) else str(row.group), region=row.region,
                                 hemisphere=row.hemisphere, chi_ppm=float(row.chi_ppm),
                                 expected_ppm=float(row.expected_ppm), z=float(row.z),
                                 in_reference=bool(row.in_reference)) for row in flagged.itertuples()]


def normative_scores(regions: pd.DataFrame, participants: ParticipantsTable, study: Study, *,
                     session: str | None = None) -> NormativeResults:
    """z-scores of every participant's regional values against the reference group.

    Parameters
    ----------
    regions : DataFrame
        Long regions table; with sessions, the values at ``session`` are scored.
    participants : ParticipantsTable
        Groups and covariates (at that session: ``participants_at_session``).
    study : Study
        With a ``normative`` section.
    session : str, optional

    Raises
    ------
    InputError
        The reference group is not a label of the group column, a covariate is missing, or the
        reference group (with complete covariates) is smaller than the number of model terms + 2.
    """
    settings = study.normative
    if settings is None:
        raise ValueError("the study has no [normative] section")
    source = participants.source
    session = session or study.session
    # z-scores of chi under the study's reference (the study's primary measure).
    regions = select_session(select_measure(validate_regions(regions), CHI, study.reference,
                                            statistic=study.statistic), session)
    column = study.groups.column
    missing = [c for c in [column, *settings.covariates] if c not in participants.frame.columns]
    if missing:
        raise InputError(f"has no column(s) {', '.join(missing)} needed by the normative model", source)
    table = participants.frame.set_index("participant_id")
    labels = group_labels(table[column])
    reference = label_text(settings.reference_group)
    if reference not in set(labels.dropna()):
        raise InputError(f"normative.reference_group {reference!r} is not a label of column '{column}' "
                         f"(present: {', '.join(sorted(labels.dropna().unique()))})", source)
    complete = table[settings.covariates].notna().all(axis=1)
    in_reference = (labels == reference) & complete
    design = covariate_design(table[in_reference], settings.covariates)
    n_terms = design.k + 1
    if int(in_reference.sum()) < n_terms + 2:
        raise InputError(f"reference group {reference!r} has {int(in_reference.sum())} participant(s) with "
                         f"{', '.join(settings.covariates)}; a normative model with {n_terms} terms needs at least "
                         f"{n_terms + 2} (terms + 2)", source)
    wide = wide_regions(regions)
    scored = [pid for pid in wide.index if pid in table.index and complete.get(pid, False)]
    x_all = _design_rows(table.loc[scored], settings.covariates, design)
    # a value left out by the study's QC rule (exclude_flagged) is not scored; its note names the flag
    flagged = (wide_regions(regions, EXCLUDED_FLAGS).loc[scored].map(flag_reasons) if EXCLUDED_FLAGS in regions
               else pd.DataFrame("", index=scored, columns=wide.columns))
    parts = [_score_region(key, wide.loc[scored, key], x_all, labels.loc[scored], reference, settings.outlier_z,
                           flagged[key].to_numpy(object)) for key in region_keys(regions, None)]
    out = pd.concat(parts, ignore_index=True).reindex(columns=NORMATIVE_COLUMNS)
    summary = NormativeSession(session=session, n_reference=int(in_reference.sum()),
                               n_scored=int(out["participant_id"].nunique()),
                               n_outliers=int(out["outlier"].astype(bool).sum()))
    return NormativeResults(table=out, summary=summary, terms=["intercept", *design.matrix.columns])


def normative_statement(study: Study, sessions: list[NormativeSession]) -> str:
    """The methods text, with the reference group's size (per session when several)."""
    settings = study.normative
    sizes = sorted({item.n_reference for item in sessions})
    n_reference = (str(sizes[0]) if len(sizes) == 1
                   else ", ".join(f"{item.n_reference} at {item.session}" for item in sessions))
    return normative_methods(label_text(settings.reference_group), n_reference, settings.covariates,
                             settings.outlier_z)


# ---------------------------------------------------------------------------------------


def _design_rows(frame: pd.DataFrame, covariates: list[str], reference_design) -> np.ndarray:
    """Intercept + the reference model's columns for any participants (levels as in the reference)."""
    columns = [np.ones(len(frame))]
    for name in covariates:
        for column in reference_design.terms.get(name, []):
            if column == name:
                columns.append(frame[name].to_numpy(float))
            else:
                level = column[len(name) + 1:-1]
                columns.append((frame[name].astype(str) == level).to_numpy(float))
    return np.column_stack(columns)


def _score_region(key, values: pd.Series, x: np.ndarray, labels: pd.Series, reference: str,
                  outlier_z: float, flagged: np.ndarray) -> pd.DataFrame:
    """One region's scores; ``flagged``: per participant, why the QC rule left the value out (or "")."""
    y = values.to_numpy(float)
    has_value = np.isfinite(y)
    member = (labels == reference).to_numpy() & has_value
    p = x.shape[1]
    missing = np.where(flagged.astype(bool), flagged, "no regional value")
    columns = {"participant_id": values.index, "group": labels.to_numpy(), "region": key[0], "hemisphere": key[1],
               "chi_ppm": y, "in_reference": member, "note": np.where(has_value, "", missing)}
    if member.sum() < p + 2:
        columns["note"] = np.where(has_value, f"only {int(member.sum())} reference participants with a value "
                                              f"(at least {p + 2} needed)", columns["note"])
        return pd.DataFrame(columns)
    xr, yr = x[member], y[member]
    gram_inv = np.linalg.pinv(xr.T @ xr)
    beta = gram_inv @ xr.T @ yr
    dof = len(yr) - p
    residual = yr - xr @ beta
    s2 = float(residual @ residual) / dof
    # everyone: prediction from the reference fit, se^2 = s2 (1 + x' (X'X)^-1 x), n - p df
    expected = x @ beta
    se = np.sqrt(s2 * (1 + np.einsum("ij,jk,ik->i", x, gram_inv, x)))
    df = np.full(len(y), float(dof))
    # reference members: leave-one-out, via the leverage h (externally studentised residual)
    leverage = np.einsum("ij,jk,ik->i", xr, gram_inv, xr)
    s2_loo = (dof * s2 - residual ** 2 / (1 - leverage)) / (dof - 1)
    expected[member] = yr - residual / (1 - leverage)
    se[member] = np.sqrt(s2_loo / (1 - leverage))
    df[member] = dof - 1
    t = (y - expected) / se
    z = np.sign(t) * stats.norm.isf(stats.t.sf(np.abs(t), df))
    missing = ~has_value
    for name, array in (("expected_ppm", expected), ("prediction_se_ppm", se), ("t", t), ("df", df), ("z", z)):
        array[missing] = np.nan
        columns[name] = array
    columns["outlier"] = np.where(has_value, np.abs(z) > outlier_z, False)
    return pd.DataFrame(columns)
