"""Does the whole pipeline recover what the simulator planted?

Run: ``.venv/bin/python benchmarks/validate_recovery.py [--subjects 40] [--null-seeds 10]``

1. Recovery: a cohort of ``--subjects`` (about 40) with the planted effects (lower ventral
   pallidum and putamen susceptibility with medication overuse, MOH minus CM), processed by
   ``qsmiron run`` end to end. Printed: per region, the correlation across subjects of the
   measured regional mean with the true one, the bias and the mean absolute error (measured
   minus true), for chi (whole-brain reference, ppm) against both truths the simulator writes
   (``mean_ppm``: the value given to the region; ``mean_ppm_grid``: the mean of the true map
   over the region's voxels on the scan grid, partial volume included) and for R2* (s^-1)
   against ``r2star_per_s_grid``; then the group comparison of the planted regions (chi): the
   sign of MOH minus CM (must be negative), Cohen's d, p and FDR-adjusted p.
2. Null (``--null-seeds K``): K cohorts simulated without any planted effect; a cohort fails
   when any region is FDR-significant (p_fdr < 0.05) in the group comparison. Target: no
   FDR-significant region in at least 90 % of the seeds.

Each cohort is a full run (simulation, reconstruction, registration, statistics), so this is
slow: about the per-subject time times the subjects divided by the processes. Run it when the
machine is quiet; ``--voxel-mm`` and ``--fast`` (the demo's registration settings) trade
fidelity for time.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

PLANTED_REGIONS = ("VeP", "Pu")


def simulate(bids: Path, n_subjects: int, seed: int, voxel_mm: float, with_effects: bool) -> float:
    from qsmiron.simulate.cohort import simulate_cohort
    from qsmiron.simulate.settings import SimulationSettings

    settings = SimulationSettings(voxel_size_mm=(voxel_mm,) * 3, with_effects=with_effects)
    start = time.perf_counter()
    simulate_cohort(bids, n_subjects, seed, settings=settings)
    return time.perf_counter() - start


def process(bids: Path, out: Path, n_procs: int, fast: bool, config_path: Path | None = None):
    """``qsmiron run`` over the cohort: the demo's settings (``fast``), a settings file
    (``config_path``) or the defaults."""
    from qsmiron.config import QsmironConfig, load_config
    from qsmiron.pipeline.bids_app import run_bids_app
    from qsmiron.io.atomic import write_text_atomic
    from qsmiron.pipeline.demo import DEMO_STUDY, demo_config

    if config_path is not None:
        config = load_config(config_path)
    else:
        config = demo_config() if fast else QsmironConfig()
    config.pipeline.progress = False
    start = time.perf_counter()
    # The reference study's design (MOH vs CM), as the demo analyses it.
    study_path = write_text_atomic(out / "study.toml", DEMO_STUDY)
    result = run_bids_app(bids, out, study_path=study_path, n_procs=n_procs, config=config,
                          echo=lambda line: None)
    return result, time.perf_counter() - start


def measured_values(regions_tsv: Path, measure: str, reference: str | None = None) -> pd.DataFrame:
    """One measure (and, for chi, one reference) of ``regions.tsv``: participant, region, side and
    ``value``, the summary the statistics analyse by default for that measure (for chi the
    interior-weighted median, for R2* the median, when the table has them)."""
    from qsmiron.stats.regions import read_regions, select_measure

    return select_measure(read_regions(regions_tsv), measure, reference)


def _agreement(merged: pd.DataFrame, measured: str, truths: tuple[str, ...]) -> pd.DataFrame:
    rows = []
    groups = list(merged.groupby(["region", "hemisphere"], sort=False)) + [(("ALL", ""), merged)]
    for (region, hemisphere), part in groups:
        row = {"region": region, "hemisphere": hemisphere, "n": len(part)}
        for truth_column in truths:
            valid = part[[measured, truth_column]].dropna()
            r = float(np.corrcoef(valid[measured], valid[truth_column])[0, 1]) if len(valid) > 2 else np.nan
            row[f"r_{truth_column}"] = r
            row[f"bias_{truth_column}"] = float((valid[measured] - valid[truth_column]).mean())
            row[f"mae_{truth_column}"] = float((valid[measured] - valid[truth_column]).abs().mean())
        rows.append(row)
    return pd.DataFrame(rows)


def region_agreement(regions_tsv: Path, truth_tsv: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Chi (whole-brain reference) and R2* against the simulator's truths, per region and overall."""
    truth = pd.read_csv(truth_tsv, sep="\t")
    keys = ["participant_id", "region", "hemisphere"]
    chi = measured_values(regions_tsv, "chi", "whole_brain").merge(truth, on=keys)
    chi = chi.rename(columns={"value": "chi_ppm", "mean_ppm": "mean_ppm_truth"})
    r2star = measured_values(regions_tsv, "r2star").merge(truth, on=keys).rename(columns={"value": "r2star_per_s"})
    return (_agreement(chi, "chi_ppm", ("mean_ppm_truth", "mean_ppm_grid")),
            _agreement(r2star, "r2star_per_s", ("r2star_per_s_grid",)))


