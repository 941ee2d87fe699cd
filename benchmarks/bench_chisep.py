"""chi-separation on simulated heads with chi+ and chi- planted separately (issue 13).

Heads: ``qsmiron.simulate`` (MNI152NLin2009cAsym brain, CIT168 nuclei, thalamus, dentate) at
1.5 mm, 3 T. Planted sources per tissue: chi+ and chi- of qsm-forward's chi-separation phantom
(``qsm_forward.CHISEP_TISSUE_PARAMS``: Ridani et al. 2026 via the Susceptibility-Separation-
Phantom), mapped by tissue (caudate and accumbens -> caudate; GPe, GPi, ventral pallidum ->
globus pallidus; SN, STN -> SN/STN; other small nuclei -> grey matter; CSF = water, 0 and 0).

Relaxometric link (stated): R2' = Dr (chi+ + chi-) with Dr = 137 Hz/ppm
(``qsm_forward.generate_r2prime``; Shin et al. 2021). R2 at 3 T from Gelman et al. 1999
(cortex 14.4, frontal white matter 18.0, globus pallidus 25.8 s^-1), other nuclei linear in
their chi+ between cortex and pallidum, CSF 0.5 s^-1; R2* = R2 + R2'.

Chain: magnitude ``S0 exp(-R2* TE)`` + complex noise (SNR 120, 5 echoes 4-28 ms) ->
``fit_r2star``; local field of the brain-mean-referenced chi+ - chi- (dipole model) plus the
field noise the echo fit would leave (SD = sigma / (2 pi sqrt(sum A^2 TE^2)), passed as the noise
map) -> ``separate_susceptibility`` with: the true R2; R2 20 % low and 20 % high; no R2 (the
pseudo-R2 approximation); and, with the true R2, TV weights of a third and three times the
automatic one (how sensitive the default is; started from the net map of the automatic run).
Errors: regional mean of each map minus the planted one over CIT168 labels, grey and white
matter (cores of the smoothed tissue maps), and voxel-wise NRMSE in the brain.

``--family``: instead, the 8 varied heads of ``FAMILY`` (1 to 2.5 mm slices, SNR 40 to 200,
axial to 25 degrees) separated with the true R2 by each edge mask and edge fraction asked for,
with the median and the worst over the heads (what the defaults are chosen by).

    .venv/bin/python benchmarks/bench_chisep.py [--alpha-factors 0.33 3]
    .venv/bin/python benchmarks/bench_chisep.py --family [--edge-masks per_axis voxel] [--edge-fractions 0.3]
"""

from __future__ import annotations

import argparse
import os
import resource
import time

import numpy as np

ECHO_TIMES_S = (0.004, 0.010, 0.016, 0.022, 0.028)
TISSUE_OF_REGION = {"Ca": 1, "NAC": 1, "GPe": 2, "GPi": 2, "VeP": 2, "Pu": 3, "RN": 4, "DN": 5,
                    "SNc_PBP_VTA": 6, "SNr": 6, "STH": 6, "Thal": 7, "WM": 8, "GM": 9, "EXA": 9,
                    "HN": 9, "HTH": 9, "MN": 9}
R2_CORTEX, R2_WM, R2_PALLIDUM, R2_CSF = 14.4, 18.0, 25.8, 0.5
POSES = {"rotated": {"head_rotation_deg": (4.0, -3.0, 5.0), "translation_mm": (3.0, -4.0, 2.0)},
         "oblique": {"oblique_deg": (15.0, 3.0)}}
FAMILY = (  # name, voxel size (mm), SNR, pose: what chi-separation's defaults are chosen over
    ("1mm_axial_snr120", (1.0, 1.0, 1.0), 120.0, {}),
    ("1.5mm_rotated_snr120", (1.5, 1.5, 1.5), 120.0, POSES["rotated"]),
    ("1.5mm_obl15_snr120", (1.5, 1.5, 1.5), 120.0, POSES["oblique"]),
    ("1.5mm_obl25_snr40", (1.5, 1.5, 1.5), 40.0, {"oblique_deg": (25.0, 0.0)}),
    ("1x1x2mm_obl8_snr120", (1.0, 1.0, 2.0), 120.0, {"oblique_deg": (8.0, 2.0)}),
    ("1x1x2.5mm_rot_snr80", (1.0, 1.0, 2.5), 80.0, {"head_rotation_deg": (-3.0, 4.0, 2.0),
                                                   "oblique_deg": (5.0, 0.0)}),
    ("2mm_axial_snr60", (2.0, 2.0, 2.0), 60.0, {}),
    ("1.5mm_rot_snr200", (1.5, 1.5, 1.5), 200.0, {"head_rotation_deg": (6.0, 2.0, -4.0)}),
)


