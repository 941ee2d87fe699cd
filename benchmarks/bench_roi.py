"""Registration + regional measurement of one 1 mm whole-head subject made by a known warp.

Prints seconds per step, peak memory (RSS), region-mean accuracy (median relative error over
the CIT168 regions, VeP error) and the Dice of the warped labels for the large nuclei.
Targets (issue 3): <= 30 s per subject on 2 cores, <= 3 GB, means within 10 % (median over
regions), VeP within 20 %.

    .venv/bin/python benchmarks/bench_roi.py [--threads 2] [--resolution 2.0]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--resolution", type=float, default=None, help="registration grid, mm (default: settings)")
    args = parser.parse_args()
    os.environ["ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS"] = str(args.threads)

    import nibabel as nib
    import numpy as np

    from qsmiron.atlas import load_atlas, load_template
    from qsmiron.config import QsmironConfig
    from qsmiron.io.nifti import save_nifti
    from qsmiron.register.phantom import grid_affine, make_phantom_subject
    from qsmiron.roi.api import roi_from_files

    atlas = load_atlas("cit168")
    template = load_template()
    base = {"Pu": 0.06, "Ca": 0.06, "NAC": 0.02, "EXA": 0.03, "GPe": 0.14, "GPi": 0.13, "SNc_PBP_VTA": 0.11,
            "RN": 0.10, "SNr": 0.15, "VeP": 0.08, "HN": 0.04, "HTH": 0.01, "MN": 0.05, "STH": 0.09}
    region_chi = {int(r["index"]): base[r["region"]] + (0.03 if r["hemisphere"] == "R" else 0.0)
                  for _, r in atlas.labels.iterrows()}
    shape = (176, 216, 176)  # a 1 mm whole-head matrix
    affine = grid_affine((1.0, 1.0, 1.0), shape)
    tick = time.perf_counter()
    subject = make_phantom_subject(np.asarray(template.dataobj, np.float32), template.affine, atlas.label_array(),
                                   region_chi, shape, affine)
    phantom_s = time.perf_counter() - tick
    config = QsmironConfig()
    if args.resolution:
        config.registration.resolution_mm = args.resolution
    with tempfile.TemporaryDirectory(prefix="bench_roi_") as folder:
        folder = Path(folder)
        chi = save_nifti(folder / "chi.nii.gz", subject.chi_ppm, affine)
        mag = save_nifti(folder / "mag.nii.gz", subject.magnitude, affine)
        tick = time.perf_counter()
        table = roi_from_files(chi, mag, folder / "sub-01_regions.tsv", settings=config)
        total_s = time.perf_counter() - tick
        meta = json.loads((folder / "sub-01_regions.json").read_text())
        warped = np.asarray(nib.load(str(folder / "sub-01_regions_atlas-cit168_dseg.nii.gz")).dataobj)
    truth = np.array([subject.truth_ppm[i] for i in table.label])
    rel_mean = np.abs(table.mean_ppm.to_numpy() - truth) / np.abs(truth)
    rel_median = np.abs(table.median_ppm.to_numpy() - truth) / np.abs(truth)
    vep = table.region.to_numpy() == "VeP"
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    print(f"subject {shape} at 1 mm, registration grid {config.registration.resolution_mm} mm, "
          f"ITK threads {args.threads}")
    print(f"phantom build (not part of the pipeline): {phantom_s:.1f} s")
    for step, seconds in meta["seconds"].items():
        print(f"  {step:<20s} {seconds:6.1f} s")
    print(f"roi_from_files total: {total_s:.1f} s; peak RSS {peak_gb:.2f} GB")
    print(f"region means: median relative error {np.median(rel_mean):.1%} (max {rel_mean.max():.1%}); "
          f"VeP L/R {rel_mean[vep][0]:.1%} / {rel_mean[vep][1]:.1%}; median abs error "
          f"{np.median(np.abs(table.mean_ppm.to_numpy() - truth)) * 1000:.1f} ppb")
    print(f"region medians: median relative error {np.median(rel_median):.1%}; VeP L/R "
          f"{rel_median[vep][0]:.1%} / {rel_median[vep][1]:.1%}")
    for region in ("Pu", "Ca", "GPe", "GPi", "RN", "SNr"):
        dices = []
        for label in atlas.labels.loc[atlas.labels.region == region, "index"]:
            a, b = warped == label, subject.labels == label
            dices.append(2 * (a & b).sum() / (a.sum() + b.sum()))
        print(f"  Dice {region:<4s} L {dices[0]:.3f}  R {dices[1]:.3f}")
    print(f"registration QC: NMI {meta['registration']['metrics']['nmi']:.3f}, brain Dice "
          f"{meta['registration']['metrics']['brain_dice']:.3f}, outlier {meta['registration']['metrics']['outlier']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