def _chi_rows(table: pd.DataFrame) -> pd.DataFrame:
    """The susceptibility rows of a results table (all rows of one written before the measures)."""
    return table[table["measure"] == "chi"] if "measure" in table.columns else table


def part_recovery(work: Path, n_subjects: int, seed: int, voxel_mm: float, n_procs: int, fast: bool) -> None:
    print(f"== 1. recovery: {n_subjects} subjects, seed {seed}, {voxel_mm:g} mm, "
          f"{'demo (fast)' if fast else 'default'} settings")
    bids, out = work / "recovery_bids", work / "recovery_out"
    sim = simulate(bids, n_subjects, seed, voxel_mm, True)
    result, seconds = process(bids, out, n_procs, fast)
    failed = [s for s in result.statuses if not s.succeeded]
    print(f"   simulated in {sim:.0f} s, processed in {seconds:.0f} s; {len(failed)} subject(s) failed"
          + "".join(f"\n     {s.label}: {s.step}: {s.reason}" for s in failed))
    chi, r2star = region_agreement(out / "qsmiron" / "regions.tsv",
                                   bids / "derivatives" / "truth" / "regions_truth.tsv")
    with pd.option_context("display.width", 160, "display.max_rows", 100, "display.float_format", "{:.4f}".format):
        print("   chi (ppm, whole-brain reference) against the truth:")
        print(chi.to_string(index=False))
        print("   R2* (s^-1) against the R2* the magnitude was simulated with (mean over the region on the grid):")
        print(r2star.to_string(index=False))
    comparison = _chi_rows(pd.read_csv(out / "qsmiron" / "group" / "group_comparison.tsv", sep="\t"))
    planted = json.loads((bids / "derivatives" / "truth" / "planted_effects.json").read_text())
    print(f"   planted: {planted['group_difference']['direction']}: "
          + ", ".join(f"{r} d={v['cohen_d']:+.2f} ({v['delta_ppm'] * 1000:+.1f} ppb)"
                      for r, v in planted["group_difference"]["regions"].items()))
    for _, row in comparison[comparison["region"].isin(PLANTED_REGIONS)].iterrows():
        sign = 1.0 if (row["group_a"], row["group_b"]) == ("MOH", "CM") else -1.0
        difference = sign * (row["mean_a"] - row["mean_b"])
        verdict = "right sign" if difference < 0 else "WRONG SIGN"
        print(f"   {row['region']:>4} {row['hemisphere']}: MOH - CM = {difference * 1000:+.1f} ppb "
              f"(d = {sign * row['cohen_d']:+.2f}), p = {row['p']:.3g}, p_fdr = {row['p_fdr']:.3g}  [{verdict}]")


def part_null(work: Path, n_subjects: int, seeds: list[int], voxel_mm: float, n_procs: int, fast: bool) -> None:
    print(f"== 2. null: {len(seeds)} cohort(s) of {n_subjects} without planted effects")
    clean = 0
    for seed in seeds:
        bids, out = work / f"null_{seed}_bids", work / f"null_{seed}_out"
        simulate(bids, n_subjects, seed, voxel_mm, False)
        process(bids, out, n_procs, fast)
        comparison = _chi_rows(pd.read_csv(out / "qsmiron" / "group" / "group_comparison.tsv", sep="\t"))
        significant = comparison[comparison["p_fdr"] < 0.05]
        clean += significant.empty
        names = ", ".join(f"{r.region} {r.hemisphere}" for r in significant.itertuples()) or "none"
        print(f"   seed {seed}: min p_fdr {comparison['p_fdr'].min():.3f}; FDR-significant: {names}")
        shutil.rmtree(bids, ignore_errors=True)
        shutil.rmtree(out, ignore_errors=True)
    share = clean / max(len(seeds), 1)
    print(f"   no FDR-significant region in {clean}/{len(seeds)} seeds ({100 * share:.0f} %; target >= 90 %)")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subjects", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--voxel-mm", type=float, default=1.5)
    parser.add_argument("--n-procs", type=int, default=2)
    parser.add_argument("--fast", action="store_true", help="the demo's registration settings")
    parser.add_argument("--skip-recovery", action="store_true")
    parser.add_argument("--null-seeds", type=int, default=0, help="number of null cohorts (0 = skip)")
    parser.add_argument("--null-first-seed", type=int, default=1000)
    parser.add_argument("--keep", metavar="DIR", default=None, help="work here and keep the files")
    args = parser.parse_args(argv)
    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="qsmiron-recovery-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        if not args.skip_recovery:
            part_recovery(work, args.subjects, args.seed, args.voxel_mm, args.n_procs, args.fast)
        if args.null_seeds:
            seeds = list(range(args.null_first_seed, args.null_first_seed + args.null_seeds))
            part_null(work, args.subjects, seeds, args.voxel_mm, args.n_procs, args.fast)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
