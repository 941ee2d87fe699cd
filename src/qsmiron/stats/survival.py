"""Time to relapse: Cox proportional hazards, Kaplan-Meier curves and their numbers at risk.

Definitions (participants of the relapse group with a time and an event indicator):

- **Cox proportional hazards** (lifelines ``CoxPHFitter``, Efron ties): hazard ratio per
  1 SD of chi with its 95 % Wald CI and p, covariates as in the logistic model.
- **Kaplan-Meier** curves (lifelines) for chi at or below the sample median ("low") and
  above it ("high"), with lifelines' exponential Greenwood 95 % band and the log-rank p.
- **Numbers at risk** at chosen times t, per curve, as R's ``summary(survfit, times = t)``
  and survminer's risk table: ``at_risk`` = participants whose time is >= t (still followed
  and event-free just before t), ``events`` and ``censored`` = cumulative counts with time
  <= t, ``survival`` = the Kaplan-Meier estimate S(t). The times are ``relapse.km_times``
  when the study gives them, otherwise "nice" steps from 0 to the longest follow-up
  (:func:`nice_times`). Times carry the unit of the time column in ``participants.json``
  (``Units``); a time column without one is reported as having no unit.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from qsmiron.stats._design import (covariate_design, design_with_z, fit_quietly, is_constant,
                                   standardise)

KM_COLUMNS = ["group", "time", "survival", "ci_low", "ci_high"]
AT_RISK_COLUMNS = ["group", "time", "at_risk", "events", "censored", "survival"]
NICE_STEPS = (1.0, 2.0, 2.5, 3.0, 5.0, 6.0, 10.0)


def cox_hazard_ratio(time, events, chi_ppm, covariates: pd.DataFrame) -> dict[str, Any]:
    """Hazard ratio per 1 SD of chi (lifelines Cox PH), 95 % CI and p."""
    from lifelines import CoxPHFitter
    from lifelines.exceptions import ConvergenceError

    out = {"hr": np.nan, "hr_ci_low": np.nan, "hr_ci_high": np.nan, "hr_p": np.nan, "note": ""}
    exog, notes = design_with_z(standardise(chi_ppm), covariates)
    data = exog.drop(columns="const").assign(_time=np.asarray(time, float),
                                             _event=np.asarray(events, int))
    try:
        fitter, messages = fit_quietly(
            lambda: CoxPHFitter().fit(data, duration_col="_time", event_col="_event"))
    except (ConvergenceError, np.linalg.LinAlgError, ValueError) as exc:
        out["note"] = "; ".join(notes + ["Cox model could not be fitted ("
                                         + str(exc).split("\n")[0] + ")"])
        return out
    row = fitter.summary.loc["z"]
    values = [row["exp(coef)"], row["exp(coef) lower 95%"], row["exp(coef) upper 95%"]]
    failed = any("converge" in m.lower() for m in messages)
    if failed or not np.all(np.isfinite(values)) or min(values) <= 0:
        out["note"] = "; ".join(notes + ["the Cox model did not converge (too few events, or chi "
                                         "separates events from non-events)"])
        return out
    out.update(hr=float(values[0]), hr_ci_low=float(values[1]), hr_ci_high=float(values[2]),
               hr_p=float(row["p"]), note="; ".join(notes + messages))
    return out


def median_split(chi_ppm) -> np.ndarray:
    """``"low"`` for chi at or below the sample median, ``"high"`` above it."""
    chi = np.asarray(chi_ppm, float)
    return np.where(chi > np.median(chi), "high", "low")


def kaplan_meier_by_median(time, events, chi_ppm) -> tuple[pd.DataFrame, float]:
    """Kaplan-Meier curves of chi <= median ("low") and > median ("high") and log-rank p.

    Returns
    -------
    curves : DataFrame
        group ('low'/'high'), time, survival, ci_low, ci_high (lifelines' exponential
        Greenwood 95 % band), one row per time of the curve including time 0.
    logrank_p : float
    """
    from lifelines import KaplanMeierFitter
    from lifelines.statistics import logrank_test

    time = np.asarray(time, float)
    events = np.asarray(events, int)
    high = median_split(chi_ppm) == "high"
    frames = []
    for label, members in (("low", ~high), ("high", high)):
        if not members.any():
            continue
        fitter = KaplanMeierFitter().fit(time[members], events[members])
        band = fitter.confidence_interval_survival_function_
        frames.append(pd.DataFrame({
            "group": label,
            "time": fitter.survival_function_.index.to_numpy(dtype=float),
            "survival": fitter.survival_function_.iloc[:, 0].to_numpy(),
            "ci_low": band.iloc[:, 0].to_numpy(),
            "ci_high": band.iloc[:, 1].to_numpy(),
        }))
    curves = (pd.concat(frames, ignore_index=True) if frames
              else pd.DataFrame(columns=KM_COLUMNS))
    p = np.nan
    if high.any() and (~high).any() and events.any():
        p = float(logrank_test(time[~high], time[high], events[~high], events[high]).p_value)
    return curves, p


def nice_times(longest: float, *, intervals: int = 4) -> np.ndarray:
    """0 and about ``intervals`` round steps up to ``longest`` (12 -> 0, 3, 6, 9, 12).

    The step is the smallest of 1, 2, 2.5, 3, 5, 6 or 10 times a power of ten that is at
    least ``longest / intervals``; the last time does not pass ``longest``.
    """
    if not np.isfinite(longest) or longest <= 0:
        return np.array([0.0])
    raw = longest / intervals
    magnitude = 10.0 ** np.floor(np.log10(raw))
    step = next(m * magnitude for m in NICE_STEPS if m * magnitude >= raw * (1 - 1e-12))
    return np.arange(0.0, longest + step * 1e-9, step)


def product_limit(time: np.ndarray, events: np.ndarray, at: np.ndarray) -> np.ndarray:
    """Kaplan-Meier S(t) at the times ``at``: the product of 1 - d_u / n_u over events u <= t."""
    event_times = np.unique(time[events])
    at_risk = np.array([(time >= u).sum() for u in event_times])
    deaths = np.array([(events & (time == u)).sum() for u in event_times])
    steps = np.r_[1.0, np.cumprod(1.0 - deaths / at_risk)] if event_times.size else np.ones(1)
    return steps[np.searchsorted(event_times, at, side="right")]


def at_risk_table(time, events, groups, times: Sequence[float] | None = None) -> pd.DataFrame:
    """Numbers at risk, cumulative events and censorings, and S(t) per group at ``times``.

    Parameters
    ----------
    time : array-like of float
        Follow-up time of each participant (event or censoring).
    events : array-like of {0, 1}
    groups : array-like of str
        The curve each participant belongs to (for example :func:`median_split`).
    times : sequence of float, optional
        Default: :func:`nice_times` of the longest time.

    Returns
    -------
    DataFrame
        Columns :data:`AT_RISK_COLUMNS`, one row per group and time (groups in order of
        first appearance, times ascending).
    """
    time = np.asarray(time, float)
    events = np.asarray(events, int).astype(bool)
    groups = np.asarray(groups).astype(str)
    grid = nice_times(float(time.max())) if times is None else np.asarray(times, float)
    grid = np.sort(grid)
    rows = []
    for label in dict.fromkeys(groups):
        members = groups == label
        t, e = time[members], events[members]
        for at, s in zip(grid, product_limit(t, e, grid)):
            rows.append({"group": label, "time": float(at), "at_risk": int((t >= at).sum()),
                         "events": int((e & (t <= at)).sum()),
                         "censored": int((~e & (t <= at)).sum()), "survival": float(s)})
    return pd.DataFrame(rows, columns=AT_RISK_COLUMNS)


def time_to_event_row(time, events, chi_ppm, covariates: pd.DataFrame, *, min_group_size: int,
                      min_events: int, min_epv: float, km_times: Sequence[float] | None = None
                      ) -> tuple[dict[str, Any], pd.DataFrame | None, pd.DataFrame | None]:
    """The time-to-event columns of a region's ``relapse.tsv`` row, its curves and risk table.

    Kaplan-Meier curves, numbers at risk and the log-rank test need ``min_group_size``
    events; the Cox model needs ``min_events`` events and ``min_epv`` events per parameter
    (fewer: no hazard ratio, and the note says why).

    Returns
    -------
    (dict, curves or None, at-risk table or None)
        ``hr_n``, ``hr_events``, the Cox and log-rank columns and ``note`` (reasons, each
        prefixed "time to event:" or "Cox:").
    """
    time = np.asarray(time, float)
    events = np.asarray(events, int)
    n_events = int(events.sum())
    row: dict[str, Any] = {"hr_n": int(time.size), "hr_events": n_events, "note": ""}
    if n_events < min_group_size:
        row["note"] = f"time to event: {n_events} events (at least {min_group_size} needed)"
        return row, None, None
    if is_constant(chi_ppm):
        row["note"] = "time to event: chi_ppm is the same for every participant"
        return row, None, None
    curves, row["km_logrank_p"] = kaplan_meier_by_median(time, events, chi_ppm)
    at_risk = at_risk_table(time, events, median_split(chi_ppm), km_times)
    n_parameters = 1 + covariate_design(covariates, list(covariates.columns)).k
    if n_events < min_events or n_events / n_parameters < min_epv:
        row["note"] = (f"Cox: {n_events} events for {n_parameters} parameter(s) (at least "
                       f"{min_events} events and {min_epv:g} per parameter needed): no hazard "
                       "ratio")
        return row, curves, at_risk
    cox = cox_hazard_ratio(time, events, chi_ppm, covariates)
    note = cox.pop("note")
    row.update(cox)
    row["note"] = f"Cox: {note}" if note else ""
    return row, curves, at_risk
