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
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from qsmiron.stats._design import covariate_design, is_constant

ASSOCIATION_COLUMNS = ["region", "hemisphere", "group", "variable", "method", "n", "r", "p",
                       "p_fdr", "note"]
"""Columns of ``associations.tsv`` (``note`` says why a row has no statistics)."""

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


def associate(values: pd.Series, clinical: pd.Series, covariates: pd.DataFrame, *,
              method: str = "spearman", min_n: int = 3) -> dict[str, Any]:
    """One association row: chi ``values`` against a ``clinical`` variable (complete cases).

    Constant variables and covariates are reported in ``note`` rather than raising.
    """
    row = {"n": int(len(values)), "r": np.nan, "p": np.nan, "note": ""}
    if len(values) < min_n:
        row["note"] = f"only {len(values)} participants with data (at least {min_n} needed)"
        return row
    if is_constant(values.to_numpy()):
        row["note"] = "mean_ppm is the same for every participant"
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
    row.update(n=result["n"], r=result["r"], p=result["p"], note="; ".join(notes))
    return row
