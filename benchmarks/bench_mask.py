"""Brain masks with the registered template brain: what they keep, what they drop (prints tables).

1. Simulated heads (``qsmiron.simulate``: whole head with skull, sinuses, face and neck in the
   field of view, 1.5 mm, random pose, some with oblique slices): the magnitude mask alone and
   restricted to the template brain (``recon.mask.restrict_to_template_brain`` with the
   probability from ``register.brainmask``) for margins of 0, 2, 4 and 6 mm, against the true
   brain: Dice, volume / true volume, the share of the true brain lost, the share of the mask
   outside the true brain. The simulator's brain is the template's own brain, moved by the
   subject's pose: the registration has an easy target, so these figures bound the brain lost by
   the margin, not the registration's accuracy on real anatomy.
2. The real Philips 3 T scan (``/work/shared/data/philips_3t_2echo``, converted with dcm2niix into
   a temporary folder): ``qsmiron recon`` with the template step off and on: mask volumes at
   each stage, the share of the automatic mask outside the registered template brain, and two
   streak measures of the Chimap: the 99th percentile of |chi| in the final mask, and the
   robust standard deviation (1.4826 x MAD) of chi in the inferior band of the brain (the lowest
   30 mm of the final mask of the template run, in both maps), where the skull-base streaks land.
3. The small real crop (``/work/shared/data/gre_real_small``): the template step must skip with
   its reason.

Run: ``.venv/bin/python benchmarks/bench_mask.py`` (shared data optional; sections skip when absent).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

PHILIPS = Path("/work/shared/data/philips_3t_2echo/dicom_classic")
SMALL = Path("/work/shared/data/gre_real_small")
MARGINS_MM = (0.0, 2.0, 4.0, 6.0)


def dice(a: np.ndarray, b: np.ndarray) -> float:
    return float(2 * (a & b).sum() / max(a.sum() + b.sum(), 1))


def simulated_heads(n: int = 4) -> None:
    from qsmiron.recon.mask import brain_mask, restrict_to_template_brain
    from qsmiron.register.brainmask import template_brain_probability
    from qsmiron.simulate.phantom import build_head_phantom, population_chi
    from qsmiron.simulate.settings import SimulationSettings
    from qsmiron.simulate.subject import make_context, sample_pose, simulate_scan

    settings = SimulationSettings(oblique_probability=0.5)
    phantom = build_head_phantom(1.0)
    context = make_context(phantom, settings)
    chi_table = phantom.chi_table(population_chi(settings))
    print("== simulated heads: mask against the true brain ==")
    print(f"{'case':8s} {'mask':>18s} {'Dice':>6s} {'vol/true':>9s} {'brain lost':>11s} {'outside':>8s}  template s")
    for seed in range(n):
        rng = np.random.default_rng(100 + seed)
        pose = sample_pose(rng, settings, phantom)
        scan = simulate_scan(context, chi_table, pose, rng)
        magnitude = np.stack(scan.magnitude, axis=-1).astype(np.float32)
        voxel = settings.voxel_size_mm
        truth = scan.mask
        head = brain_mask(magnitude, voxel)
        found = template_brain_probability(magnitude, pose.affine)
        rows = [("magnitude", head)]
        if found.probability is not None:
            rows += [(f"+template {m:.0f} mm", restrict_to_template_brain(head, found.probability, voxel,
                                                                          margin_mm=m)[0]) for m in MARGINS_MM]
        label = f"seed {seed}" + (" obl" if np.any(pose.oblique_deg) else "")
        for name, mask in rows:
            print(f"{label:8s} {name:>18s} {dice(mask, truth):6.3f} {mask.sum() / truth.sum():9.2f} "
                  f"{1 - (mask & truth).sum() / truth.sum():11.4f} {(mask & ~truth).sum() / mask.sum():8.3f}  "
                  f"{found.info.get('seconds', '')}")
        if found.probability is None:
            print(f"         template skipped: {found.info['reason']}")


def _recon(magnitudes, phases, out: Path, template: bool) -> dict:
    config = out.with_suffix(".toml")
    config.write_text(f"[recon.mask.magnitude]\ntemplate_brain = {'true' if template else 'false'}\n")
    command = [sys.executable, "-m", "qsmiron", "recon", "-o", str(out), "--config", str(config)]
    for m in magnitudes:
        command += ["--magnitude", str(m)]
    for p in phases:
        command += ["--phase", str(p)]
    start = time.perf_counter()
    subprocess.run(command, check=True)
    record = json.loads((out / "recon.json").read_text())
    record["wall_s"] = time.perf_counter() - start
    return record


def philips() -> None:
    import nibabel as nib

    from qsmiron.io.dicom import convert_dicom_to_bids
    from qsmiron.register.brainmask import template_brain_probability

    if not PHILIPS.exists():
        print("\n== Philips 3 T scan: not found, skipped ==")
        return
    with tempfile.TemporaryDirectory(prefix="bench_mask_") as scratch:
        root = Path(scratch)
        convert_dicom_to_bids(PHILIPS, root / "bids", subject="philips")
        anat = root / "bids" / "sub-philips" / "anat"
        magnitudes = sorted(anat.glob("*part-mag*.nii.gz"))
        phases = sorted(anat.glob("*part-phase*.nii.gz"))
        runs = {name: _recon(magnitudes, phases, root / name, flag)
                for name, flag in (("magnitude only", False), ("with template", True))}
        first = nib.load(str(magnitudes[0]))
        voxel_ml = float(np.prod(first.header.get_zooms()[:3])) / 1000.0
        found = template_brain_probability(first.get_fdata(), first.affine)
        brain = found.probability >= 0.5
        chis = {name: nib.load(str(root / name / "Chimap.nii.gz")).get_fdata() for name in runs}
        masks = {name: nib.load(str(root / name / "mask.nii.gz")).get_fdata() > 0 for name in runs}
        # Inferior band: the lowest 30 mm (world z) of the template run's final mask.
        ijk = np.argwhere(masks["with template"])
        z = (ijk @ first.affine[:3, :3].T + first.affine[:3, 3])[:, 2]
        band = np.zeros(brain.shape, bool)
        low = ijk[z < z.min() + 30.0]
        band[tuple(low.T)] = True
        band &= masks["magnitude only"]
        print("\n== Philips 3 T, 3 mm, 2 echoes: recon without and with the template brain ==")
        print(f"template registration: {json.dumps({k: v for k, v in found.info.items() if k != 'template'})}")
        print(f"{'run':16s} {'auto mask':>10s} {'refined':>8s} {'final':>8s} {'outside tpl':>11s} "
              f"{'final outside':>13s} {'p99|chi|':>9s} {'band rSD':>9s} {'wall s':>7s}")
        for name, record in runs.items():
            steps = {s["step"]: s for s in record["steps"]}
            auto = steps["mask"]["notes"]["volume_ml"]
            refined = steps["mask_refinement"]["notes"]["mask_after_refinement"]["volume_ml"]
            final = masks[name].sum() * voxel_ml
            notes = steps["mask"]["notes"].get("template_brain", {})
            outside = notes.get("outside_template_brain_before")
            final_outside = (masks[name] & ~brain).sum() / masks[name].sum()
            chi = chis[name]
            p99 = np.percentile(np.abs(chi[masks[name]]), 99)
            values = chi[band]
            robust = 1.4826 * np.median(np.abs(values - np.median(values)))
            print(f"{name:16s} {auto:8.0f}mL {refined:6.0f}mL {final:6.0f}mL "
                  f"{'' if outside is None else format(outside, '.3f'):>11s} {final_outside:13.3f} "
                  f"{p99:9.3f} {robust:9.4f} {record['wall_s']:7.1f}")
        print(f"band: {band.sum()} voxels ({band.sum() * voxel_ml:.0f} mL) in both final masks")


def small_crop() -> None:
    import nibabel as nib

    from qsmiron.register.brainmask import template_brain_probability

    if not SMALL.exists():
        print("\n== small real crop: not found, skipped ==")
        return
    image = nib.load(str(SMALL / "mag.nii.gz"))
    found = template_brain_probability(image.get_fdata(), image.affine)
    print(f"\n== small real crop {image.shape}: template used = {found.info['used']}; "
          f"reason: {found.info.get('reason')} ({found.info['seconds']:.2f} s)")


if __name__ == "__main__":
    simulated_heads()
    philips()
    small_crop()
