"""Voxel-wise inference: power on a planted regional effect, false positives on null cohorts,
and the time and memory of 100 subjects x 5,000 permutations in the subcortical mask.

Simulated template-space chi maps on the MNI152NLin2009cAsym 1 mm grid: each CIT168 region
has its literature mean (../shared/docs/study-model.md) plus a between-subject regional
effect (SD 0.02 ppm, shared by all the region's voxels), plus spatially smooth voxel noise
(SD 0.03 ppm, FWHM 3 mm); covariates age (0.4 ppb per year) and sex (none). The planted
effect lowers two regions (VeP and putamen, left) in group_a by ``d`` between-subject SDs, as
the reference study reports; power is counted per region.

Parts (all print figures; nothing is asserted):

1. ``--part power``: for smoothing FWHM 0 and 3 mm (``--smoothing``), the share of planted cohorts in which a
   cluster labelled with each planted region reaches p_FWE < 0.05 (power), and over 20 null
   seeds the share of cohorts with any FWE-significant voxel (family-wise false-positive rate,
   nominal 5 %);
   in memory, ``--permutations`` (default 100: enough to call p_FWE < 0.05) each; the same
   cohorts for every smoothing.
2. ``--part scale``: 100 subjects written as NIfTI files, ``qsmiron voxelwise`` run end to end
   in a child process with 5,000 permutations on ``--threads`` (default 2) threads: wall
   seconds, CPU seconds and peak resident memory of the child.

    .venv/bin/python benchmarks/bench_voxelwise.py [--part power|scale|all]
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import ndimage

MEANS = {"Pu": 0.06, "Ca": 0.06, "NAC": 0.02, "EXA": 0.05, "GPe": 0.14, "GPi": 0.14, "SNc_PBP_VTA": 0.13,
         "RN": 0.10, "SNr": 0.13, "VeP": 0.07, "HN": 0.03, "HTH": 0.02, "MN": 0.03, "STH": 0.08}
BETWEEN_SD, VOXEL_SD, NOISE_FWHM_MM = 0.02, 0.03, 3.0
PLANTED = (("VeP", "L"), ("Pu", "L"))
"""Regions lowered in group_a (the reference study: lower chi in VeP and putamen with MOH)."""


class Space:
    """The CIT168 labels, the subcortical mask and its bounding box (plus a smoothing margin)."""

    def __init__(self):
        from qsmiron.atlas.load import load_atlas, load_template
        from qsmiron.stats.voxelwise_maps import Grid, analysis_mask, mask_box

        self.atlas = load_atlas("cit168")
        template = load_template()
        self.grid = Grid(tuple(template.shape), np.asarray(template.affine), self.atlas.space)
        self.labels = self.atlas.label_array()
        self.mask, _ = analysis_mask("subcortical", self.labels, np.asanyarray(template.dataobj), self.grid, None)
        self.box = mask_box(self.mask, 12)
        self.brain = np.asanyarray(template.dataobj) > 0
        names = dict(zip(self.atlas.labels["index"], zip(self.atlas.labels["region"], self.atlas.labels["hemisphere"])))
        self.region_of = {int(k): v for k, v in names.items()}

    def subject(self, rng, *, age: float, lowered: dict | None = None) -> np.ndarray:
        """One subject's chi in the box (background 0.01 ppm tissue)."""
        labels = self.labels[self.box]
        chi = np.full(labels.shape, 0.01)
        for index, (region, side) in self.region_of.items():
            shift = (lowered or {}).get((region, side), 0.0)
            chi[labels == index] = MEANS[region] + 0.0004 * (age - 42) + rng.normal(0, BETWEEN_SD) + shift
        sigma = NOISE_FWHM_MM / np.sqrt(8 * np.log(2))
        noise = ndimage.gaussian_filter(rng.standard_normal(size=labels.shape, dtype=np.float32), sigma)
        return chi + VOXEL_SD * noise / noise.std()


