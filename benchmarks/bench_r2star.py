"""R2* accuracy on simulated heads and its speed and memory at full size (issue 13).

Targets: at SNR 120 with 5 echoes of 4-28 ms, median relative error <= 3 % in the brain and
regional mean error <= 1 s^-1; R2* adds at most 2 s to a 256 x 256 x 176 x 5 recon on 2 cores.

Heads: ``qsmiron.simulate`` (MNI152NLin2009cAsym brain with CIT168 nuclei, R2* of the nuclei
following their iron, S0 from proton density and T1 under spoiled GRE) on a 1 mm grid of
256 x 256 x 176, in three positions (axial; rotated and shifted; 15 deg oblique). Signal as
in the simulator and qsm-forward's standard R2* model: ``S0 exp(-R2* TE)`` plus complex
Gaussian noise of SD = mean first-echo brain signal / SNR, magnitude taken (air = noise only).
The fit runs on the true brain mask. Regional errors: mean fitted minus mean true R2* over
each CIT168 label (and grey/white matter) within the brain.

Timing: the fit runs in a fresh child process (2 numba threads) on the saved magnitude, after
a warm-up on a small volume (compiled code loaded from numba's cache); it reports wall and
CPU seconds and the peak resident memory during the fit (the kernel's peak counter reset
just before it) above what the process holds with the input loaded.

    .venv/bin/python benchmarks/bench_r2star.py [--threads 2] [--snr 120]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

SHAPE_MM = (256.0, 256.0, 176.0)
ECHO_TIMES_S = (0.004, 0.010, 0.016, 0.022, 0.028)
POSES = {"axial": {},
         "rotated": {"head_rotation_deg": (4.0, -3.0, 5.0), "translation_mm": (3.0, -4.0, 2.0)},
         "oblique": {"oblique_deg": (15.0, 3.0)}}

CHILD = r"""
import json, sys, time
import numpy as np
from qsmiron.recon.r2star import fit_r2star
def status_mb(key):
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith(key):
                return float(line.split()[1]) / 1024.0
folder, method = sys.argv[1], sys.argv[2]
te = json.loads(sys.argv[3])
rng = np.random.default_rng(0)
small = (100 * np.exp(-20 * np.asarray(te)) * np.ones((8, 8, 8, 1)) + rng.random((8, 8, 8, len(te)))).astype(np.float32)
fit_r2star(small, np.ones((8, 8, 8), bool), te, method=method)  # load (or compile) the kernels
magnitude = np.load(folder + '/magnitude.npy')
mask = np.load(folder + '/mask.npy')
with open('/proc/self/clear_refs', 'w') as f:
    f.write('5')  # reset the peak resident size (VmHWM) to the current one
base = status_mb('VmRSS')
wall, cpu = time.perf_counter(), time.process_time()
fit = fit_r2star(magnitude, mask, te, method=method)
wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
peak = status_mb('VmHWM')
print(json.dumps({"wall_s": wall, "cpu_s": cpu, "input_mb": base, "peak_mb": peak,
                  "added_mb": peak - base, "n_valid": fit.info["n_valid"], "n_voxels": fit.info["n_voxels"]}))
