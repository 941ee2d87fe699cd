"""Background field removal and total field inversion over the head family of issue 9.

Heads: ``qsmiron.simulate.heads.FAMILY`` (12 MNI/CIT168 heads varying edge contrast, skull,
sinuses, obliquity 0-25 deg, slices 1-2.5 mm, mask errors +-1-2 mm; qsm-forward's signal
model, 5 echoes 4-28 ms, SNR 120). ``--frame slab`` (default) computes the field with the
FFT dipole model on the tilted slab grid, as a simulator working in image axes does (and,
by its numbers, as the issue's independent heads were made); ``--frame scanner`` computes
it on a scanner-aligned grid and interpolates it onto the slab, as a scanner measures it.
The two differ by a simulation artefact that decides the ranking (``--mechanism``).

Per head: the total field from the simulated phase (``qsmiron.recon.field.total_field``:
ROMEO + echo fit, with the head's erroneous mask as the user mask), then per method the
background removal and the default inversion (or TFI, which does both), referencing to the
whole-brain mean, and the metrics of ``qsmiron.recon.metrics`` against the truth inside
(output mask & true brain): local-field NRMSE (%), Chimap NRMSE (%), XSIM, regional mean
absolute error (ppb, CIT168 regions) and slope, the same two over the regions with at least
``qsmiron roi``'s ``min_coverage`` (0.9) of their voxels inside (``reg.cov``, ``sl.cov``; ``part``
counts the regions left out, which ``qsmiron roi`` reports with ``flag_partial_coverage``), the
seconds (wall and CPU) of the background + inversion steps. Then median and worst per method.

``--mechanism`` prints why the two phantom families disagree, on noise-free true total
fields inside the true brain mask (local-field NRMSE against the truth in each method's
mask): (1) one family head (h03) as simulated, without background sources, without edge
contrast (outer 4 mm of the brain and the CSF around it uniform), without either, and with
the field computed in the scanner frame, each from the total field and from the true
local field alone (what a method loses on the latter is the harmonic part of the tissue
field); (2) one air sphere 6 mm from that brain: its analytic field against the FFT field
of the binary, partial-volume and smoothed sphere; (3) the old ellipsoid head of
``bench_recon.py``.

``--acquisition`` simulates the heads with another acquisition than the family's 3 T, 5 echoes
of 4-28 ms at SNR 120 (``qsmiron.simulate.heads.ACQUISITIONS``: 1.5 T, 7 T, 3 and 2 echoes,
SNR 40), so that a default is judged on protocols as well as on anatomy. ``--veins`` adds the
deep cerebral veins of ``qsmiron.simulate.veins`` (venous blood, +0.40 ppm, a few millimetres
from the ventral pallidum, the substantia nigra and the thalamus) to every head.

``--drawn N`` replaces the family by N held-out heads drawn at random from its ranges
(``qsmiron.simulate.head_draws``; ``--draw-seed`` picks the draw), never used to choose a default.
``--own-mask`` runs ``qsmiron recon``'s defaults end to end with the recon's own brain mask (template
brain, magnitude mask, phase-quality refinement) instead of each head's given mask, as a user
gets them (``--config`` for other settings), with ITK on one thread as ``pipeline.reproducible_registration``
(default on) asks; each row adds the mask's agreement with the true brain.

    .venv/bin/python benchmarks/bench_bgremove.py [--methods ismv,lbv,pdf,tfi] [--heads 1,2]
        [--frame slab|scanner] [--acquisition 1.5T|7T|3echo|2echo|snr40] [--veins] [--mechanism]
        [--drawn N [--draw-seed S]] [--own-mask [--config FILE]] [--cache DIR]
"""

from __future__ import annotations

import argparse
import dataclasses
import glob
import json
import os
import resource
import time
from pathlib import Path

import numpy as np

DEFAULT_METHODS = "ismv,vsharp,lbv,pdf,tfi"
ARRAYS = ("magnitude", "phase_rad", "chi_ppm", "brain", "mask", "local_field_ppm",
          "total_field_ppm", "labels", "affine", "b0_direction")


def _peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0 ** 2