def planted_tables(phantom):
    """Per-code chi+ (ppm), chi- (ppm, magnitude) and R2 (s^-1)."""
    import qsm_forward

    params = qsm_forward.CHISEP_TISSUE_PARAMS
    para_gm, para_gp = params[9][0], params[2][0]
    para, dia, r2 = (np.zeros(256, np.float32) for _ in range(3))
    for code, (name, _) in phantom.regions.items():
        if name == "CSF":
            para[code], dia[code], r2[code] = 0.0, 0.0, R2_CSF
            continue
        tissue = TISSUE_OF_REGION[name]
        para[code], dia[code] = params[tissue][0], -params[tissue][1]
        if name == "WM":
            r2[code] = R2_WM
        else:
            share = (para[code] - para_gm) / (para_gp - para_gm)
            r2[code] = R2_CORTEX + max(share, 0.0) * (R2_PALLIDUM - R2_CORTEX)
    return para, dia, r2


def simulate(context, settings, pose_kwargs, rng):
    import qsm_forward

    from qsmiron import GYROMAGNETIC_RATIO_HZ_PER_T
    from qsmiron.simulate.phantom import CODE_GM, CODE_WM
    from qsmiron.simulate.subject import local_field_in_mask, code_table_on_scan, make_pose, scan_properties

    phantom = context.phantom
    pose = make_pose(phantom, settings, **pose_kwargs)
    mask, labels, s0, r2s_sim = scan_properties(context, pose)
    para_t, dia_t, r2_t = planted_tables(phantom)
    para = code_table_on_scan(context, pose, para_t) * mask
    dia = code_table_on_scan(context, pose, dia_t) * mask
    r2 = code_table_on_scan(context, pose, r2_t) * mask
    r2prime = qsm_forward.generate_r2prime(para, -dia).astype(np.float32)
    r2star = np.where(mask, r2 + r2prime, r2s_sim).astype(np.float32)
    te = np.asarray(ECHO_TIMES_S, np.float32)
    sigma = float((s0 * np.exp(-r2star * te[0]))[mask].mean()) / settings.snr
    magnitude = np.empty((*mask.shape, te.size), np.float32)
    weight = np.zeros(mask.shape, np.float32)
    for n, t in enumerate(te):
        amplitude = s0 * np.exp(-r2star * t)
        weight += (amplitude * t) ** 2
        noise = rng.standard_normal((2, *mask.shape), dtype=np.float32) * np.float32(sigma)
        magnitude[..., n] = np.hypot(amplitude + noise[0], noise[1])
    voxel = tuple(float(v) for v in settings.voxel_size_mm)
    net = para - dia
    net_ref = np.where(mask, net - np.float32(net[mask].mean()), 0.0).astype(np.float32)
    local = local_field_in_mask(net_ref, mask, voxel, pose.b0_direction_voxel, workers=-1)
    hz_per_ppm = GYROMAGNETIC_RATIO_HZ_PER_T * settings.field_strength_t * 1e-6
    noise_ppm = np.where(mask, sigma / (2 * np.pi * np.sqrt(np.maximum(weight, 1e-30))) / hz_per_ppm, 0.0)
    field = np.where(mask, local + noise_ppm * rng.standard_normal(mask.shape), 0.0).astype(np.float32)
    tissue = {"GM": code_table_on_scan(context, pose, np.eye(256, dtype=np.float32)[CODE_GM]) > 0.95,
              "WM": code_table_on_scan(context, pose, np.eye(256, dtype=np.float32)[CODE_WM]) > 0.95}
    return dict(pose=pose, mask=mask, labels=labels, para=para, dia=dia, r2=r2, r2star=r2star,
                magnitude=magnitude, field=field.astype(np.float32), noise_ppm=noise_ppm.astype(np.float32),
                tissue=tissue, voxel=voxel)


def regions_of(head):
    from qsmiron.simulate.phantom import cit168_label_table

    mask = head["mask"]
    regions = {name: region & mask for name, region in head["tissue"].items()}
    for entry in cit168_label_table().itertuples():
        region = mask & (head["labels"] == entry.index)
        if region.sum() >= 10:
            regions[f"{entry.region}_{entry.hemisphere}"] = region
    return regions


