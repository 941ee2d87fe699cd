"""Where the Chimap error of a background method + the default inversion comes from, per head.

The measured total field of a family head (``qsmiron.simulate.heads``, as in
``bench_bgremove.py``) is split into parts whose sum it is, each run through the background
method on its own (the methods are linear up to their stopping rules; the sum is checked):

- ``inside``: the field of the true susceptibility inside the method's output mask (the only
  field an inversion on that mask can explain);
- ``ring``: the field of the brain between the output mask and the brain's edge (the voxels
  the method erodes; the truth's local field includes it);
- ``background``: the simulated total field minus the true local field (air, bone, and the
  non-harmonic part an FFT-simulated background has in an oblique slab);
- ``fit``: the measured field (ROMEO + echo fit) minus the simulated total field (noise, and
  the voxels without usable field, marked by infinite noise).

On oblique and thick-slice heads the simulated total field is the fine-grid field
interpolated linearly onto the scan grid, while the signal is cropped in k-space: the two
differ at fine scales (1.4-2.9 ppb RMS after a 1.5 mm high-pass, against 0.3 ppb on the axial
1 mm head), so ``background`` and ``fit`` there share a part of opposite signs; ``bg+fit`` (the
measured field minus the true local field, run through the method at once) is what the data
carry beyond the local field.

Each column is the norm of what the method leaves of that part inside (output mask & brain),
in % of the true local field's norm there: for ``inside`` what the method loses of it, for the
others what it lets through. Then the Chimap NRMSE (%) of the default inversion from the true
``inside`` field (the inversion's floor on this mask), from the method's ``inside`` output
(the floor with the method's loss), and end to end.

    .venv/bin/python benchmarks/bench_error_budget.py [--method pdf_ismv] [--heads 3,4]
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np


def _share(part: np.ndarray, region: np.ndarray, norm: float) -> float:
    values = part[region] - part[region].mean(dtype=np.float64)
    return float(100.0 * np.linalg.norm(values) / norm)


def budget(head, stage: dict, method: str) -> dict:
    """The parts' residuals (% of the true local field) and the three Chimap NRMSEs (%)."""
    from qsmiron.recon.bgremove import remove_background
    from qsmiron.recon.dipole import forward_field
    from qsmiron.recon.invert import invert
    from qsmiron.recon.metrics import nrmse

    voxel, b0 = head.voxel_size_mm, head.b0_direction
    params = {"noise": stage["noise_ppm"]} if method in ("pdf", "pdf_ismv") else {}

    def through(field):
        local, out = remove_background(field.astype(np.float32), stage["mask"], voxel, b0, method=method,
                                       **params)
        return local, np.asarray(out, bool)

    def chimap(local, out):
        result = invert(np.where(out, local, 0).astype(np.float32), out, voxel, b0,
                        magnitude=stage["magnitude"], noise_ppm=stage["inversion_noise_ppm"])
        return nrmse(np.where(out, result.chi_ppm, 0), head.chi_ppm, out & head.brain)

    measured_local, out = through(stage["field_ppm"])
    region = out & head.brain
    truth = head.local_field_ppm
    norm = float(np.linalg.norm(truth[region] - truth[region].mean(dtype=np.float64)))
    whole_brain = forward_field(head.chi_ppm, voxel, b0, pad_factor=1.0)
    inside = forward_field(np.where(out, head.chi_ppm, 0).astype(np.float32), voxel, b0, pad_factor=1.0)
    parts = {"inside": inside, "ring": whole_brain - inside,
             "background": head.total_field_ppm - truth,
             "fit": np.where(stage["mask"], stage["field_ppm"] - head.total_field_ppm, 0)}
    through_parts = {name: through(np.where(stage["mask"], part, 0))[0] for name, part in parts.items()}
    row = {"loss_inside": _share(through_parts["inside"] - inside, region, norm)}
    for name in ("ring", "background", "fit"):
        row[name] = _share(through_parts[name], region, norm)
    beyond_local = np.where(stage["mask"], stage["field_ppm"] - truth, 0)
    row["background_and_fit"] = _share(through(beyond_local)[0], region, norm)
    row["ring_share"] = _share(parts["ring"], region, norm)
    row["sum_check"] = _share(measured_local - sum(through_parts.values()), region, norm)
    row["local_nrmse"] = nrmse(measured_local, truth, region)
    row["chi_floor"] = chimap(inside, out)
    row["chi_inside"] = chimap(through_parts["inside"], out)
    row["chi_end_to_end"] = chimap(measured_local, out)
    return row


COLUMNS = (("loss_inside", "lost inside"), ("ring_share", "ring"), ("ring", "ring left"),
           ("background", "bg left"), ("fit", "fit left"),
           ("background_and_fit", "bg+fit left"), ("sum_check", "sum chk"),
           ("local_nrmse", "local"), ("chi_floor", "chi floor"), ("chi_inside", "chi inside"),
           ("chi_end_to_end", "chi e2e"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--method", default="pdf_ismv")
    parser.add_argument("--heads", default=None, help="1-based indices into FAMILY, comma-separated")
    parser.add_argument("--cache", default=os.environ.get("QSMIRON_HEADS_CACHE", "/tmp/qsmiron_heads"))
    args = parser.parse_args()
    from qsmiron.simulate.heads import FAMILY

    import bench_bgremove as bench  # the sibling script (benchmarks/ is on sys.path)
    cache = Path(args.cache)
    specs = list(FAMILY) if args.heads is None else [FAMILY[int(i) - 1] for i in args.heads.split(",")]
    print(f"error budget of {args.method} + default inversion; % of the true local field's norm "
          f"(left columns) and Chimap NRMSE % (right)")
    print(f"{'head':<24}" + "".join(f"{label:>12}" for _, label in COLUMNS))
    rows = []
    for spec in specs:
        head = bench.load_head(spec, cache)
        row = budget(head, bench.field_stage(head, cache), args.method)
        rows.append(row)
        print(f"{spec.name[:24]:<24}" + "".join(f"{row[key]:12.1f}" for key, _ in COLUMNS), flush=True)
    for label, reduce in (("median", np.median), ("worst", np.max)):
        print(f"{label:<24}" + "".join(f"{float(reduce([r[key] for r in rows])):12.1f}" for key, _ in COLUMNS))


if __name__ == "__main__":
    main()