def load_head(spec, cache: Path):
    """The simulated head of ``spec``, from the cache folder or simulated (and cached).

    A head cached by another ``HEADS_REVISION`` is simulated again, and what was derived from
    it (``{name}.*.npz``: the field stage) is deleted."""
    from qsmiron.simulate.heads import HEADS_REVISION, SimulatedHead, simulate_head

    path = cache / f"{spec.name}.npz"
    meta_path = cache / f"{spec.name}.json"
    meta = json.loads(meta_path.read_text()) if path.exists() and meta_path.exists() else {}
    if meta.get("heads_revision") == HEADS_REVISION:
        data = np.load(path)
        return SimulatedHead(spec=spec, echo_times_s=tuple(meta["echo_times_s"]),
                             field_strength_t=meta["field_strength_t"],
                             voxel_size_mm=tuple(meta["voxel_size_mm"]), info=meta["info"],
                             **{k: data[k] for k in ARRAYS})
    head = simulate_head(spec)
    cache.mkdir(parents=True, exist_ok=True)
    for derived in cache.glob(f"{glob.escape(spec.name)}.*.npz"):
        derived.unlink()
    np.savez(path, **{k: getattr(head, k) for k in ARRAYS})
    meta_path.write_text(json.dumps(
        {"heads_revision": HEADS_REVISION, "echo_times_s": head.echo_times_s,
         "field_strength_t": head.field_strength_t, "voxel_size_mm": head.voxel_size_mm, "info": head.info,
         "spec": dataclasses.asdict(spec)}))
    return head


def field_stage(head, cache: Path) -> dict:
    """Total field (ppm), its noise (ppm; +inf where the echo fit failed, as the recon passes
    it on to background removal) and the inversion's noise (times the fit's local misfit
    factor, as the recon passes it on to the inversion), the mask used and the magnitude whose
    edges the inversion keeps (the last echo's, as ``ReconState.edge_magnitude`` in the recon)."""
    from qsmiron.recon.stages import ReconState

    path = cache / f"{head.spec.name}.field-misfit-dephasing.npz"
    if path.exists():
        stage = dict(np.load(path))
    else:
        stage = measured_field(head, head.phase_rad)
        np.savez(path, **stage)
    stage["magnitude"] = ReconState(voxel_size_mm=head.voxel_size_mm, magnitude=head.magnitude).edge_magnitude()
    return stage


def measured_field(head, phase_rad: np.ndarray, settings=None) -> dict:
    """Total field, its noise and the inversion's noise (ppm) and the mask from a head's phase
    (``qsmiron.recon.field.total_field``, the head's erroneous mask as the user mask)."""
    from qsmiron.recon.chain import ppm_per_hz
    from qsmiron.recon.field import total_field

    to_ppm = ppm_per_hz(head.field_strength_t)
    result = total_field(head.magnitude, phase_rad, head.mask, head.voxel_size_mm, head.echo_times_s,
                         settings=settings, user_mask=True, field_strength_t=head.field_strength_t)
    return {"field_ppm": (result.field_hz * to_ppm).astype(np.float32),
            "noise_ppm": (result.data_noise_hz * to_ppm).astype(np.float32),
            "inversion_noise_ppm": (result.inversion_noise_hz * to_ppm).astype(np.float32),
            "mask": np.asarray(result.mask, bool)}