def score(result, head, regions):
    rows = {}
    for name, region in regions.items():
        rows[name] = (float(head["para"][region].mean()), float(result.paramagnetic_ppm[region].mean()),
                      float(head["dia"][region].mean()), float(result.diamagnetic_ppm[region].mean()))
    mask = head["mask"]
    nrmse = [float(np.linalg.norm(est[mask] - true[mask]) / np.linalg.norm(true[mask]))
             for est, true in ((result.paramagnetic_ppm, head["para"]), (result.diamagnetic_ppm, head["dia"]))]
    return rows, nrmse


def summarise(label, rows, nrmse, seconds, info):
    para_err = np.array([est - true for true, est, _, _ in rows.values()])
    dia_err = np.array([est - true for _, _, true, est in rows.values()])
    print(f"  {label:<26} chi+: median |err| {np.median(np.abs(para_err)):.4f}, worst "
          f"{np.abs(para_err).max():.4f}, mean {para_err.mean():+.4f} ppm, NRMSE {100 * nrmse[0]:.0f} %"
          f" | chi-: median |err| {np.median(np.abs(dia_err)):.4f}, worst {np.abs(dia_err).max():.4f}, "
          f"mean {dia_err.mean():+.4f} ppm, NRMSE {100 * nrmse[1]:.0f} % | {info['iterations']} it, "
          f"{seconds:.0f} s")
    return para_err, dia_err


def simulation_settings(snr: float, voxel_size_mm=(1.5, 1.5, 1.5)):
    from qsmiron.simulate.settings import SimulationSettings

    return SimulationSettings(snr=snr, echo_times_s=ECHO_TIMES_S, repetition_time_s=0.035,
                              voxel_size_mm=voxel_size_mm)


def fitted_r2star(head):
    """The R2* fit of the head's echoes and their root sum of squares (the edges' magnitude)."""
    from qsmiron.recon.r2star import fit_r2star

    fit = fit_r2star(head["magnitude"], head["mask"], ECHO_TIMES_S)
    return fit, np.sqrt(np.sum(head["magnitude"] ** 2, axis=3))


def separate(head, fit, combined, **parameters):
    """``separate_susceptibility`` on a simulated head at 3 T with its noise map and R2* SD."""
    from qsmiron.recon.chisep import separate_susceptibility

    return separate_susceptibility(head["field"], fit.r2star_per_s, head["mask"], head["voxel"],
                                   head["pose"].b0_direction_voxel, field_strength_t=3.0,
                                   magnitude=combined, noise_ppm=head["noise_ppm"],
                                   r2star_sd_per_s=fit.r2star_sd_per_s, **parameters)


def family_errors(result, head, regions) -> dict[str, float]:
    """chi+ and chi- NRMSE (%) and regional |error| (ppb, median and worst) of one separation."""
    rows, nrmse = score(result, head, regions)
    para = np.abs([est - true for true, est, _, _ in rows.values()]) * 1e3
    dia = np.abs([est - true for _, _, true, est in rows.values()]) * 1e3
    return {"para_nrmse": 100 * nrmse[0], "dia_nrmse": 100 * nrmse[1],
            "para_median": float(np.median(para)), "para_worst": float(para.max()),
            "dia_median": float(np.median(dia)), "dia_worst": float(dia.max())}


