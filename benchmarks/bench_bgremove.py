"""Speed and accuracy of each background-removal method at full size (256 x 256 x 176, 1 mm).

The head phantom of ``bench_recon.py`` (brain, skull, air sinus, air around the head; scaled
to the grid) gives the total field (forward model of ``qsmiron.recon.dipole``); the truth
is the field of the brain's own susceptibility. Each method runs once on the true total
field inside the true brain mask and prints wall seconds, CPU seconds (process time; the
machine is shared, so wall time is pessimistic), iterations, the peak resident memory so
far, and the demeaned local-field NRMSE (%) inside the method's mask and inside the 4 mm
core common to all. Target: the default method within about 2 s (the full recon of this
grid in 20 s on 2 cores).

    .venv/bin/python benchmarks/bench_bgremove.py [--methods ismv,resharp,vsharp,pdf]
"""

from __future__ import annotations

import argparse
import importlib.util
import resource
import time
from pathlib import Path

import numpy as np


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _nrmse(estimate, truth, region):
    d = estimate[region] - estimate[region].mean()
    t = truth[region] - truth[region].mean()
    return 100.0 * float(np.linalg.norm(d - t) / np.linalg.norm(t))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", default="ismv,resharp,vsharp,pdf")
    args = parser.parse_args()
    spec = importlib.util.spec_from_file_location("bench_recon", Path(__file__).with_name("bench_recon.py"))
    bench_recon = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench_recon)
    from qsmiron.recon.bgremove import DEFAULT_BACKGROUND, remove_background
    from qsmiron.recon.dipole import forward_field

    start = time.perf_counter()
    shape = bench_recon.RECON_SHAPE
    chi, chi_total, brain, *_ = bench_recon.head_phantom(shape)
    total = forward_field(chi_total - np.float32(bench_recon.CHI_AIR_PPM), (1, 1, 1), (0, 0, 1),
                          pad_factor=0.5)
    del chi_total
    truth = forward_field(chi, (1, 1, 1), (0, 0, 1), pad_factor=0.5)
    total = np.where(brain, total, 0).astype(np.float32)
    print(f"phantom {shape}: {int(brain.sum())} brain voxels, simulated in "
          f"{time.perf_counter() - start:.1f} s (not timed below); default = {DEFAULT_BACKGROUND}")
    _, core = remove_background(total, brain, (1, 1, 1), (0, 0, 1), method="ismv", radius_mm=4.0)
    for method in args.methods.split(","):
        wall, cpu = time.perf_counter(), time.process_time()
        local, eroded, info = remove_background(total, brain, (1, 1, 1), (0, 0, 1), method=method,
                                                return_info=True)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        its = info.get("iterations")
        print(f"{method:8s} wall {wall:6.2f} s  cpu {cpu:6.2f} s  iterations {its}  "
              f"kept {eroded.sum() / brain.sum():.2f}  NRMSE {_nrmse(local, truth, eroded):5.1f} %  "
              f"core {_nrmse(local, truth, core & eroded):5.1f} %  peak RSS {_peak_rss_mb():.0f} MB",
              flush=True)


if __name__ == "__main__":
    main()