def run_method(method: str, stage: dict, head) -> dict:
    """Chimap (referenced), local field and output mask of one method, with its seconds."""
    from qsmiron.recon.bgremove import method_parameters, remove_background
    from qsmiron.recon.dipole import forward_field
    from qsmiron.recon.invert import invert
    from qsmiron.recon.invert.tfi import tfi

    voxel, b0 = head.voxel_size_mm, head.b0_direction
    field, mask = stage["field_ppm"], stage["mask"]
    wall, cpu = time.perf_counter(), time.process_time()
    if method == "tfi":
        chi, info = tfi(field, mask, voxel, b0, magnitude=stage["magnitude"],
                        noise_ppm=stage["inversion_noise_ppm"])
        out_mask = mask
        wall_bg = cpu_bg = 0.0
        local = forward_field(np.where(mask, chi, 0), voxel, b0) * mask
    else:
        # As the recon passes it: every method that takes the noise map gets it.
        params = {"noise": stage["noise_ppm"]} if "noise" in method_parameters(method) else {}
        local, out_mask, info = remove_background(field, mask, voxel, b0, method=method,
                                                  return_info=True, **params)
        wall_bg, cpu_bg = time.perf_counter() - wall, time.process_time() - cpu
        result = invert(local, out_mask, voxel, b0, magnitude=stage["magnitude"],
                        noise_ppm=stage["inversion_noise_ppm"])
        chi = result.chi_ppm
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    chi = np.where(out_mask, chi - chi[out_mask].mean(), 0).astype(np.float32)
    return {"chi": chi, "local": local, "mask": out_mask, "wall": wall, "cpu": cpu,
            "wall_bg": wall_bg, "cpu_bg": cpu_bg, "info": info}


def run_default_recon(head, settings=None) -> dict:
    """``qsmiron recon``'s defaults (or ``settings``, a ``ReconSettings``) end to end on a head,
    its own brain mask included: the template brain registered to the magnitude, the magnitude
    mask restricted to it and refined by phase quality (the head's erroneous mask is not used);
    Chimap referenced to its mean."""
    from qsmiron.recon.chain import reconstruct_arrays
    from qsmiron.register.brainmask import template_brain_probability

    wall, cpu = time.perf_counter(), time.process_time()
    template = template_brain_probability(head.magnitude, head.affine)
    result = reconstruct_arrays(head.magnitude, head.phase_rad, head.voxel_size_mm, head.b0_direction,
                                head.echo_times_s, head.field_strength_t, settings=settings,
                                brain_probability=template.probability, brain_probability_notes=template.info)
    mask = np.asarray(result.mask, bool)
    chi = np.where(mask, result.chi_ppm - result.chi_ppm[mask].mean(), 0).astype(np.float32)
    background = next((s.notes for s in result.steps if s.step == "background"), {})
    pdf_iterations = background.get("pdf", {}).get("iterations")
    return {"chi": chi, "local": result.local_ppm, "mask": mask, "wall": time.perf_counter() - wall,
            "cpu": time.process_time() - cpu, "info": {"template_used": bool(template.info.get("used")),
                                                       "pdf_iterations": pdf_iterations}}


def mask_agreement(mask: np.ndarray, head) -> str:
    """Dice with the true brain, and the shares of the mask outside it and of the brain left out."""
    inside = (mask & head.brain).sum()
    return (f"mask Dice {2 * inside / (mask.sum() + head.brain.sum()):.3f}, "
            f"{100 * (mask & ~head.brain).sum() / mask.sum():.1f} % of it outside the brain, "
            f"{100 * (1 - inside / head.brain.sum()):.1f} % of the brain left out")


CORE_DEPTH_MM = 5.0
"""The common core: the true brain eroded by 5 mm (every method keeps it), for fair
comparisons between methods that erode different amounts."""


def score(run: dict, head) -> dict:
    from scipy import ndimage

    from qsmiron.recon.metrics import nrmse, regional_agreement, xsim
    from qsmiron.roi.settings import RoiSettings

    region = run["mask"] & head.brain
    core = region & (ndimage.distance_transform_edt(head.brain, sampling=head.voxel_size_mm) > CORE_DEPTH_MM)
    regional = regional_agreement(run["chi"], head.chi_ppm, head.labels, region)
    # The regions qsmiron roi reports without flag_partial_coverage (at least its min_coverage of
    # the region inside the mask); the others are analysed as measured but with a warning.
    covered = regional_agreement(run["chi"], head.chi_ppm, head.labels, region,
                                 min_coverage=RoiSettings().min_coverage)
    vep = [lab for lab in regional.labels if lab % 100 == 12]  # CIT168 VeP: 12 and 112
    return {"local_nrmse": nrmse(run["local"], head.local_field_ppm, region),
            "chi_nrmse": nrmse(run["chi"], head.chi_ppm, region),
            "core_nrmse": nrmse(run["chi"], head.chi_ppm, core),
            "xsim": xsim(run["chi"], np.where(region, head.chi_ppm, 0), region),
            "regional_ppb": regional.mean_abs_error_ppb, "bias_ppb": regional.bias_ppb,
            "slope": regional.slope, "regional_covered_ppb": covered.mean_abs_error_ppb,
            "slope_covered": covered.slope, "partial_regions": len(regional.labels) - len(covered.labels),
            "vep_ppb": float(np.mean([regional.error_of(v) for v in vep])) if vep else float("nan"),
            "kept": float(region.sum() / head.brain.sum()),
            "wall": run["wall"], "cpu": run["cpu"]}


