"""Cohort pipeline speed and memory: one 1 mm whole-head subject, throughput, scaling.

Run: ``.venv/bin/python benchmarks/bench_cohort.py [--throughput-subjects 4] [--scaling]``

1. One subject, 1 mm isotropic whole head (simulated), processed in this process with the
   default settings: seconds per step (recon, roi) and peak resident memory (target: at most
   90 s per subject on 2 cores).
2. Cohort throughput: ``--throughput-subjects`` subjects (1 mm) with 2 local processes:
   wall time, subjects per hour, peak memory of the largest worker.
3. ``--scaling``: wall time for 10 and 40 subjects (``--scaling-voxel-mm``, 2 mm by default
   so it runs in tens of minutes) with 2 processes, and the time per subject at each size
   (flat = the orchestration adds nothing that grows with the cohort).

Simulation time is reported apart and is not part of the processing figures. Figures on a
machine shared with other work are pessimistic.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path


def peak_rss_mb(who=resource.RUSAGE_SELF) -> float:
    return resource.getrusage(who).ru_maxrss / 1024.0  # Linux: kilobytes


def simulate(out: Path, n_subjects: int, seed: int, voxel_mm: float) -> float:
    from qsmiron.simulate.cohort import simulate_cohort
    from qsmiron.simulate.settings import SimulationSettings

    settings = SimulationSettings(voxel_size_mm=(voxel_mm, voxel_mm, voxel_mm))
    start = time.perf_counter()
    simulate_cohort(out, n_subjects, seed, settings=settings)
    return time.perf_counter() - start


def run(bids: Path, out: Path, n_procs: int):
    from qsmiron.config import QsmironConfig
    from qsmiron.io.bids import discover_bids
    from qsmiron.io.derivatives import cohort_paths
    from qsmiron.pipeline.cache import read_marker
    from qsmiron.pipeline.cohort import run_cohort

    config = QsmironConfig.model_validate({"pipeline": {"progress": False}})
    units = discover_bids(bids)
    start = time.perf_counter()
    result = run_cohort(units, out, config, n_procs=n_procs, echo=lambda line: None)
    wall = time.perf_counter() - start
    failed = [s for s in result.statuses if s.status != "done"]
    if failed:
        for status in failed:
            print(f"  FAILED {status.label} at {status.step}: {status.reason}")
    steps = []
    for unit in units:
        marker = read_marker(cohort_paths(out).subject_dir(unit.relative_dir))
        steps.append({} if marker is None else marker.step_seconds)
    return wall, steps, len(units) - len(failed)


def part_single(work: Path, voxel_mm: float) -> None:
    print(f"== 1. one subject, {voxel_mm:g} mm whole head, in this process (default settings)")
    bids = work / "single_bids"
    sim = simulate(bids, 1, 0, voxel_mm)
    import nibabel as nib

    first = sorted(bids.glob("sub-*/anat/*_echo-1_part-mag_MEGRE.nii*"))[0]
    image = nib.load(str(first))
    n_echoes = len(list(first.parent.glob("*_part-mag_MEGRE.nii*")))
    print(f"   matrix {image.shape} x {n_echoes} echoes, voxel {tuple(round(float(v), 2) for v in image.header.get_zooms()[:3])} mm"
          f" (simulated in {sim:.1f} s)")
    rss_before = peak_rss_mb()
    wall, steps, ok = run(bids, work / "single_out", n_procs=1)
    for name, seconds in steps[0].items():
        print(f"   {name:<6} {seconds:8.1f} s")
    print(f"   total  {wall:8.1f} s   (target <= 90 s)   peak RSS {peak_rss_mb():.0f} MB "
          f"(before processing {rss_before:.0f} MB)")


def part_throughput(work: Path, n_subjects: int, voxel_mm: float) -> None:
    print(f"== 2. throughput: {n_subjects} subjects, {voxel_mm:g} mm, 2 local processes")
    bids = work / "throughput_bids"
    sim = simulate(bids, n_subjects, 1, voxel_mm)
    wall, steps, ok = run(bids, work / "throughput_out", n_procs=2)
    per_subject = [sum(s.values()) for s in steps if s]
    print(f"   simulated in {sim:.0f} s; processed {ok}/{n_subjects} in {wall:.1f} s wall "
          f"= {wall / max(ok, 1):.1f} s per subject, {3600 * ok / wall:.0f} subjects/hour")
    if per_subject:
        print(f"   per-subject busy time {min(per_subject):.1f}-{max(per_subject):.1f} s; "
              f"peak RSS of the largest worker {peak_rss_mb(resource.RUSAGE_CHILDREN):.0f} MB")


def part_scaling(work: Path, sizes: list[int], voxel_mm: float) -> None:
    print(f"== 3. scaling with 2 processes at {voxel_mm:g} mm")
    for n in sizes:
        bids = work / f"scaling_{n}_bids"
        sim = simulate(bids, n, 2, voxel_mm)
        wall, steps, ok = run(bids, work / f"scaling_{n}_out", n_procs=2)
        print(f"   {n:3d} subjects: simulated {sim:.0f} s; processed {ok} in {wall:.0f} s wall, "
              f"{wall / max(ok, 1):.1f} s per subject")
        shutil.rmtree(bids, ignore_errors=True)
        shutil.rmtree(work / f"scaling_{n}_out", ignore_errors=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--voxel-mm", type=float, default=1.0, help="voxel size of parts 1 and 2")
    parser.add_argument("--throughput-subjects", type=int, default=4)
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--scaling", action="store_true", help="also run 10 and 40 subjects (slow)")
    parser.add_argument("--scaling-sizes", default="10,40")
    parser.add_argument("--scaling-voxel-mm", type=float, default=2.0)
    parser.add_argument("--keep", metavar="DIR", default=None, help="work here and keep the files")
    args = parser.parse_args(argv)
    print(f"qsmiron cohort benchmark: {os.cpu_count()} CPU(s) visible, python {sys.version.split()[0]}")
    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="qsmiron-bench-cohort-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        part_single(work, args.voxel_mm)
        if not args.skip_throughput:
            part_throughput(work, args.throughput_subjects, args.voxel_mm)
        if args.scaling:
            part_scaling(work, [int(n) for n in args.scaling_sizes.split(",")], args.scaling_voxel_mm)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
