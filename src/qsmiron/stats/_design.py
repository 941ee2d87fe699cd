"""Shared pieces of every model: listwise deletion, covariate design matrices, quiet fits."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

CHI = "__chi_ppm"
"""The column holding one region's value in the frames an analysis builds (a name no
participants table uses; ``chi_ppm`` in exclusion reasons)."""
CHI_LABEL = "chi_ppm"
"""How exclusion records name the regional value ``CHI`` (``missing chi_ppm``)."""


def region_label(key: tuple[str, str]) -> str:
    """``(region, hemisphere)`` as text: ``"VeP left"``."""
    return f"{key[0]} {key[1]}"


@dataclass
class CompleteCases:
    """The rows kept for one analysis and why the others were left out."""

    frame: pd.DataFrame
    exclusions: list[dict[str, Any]] = field(default_factory=list)


def complete_cases(frame: pd.DataFrame, columns: list[str], analysis: str,
                   labels: dict[str, str] | None = None, where: str | None = None
                   ) -> CompleteCases:
    """Listwise deletion over ``columns``, with one exclusion record per dropped participant.

    Each record holds ``participant_id``, ``analysis``, ``reason`` (``"missing age, sds"``),
    ``where`` and ``missing`` (the labels of the missing values, which
    :func:`qsmiron.stats.qc_exclusion.attribute_exclusions` reads).

    Parameters
    ----------
    frame : DataFrame
        Indexed by participant_id.
    columns : list of str
    analysis : str
        Named in the exclusion records (for example ``"group_comparison"``).
    labels : dict, optional
        Column name -> the name to report (for example the region's chi column -> ``chi_ppm``).
    where : str, optional
        The region (``"VeP L"``), kept in the record's ``where`` key.
    """
    labels = labels or {}
    columns = list(dict.fromkeys(columns))
    missing = frame[columns].isna()
    dropped = missing.any(axis=1)
    exclusions = []
    for participant, row in missing[dropped].iterrows():
        names = [labels.get(column, column) for column in columns if row[column]]
        exclusions.append({"participant_id": str(participant), "analysis": analysis,
                           "reason": "missing " + ", ".join(names), "where": where, "missing": names})
    return CompleteCases(frame.loc[~dropped], exclusions)


@dataclass
class Design:
    """Covariates as numeric columns (dummies for text covariates) plus what was dropped."""

    matrix: pd.DataFrame
    terms: dict[str, list[str]]
    notes: list[str]

    @property
    def k(self) -> int:
        """Number of covariate columns (the k of n - 2 - k degrees of freedom)."""
        return self.matrix.shape[1]


def covariate_design(frame: pd.DataFrame, covariates: list[str]) -> Design:
    """Numeric design columns for ``covariates`` on ``frame`` (complete cases assumed).

    Numeric covariates enter as they are; text covariates (such as sex M/F) as treatment
    dummies against their first level in sorted order (``sex[M]`` = 1 for M, reference F).
    A covariate with a single value in the sample cannot be estimated: it is left out and a
    note says so.
    """
    columns: dict[str, pd.Series] = {}
    terms: dict[str, list[str]] = {}
    notes: list[str] = []
    for name in covariates:
        values = frame[name]
        if pd.api.types.is_numeric_dtype(values):
            if values.nunique() < 2:
                notes.append(f"covariate {name} is constant ({values.iloc[0]}) in this sample "
                             "and was left out")
                continue
            columns[name] = values.astype(float)
            terms[name] = [name]
        else:
            levels = sorted(values.astype(str).unique())
            if len(levels) < 2:
                notes.append(f"covariate {name} has the single value {levels[0]!r} in this "
                             "sample and was left out")
                continue
            terms[name] = []
            for level in levels[1:]:
                column = f"{name}[{level}]"
                columns[column] = (values.astype(str) == level).astype(float)
                terms[name].append(column)
    matrix = pd.DataFrame(columns, index=frame.index)
    return Design(matrix, terms, notes)


def is_constant(values: np.ndarray) -> bool:
    values = np.asarray(values, dtype=float)
    return values.size == 0 or bool(np.ptp(values) <= 1e-12 * max(1.0, np.max(np.abs(values))))


def standardise(chi_ppm) -> np.ndarray:
    """z-scores of chi in the analysed sample (ddof 1): model coefficients are per 1 SD."""
    chi = np.asarray(chi_ppm, dtype=float)
    return (chi - chi.mean()) / chi.std(ddof=1)


def design_with_z(z: np.ndarray, covariates: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """Columns const, z and the covariate design (x0, x1, ...), plus the design's notes."""
    design = covariate_design(covariates, list(covariates.columns))
    exog = pd.DataFrame({"const": 1.0, "z": z}, index=covariates.index)
    for i, column in enumerate(design.matrix.columns):
        exog[f"x{i}"] = design.matrix[column].to_numpy()
    return exog, design.notes


def fit_quietly(fit_function) -> tuple[Any, list[str]]:
    """Run a fit and turn its numerical warnings into notes."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = fit_function()
    messages = []
    for item in caught:
        text = str(item.message).split("\n")[0].strip()
        if text and text not in messages and not issubclass(item.category, (DeprecationWarning,
                                                                            FutureWarning)):
            messages.append(text)
    return result, messages