COLUMNS = [("local_nrmse", "locNRMSE%", "{:9.1f}"), ("chi_nrmse", "chiNRMSE%", "{:9.1f}"),
           ("core_nrmse", "core%", "{:6.1f}"),
           ("xsim", "XSIM", "{:6.3f}"), ("regional_ppb", "reg.ppb", "{:7.1f}"),
           ("bias_ppb", "bias", "{:6.1f}"), ("vep_ppb", "VeP", "{:6.1f}"), ("slope", "slope", "{:6.2f}"),
           ("regional_covered_ppb", "reg.cov", "{:7.1f}"), ("slope_covered", "sl.cov", "{:6.2f}"),
           ("partial_regions", "part", "{:4.0f}"),
           ("kept", "kept", "{:5.2f}"), ("wall", "wall s", "{:7.1f}"), ("cpu", "cpu s", "{:6.1f}")]


def _row(label: str, values: dict) -> str:
    return f"{label:<34}" + " ".join(fmt.format(values[key]) for key, _, fmt in COLUMNS)


def _header() -> str:
    return f"{'head / method':<34}" + " ".join(f"{title:>{len(fmt.format(0.0))}}" for _, title, fmt in COLUMNS)


THICK_SLICES_MM = 2.0
"""Heads whose largest voxel edge reaches this are summarised apart as well (the consensus
checklist's thick slices, ``qsmiron.io.acquisition.THICK_SLICE_MM``): their nuclei read lowest."""


def median_and_worst(rows: list[dict]) -> tuple[dict, dict]:
    """Median and worst of each column over ``rows`` (worst: highest error, lowest XSIM and kept
    share, slope furthest from 1; bias and VeP the largest in size, with their sign). VeP's
    median is of its size (the README's median |VeP error|)."""
    median = {k: float(np.median([r[k] for r in rows])) for k, *_ in COLUMNS}
    median["vep_ppb"] = float(np.median([abs(r["vep_ppb"]) for r in rows]))
    worst = {k: float(np.max([r[k] for r in rows])) for k, *_ in COLUMNS}
    worst["xsim"] = float(np.min([r["xsim"] for r in rows]))
    worst["kept"] = float(np.min([r["kept"] for r in rows]))
    for slope in ("slope", "slope_covered"):
        worst[slope] = float(max((r[slope] for r in rows), key=lambda s: abs(s - 1)))
    worst["bias_ppb"] = float(max((r["bias_ppb"] for r in rows), key=abs))
    worst["vep_ppb"] = float(max((r["vep_ppb"] for r in rows), key=abs))
    return median, worst