"""


def simulate_head(context, settings, pose_kwargs, snr, rng):
    """Magnitude (X, Y, Z, E) float32, brain mask, CIT168 labels, true R2* and S0."""
    from qsmiron.simulate.subject import make_pose, scan_properties

    pose = make_pose(context.phantom, settings, **pose_kwargs)
    mask, labels, s0, r2s = scan_properties(context, pose)
    te = np.asarray(settings.echo_times_s, dtype=np.float32)
    sigma = float((s0 * np.exp(-r2s * te[0]))[mask].mean()) / snr
    magnitude = np.empty((*mask.shape, te.size), np.float32)
    for n, t in enumerate(te):
        amplitude = s0 * np.exp(-r2s * t)
        real = amplitude + np.float32(sigma) * rng.standard_normal(mask.shape, dtype=np.float32)
        imag = np.float32(sigma) * rng.standard_normal(mask.shape, dtype=np.float32)
        magnitude[..., n] = np.hypot(real, imag)
    return magnitude, mask, labels, r2s, sigma, pose


def regional_errors(fit, truth, mask, labels):
    from qsmiron.simulate.phantom import cit168_label_table

    rows = []
    table = cit168_label_table()
    valid = fit.valid & mask
    for entry in table.itertuples():
        region = valid & (labels == entry.index)
        if region.sum() < 10:
            continue
        rows.append((f"{entry.region}_{entry.hemisphere}", int(region.sum()),
                     float(truth[region].mean()), float(fit.r2star_per_s[region].mean())))
    return rows


def accuracy(args) -> None:
    from qsmiron.recon.r2star import fit_r2star
    from qsmiron.simulate.phantom import build_head_phantom
    from qsmiron.simulate.settings import SimulationSettings
    from qsmiron.simulate.subject import make_context

    settings = SimulationSettings(voxel_size_mm=(1.0, 1.0, 1.0), fov_mm=SHAPE_MM, snr=args.snr,
                                  echo_times_s=ECHO_TIMES_S, repetition_time_s=0.035)
    print(f"grid {settings.matrix} at 1 mm, echoes {[round(t * 1e3) for t in ECHO_TIMES_S]} ms, "
          f"SNR {args.snr:g} (mean first-echo brain signal / noise SD)")
    context = make_context(build_head_phantom(1.0), settings)
    rng = np.random.default_rng(13)
    summary = []
    saved = None
    for name, pose_kwargs in POSES.items():
        magnitude, mask, labels, truth, sigma, pose = simulate_head(context, settings, pose_kwargs,
                                                                    args.snr, rng)
        for method in ("nlls", "arlo"):
            fit = fit_r2star(magnitude, mask, ECHO_TIMES_S, method=method)
            valid = fit.valid & mask
            relative = np.abs(fit.r2star_per_s[valid] - truth[valid]) / truth[valid]
            rows = regional_errors(fit, truth, mask, labels)
            errors = np.array([est - true for _, _, true, est in rows])
            summary.append((name, method, np.median(relative), np.percentile(relative, 99),
                            relative.max(), np.abs(errors).max(), np.median(np.abs(errors))))
            print(f"\n{name} head, {method}: noise sigma estimated {fit.info['noise_sigma']:.4g} "
                  f"(true {sigma:.4g}, {fit.info['noise_estimate']}); valid {fit.info['n_valid']} "
                  f"of {fit.info['n_voxels']} brain voxels, masked {fit.info['masked']}")
            print(f"  relative error in the brain: median {100 * np.median(relative):.2f} %, 95th "
                  f"{100 * np.percentile(relative, 95):.2f} %, 99th {100 * np.percentile(relative, 99):.2f} %, "
                  f"worst voxel {100 * relative.max():.1f} %")
            if method == "nlls" and name == "axial":
                print(f"  {'region':<18}{'n':>7}{'true':>9}{'fitted':>9}{'error':>9}  (s^-1)")
                for region, n, true, est in rows:
                    print(f"  {region:<18}{n:>7}{true:>9.2f}{est:>9.2f}{est - true:>+9.3f}")
            print(f"  regional mean error over {len(rows)} CIT168 labels: median "
                  f"{np.median(np.abs(errors)):.3f}, worst {np.abs(errors).max():.3f} s^-1")
        if saved is None:
            saved = (magnitude, mask)
        else:
            del magnitude
    print("\nsummary (head, method: median / 99th pct / worst voxel relative error; regional |error| "
          "median / worst)")
    for name, method, med, p99, worst, reg_worst, reg_med in summary:
        print(f"  {name:<8} {method:<5} {100 * med:5.2f} % / {100 * p99:5.2f} % / {100 * worst:6.1f} %;"
              f"  {reg_med:.3f} / {reg_worst:.3f} s^-1")
    return saved


def speed(magnitude, mask, threads: int) -> None:
    env = dict(os.environ, NUMBA_NUM_THREADS=str(threads), OMP_NUM_THREADS=str(threads))
    with tempfile.TemporaryDirectory(prefix="bench_r2star_") as folder:
        np.save(Path(folder) / "magnitude.npy", magnitude)
        np.save(Path(folder) / "mask.npy", mask)
        print(f"\nspeed and memory at {magnitude.shape} (float32 input {magnitude.nbytes / 1e6:.0f} MB, "
              f"{int(mask.sum())} brain voxels), {threads} numba threads, fresh process:")
        for method in ("nlls", "arlo"):
            out = subprocess.run([sys.executable, "-c", CHILD, folder, method, json.dumps(ECHO_TIMES_S)],
                                 env=env, capture_output=True, text=True, check=True)
            result = json.loads(out.stdout.strip().splitlines()[-1])
            print(f"  {method:<5} wall {result['wall_s']:.2f} s, CPU {result['cpu_s']:.2f} s, peak RSS "
                  f"{result['peak_mb']:.0f} MB of which {result['added_mb']:.0f} MB above the loaded "
                  f"input ({result['n_valid']} of {result['n_voxels']} voxels valid)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--snr", type=float, default=120.0)
    args = parser.parse_args()
    start = time.perf_counter()
    magnitude, mask = accuracy(args)
    speed(magnitude, mask, args.threads)
    load = os.getloadavg()[0]
    print(f"\nnote: shared 2-core machine, load average {load:.1f} at the end; wall times are "
          f"pessimistic, CPU times less so. Total {time.perf_counter() - start:.0f} s.")


if __name__ == "__main__":
    main()