def run_family(edge_masks: list[str], edge_fractions: list[float]) -> None:
    """Each head of ``FAMILY`` separated with the true R2, each edge mask and edge fraction;
    median / worst over the heads."""
    from qsmiron.simulate.phantom import build_head_phantom
    from qsmiron.simulate.subject import make_context

    phantom = build_head_phantom(1.0)
    rng = np.random.default_rng(21)
    keys = ("para_nrmse", "dia_nrmse", "para_median", "para_worst", "dia_median", "dia_worst")
    print(f"{'head':<24}{'edges':<14}{'chi+ NRMSE %':>13}{'chi- NRMSE %':>13}{'chi+ |err| ppb':>17}"
          f"{'chi- |err| ppb':>17}{'s':>5}   (regional |error|: median / worst)")
    variants = [(mask, fraction) for mask in edge_masks for fraction in edge_fractions]
    results: dict[str, list[dict]] = {f"{mask}@{fraction:g}": [] for mask, fraction in variants}
    for name, voxel, snr, pose_kwargs in FAMILY:
        settings = simulation_settings(snr, voxel)
        head = simulate(make_context(phantom, settings), settings, pose_kwargs, rng)
        regions = regions_of(head)
        fit, combined = fitted_r2star(head)
        for edge_mask, fraction in variants:
            label = f"{edge_mask}@{fraction:g}"
            start = time.perf_counter()
            result = separate(head, fit, combined, r2_per_s=head["r2"], edge_mask=edge_mask,
                              edge_fraction=fraction)
            errors = family_errors(result, head, regions)
            results[label].append(errors)
            print(f"{name:<24}{label:<14}{errors['para_nrmse']:>13.1f}{errors['dia_nrmse']:>13.1f}"
                  f"{errors['para_median']:>9.2f} / {errors['para_worst']:<5.2f}"
                  f"{errors['dia_median']:>9.2f} / {errors['dia_worst']:<5.2f}"
                  f"{time.perf_counter() - start:>5.0f}", flush=True)
    print("\nmedian / worst over the family")
    for label, rows in results.items():
        cells = "  ".join(f"{key} {np.median([r[key] for r in rows]):.2f} / {max(r[key] for r in rows):.2f}"
                          for key in keys)
        print(f"  {label:<14}{cells}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--alpha-factors", type=float, nargs="*", default=[1 / 3, 3.0])
    parser.add_argument("--family", action="store_true",
                        help="the varied heads of FAMILY with each --edge-masks instead")
    parser.add_argument("--edge-masks", nargs="*", default=["per_axis", "voxel"])
    parser.add_argument("--edge-fractions", type=float, nargs="*", default=[0.3])
    args = parser.parse_args()
    if args.family:
        run_family(args.edge_masks, args.edge_fractions)
        return
    from qsmiron.simulate.phantom import build_head_phantom
    from qsmiron.simulate.subject import make_context

    start = time.perf_counter()
    settings = simulation_settings(120.0)
    context = make_context(build_head_phantom(1.0), settings)
    rng = np.random.default_rng(21)
    for head_name, pose_kwargs in POSES.items():
        head = simulate(context, settings, pose_kwargs, rng)
        regions = regions_of(head)
        fit, combined = fitted_r2star(head)
        print(f"\n{head_name} head: grid {head['mask'].shape} at {head['voxel'][0]} mm, "
              f"{int(head['mask'].sum())} brain voxels, B0 in voxel axes "
              f"{np.round(head['pose'].b0_direction_voxel, 3).tolist()}; R2* valid in "
              f"{fit.info['n_valid']} of {fit.info['n_voxels']}")
        runs = [("R2 true", 1.0, "auto"), ("R2 20 % low", 0.8, "auto"),
                ("R2 20 % high", 1.2, "auto"), ("no R2: pseudo-R2 (approx.)", None, "auto")]
        if head_name == "rotated":
            runs += [(f"R2 true, alpha x {f:.2g}", 1.0, f) for f in args.alpha_factors]
        else:
            runs = [runs[0], runs[3]]
        chosen = net_start = None
        for label, factor, alpha in runs:
            t0, c0 = time.perf_counter(), time.process_time()
            r2 = None if factor is None else head["r2"] * np.float32(factor)
            weight = alpha if alpha == "auto" else alpha * chosen
            result = separate(head, fit, combined, r2_per_s=r2, alpha=weight,
                              chi_ppm=None if alpha == "auto" else net_start)
            seconds = time.perf_counter() - t0
            if chosen is None:  # the R2-true run: its weight and net map for the sweep
                chosen = result.info["parameters"]["alpha"]
                net_start = result.paramagnetic_ppm - result.diamagnetic_ppm
            rows, nrmse = score(result, head, regions)
            summarise(label, rows, nrmse, seconds, result.info)
            if label == "R2 true":
                print(f"    (CPU {time.process_time() - c0:.0f} s, alpha {chosen:.3g} ppm mm, lambda_R2' "
                      f"{result.info['lambda_r2prime']:.3f}, field inconsistency "
                      f"{result.info['field_inconsistency_ppm']:.2g} ppm, "
                      f"converged {result.info['converged']}, peak RSS "
                      f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB)")
                if head_name == "rotated":
                    print(f"    {'region':<16}{'chi+ true':>10}{'est':>8}{'chi- true':>11}{'est':>8}  ppm")
                    for name, (pt, pe, dt, de) in rows.items():
                        print(f"    {name:<16}{pt:>10.4f}{pe:>8.4f}{dt:>11.4f}{de:>8.4f}")
    print(f"\nnote: shared 2-core machine (load average {os.getloadavg()[0]:.1f}); total "
          f"{time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
