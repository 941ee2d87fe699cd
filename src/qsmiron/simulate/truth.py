"""Compare what a run recovered from a simulated cohort with the truth the simulator planted.

Two questions a newcomer asks of the demo: does the tool measure each subject's regional
susceptibility (recovered against true values, per region: Pearson r, bias, RMSE), and does
the study find the planted group effect (the planted MOH - CM difference inside the estimated
95 % confidence interval, with its p)? The truth is the simulator's
``derivatives/truth/regions_truth.tsv`` (``mean_ppm``: the value each subject's region was
given, relative to the subject's whole-brain mean, the reference of the recovered values) and
``planted_effects.json``. Beside it, ``mean_ppm_grid`` (the true chi map's mean over the
region's voxels on the scan grid) splits the bias in two: what the scan's resolution loses to
partial volume before any processing, and what reconstruction and registration add.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np
import pandas as pd

from qsmiron.simulate.cohort import SIMULATION_RECORD, TRUTH_DIR

PPB_PER_PPM = 1000.0


@dataclass
class TruthComparison:
    """Recovered against planted values.

    Attributes
    ----------
    pairs : DataFrame
        ``participant_id``, ``region``, ``hemisphere``, ``true_ppm``, ``true_grid_ppm``, ``recovered_ppm``.
    regions : DataFrame
        Per region and hemisphere: ``n``, ``r``, ``slope`` (least-squares slope of recovered on
        true values: how much of a true difference between subjects is recovered), ``bias_ppb``
        (mean recovered - true), ``rmse_ppb``, ``true_sd_ppb``, and ``bias_grid_ppb`` (mean
        recovered - true on the scan grid; NaN when the truth has no ``mean_ppm_grid``).
    effects : DataFrame
        Per planted region and hemisphere: ``planted_d``, ``planted_diff_ppb`` (population),
        ``realised_diff_ppb`` (the drawn cohort's true values, MOH - CM), ``diff_ppb`` with
        ``diff_ci_low_ppb``/``diff_ci_high_ppb`` (the study's adjusted estimate), ``p``,
        ``p_fdr``, ``cohen_d`` with its CI, ``planted_in_ci``, ``realised_in_ci``.
    """

    pairs: pd.DataFrame
    regions: pd.DataFrame
    effects: pd.DataFrame
    statistic: str = "mean"
    """The summary of each region's voxels recovered (``qsmiron.stats.regions.analysed_statistic``)."""

    def summary_lines(self) -> list[str]:
        """The comparison in plain lines (what the demo prints)."""
        lines = []
        for row in self.effects.itertuples():
            inside = "inside" if row.planted_in_ci else "OUTSIDE"
            lines.append(f"{row.region} {row.hemisphere}: planted MOH - CM {row.planted_diff_ppb:+.1f} ppb "
                         f"(d {row.planted_d:+.2f}); estimated {row.diff_ppb:+.1f} ppb (95 % CI "
                         f"{row.diff_ci_low_ppb:+.1f} to {row.diff_ci_high_ppb:+.1f}), d {row.cohen_d:+.2f}, "
                         f"p = {row.p:.2g}, p_FDR = {row.p_fdr:.2g}: planted effect {inside} the CI")
        for row in self.regions.itertuples():
            lines.append(f"{row.region} {row.hemisphere}: recovered vs true r = {row.r:.2f}, slope {row.slope:.2f}, "
                         f"bias {row.bias_ppb:+.1f} ppb ({row.bias_grid_ppb:+.1f} against the truth on the scan "
                         f"grid), RMSE {row.rmse_ppb:.1f} ppb (n = {row.n})")
        return lines


def truth_dir_of(paths: Iterable[str | os.PathLike]) -> Path | None:
    """The simulation-truth folder of the BIDS dataset holding any of ``paths`` (None if none is simulated)."""
    for path in paths:
        for parent in Path(path).resolve().parents:
            if (parent / TRUTH_DIR / SIMULATION_RECORD).is_file():
                return parent / TRUTH_DIR
    return None


def _region_agreement(pairs: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for (region, hemisphere), group in pairs.groupby(["region", "hemisphere"], sort=False):
        true, got = group["true_ppm"].to_numpy(float), group["recovered_ppm"].to_numpy(float)
        keep = np.isfinite(true) & np.isfinite(got)
        true, got, grid = true[keep], got[keep], group["true_grid_ppm"].to_numpy(float)[keep]
        varies = true.size >= 3 and true.std() > 0
        r = float(np.corrcoef(true, got)[0, 1]) if varies and got.std() > 0 else np.nan
        slope = float(np.polyfit(true, got, 1)[0]) if varies else np.nan
        rows.append({"region": region, "hemisphere": hemisphere, "n": int(true.size), "r": r, "slope": slope,
                     "bias_ppb": float(np.mean(got - true)) * PPB_PER_PPM if true.size else np.nan,
                     "rmse_ppb": float(np.sqrt(np.mean((got - true) ** 2))) * PPB_PER_PPM if true.size else np.nan,
                     "true_sd_ppb": float(np.std(true, ddof=1)) * PPB_PER_PPM if true.size > 1 else np.nan,
                     "bias_grid_ppb": float(np.mean(got - grid)) * PPB_PER_PPM if true.size else np.nan})
    return pd.DataFrame(rows)


def _effects(planted: dict, truth: pd.DataFrame, groups: pd.Series, comparison: pd.DataFrame) -> pd.DataFrame:
    group_a, group_b = planted["group_difference"]["compare"]
    rows = []
    for region, effect in planted["group_difference"]["regions"].items():
        for hemisphere in planted["group_difference"]["hemispheres"]:
            true = truth[(truth["region"] == region) & (truth["hemisphere"] == hemisphere)]
            group = true["participant_id"].map(groups)
            realised = (true.loc[group == group_a, "mean_ppm"].mean()
                        - true.loc[group == group_b, "mean_ppm"].mean()) * PPB_PER_PPM
            match = comparison[(comparison["region"] == region) & (comparison["hemisphere"] == hemisphere)]
            if match.empty:
                continue
            est = match.iloc[0]
            planted_ppb = float(effect["delta_ppm"]) * PPB_PER_PPM
            low, high = float(est["diff_ci_low_ppb"]), float(est["diff_ci_high_ppb"])
            rows.append({"region": region, "hemisphere": hemisphere, "planted_d": float(effect["cohen_d"]),
                         "planted_diff_ppb": planted_ppb, "realised_diff_ppb": float(realised),
                         "diff_ppb": float(est["diff_ppb"]), "diff_ci_low_ppb": low, "diff_ci_high_ppb": high,
                         "p": float(est["p"]), "p_fdr": float(est["p_fdr"]), "cohen_d": float(est["cohen_d"]),
                         "cohen_d_ci_low": float(est.get("cohen_d_ci_low", np.nan)),
                         "cohen_d_ci_high": float(est.get("cohen_d_ci_high", np.nan)),
                         "planted_in_ci": bool(low <= planted_ppb <= high),
                         "realised_in_ci": bool(low <= realised <= high)})
    return pd.DataFrame(rows)


def compare_with_truth(truth_dir: str | os.PathLike, recovered: pd.DataFrame, group_comparison: pd.DataFrame,
                       participants: pd.DataFrame) -> TruthComparison:
    """Recovered regional chi and the study's group differences against the simulation truth.

    Parameters
    ----------
    truth_dir : path
        ``derivatives/truth`` of the simulated dataset.
    recovered : DataFrame
        Chi per ``participant_id``, ``region``, ``hemisphere`` under the whole-brain reference,
        in ``value`` (the summary the statistics analysed, ``qsmiron.stats.regions.select_measure``),
        ``mean_ppm`` or ``mean``.
    group_comparison : DataFrame
        The study's group comparison (``diff_ppb`` and its CI, ``p``, ``p_fdr``, ``cohen_d``).
    participants : DataFrame
        ``participant_id`` and the planted comparison's group column.
    """
    truth_dir = Path(truth_dir)
    truth = pd.read_csv(truth_dir / "regions_truth.tsv", sep="\t")
    planted = json.loads((truth_dir / "planted_effects.json").read_text(encoding="utf-8"))
    value = next(name for name in ("value", "mean_ppm", "mean") if name in recovered)
    got = recovered[["participant_id", "region", "hemisphere", value]].rename(columns={value: "recovered_ppm"})
    if "mean_ppm_grid" not in truth:
        truth = truth.assign(mean_ppm_grid=np.nan)
    pairs = truth[["participant_id", "region", "hemisphere", "mean_ppm", "mean_ppm_grid"]].rename(
        columns={"mean_ppm": "true_ppm", "mean_ppm_grid": "true_grid_ppm"})
    pairs = pairs.merge(got, on=["participant_id", "region", "hemisphere"], how="inner")
    column = planted["group_difference"]["column"]
    groups = participants.set_index("participant_id")[column].astype(str)
    return TruthComparison(pairs=pairs, regions=_region_agreement(pairs),
                           effects=_effects(planted, truth, groups, group_comparison))