def summarise(results: dict[str, list[dict]], specs, *, given_masks: bool = True) -> None:
    """Median and worst per method (``median_and_worst``) over the heads whose given mask stays
    inside the skull; the others are named, not mixed in (``simulate.head_draws.mask_reaches_skull``:
    no method survives a mask in bone, h09); with the recon's own masks (``given_masks`` False)
    every head counts. When both thin and thick slices are present, each group again."""
    from qsmiron.simulate.head_draws import mask_reaches_skull

    keep = [not (given_masks and mask_reaches_skull(spec)) for spec in specs]
    left_out = [spec.name for spec, kept in zip(specs, keep) if not kept]
    print(f"\nsummary over {sum(keep)} heads: median / worst (VeP: median of its size, worst with its sign)"
          + (f" (left out, mask into the skull: {', '.join(left_out)})" if left_out else ""))
    print(_header())
    thick = [max(spec.voxel_size_mm) >= THICK_SLICES_MM for spec in specs]
    groups = [("", lambda i: True)]
    if any(t and k for t, k in zip(thick, keep)) and any(not t and k for t, k in zip(thick, keep)):
        groups += [(f" <{THICK_SLICES_MM:g}mm", lambda i: not thick[i]), (f" >={THICK_SLICES_MM:g}mm", lambda i: thick[i])]
    for method, all_rows in results.items():
        for suffix, member in groups:
            rows = [row for i, row in enumerate(all_rows) if keep[i] and member(i)]
            if not rows:
                continue
            median, worst = median_and_worst(rows)
            label = f"{method}{suffix} ({len(rows)})" if suffix else method
            print(_row(f"{label} median", median))
            print(_row(f"{label} worst", worst))


def run_family(specs, methods, cache: Path, own_mask: bool = False, settings=None) -> dict[str, list[dict]]:
    if own_mask:
        methods = ["recon"]
    results: dict[str, list[dict]] = {m: [] for m in methods}
    print(_header())
    for spec in specs:
        head = load_head(spec, cache)
        if own_mask:
            run = run_default_recon(head, settings)
            results["recon"].append(score(run, head))
            pdf_iterations = run["info"]["pdf_iterations"]
            print(_row(f"{spec.name[:24]} recon", results["recon"][-1]) + "  " + mask_agreement(run["mask"], head)
                  + ("" if pdf_iterations is None else f" PDF {pdf_iterations} it.")
                  + ("" if run["info"]["template_used"] else " (template step skipped)"), flush=True)
            continue
        stage = field_stage(head, cache)
        for method in methods:
            values = score(run_method(method, stage, head), head)
            results[method].append(values)
            print(_row(f"{spec.name[:24]} {method}", values), flush=True)
    return results


# --- why the phantom families disagree (--mechanism) ---------------------------------------
def _methods():
    from qsmiron.recon.bgremove import remove_background

    def run(name):
        return lambda field, mask, voxel, b0: remove_background(field, mask, voxel, b0, method=name)
    return {"lbv": run("lbv"), "ismv": run("ismv"), "pdf": run("pdf")}


def _decompose(total, local_truth, brain, voxel, b0) -> str:
    """Per method: NRMSE from the total field / from the true local field alone."""
    from qsmiron.recon.metrics import nrmse

    cells = []
    for name, method in _methods().items():
        from_total, kept = method(total, brain, voxel, b0)
        from_local, kept_local = method(np.where(brain, local_truth, 0), brain, voxel, b0)
        cells.append(f"{name} {nrmse(from_total, local_truth, kept):6.1f} / "
                     f"{nrmse(from_local, local_truth, kept_local):5.1f}")
    ratio = np.linalg.norm((total - local_truth)[brain]) / np.linalg.norm(local_truth[brain])
    return " | ".join(cells) + f" | background/local {ratio:5.1f}"


def family_head_versions(cache: Path) -> None:
    from qsmiron.simulate.heads import FAMILY, variant

    base = variant(FAMILY[2], mask_error_mm=0.0)
    versions = {"as simulated (slab frame)": {}, "no background": {"background": False},
                "no edge contrast": {"edge_contrast": False},
                "neither": {"background": False, "edge_contrast": False},
                "background smoothed 0.6 mm": {"background_psf_mm": 0.6},
                "field in the scanner frame": {"field_frame": "scanner"}}
    print("1. h03 (25 deg, 1.2 mm slices, true mask): NRMSE % from the total field / from the "
          "true local field alone")
    for label, changes in versions.items():
        head = load_head(variant(base, **changes) if changes else base, cache)
        print(f"   {label:<28} " + _decompose(head.total_field_ppm, head.local_field_ppm, head.brain,
                                             head.voxel_size_mm, head.b0_direction), flush=True)


