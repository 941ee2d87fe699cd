"""Table 1: who the participants of the two compared groups are.

One row per characteristic (every column of the participants table except the id and the
group column, in table order, after a first row with the number of participants).

- **Continuous** (numeric with more than two distinct values): when the values of both groups
  look normal (Shapiro-Wilk p >= 0.05 in each group with 3 or more values), mean +- SD and
  Welch's t-test (scipy ``ttest_ind(equal_var=False)``); otherwise median [IQR] (quartiles by
  linear interpolation, numpy's default) and the Mann-Whitney U test (two-sided).
- **Categorical** (text, or numeric with at most two distinct values such as 0/1): counts and
  percentages of each level among the participants with a value; Pearson's chi-square test
  (scipy ``chi2_contingency``, with Yates' continuity correction for 2 x 2 tables, as R's
  ``chisq.test``) unless a 2 x 2 table has an expected count below 5, then Fisher's exact test
  (two-sided). Larger tables with small expected counts keep the chi-square test and say so.

Missing values are counted per group (``missing_a``, ``missing_b``) and left out of that
characteristic only.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

TABLE1_COLUMNS = ["variable", "kind", "group_a", "group_b", "n_a", "n_b", "missing_a",
                  "missing_b", "summary_a", "summary_b", "test", "statistic", "p", "note"]

NORMALITY_ALPHA = 0.05


def describe_groups(participants: pd.DataFrame, groups: pd.Series, *, group_a: str,
                    group_b: str, exclude: tuple[str, ...] = ("participant_id",)) -> pd.DataFrame:
    """Table 1 of the participants in ``group_a`` and ``group_b``.

    Parameters
    ----------
    participants : DataFrame
    groups : Series
        Group label of every row of ``participants`` (text).
    exclude : tuple of str
        Columns not described (the id and the group column).
    """
    in_a, in_b = (groups == group_a).to_numpy(), (groups == group_b).to_numpy()
    rows: list[dict[str, Any]] = [{
        "variable": "n", "kind": "count", "group_a": group_a, "group_b": group_b,
        "n_a": int(in_a.sum()), "n_b": int(in_b.sum()), "missing_a": 0, "missing_b": 0,
        "summary_a": str(int(in_a.sum())), "summary_b": str(int(in_b.sum())), "test": "",
        "statistic": np.nan, "p": np.nan, "note": ""}]
    for column in participants.columns:
        if column in exclude:
            continue
        values = participants[column]
        a, b = values[in_a], values[in_b]
        row = {"variable": column, "group_a": group_a, "group_b": group_b,
               "n_a": int(a.notna().sum()), "n_b": int(b.notna().sum()),
               "missing_a": int(a.isna().sum()), "missing_b": int(b.isna().sum()),
               "statistic": np.nan, "p": np.nan, "test": "", "note": ""}
        present = values[in_a | in_b].dropna()
        if present.empty:
            row.update(kind="empty", summary_a="", summary_b="", note="no values")
        elif pd.api.types.is_numeric_dtype(values) and present.nunique() > 2:
            row.update(kind="continuous", **_continuous(a.dropna().to_numpy(float),
                                                        b.dropna().to_numpy(float)))
        else:
            row.update(kind="categorical", **_categorical(a.dropna(), b.dropna(),
                                                          sorted(present.unique(), key=str)))
        rows.append(row)
    return pd.DataFrame(rows, columns=TABLE1_COLUMNS)


def _looks_normal(values: np.ndarray) -> bool:
    if values.size < 3 or np.ptp(values) == 0:
        return False
    return bool(stats.shapiro(values).pvalue >= NORMALITY_ALPHA)


def _continuous(a: np.ndarray, b: np.ndarray) -> dict[str, Any]:
    normal = _looks_normal(a) and _looks_normal(b)
    out: dict[str, Any] = {}
    if normal:
        out["summary_a"], out["summary_b"] = _mean_sd(a), _mean_sd(b)
    else:
        out["summary_a"], out["summary_b"] = _median_iqr(a), _median_iqr(b)
    if a.size < 2 or b.size < 2:
        out["note"] = "too few values in a group for a test"
        return out
    if np.ptp(np.concatenate([a, b])) == 0:
        out["note"] = "the same value for everyone: no test"
        return out
    if normal:
        result = stats.ttest_ind(a, b, equal_var=False)
        out.update(test="Welch t", statistic=float(result.statistic), p=float(result.pvalue))
    else:
        result = stats.mannwhitneyu(a, b, alternative="two-sided")
        out.update(test="Mann-Whitney U", statistic=float(result.statistic),
                   p=float(result.pvalue))
    return out


def _mean_sd(values: np.ndarray) -> str:
    if values.size == 0:
        return ""
    sd = np.std(values, ddof=1) if values.size > 1 else np.nan
    return f"{_number(values.mean())} ± {_number(sd)}"


def _median_iqr(values: np.ndarray) -> str:
    if values.size == 0:
        return ""
    q1, median, q3 = np.percentile(values, [25, 50, 75])
    return f"{_number(median)} [{_number(q1)}, {_number(q3)}]"


def _number(value: float) -> str:
    if not np.isfinite(value):
        return "n/a"
    return f"{value:.3g}" if abs(value) < 0.1 and value != 0 else f"{value:.1f}"


def _categorical(a: pd.Series, b: pd.Series, levels: list) -> dict[str, Any]:
    table = np.array([[int((a == level).sum()) for level in levels],
                      [int((b == level).sum()) for level in levels]])

    def summary(counts: np.ndarray) -> str:
        total = counts.sum()
        if total == 0:
            return ""
        return "; ".join(f"{_level(level)}: {count} ({100.0 * count / total:.1f} %)"
                         for level, count in zip(levels, counts))

    out: dict[str, Any] = {"summary_a": summary(table[0]), "summary_b": summary(table[1])}
    if len(levels) < 2:
        out["note"] = "a single level: no test"
        return out
    if table[0].sum() == 0 or table[1].sum() == 0:
        out["note"] = "a group has no values: no test"
        return out
    expected = stats.contingency.expected_freq(table)
    if table.shape == (2, 2) and expected.min() < 5:
        result = stats.fisher_exact(table, alternative="two-sided")
        out.update(test="Fisher exact", statistic=float(result.statistic), p=float(result.pvalue))
    else:
        chi2, p, _, _ = stats.chi2_contingency(table)
        out.update(test="chi-square", statistic=float(chi2), p=float(p))
        if expected.min() < 5:
            out["note"] = "expected counts below 5: the chi-square p is approximate"
    return out


def _level(level: Any) -> str:
    if isinstance(level, (float, np.floating)) and float(level).is_integer():
        return str(int(level))
    return str(level)
