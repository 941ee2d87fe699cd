"""Multiple comparisons: Benjamini-Hochberg false discovery rate within declared families.

A study may declare **primary regions** (``primary_regions = ["VeP", "Pu"]``): the regions
its hypotheses were stated for before the data were seen. Every table is then split into
two families and the Benjamini-Hochberg adjustment runs within each separately:

- **primary** (confirmatory): the rows of a primary region, *both hemispheres* (and a
  bilateral row, if the regions table has one). A hypothesis about "the putamen" is tested
  in the left and in the right putamen, so both rows belong to the confirmatory family and
  both are adjusted for (the study file has no lateralised hypotheses). For the
  associations the primary family is
  further limited to the study's primary clinical variables (``associations.
  primary_variables``, default every variable).
- **exploratory**: every other row.

Without primary regions every row is one exploratory family (the whole table is adjusted
together), and :func:`families_statement` says so (the analysis records the statement in
the methods text, ``AnalysisSettings.methods.fdr_families``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
from statsmodels.stats.multitest import multipletests

PRIMARY = "primary"
EXPLORATORY = "exploratory"


def fdr_bh(p_values) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values (statsmodels ``fdr_bh``), NaN kept in place.

    Rows without a p-value (an analysis that could not be run, with its reason reported)
    are left out of the family: the adjustment runs over the finite p-values only.

    Parameters
    ----------
    p_values : array-like of float

    Returns
    -------
    ndarray of float
        Same shape; adjusted p-values, NaN where the input was NaN.
    """
    p = np.asarray(p_values, dtype=float)
    adjusted = np.full(p.shape, np.nan)
    finite = np.isfinite(p)
    if finite.any():
        adjusted[finite] = multipletests(p[finite], method="fdr_bh")[1]
    return adjusted


def fdr_bh_within(p_values, *labels: Sequence) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values within each combination of ``labels``.

    Parameters
    ----------
    p_values : array-like of float, shape (n,)
    *labels : sequences of shape (n,)
        Rows with equal labels in every sequence form one family (for example the FDR
        family and the association group).

    Returns
    -------
    ndarray of float, shape (n,)
        Adjusted within each family; NaN rows left out as in :func:`fdr_bh`.
    """
    p = np.asarray(p_values, dtype=float)
    adjusted = np.full(p.shape, np.nan)
    keys = list(zip(*labels)) if labels else [()] * p.size
    for key in dict.fromkeys(keys):
        members = np.array([k == key for k in keys], dtype=bool)
        adjusted[members] = fdr_bh(p[members])
    return adjusted


def fdr_families(regions: Iterable[str], primary_regions: Sequence[str], *,
                 variables: Iterable[str] | None = None,
                 primary_variables: Sequence[str] | None = None) -> np.ndarray:
    """The FDR family of each row: ``"primary"`` or ``"exploratory"``.

    Parameters
    ----------
    regions : iterable of str
        The region of each row (any hemisphere: both hemispheres of a primary region are
        primary).
    primary_regions : sequence of str
        Declared primary regions (resolved names); empty: every row is exploratory.
    variables, primary_variables : optional
        For association rows: a row is primary only when its variable is also primary
        (``primary_variables`` None: every variable is).

    Returns
    -------
    ndarray of str
    """
    regions = list(regions)
    primary = set(primary_regions)
    in_primary = np.array([region in primary for region in regions], dtype=bool)
    if variables is not None and primary_variables is not None:
        chosen = set(primary_variables)
        in_primary &= np.array([variable in chosen for variable in variables], dtype=bool)
    return np.where(in_primary, PRIMARY, EXPLORATORY).astype(object)


def families_statement(primary_regions: Sequence[str],
                       primary_variables: Sequence[str] | None = None) -> str:
    """How the FDR families were formed, as a clause (for the results and the methods text)."""
    if not primary_regions:
        return ("no primary regions were declared, so every row of a table is in one "
                "exploratory family")
    text = (f"the primary (confirmatory) family is the rows of the declared primary regions "
            f"{', '.join(primary_regions)} in both hemispheres")
    if primary_variables:
        text += f" (for the associations: with {', '.join(primary_variables)})"
    return text + ", the exploratory family every other row"