def air_sphere(cache: Path) -> None:
    from scipy import ndimage

    from qsmiron.recon.dipole import forward_field
    from qsmiron.recon.metrics import nrmse
    from qsmiron.simulate.heads import FAMILY, variant

    head = load_head(variant(FAMILY[2], mask_error_mm=0.0), cache)
    brain, truth, voxel, b0 = head.brain, head.local_field_ppm, head.voxel_size_mm, head.b0_direction
    index = np.argwhere(brain)
    lo, hi = index.min(0), index.max(0)
    cx, cz = (lo[0] + hi[0]) // 2, (lo[2] + hi[2]) // 2 - int(round(24 / voxel[2]))
    edge_y = np.flatnonzero(brain[cx, :, cz]).max()
    radius = 10.0
    centre = np.array([cx * voxel[0], (edge_y + 1) * voxel[1] + 6.0 + radius, cz * voxel[2]])
    axes = [np.arange(n) * v for n, v in zip(brain.shape, voxel)]
    x, y, z = np.meshgrid(*axes, indexing="ij", sparse=True)
    d2 = (x - centre[0]) ** 2 + (y - centre[1]) ** 2 + (z - centre[2]) ** 2
    b = np.asarray(b0, float) / np.linalg.norm(b0)
    r = np.sqrt(d2)
    with np.errstate(invalid="ignore", divide="ignore"):
        cos = ((x - centre[0]) * b[0] + (y - centre[1]) * b[1] + (z - centre[2]) * b[2]) / r
        analytic = np.where(r > radius, 9.4 * radius ** 3 / (3 * r ** 3) * (3 * cos ** 2 - 1), 0.0)
    offsets = (np.arange(4) + 0.5) / 4 - 0.5
    partial = np.zeros(brain.shape, np.float32)
    for ox in offsets * voxel[0]:
        for oy in offsets * voxel[1]:
            for oz in offsets * voxel[2]:
                partial += ((x + ox - centre[0]) ** 2 + (y + oy - centre[1]) ** 2
                            + (z + oz - centre[2]) ** 2) <= radius ** 2
    partial /= 64.0
    binary = (d2 <= radius ** 2).astype(np.float32)
    fields = {"analytic (harmonic)": analytic,
              "FFT, binary sphere": forward_field(9.4 * binary, voxel, b0, pad_factor=1.0),
              "FFT, partial volume": forward_field(9.4 * partial, voxel, b0, pad_factor=1.0),
              "FFT, smoothed 0.6 mm": forward_field(ndimage.gaussian_filter(
                  9.4 * binary, [0.6 / v for v in voxel]), voxel, b0, pad_factor=1.0)}
    print("2. one air sphere 6 mm from h03's brain added to its true local field: NRMSE % "
          "(background-induced part), and the field's RMS difference from the analytic one")
    for label, background in fields.items():
        total = np.where(brain, truth + background, 0).astype(np.float32)
        cells = []
        for name, method in _methods().items():
            with_bg, kept = method(total, brain, voxel, b0)
            alone, _ = method(np.where(brain, truth, 0), brain, voxel, b0)
            induced = np.linalg.norm((with_bg - alone)[kept]) / np.linalg.norm(truth[kept] - truth[kept].mean())
            cells.append(f"{name} {nrmse(with_bg, truth, kept):5.1f} ({100 * induced:4.1f})")
        difference = 1e3 * np.sqrt(np.mean((background - analytic)[brain] ** 2))
        print(f"   {label:<22} " + " | ".join(cells) + f" | vs analytic {difference:4.2f} ppb", flush=True)


def old_phantom() -> None:
    import bench_recon  # the sibling script (benchmarks/ is on sys.path)

    from qsmiron.recon.dipole import forward_field

    shape = bench_recon.RECON_SHAPE
    chi, chi_total, brain, *_ = bench_recon.head_phantom(shape)
    total = forward_field(chi_total - np.float32(bench_recon.CHI_AIR_PPM), (1, 1, 1), (0, 0, 1), pad_factor=0.5)
    # The benchmark's truth: the field of the brain's own (not demeaned) susceptibility.
    truth = forward_field(chi, (1, 1, 1), (0, 0, 1), pad_factor=0.5)
    edge = chi[brain & ~np.roll(brain, 1, 0)]
    print(f"3. the old ellipsoid head (chi at the brain edge: mean {1e3 * edge.mean():.1f} ppb, "
          f"no cortex/CSF contrast): NRMSE % from the total / from the true local field")
    print("   " + _decompose(np.where(brain, total, 0).astype(np.float32), truth, brain, (1.0, 1.0, 1.0),
                             (0.0, 0.0, 1.0)), flush=True)


