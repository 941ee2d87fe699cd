"""Partial correlation of regional susceptibility with a clinical variable.

Definition (as pingouin's ``partial_corr``): with k covariate columns (a text covariate such
as sex counts one column per non-reference level),

- **spearman** (default): every variable (chi, the clinical variable and each covariate
  column) is replaced by its ranks in the analysed sample (average ranks for ties); then the
  Pearson partial correlation of the ranks;
- **pearson**: the same on the values;

the partial correlation is the Pearson correlation of the residuals of chi and of the
clinical variable after least-squares regression on an intercept and the covariates, and its
p-value is two-sided from t = r sqrt((n - 2 - k) / (1 - r^2)) with n - 2 - k degrees of
freedom.

The 95 % CI is Fisher's: tanh(atanh(r) +- 1.96 se) with se = 1 / sqrt(n - 3 - k) for
Pearson (as R's ``cor.test`` for k = 0, pingouin's ``partial_corr`` for k > 0) and, for
Spearman, Bonett & Wright's (2000, Psychometrika 65:23) se = sqrt((1 + r^2 / 2) /
(n - 3 - k)), which keeps the nominal coverage for rank correlations.
``min_detectable_r`` is the smallest |r| the row's sample detects with 80 % power at
two-sided alpha 0.05 (:func:`qsmiron.stats.power.min_detectable_r`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from qsmiron.stats._design import covariate_design, is_constant
from qsmiron.stats.power import min_detectable_r

ASSOCIATION_COLUMNS = ["region", "hemisphere", "group", "variable", "method", "n", "r", "p",
                       "p_fdr", "family", "r_ci_low", "r_ci_high", "min_detectable_r", "note"]
"""Columns of ``associations.tsv`` (``note`` says why a row has no statistics; ``family``,
the FDR family, is filled by the study analysis)."""

METHODS = ("spearman", "pearson")


def partial_correlation(x, y, covariates=None, *, method: str = "spearman") -> dict[str, Any]:
    """Partial correlation of ``x`` and ``y`` controlling ``covariates``.

    Parameters
    ----------
    x, y : array-like, shape (n,)
        No missing values.
    covariates : array-like, shape (n, k), optional
        Numeric covariate columns (dummies already made); k may be 0.
    method : {"spearman", "pearson"}

    Returns
    -------
    dict
        ``n``, ``r``, ``p``, ``df`` (n - 2 - k) and ``note`` (empty, or why r is NaN).
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    z = np.zeros((x.size, 0)) if covariates is None else np.asarray(covariates, dtype=float)
    z = z.reshape(x.size, -1)
    n, k = x.size, z.shape[1]
    out = {"n": int(n), "r": np.nan, "p": np.nan, "df": int(n - 2 - k), "note": ""}
    if n - 2 - k < 1:
        out["note"] = f"{n} participants leave no degrees of freedom with {k} covariate column(s)"
        return out
    if method == "spearman":
        x, y = stats.rankdata(x), stats.rankdata(y)
        z = np.column_stack([stats.rankdata(column) for column in z.T]) if k else z
    basis = np.column_stack([np.ones(n), z])
    rx = x - basis @ np.linalg.lstsq(basis, x, rcond=None)[0]
    ry = y - basis @ np.linalg.lstsq(basis, y, rcond=None)[0]
    scale_x, scale_y = np.sqrt(rx @ rx), np.sqrt(ry @ ry)
    tol = 1e-10
    if scale_x <= tol * max(1.0, np.sqrt(x @ x)) or scale_y <= tol * max(1.0, np.sqrt(y @ y)):
        which = "chi" if scale_x <= tol * max(1.0, np.sqrt(x @ x)) else "the clinical variable"
        out["note"] = f"{which} has no variance left after the covariates"
        return out
    r = float(np.clip(rx @ ry / (scale_x * scale_y), -1.0, 1.0))
    df = n - 2 - k
    if abs(r) >= 1.0:
        p = 0.0
    else:
        t = r * np.sqrt(df / (1.0 - r * r))
        p = float(2.0 * stats.t.sf(abs(t), df))
    out.update(r=r, p=p)
    return out


def correlation_interval(r: float, n: int, *, n_covariates: int = 0,
                         method: str = "pearson", confidence: float = 0.95
                         ) -> tuple[float, float]:
    """Fisher-z confidence interval of a (partial) correlation; Bonett-Wright SE for Spearman.

    NaN when r is not finite or n - 3 - k < 1.
    """
    effective = n - 3 - n_covariates
    if not np.isfinite(r) or effective < 1:
        return float("nan"), float("nan")
    variance = (1.0 + r * r / 2.0) if method == "spearman" else 1.0
    half_width = stats.norm.ppf(0.5 + confidence / 2) * np.sqrt(variance / effective)
    centre = np.arctanh(np.clip(r, -1 + 1e-15, 1 - 1e-15))
    return float(np.tanh(centre - half_width)), float(np.tanh(centre + half_width))


def associate(values: pd.Series, clinical: pd.Series, covariates: pd.DataFrame, *,
              method: str = "spearman", min_n: int = 3) -> dict[str, Any]:
    """One association row: chi ``values`` against a ``clinical`` variable (complete cases).

    Constant variables and covariates are reported in ``note`` rather than raising.
    """
    row = {"n": int(len(values)), "r": np.nan, "p": np.nan, "r_ci_low": np.nan,
           "r_ci_high": np.nan, "min_detectable_r": np.nan, "note": ""}
    if len(values) < min_n:
        row["note"] = f"only {len(values)} participants with data (at least {min_n} needed)"
        return row
    if is_constant(values.to_numpy()):
        row["note"] = "chi_ppm is the same for every participant"
        return row
    if is_constant(clinical.to_numpy()):
        row["note"] = f"{clinical.name} is the same for every participant"
        return row
    design = covariate_design(covariates, list(covariates.columns))
    result = partial_correlation(values.to_numpy(), clinical.to_numpy(),
                                 design.matrix.to_numpy(), method=method)
    notes = list(design.notes)
    if result["note"]:
        notes.append(result["note"])
    low, high = correlation_interval(result["r"], result["n"], n_covariates=design.k,
                                     method=method)
    row.update(n=result["n"], r=result["r"], p=result["p"], r_ci_low=low, r_ci_high=high,
               min_detectable_r=min_detectable_r(result["n"], n_covariates=design.k),
               note="; ".join(notes))
    return row
