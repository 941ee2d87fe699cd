"""Registration + regional measurement: speed, memory and accuracy against known truth.

Two kinds of subject:

1. ``phantom``: one 1 mm whole-head subject made from the template by a known rigid motion
   plus a smooth non-linear warp (``qsmiron.register.phantom``: GRE-like power-law contrast,
   T2* darkening, bias field, noise). Truth: the chi painted into each warped label. The warp
   is ``KnownWarp()`` (the one of the tests) by default; ``--warp-seed N`` draws another one
   (phases, rotation, translation and the noise from seed N) so that a setting is not judged
   on one warp, and ``--warp-amplitude`` sets its non-linear amplitude (2.5 mm by default).
   ``--oracle`` also measures through the true warp (labels resampled as after a
   registration, by the same ANTs call): the error left when the registration is perfect
   (3.1 % for the means with genericLabel, as the truth's labels are nearest-neighbour ones).
2. ``simulator``: subjects of ``qsmiron.simulate.simulate_cohort`` (an independent contrast
   model: spoiled-GRE signal with T1 and R2* per tissue, skull and scalp, random head pose,
   oblique slices; 1.5 mm). Inputs: the true chi map and the first-echo magnitude. Truth:
   ``mean_ppm_grid`` of ``regions_truth.tsv`` (the partial-volume-including mean on the scan grid).
   The region medians are compared with that mean too: even through the true labels their
   median error is 8-10 %, so the medians' figure says little about the registration here.

Prints wall and CPU seconds per step (``time.process_time`` counts every thread of the
process: on an idle machine with 2 ITK threads the wall time is about CPU / 1.6-2; on a shared
machine the CPU figure is the reliable one), peak RSS, the median relative error of region
means and medians over the CIT168 regions, the VeP errors, and Dice of the warped labels.
Targets (issue 3): <= 30 s per subject on 2 cores, <= 3 GB, means within 10 % (median over
regions), VeP within 20 %.

    .venv/bin/python benchmarks/bench_roi.py [--threads 2] [--subjects phantom,simulator]
        [--n-sim 2] [--sim-dir DIR] [--syn-metric MI+CC] [--syn-iterations 40,20] [--erode 0] [--resolution 2.0]
        [--set KEY=VALUE ...] [--warp-seed 0] [--warp-amplitude 2.5] [--oracle]

``--set`` changes any registration setting, e.g. ``--set syn_metric=MI --set
syn_flow_sigma_vox=3 --set syn_total_sigma_vox=0`` (the default before MI+CC) or ``--set
syn_iterations=40,20,10 --set syn_shrink_factors=4,2,1 --set syn_smoothing_vox=2,1,0`` (three
SyN levels).
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


def _errors(table, truth, vep_sides=("L", "R")):
    import numpy as np

    rel_mean = np.abs(table.mean_ppm.to_numpy() - truth) / np.abs(truth)
    rel_median = np.abs(table.median_ppm.to_numpy() - truth) / np.abs(truth)
    vep = table.region.to_numpy() == "VeP"
    return {"mean_median_rel": float(np.median(rel_mean)), "median_median_rel": float(np.median(rel_median)),
            "mean_abs_ppb": float(np.median(np.abs(table.mean_ppm.to_numpy() - truth)) * 1000),
            "vep_mean": [float(v) for v in rel_mean[vep]], "vep_median": [float(v) for v in rel_median[vep]],
            "mean_median_rel_above_20ppb": float(np.median(rel_mean[np.abs(truth) > 0.02]))}


def _print_errors(name, e):
    print(f"  {name}: means: median rel. error {e['mean_median_rel']:.1%} (regions |truth| > 20 ppb: "
          f"{e['mean_median_rel_above_20ppb']:.1%}), median abs {e['mean_abs_ppb']:.1f} ppb, VeP L/R "
          f"{e['vep_mean'][0]:.1%} / {e['vep_mean'][1]:.1%}; medians: median rel. error "
          f"{e['median_median_rel']:.1%}, VeP {e['vep_median'][0]:.1%} / {e['vep_median'][1]:.1%}")


def _dice(warped, truth_labels, atlas, regions=("Pu", "Ca", "GPe", "GPi", "RN", "SNr", "VeP")):
    out = {}
    for region in regions:
        values = []
        for label in atlas.labels.loc[atlas.labels.region == region, "index"]:
            a, b = warped == label, truth_labels == label
            values.append(float(2 * (a & b).sum() / max(a.sum() + b.sum(), 1)))
        out[region] = values
    return out


def _eroded_errors(chi_ppm, voxel_size, labels_subject, atlas, truth_by_label, erode):
    """Errors of the same subject measured with ``erode`` voxels of erosion (same registration)."""
    import numpy as np

    from qsmiron.roi.measure import measure_regions

    data = np.nan_to_num(np.asarray(chi_ppm, dtype=np.float32))
    table = measure_regions(data, data != 0, labels_subject, voxel_size, atlas.labels, erode_voxels=erode)
    return _errors(table, np.array([truth_by_label[i] for i in table.label])), int(table.flag_small.sum())


def _print_steps(meta):
    wall, cpu = meta["seconds"], meta.get("cpu_seconds", {})
    for step, seconds in wall.items():
        print(f"    {step:<20s} wall {seconds:6.1f} s   cpu {cpu.get(step, float('nan')):6.1f} s")
    parameters = meta["registration"]["parameters"]
    if parameters:
        print("      registration cpu: " + ", ".join(f"{k} {v:.1f} s" for k, v in parameters["cpu_seconds"].items())
              + f"; SyN domain {parameters['syn_domain_shape']} voxels of {parameters['resolution_mm']} mm")


def phantom_warp(seed: int, amplitude_mm: float | None):
    """``KnownWarp()`` for seed 0, else one with phases, rotation and translation drawn from ``seed``."""
    import numpy as np

    from qsmiron.register.phantom import KnownWarp

    warp = KnownWarp()
    if seed:
        rng = np.random.default_rng(seed)
        warp = KnownWarp(rotation_deg=tuple(float(v) for v in rng.uniform(-8, 8, 3).round(2)),
                         translation_mm=tuple(float(v) for v in rng.uniform(-8, 8, 3).round(2)),
                         phases=tuple(float(v) for v in rng.uniform(0, 2 * np.pi, 3).round(3)))
    if amplitude_mm is not None:
        warp.amplitude_mm = amplitude_mm
    return warp


def oracle_labels(warp, atlas, affine, shape, folder: Path, interpolation: str):
    """Atlas labels brought to the subject through the true warp, by ``labels_to_subject``.

    The warp is written as the ANTs transforms of a registration: the rigid part as the affine
    (template -> subject, as ANTs writes it), the rest as the inverse displacement field, which
    ANTs applies after the inverted affine, i.e. at template-side points ``q = R x + t``:
    ``u(q) = d(R^-1 (q - t))``, on a 2 mm grid over the subject's field of view (the sinusoids
    are smooth at that scale). Nearest-neighbour labels through it reproduce the phantom's
    true labels (99.8 % of labelled voxels agree).
    """
    import ants
    import numpy as np

    from qsmiron.register.images import to_ants
    from qsmiron.register.normalise import Registration, labels_to_subject
    from qsmiron.register.phantom import rotation_matrix

    flip = np.diag([-1.0, -1.0, 1.0])  # RAS <-> LPS
    rotation = rotation_matrix(warp.rotation_deg)
    translation = np.asarray(warp.translation_mm, float)
    # x_template = R x + t + d(x), RAS. In LPS the rigid part is F R F, F t; ANTs stores its inverse.
    rotation_lps, translation_lps = flip @ rotation @ flip, flip @ translation
    transform = ants.create_ants_transform(transform_type="AffineTransform", dimension=3,
                                           matrix=rotation_lps.T, translation=-rotation_lps.T @ translation_lps)
    affine_path = str(folder / "oracle_0GenericAffine.mat")
    ants.write_transform(transform, affine_path)
    coarse = np.asarray(affine, float).copy()
    coarse[:3, :3] *= 2.0
    coarse_shape = tuple(int(np.ceil(n / 2)) + 1 for n in shape)
    ijk = np.indices(coarse_shape, dtype=float).reshape(3, -1).T
    template_side = ijk @ coarse[:3, :3].T + coarse[:3, 3]
    subject_side = (template_side - translation) @ rotation  # R^-1 (q - t), row-wise
    field = (warp(subject_side) - (subject_side @ rotation.T + translation)) @ flip
    geometry = to_ants(np.zeros(coarse_shape, np.float32), coarse)
    field_image = ants.from_numpy(field.reshape(coarse_shape + (3,)).astype(np.float32), origin=geometry.origin,
                                  spacing=geometry.spacing, direction=geometry.direction, has_components=True)
    field_path = str(folder / "oracle_1InverseWarp.nii.gz")
    ants.image_write(field_image, field_path)
    registration = Registration(affine=Path(affine_path), warp=None, inverse_warp=Path(field_path))
    labels = to_ants(atlas.label_array().astype(np.float32), atlas.image.affine)
    reference = to_ants(np.zeros(tuple(shape), np.float32), affine)
    return labels_to_subject(labels, registration, reference, interpolation=interpolation)


def run_phantom(config, atlas, template, *, warp=None, seed: int = 0, oracle: bool = False):
    import nibabel as nib
    import numpy as np

    from qsmiron.io.nifti import save_nifti
    from qsmiron.register.phantom import KnownWarp, grid_affine, make_phantom_subject
    from qsmiron.roi.api import roi_from_files
    from qsmiron.roi.measure import measure_regions

    base = {"Pu": 0.06, "Ca": 0.06, "NAC": 0.02, "EXA": 0.03, "GPe": 0.14, "GPi": 0.13, "SNc_PBP_VTA": 0.11,
            "RN": 0.10, "SNr": 0.15, "VeP": 0.08, "HN": 0.04, "HTH": 0.01, "MN": 0.05, "STH": 0.09}
    region_chi = {int(r["index"]): base[r["region"]] + (0.03 if r["hemisphere"] == "R" else 0.0)
                  for _, r in atlas.labels.iterrows()}
    shape = (176, 216, 176)  # a 1 mm whole-head matrix
    affine = grid_affine((1.0, 1.0, 1.0), shape)
    subject = make_phantom_subject(np.asarray(template.dataobj, np.float32), template.affine, atlas.label_array(),
                                   region_chi, shape, affine, warp=warp, seed=seed)
    with tempfile.TemporaryDirectory(prefix="bench_roi_") as folder:
        folder = Path(folder)
        chi = save_nifti(folder / "chi.nii.gz", subject.chi_ppm, affine)
        mag = save_nifti(folder / "mag.nii.gz", subject.magnitude, affine)
        tick, cpu = time.perf_counter(), time.process_time()
        table = roi_from_files(chi, mag, folder / "sub-01_regions.tsv", settings=config)
        wall_s, cpu_s = time.perf_counter() - tick, time.process_time() - cpu
        meta = json.loads((folder / "sub-01_regions.json").read_text())
        warped = np.asarray(nib.load(str(folder / "sub-01_regions_atlas-cit168_dseg.nii.gz")).dataobj)
        true_warp = oracle_labels(warp or KnownWarp(), atlas, affine, shape, folder,
                                  config.registration.label_interpolation) if oracle else None
    truth = np.array([subject.truth_ppm[i] for i in table.label])
    print(f"phantom subject {shape} at 1 mm ({warp or KnownWarp()}, noise seed {seed}): "
          f"roi_from_files wall {wall_s:.1f} s, cpu {cpu_s:.1f} s")
    _print_steps(meta)
    errors = _errors(table, truth)
    _print_errors("phantom", errors)
    eroded, n_small = _eroded_errors(subject.chi_ppm, (1.0, 1.0, 1.0), warped, atlas, subject.truth_ppm, 1)
    _print_errors(f"phantom, regions eroded by 1 voxel ({n_small} flagged small)", eroded)
    dice = _dice(warped, subject.labels, atlas)
    print("    Dice " + ", ".join(f"{r} {v[0]:.2f}/{v[1]:.2f}" for r, v in dice.items()))
    print(f"    QC: NMI {meta['registration']['metrics']['nmi']:.3f}, brain Dice "
          f"{meta['registration']['metrics']['brain_dice']:.3f}")
    if true_warp is not None:
        floor = measure_regions(subject.chi_ppm, subject.chi_ppm != 0, true_warp, (1.0, 1.0, 1.0), atlas.labels)
        _print_errors("phantom, labels through the true warp (perfect registration)",
                      _errors(floor, np.array([subject.truth_ppm[i] for i in floor.label])))
        dice = _dice(true_warp, subject.labels, atlas)
        print("    Dice " + ", ".join(f"{r} {v[0]:.2f}/{v[1]:.2f}" for r, v in dice.items()))
    return errors, wall_s, cpu_s


def run_simulator(config, atlas, sim_dir: Path | None, n_subjects: int):
    import nibabel as nib
    import numpy as np
    import pandas as pd

    from qsmiron.roi.api import roi_from_files

    created = None
    if sim_dir is None:
        from qsmiron.simulate.cohort import simulate_cohort

        created = tempfile.TemporaryDirectory(prefix="bench_roi_sim_")
        sim_dir = Path(created.name) / "bids"
        tick = time.perf_counter()
        simulate_cohort(sim_dir, n_subjects, 7)
        print(f"simulated {n_subjects} subjects in {time.perf_counter() - tick:.0f} s (not part of the pipeline)")
    truth_all = pd.read_csv(sim_dir / "derivatives" / "truth" / "regions_truth.tsv", sep="\t")
    results = []
    for participant in sorted(truth_all.participant_id.unique())[:n_subjects]:
        chi = sim_dir / "derivatives" / "truth" / participant / "anat" / f"{participant}_Chimap.nii.gz"
        mag = sim_dir / participant / "anat" / f"{participant}_echo-1_part-mag_MEGRE.nii.gz"
        true_labels = np.asarray(nib.load(str(chi).replace("_Chimap", "_dseg")).dataobj)
        with tempfile.TemporaryDirectory(prefix="bench_roi_") as folder:
            folder = Path(folder)
            tick, cpu = time.perf_counter(), time.process_time()
            table = roi_from_files(chi, mag, folder / f"{participant}_regions.tsv", settings=config)
            wall_s, cpu_s = time.perf_counter() - tick, time.process_time() - cpu
            meta = json.loads((folder / f"{participant}_regions.json").read_text())
            warped = np.asarray(nib.load(str(folder / f"{participant}_regions_atlas-cit168_dseg.nii.gz")).dataobj)
        truth = truth_all[truth_all.participant_id == participant].set_index(["region", "hemisphere"])
        truth = truth.loc[list(zip(table.region, table.hemisphere)), "mean_ppm_grid"].to_numpy()
        print(f"simulator {participant} {tuple(true_labels.shape)}: roi_from_files wall {wall_s:.1f} s, cpu {cpu_s:.1f} s")
        _print_steps(meta)
        errors = _errors(table, truth)
        _print_errors(participant, errors)
        eroded, n_small = _eroded_errors(nib.load(str(chi)).get_fdata(dtype=np.float32), nib.load(str(chi)).header.get_zooms()[:3],
                                         warped, atlas, dict(zip(table.label, truth)), 1)
        _print_errors(f"{participant}, regions eroded by 1 voxel ({n_small} flagged small)", eroded)
        dice = _dice(warped, true_labels, atlas)
        print("    Dice " + ", ".join(f"{r} {v[0]:.2f}/{v[1]:.2f}" for r, v in dice.items()))
        results.append((errors, wall_s, cpu_s))
    if created is not None:
        created.cleanup()
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--resolution", type=float, default=None, help="SyN grid, mm (default: settings)")
    parser.add_argument("--syn-metric", default=None, help="MI, CC or MI+CC (default: settings)")
    parser.add_argument("--syn-iterations", default=None, help="SyN iterations per level, e.g. 40,40")
    parser.add_argument("--erode", type=int, default=None, help="roi.erode_voxels (default: settings)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="any registration setting, e.g. syn_shrink_factors=4,2,1 or syn_flow_sigma_vox=2")
    parser.add_argument("--warp-seed", type=int, default=0, help="phantom warp and noise: 0 = KnownWarp() of the tests")
    parser.add_argument("--warp-amplitude", type=float, default=None, help="phantom non-linear amplitude, mm")
    parser.add_argument("--oracle", action="store_true", help="also measure through the true phantom warp")
    parser.add_argument("--subjects", default="phantom,simulator")
    parser.add_argument("--n-sim", type=int, default=2)
    parser.add_argument("--sim-dir", type=Path, default=None, help="an existing simulate_cohort output")
    args = parser.parse_args()
    os.environ["ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS"] = str(args.threads)

    from qsmiron.atlas import load_atlas, load_template
    from qsmiron.config import QsmironConfig

    atlas = load_atlas("cit168")
    template = load_template()
    config = QsmironConfig()
    if args.resolution:
        config.registration.resolution_mm = args.resolution
    if args.syn_metric:
        config.registration.syn_metric = args.syn_metric
    if args.syn_iterations:
        config.registration.syn_iterations = tuple(int(v) for v in args.syn_iterations.split(","))
    if args.erode is not None:
        config.roi.erode_voxels = args.erode
    for item in args.set:
        key, _, value = item.partition("=")
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError:
            parsed = value
        if isinstance(parsed, str) and "," in parsed:
            parsed = tuple(json.loads(v) for v in parsed.split(","))
        setattr(config.registration, key, parsed)
    reg = config.registration
    print(f"ITK threads {args.threads}; linear grid {getattr(reg, 'linear_resolution_mm', reg.resolution_mm)} mm, "
          f"SyN grid {reg.resolution_mm} mm, SyN metric {reg.syn_metric}, SyN domain {getattr(reg, 'syn_region', 'brain')}, "
          f"SyN iterations {reg.syn_iterations}; erode {config.roi.erode_voxels}")
    if args.set:
        print("  registration settings: " + ", ".join(f"{k}={getattr(reg, k)}" for k in
                                                     (item.partition("=")[0] for item in args.set)))
    kinds = args.subjects.split(",")
    if "phantom" in kinds:
        run_phantom(config, atlas, template, warp=phantom_warp(args.warp_seed, args.warp_amplitude),
                    seed=args.warp_seed, oracle=args.oracle)
    if "simulator" in kinds:
        results = run_simulator(config, atlas, args.sim_dir, args.n_sim)
        import numpy as np

        print(f"simulator, {len(results)} subjects: means median rel. error "
              f"{np.mean([r[0]['mean_median_rel'] for r in results]):.1%} (mean over subjects), VeP mean error "
              f"{np.mean([np.mean(r[0]['vep_mean']) for r in results]):.1%}; medians "
              f"{np.mean([r[0]['median_median_rel'] for r in results]):.1%}; cpu per subject "
              f"{np.mean([r[2] for r in results]):.1f} s")
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    print(f"peak RSS {peak_gb:.2f} GB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
