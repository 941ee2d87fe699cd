"""What a user waits for: ``qsmiron recon`` end to end, in a fresh process, on several inputs.

Each input (256 x 256 x 176, 5 echoes, .nii.gz as a converter writes them) is reconstructed
by the real command in a child process: interpreter start-up, imports, reading and
validating the files, the reconstruction, writing the outputs. The parent measures the
child's wall time and, from ``os.wait4``, its CPU time (user + system) and peak resident
memory. The phases: start-up and CLI imports (``qsmiron recon --help`` timed alone), each
reconstruction step from the child's own ``recon.json`` (wall and CPU seconds; the template
registration runs alongside the phase step and the threshold mask, so the mask step holds what
is left of it and the phase step's CPU some of its CPU), and the rest of the wall time (reading
and validating the inputs, the reconstruction's imports, writing the outputs).

Inputs (simulated once into ``--inputs``, not timed):

- ``ellipsoid``: the ellipsoid head of ``bench_recon.py`` (axial, int16 vendor phase);
- ``head_obl15``: a head of the issue-9 family (``qsmiron.simulate.heads``) at 1 mm,
  slab tilted 15 degrees, int16 magnitude and vendor phase, qsm-forward's signal model.

Targets (issue 9): at most 20 s wall on 2 cores and 4 GB. The machine is shared: CPU time
is reported beside wall time; re-run when ``uptime`` shows a low load.

    .venv/bin/python benchmarks/bench_recon_cli.py [--inputs DIR] [--runs 2] [--config FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np


def _gzip(path: Path) -> Path:
    import nibabel as nib

    image = nib.load(str(path))
    target = path.with_name(path.name + ".gz")
    nib.save(image, str(target))
    path.unlink()
    return target


def make_ellipsoid(folder: Path) -> tuple[Path, Path, tuple[float, ...]]:
    import bench_recon  # the sibling script (benchmarks/ is on sys.path)

    folder.mkdir(parents=True, exist_ok=True)
    mag, phase = folder / "mag.nii.gz", folder / "phase.nii.gz"
    if not (mag.exists() and phase.exists()):
        mag_raw, phase_raw = bench_recon.simulate_inputs(folder)
        _gzip(mag_raw), _gzip(phase_raw)
    return mag, phase, bench_recon.ECHO_TIMES_S


def make_family_head(folder: Path) -> tuple[Path, Path, tuple[float, ...]]:
    import nibabel as nib

    from qsmiron.simulate.heads import HeadSpec, simulate_head

    folder.mkdir(parents=True, exist_ok=True)
    mag, phase = folder / "mag.nii.gz", folder / "phase.nii.gz"
    spec = HeadSpec("head_obl15", oblique_deg=(15.0, 3.0), voxel_size_mm=(1.0, 1.0, 1.0),
                    fov_mm=(256.0, 256.0, 176.0), seed=21)
    if not (mag.exists() and phase.exists()):
        head = simulate_head(spec)
        scale = 4000.0 / float(np.percentile(head.magnitude[..., 0][head.brain], 99))
        magnitude = np.clip(np.rint(head.magnitude * scale), 0, 32767).astype(np.int16)
        vendor = np.clip(np.rint(head.phase_rad / np.pi * 4096), -4096, 4095).astype(np.int16)
        nib.save(nib.Nifti1Image(magnitude, head.affine), str(mag))
        nib.save(nib.Nifti1Image(vendor, head.affine), str(phase))
    from qsmiron.simulate.heads import ECHO_TIMES_S as FAMILY_ECHO_TIMES_S

    return mag, phase, FAMILY_ECHO_TIMES_S


def run_recon(mag: Path, phase: Path, echo_times, out_dir: Path, config: str | None) -> dict:
    """Run ``qsmiron recon`` in a child process; wall, CPU and peak RSS of the child."""
    if out_dir.exists():
        shutil.rmtree(out_dir)
    command = [str(Path(sys.executable).with_name("qsmiron")), "recon", "--magnitude", str(mag),
               "--phase", str(phase), "--echo-times", ",".join(f"{t:g}" for t in echo_times),
               "--field-strength", "3", "-o", str(out_dir)]
    if config:
        command += ["--config", config]
    start = time.perf_counter()
    child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - start
    stderr = child.stderr.read()
    if status != 0:
        raise RuntimeError(f"qsmiron recon failed ({status}): {stderr[-2000:]}")
    record = json.loads((out_dir / "recon.json").read_text())
    return {"wall": wall, "cpu": usage.ru_utime + usage.ru_stime,
            "peak_gb": usage.ru_maxrss / 1024.0 ** 2, "record": record}


def startup_seconds() -> float:
    """Wall time of ``qsmiron recon --help`` in a fresh process: interpreter, CLI imports and the
    parser (which imports the stages to list their methods; ``--version`` alone skips that)."""
    start = time.perf_counter()
    subprocess.run([str(Path(sys.executable).with_name("qsmiron")), "recon", "--help"], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def report(name: str, run: dict, startup: float) -> None:
    steps = run["record"]["steps"]
    in_steps = sum(step["seconds"] for step in steps)
    print(f"\n{name}: wall {run['wall']:.1f} s, CPU {run['cpu']:.1f} s, peak RSS "
          f"{run['peak_gb']:.2f} GB   (targets: 20 s, 4 GB)")
    print(f"  {'start-up and CLI imports (qsmiron recon --help)':<50} {startup:6.2f} s")
    for step in steps:
        label = f"  {step['step']} ({step['method']})"
        print(f"{label:<52} {step['seconds']:6.2f} s  (CPU {step.get('cpu_seconds', float('nan')):6.2f} s)")
    print(f"  {'reading, validation, recon imports, writing (rest)':<50} "
          f"{run['wall'] - startup - in_steps:6.2f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--inputs", default="/tmp/qsmiron_cli_inputs")
    parser.add_argument("--runs", type=int, default=2, help="runs per input (the first may compile)")
    parser.add_argument("--config", default=None, help="settings file passed to qsmiron recon")
    parser.add_argument("--only", default=None, help="ellipsoid or head_obl15")
    args = parser.parse_args()
    folder = Path(args.inputs)
    inputs = {"ellipsoid": make_ellipsoid, "head_obl15": make_family_head}
    print(f"cores available: {len(os.sched_getaffinity(0))}; load average {os.getloadavg()[0]:.1f} "
          f"(shared machine: wall is pessimistic, CPU is the child's own)")
    startup = startup_seconds()
    for name, make in inputs.items():
        if args.only and name != args.only:
            continue
        mag, phase, echo_times = make(folder / name)
        for run_index in range(args.runs):
            run = run_recon(mag, phase, echo_times, folder / f"{name}_out", args.config)
            report(f"{name} run {run_index + 1}", run, startup)


if __name__ == "__main__":
    main()