def mechanism(cache: Path) -> None:
    family_head_versions(cache)
    air_sphere(cache)
    old_phantom()


def main() -> None:
    from qsmiron.simulate.heads import ACQUISITIONS, FAMILY, variant

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", default=DEFAULT_METHODS)
    parser.add_argument("--heads", default=None, help="1-based indices into FAMILY, comma-separated")
    parser.add_argument("--drawn", type=int, default=None, metavar="N",
                        help="N held-out heads drawn from the family's ranges (simulate.head_draws) "
                             "instead of the family")
    parser.add_argument("--draw-seed", type=int, default=0, help="which held-out draw (with --drawn)")
    parser.add_argument("--frame", choices=("slab", "scanner"), default="slab",
                        help="where the FFT dipole model runs (simulate.heads.HeadSpec.field_frame)")
    parser.add_argument("--acquisition", choices=tuple(ACQUISITIONS), default=None,
                        help="simulate the heads with an acquisition of simulate.heads.ACQUISITIONS "
                             "instead of the family's")
    parser.add_argument("--veins", action="store_true",
                        help="add the deep cerebral veins of simulate.veins to every head")
    parser.add_argument("--own-mask", action="store_true",
                        help="the default recon end to end with its own brain mask (template brain, "
                             "phase-quality refinement) instead of each head's erroneous mask; "
                             "--methods is ignored")
    parser.add_argument("--config", default=None, help="with --own-mask: a settings file (TOML or JSON) "
                                                        "for the recon instead of the defaults")
    parser.add_argument("--mechanism", action="store_true")
    parser.add_argument("--cache", default=os.environ.get("QSMIRON_HEADS_CACHE", "/tmp/qsmiron_heads"))
    args = parser.parse_args()
    cache = Path(args.cache)
    specs = list(FAMILY) if args.heads is None else [FAMILY[int(i) - 1] for i in args.heads.split(",")]
    if args.drawn is not None:
        from qsmiron.simulate.head_draws import drawn_heads

        specs = list(drawn_heads(args.drawn, args.draw_seed))
        if args.heads is not None:
            specs = [specs[int(i) - 1] for i in args.heads.split(",")]
    if args.frame != "slab":
        specs = [variant(s, field_frame=args.frame) for s in specs]
    if args.veins:
        specs = [variant(s, veins=True) for s in specs]
    if args.acquisition is not None:
        specs = [dataclasses.replace(s, name=f"{s.name}[{args.acquisition}]", **ACQUISITIONS[args.acquisition])
                 for s in specs]
    if args.mechanism:
        mechanism(cache)
        return
    print(f"{len(specs)} heads ({args.frame} frame, acquisition {args.acquisition or 'of the family'}"
          f"{', deep veins' if args.veins else ''}), "
          f"{'the default recon with its own mask' if args.own_mask else f'methods {args.methods}'}; "
          f"cache {cache}; cores "
          f"{len(os.sched_getaffinity(0))} (shared machine: wall pessimistic, CPU shown too)")
    from qsmiron.config import QsmironConfig, load_config

    config = QsmironConfig() if args.config is None else load_config(args.config)
    if args.own_mask and config.pipeline.reproducible_registration:
        # As qsmiron recon does by default: one ITK thread, so that the template registration of
        # the automatic mask, and with it the mask, repeats exactly.
        from qsmiron.register.ants_backend import pin_itk_to_one_thread

        pin_itk_to_one_thread()
    results = run_family(specs, args.methods.split(","), cache, own_mask=args.own_mask, settings=config.recon)
    summarise(results, specs, given_masks=not args.own_mask)
    print(f"peak RSS {_peak_rss_gb():.2f} GB")


if __name__ == "__main__":
    main()