def cohort(space: Space, n: int, d: float, seed: int):
    rng = np.random.default_rng(seed)
    group = np.array(["MOH", "CM"] * (n // 2))
    age = rng.normal(42, 9, n)
    sex = rng.random(n) < 0.3
    lowered = {key: d * BETWEEN_SD for key in PLANTED}
    maps = [space.subject(rng, age=a, lowered=lowered if g == "MOH" else None) for g, a in zip(group, age)]
    return np.stack(maps), group, age, sex


def smooth_in_box(maps: np.ndarray, fwhm_mm: float) -> np.ndarray:
    if fwhm_mm <= 0:
        return maps
    sigma = fwhm_mm / np.sqrt(8 * np.log(2))
    return np.stack([ndimage.gaussian_filter(m.astype(np.float32), sigma, mode="nearest") for m in maps])


def power_part(n: int, d: float, permutations: int, planted_seeds: int, null_seeds: int,
               smoothing: tuple[float, ...]) -> None:
    from qsmiron.stats.permutation import neighbour_graph, permuted_glm_tfce
    from qsmiron.stats.voxelwise import cluster_table

    space = Space()
    inner = space.mask[space.box]
    graph = neighbour_graph(inner)
    names = {k: f"{r} {s}" for k, (r, s) in space.region_of.items()}
    labels = space.labels[space.box]
    print(f"mask: {int(inner.sum())} voxels; {n} subjects (half MOH), d = {d} in "
          f"{', '.join(' '.join(key) for key in PLANTED)}, "
          f"{permutations} permutations per cohort")
    found = {(fwhm, key): 0 for fwhm in smoothing for key in PLANTED}
    false_positive, seconds = 0, []
    for seed in range(planted_seeds + null_seeds):
        planted = seed < planted_seeds
        maps, group, age, sex = cohort(space, n, d if planted else 0.0, seed)
        # null cohorts only at the first smoothing: permutation FWE control does not depend on it
        for fwhm in (smoothing if planted else smoothing[:1]):
            values = smooth_in_box(maps, fwhm)[:, inner]
            tick = time.process_time()
            result = permuted_glm_tfce((group == "MOH").astype(float), values, np.column_stack([age, sex]), graph,
                                       n_permutations=permutations, seed=seed)
            seconds.append(time.process_time() - tick)
            t, logp = np.zeros(inner.shape), np.zeros(inner.shape)
            t[inner], logp[inner] = result.t, result.logp_fwe
            clusters = cluster_table("c", t, logp, inner, labels, names, np.eye(4), 0.05)
            if planted:
                for key in PLANTED:
                    found[(fwhm, key)] += any(c["label"] == " ".join(key) and c["peak_t"] < 0 for c in clusters)
            else:
                false_positive += bool(clusters)
            print(f"  seed {seed} ({'planted' if planted else 'null'}), {fwhm:g} mm: min p_FWE "
                  f"{10 ** -result.logp_fwe.max():.3f}, clusters {[(c['label'], c['n_voxels']) for c in clusters]}",
                  flush=True)
    for fwhm in smoothing:
        shares = ", ".join(f"{' '.join(key)} {found[(fwhm, key)]}/{planted_seeds}" for key in PLANTED)
        print(f"smoothing {fwhm:g} mm: power (a cluster labelled with the planted region, p_FWE < 0.05): {shares}")
    print(f"null cohorts at {smoothing[0]:g} mm: family-wise false positives {false_positive}/{null_seeds} = "
          f"{false_positive / max(null_seeds, 1):.2f} (nominal 0.05); CPU s per permutation run median "
          f"{np.median(seconds):.1f}, worst {np.max(seconds):.1f}")


def scale_part(n: int, permutations: int, threads: int, keep: Path | None) -> None:
    import nibabel as nib

    from qsmiron.io.derivatives import template_map_path, voxelwise_paths
    from qsmiron.records.extensions import VoxelwiseRecord

    space = Space()
    root = Path(keep) if keep else Path(tempfile.mkdtemp(prefix="bench_voxelwise_"))
    derivatives = root / "derivatives"
    maps, group, age, sex = cohort(space, n, -0.8, seed=123)
    tick = time.perf_counter()
    for i, chi in enumerate(maps):
        full = np.zeros(space.grid.shape, np.float32)
        full[space.brain] = 0.01
        full[space.box] = np.where(space.brain[space.box], chi, 0.0)
        folder = derivatives / f"sub-{i:03d}" / "anat"
        folder.mkdir(parents=True, exist_ok=True)
        nib.save(nib.Nifti1Image(full, space.grid.affine), template_map_path(folder, f"sub-{i:03d}", space.grid.space))
    pd.DataFrame({"participant_id": [f"sub-{i:03d}" for i in range(n)], "group": group, "age": age.round(1),
                  "sex": np.where(sex, "M", "F")}).to_csv(root / "participants.tsv", sep="\t", index=False)
    (root / "study.toml").write_text(f'[groups]\ncompare = ["MOH", "CM"]\n[associations]\nvariables = []\n'
                                     f'[voxelwise]\nn_permutations = {permutations}\n')
    print(f"wrote {n} maps in {time.perf_counter() - tick:.0f} s ({root})")
    env = dict(os.environ, NUMBA_NUM_THREADS=str(threads), OMP_NUM_THREADS=str(threads),
               OPENBLAS_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    command = [sys.executable, "-m", "qsmiron.cli", "voxelwise", str(derivatives), str(root / "participants.tsv"),
               "--study", str(root / "study.toml"), "-o", str(root / "out")]
    tick = time.perf_counter()
    subprocess.run(command, check=True, env=env)
    wall = time.perf_counter() - tick
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    paths = voxelwise_paths(root / "out")
    record = VoxelwiseRecord.read(paths.record)
    clusters = pd.read_csv(paths.clusters, sep="\t")
    print(f"{n} subjects x {permutations} permutations, {record.n_voxels} voxels, {threads} threads: "
          f"wall {wall:.0f} s (target <= 300), CPU {usage.ru_utime + usage.ru_stime:.0f} s, "
          f"peak memory {usage.ru_maxrss / 1024:.0f} MB (target <= 4096); load average now "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print(f"in-process: {record.seconds:.0f} s wall, {record.cpu_seconds:.0f} s CPU; "
          f"clusters: {clusters[['label', 'n_voxels', 'peak_t', 'p_fwe']].to_dict('records')}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--part", choices=["power", "scale", "all"], default="all")
    parser.add_argument("--subjects", type=int, default=100)
    parser.add_argument("--d", type=float, default=-0.8)
    parser.add_argument("--permutations", type=int, default=100, help="per cohort in the power part")
    parser.add_argument("--smoothing", type=float, nargs="+", default=[0.0, 3.0], help="FWHM mm compared")
    parser.add_argument("--planted-seeds", type=int, default=5)
    parser.add_argument("--null-seeds", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--keep", default=None, help="folder for the scale part's files (default: a temp folder)")
    args = parser.parse_args()
    if args.part in ("power", "all"):
        power_part(args.subjects, args.d, args.permutations, args.planted_seeds, args.null_seeds,
                   tuple(args.smoothing))
    if args.part in ("scale", "all"):
        scale_part(args.subjects, 5000, args.threads, args.keep)


if __name__ == "__main__":
    main()
