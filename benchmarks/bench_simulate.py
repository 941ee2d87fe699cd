"""Speed, memory and size of the simulator at the default settings (and at 1 mm).

Run: .venv/bin/python benchmarks/bench_simulate.py [--subjects N] [--one-mm]
Prints the phantom build time, per-subject seconds per step, bytes written per subject and
the peak resident memory of the process.
"""

from __future__ import annotations

import argparse
import resource
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--subjects", type=int, default=2)
    parser.add_argument("--one-mm", action="store_true", help="also time one subject at 1 mm")
    args = parser.parse_args()

    from qsmiron.simulate.cohort import simulate_cohort
    from qsmiron.simulate.phantom import build_head_phantom, population_chi
    from qsmiron.simulate.settings import SimulationSettings
    from qsmiron.simulate.subject import make_context, sample_pose, simulate_scan

    settings = SimulationSettings()
    t0 = time.perf_counter()
    phantom = build_head_phantom(1.0)
    print(f"phantom build (1 mm MNI grid {phantom.codes.shape}): {time.perf_counter() - t0:.2f} s, "
          f"peak RSS {peak_rss_mb():.0f} MB")
    t0 = time.perf_counter()
    context = make_context(phantom, settings)
    print(f"shared magnitude maps: {time.perf_counter() - t0:.2f} s")

    scratch = Path(tempfile.mkdtemp(prefix="bench_simulate_"))
    try:
        t0 = time.perf_counter()
        out = simulate_cohort(scratch / "bids", args.subjects, 0, settings=settings)
        total = time.perf_counter() - t0
        print(f"cohort of {args.subjects} at {settings.voxel_size_mm} mm, matrix {settings.matrix}, "
              f"{len(settings.echo_times_s)} echoes: {total:.1f} s "
              f"({total / args.subjects:.1f} s per subject incl. writing), peak RSS {peak_rss_mb():.0f} MB")
        raw = folder_bytes(out / "sub-01")
        truth = folder_bytes(out / "derivatives" / "truth" / "sub-01")
        print(f"per subject on disk: BIDS {raw / 1e6:.1f} MB, truth {truth / 1e6:.1f} MB")

        for voxel, label in [(1.5, "default 1.5 mm")] + ([(1.0, "1 mm")] if args.one_mm else []):
            s = settings.model_copy(update={"voxel_size_mm": (voxel,) * 3})
            ctx = context if voxel == 1.5 else make_context(phantom, s)
            rng = np.random.default_rng(1)
            pose = sample_pose(rng, s, phantom)
            scan = simulate_scan(ctx, phantom.chi_table(population_chi(s)), pose, rng)
            steps = ", ".join(f"{k} {v:.2f}" for k, v in scan.info["seconds"].items())
            print(f"one scan, {label} (matrix {s.matrix}, extended grid "
                  f"{scan.info['extended_grid_shape']}): {sum(scan.info['seconds'].values()):.2f} s "
                  f"[{steps}], peak RSS {peak_rss_mb():.0f} MB")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    print("note: measured on a shared 2-core machine; figures are pessimistic")


if __name__ == "__main__":
    main()
