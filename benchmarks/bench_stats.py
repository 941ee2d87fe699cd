"""Speed and memory of the cohort statistics (``qsmiron stats`` without the report).

A simulated study the size of a real one: 200 participants (120 MOH, 80 CM), every CIT168
region (16 x 2 hemispheres = 32 rows), age and sex covariates, three clinical variables,
a relapse outcome with time to event and counts. Prints the seconds of each step (reading,
the whole ``run_study``, and the increments of each analysis family, measured by re-running
with fewer outcome columns) and the peak resident memory. The increments are differences of
wall times and are noisy on a shared machine.

    .venv/bin/python benchmarks/bench_stats.py [--subjects N]
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

CIT168 = ("Pu", "Ca", "NAC", "EXA", "GPe", "GPi", "SNc", "RN", "SNr", "PBP", "VTA", "VeP", "HN",
          "HTH", "MN", "STH")


def simulate(n: int, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    n_a = int(round(0.6 * n))
    group = np.array(["MOH"] * n_a + ["CM"] * (n - n_a))
    ids = [f"sub-{i:04d}" for i in range(n)]
    age = rng.normal(42, 9, n)
    rows = []
    for region in CIT168:
        for side in "LR":
            values = 0.07 + 0.0004 * (age - 42) + rng.normal(0, 0.02, n)
            rows += [{"participant_id": p, "region": region, "hemisphere": side, "mean_ppm": v}
                     for p, v in zip(ids, values)]
    moh = group == "MOH"

    def moh_only(values):
        out = np.full(n, np.nan)
        out[moh] = values[moh]
        return out

    time_to = rng.exponential(20, n)
    participants = pd.DataFrame({
        "participant_id": ids, "group": group, "age": age, "sex": rng.choice(["M", "F"], n),
        "sds": moh_only(rng.normal(5.6, 2, n)), "hit6": rng.normal(65, 5, n),
        "disease_duration": rng.gamma(2, 6, n),
        "relapse": moh_only((rng.random(n) < 0.35).astype(float)),
        "time_to_relapse": moh_only(np.minimum(time_to, 12)),
        "relapse_count": moh_only(rng.poisson(1.2, n).astype(float)),
        "followup_months": moh_only(np.full(n, 12.0))})
    return pd.DataFrame(rows), participants


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subjects", type=int, default=200)
    args = parser.parse_args()

    started = time.perf_counter()
    from qsmiron.io.participants import read_participants
    from qsmiron.stats.analysis import run_study
    from qsmiron.stats.regions import read_regions
    from qsmiron.stats.study import Study, study_from_dict
    from qsmiron.stats.write import write_results
    print(f"import: {time.perf_counter() - started:.2f} s")

    regions, participants = simulate(args.subjects)
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        participants.to_csv(folder / "participants.tsv", sep="\t", index=False, na_rep="n/a")
        regions.to_csv(folder / "regions.tsv", sep="\t", index=False)
        t = time.perf_counter()
        participants = read_participants(folder / "participants.tsv")
        regions = read_regions(folder / "regions.tsv")
        print(f"read tables ({args.subjects} participants, {len(regions)} region rows): "
              f"{time.perf_counter() - t:.2f} s")

        t = time.perf_counter()
        results = run_study(regions, participants, Study())
        print(f"run_study, every analysis ({len(results.group_comparison)} region rows), first "
              f"call (includes lazy imports): {time.perf_counter() - t:.2f} s")
        t, cpu = time.perf_counter(), time.process_time()
        results = run_study(regions, participants, Study())
        print(f"run_study, every analysis, warm: {time.perf_counter() - t:.2f} s wall, "
              f"{time.process_time() - cpu:.2f} s CPU")
        t = time.perf_counter()
        write_results(results, folder / "out")
        print(f"write_results: {time.perf_counter() - t:.2f} s")

        no_outcomes = participants.frame.drop(columns=["relapse", "time_to_relapse", "relapse_count",
                                                 "followup_months"])
        t = time.perf_counter()
        run_study(regions, no_outcomes, study_from_dict({"associations": {"variables": []}}))
        group_s = time.perf_counter() - t
        print(f"  table 1 + group comparison alone: {group_s:.2f} s")
        t = time.perf_counter()
        run_study(regions, no_outcomes, Study())
        print(f"  associations (3 variables x 32 rows): {time.perf_counter() - t - group_s:.2f} s")
        for label, drop in (("logistic + ROC", ["time_to_relapse", "relapse_count"]),
                            ("Cox + Kaplan-Meier", ["relapse_count"]),
                            ("count model", [])):
            base = participants.drop(columns=drop)
            t = time.perf_counter()
            run_study(regions, base, study_from_dict({"associations": {"variables": []}}))
            print(f"  outcomes up to {label}: {time.perf_counter() - t - group_s:.2f} s")
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    print(f"peak RSS: {peak_mb:.0f} MB")


if __name__ == "__main__":
    main()
