"""Registration QC: the similarity of good registrations and of deliberately wrong ones, over varied heads.

Each head goes through what ``qsmiron.roi.api.roi_from_files`` does before measuring (mask
from the magnitude, N4, ANTs to the MNI152NLin2009cAsym brain, the subject resampled onto the
template grid: ``bench_head_check.register_head``). The registration found is "good"; "bad"
ones are that registration composed with a known error in template space (a transform put
first in ANTs' list, so the subject is resampled once): translations, rotations about the
template brain's centre, isotropic scalings, a left-right flip; and, with ``--failures``, a
registration that ANTs gets wrong by itself (``natural_failures``: the whole head, skull and
neck, given as the brain; the brain mask eroded by 4 mm, as a 2-echo scan's QSM mask is). The
brain mask is the reconstruction's automatic one (``recon_mask``: the magnitude's, restricted to
the registered template brain), which a pipeline run hands to the registration
(``RegistrationSettings.subject_mask="auto"``).

Heads: the real Philips 3 T scan (3 mm, TE 2.3 ms; skipped when ``../shared/data`` is absent),
the template-warped phantom and subjects of ``qsmiron.simulate`` (``bench_head_check.heads``),
and heads of the issue-9 family (``qsmiron.simulate.heads``, qsm-forward's signal model, first
echo TE 4 ms; cached in ``--cache`` as ``bench_bgremove`` does).

Printed per head, registration settings and perturbation: the whole-brain NMI (Studholme,
inside the template brain), the brain Dice, the core correlation (``roi.qc.core_similarity``)
and the candidates of ``qsmiron.roi.qc``: the residual misalignment found by block matching
(``residual_shift_mm``: each block of the SyN domain, the atlas regions plus ``syn_margin_mm``
where a run registers deformably and measures, matched to the subject over integer shifts by its
own NMI; contrast-blind, as the position of an optimum does not depend on how high the optimum
is) and the NMI peak (how much one-voxel shifts of the whole subject
lower its NMI, relative to NMI - 1). What a perturbation does to the atlas is printed beside
it: the Dice of the ventral pallidum (VeP, left and right mean) and the median over the
CIT168 regions, with their own copy moved by the same error.

    .venv/bin/python benchmarks/bench_registration_qc.py [--n-sim 3] [--family 4,5,8]
        [--configs default,fast,affine3] [--failures] [--only Philips,family]

Settings: "default", "fast" (3 mm, SyN 40/10: the ROI tests' and the real-data test's), "affine3"
(3 mm affine, no SyN: the head-check tests'). What was measured and the threshold chosen from it:
the comment above ``RegistrationSettings.max_residual_shift_mm``.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np

METRICS = {  # name: (higher is better, format)
    "nmi": (True, "6.3f"), "brain_dice": (True, "6.3f"), "core_correlation": (True, "6.3f"),
    "peak_drop": (True, "6.3f"), "shift_median_mm": (False, "6.2f"), "shift_p75_mm": (False, "6.2f"),
}

PERTURBATIONS = ([("shift", mm, axis) for mm in (2.0, 3.0, 4.0) for axis in range(3)]
                 + [("shift", mm, 2) for mm in (6.0, 10.0)]
                 + [("rotate", deg, axis) for deg in (3.0, 5.0) for axis in range(3)]
                 + [("rotate", deg, 0) for deg in (10.0, 20.0)]
                 + [("scale", s, None) for s in (0.9, 1.15)] + [("flip", 0.0, 0)])
"""(kind, size, axis): a translation (mm) along, a rotation (degrees) about an axis of the
template (ANTs' LPS), an isotropic scaling, a left-right flip, about the template brain's centre."""


DAMAGE: dict[str, tuple[float, float]] = {}
"""What each error does to the atlas (``atlas_damage``), computed once."""


def perturbation_label(kind: str, size: float, axis) -> str:
    axis_name = "" if axis is None else "xyz"[axis]
    return {"shift": f"shift {size:g} mm {axis_name}", "rotate": f"rotate {size:g} deg {axis_name}",
            "scale": f"scale {size:g}", "flip": "flip left-right"}[kind]


def write_perturbation(kind: str, size: float, axis, centre, path: Path) -> str:
    """An ANTs affine file (template space, about ``centre``) of one known error."""
    import ants

    matrix, translation = np.eye(3), np.zeros(3)
    if kind == "shift":
        translation[axis] = size
    elif kind == "rotate":
        a, b = [i for i in range(3) if i != axis]
        angle = np.deg2rad(size)
        matrix[a, a] = matrix[b, b] = np.cos(angle)
        matrix[a, b], matrix[b, a] = -np.sin(angle), np.sin(angle)
    elif kind == "scale":
        matrix *= size
    elif kind == "flip":
        matrix[0, 0] = -1.0
    transform = ants.create_ants_transform(transform_type="AffineTransform", dimension=3, matrix=matrix,
                                           center=list(map(float, centre)), translation=translation.tolist())
    ants.write_transform(transform, str(path))
    return str(path)


def perturbed(subject, registration, reference, error_file: str | None) -> np.ndarray:
    """The subject on the template grid through the error, then the registration found."""
    import ants

    files, invert = registration.to_template
    if error_file is not None:
        files, invert = [error_file, *files], [False, *invert]
    return ants.apply_transforms(fixed=reference, moving=subject, transformlist=files, whichtoinvert=invert,
                                 interpolator="linear", defaultvalue=0).numpy()


def atlas_damage(atlas, error_file: str) -> tuple[float, float]:
    """Dice of the ventral pallidum (mean of left and right) and median Dice over the regions,
    each label against itself moved by the error."""
    import ants

    from qsmiron.register.images import to_ants

    labels = atlas.label_array()
    image = to_ants(labels.astype(np.float32), atlas.image.affine)
    moved = ants.apply_transforms(fixed=image, moving=image, transformlist=[error_file],
                                  interpolator="genericLabel").numpy()
    dice = {}
    for _, row in atlas.labels.iterrows():
        a, b = labels == row["index"], moved == row["index"]
        dice.setdefault(row["region"], []).append(2 * (a & b).sum() / max(a.sum() + b.sum(), 1))
    return float(np.mean(dice["VeP"])), float(np.median([np.mean(v) for v in dice.values()]))


def score(template: np.ndarray, warped: np.ndarray, spacing_mm, box=None) -> dict:
    """``registration_metrics``' measures (block matching run once, for its quartile too, inside
    ``box``: the SyN domain, as a run judges it) and the core similarity."""
    from qsmiron.roi.qc import core_similarity, dice, normalised_mutual_information, residual_shift
    from qsmiron.roi.subject import HEAD_CORE_EROSION_MM

    brain = template > 0
    metrics = {"nmi": normalised_mutual_information(template[brain], warped[brain]),
               "brain_dice": dice(brain, warped > 0)}
    metrics.update(core_similarity(template, warped, spacing_mm, erosion_mm=HEAD_CORE_EROSION_MM))
    box = box if box is not None else tuple(slice(None) for _ in template.shape)
    metrics.update(residual_shift(template[box], warped[box], spacing_mm))
    return metrics


def recon_mask(magnitude: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """The reconstruction's automatic brain mask (the magnitude's, restricted to the registered
    template brain), which ``subject_mask="auto"`` hands to the registration in a pipeline run."""
    from qsmiron.io.nifti import voxel_size_mm
    from qsmiron.recon.mask import magnitude_mask
    from qsmiron.register.brainmask import template_brain_probability

    probability = template_brain_probability(magnitude, affine).probability
    return magnitude_mask(magnitude, voxel_size_mm(affine), brain_probability=probability)[0]


def family_heads(indices: list[int], cache: Path):
    from bench_bgremove import load_head  # the sibling script (benchmarks/ is on sys.path)

    from qsmiron.simulate.heads import FAMILY

    for index in indices:
        head = load_head(FAMILY[index - 1], cache)
        yield f"family {FAMILY[index - 1].name[:20]}", head.magnitude[..., 0], head.affine


def _row(head: str, config: str, case: str, metrics: dict, damage=("", "")) -> str:
    cells = " ".join(f"{metrics[k]:{fmt}}" for k, (_, fmt) in METRICS.items())
    vep, median = (f"{v:5.2f}" if v != "" else "     " for v in damage)
    return f"{head[:30]:30s} {config:8s} {case:22s} {cells} {vep} {median}"


def _header() -> str:
    return (f"{'head':30s} {'settings':8s} {'registration':22s} {'NMI':>6s} {'Dice':>6s} {'core r':>6s} "
            f"{'peak':>6s} {'sh50mm':>6s} {'sh75mm':>6s} {'VeP D':>5s} {'reg D':>5s}")


def run_head(name, magnitude, affine, configs, template_ants, atlas, work: Path, failures: bool, rows: list,
             errors: bool = True) -> None:
    from qsmiron.register.normalise import template_grid

    from qsmiron.register.images import to_ants
    from qsmiron.roi.subject import shift_region

    from bench_head_check import register_head  # the sibling script
    labels_ants = to_ants(atlas.label_array().astype(np.float32), atlas.image.affine)
    mask = recon_mask(magnitude, affine)
    for config, settings in configs.items():
        tick = time.process_time()
        folder = Path(tempfile.mkdtemp(dir=work))
        subject, registration, view, _ = register_head(magnitude, affine, settings, template_ants, folder,
                                                      mask=mask, labels_ants=labels_ants)
        box = shift_region(labels_ants, view, settings)[0]
        reference = template_grid(template_ants, settings.resolution_mm)
        centre = np.asarray(reference.origin) + np.asarray(reference.direction) @ (
            np.argwhere(view.template > 0).mean(0) * np.asarray(reference.spacing))
        good = score(view.template, view.subject, view.spacing_mm, box)
        rows.append((name, config, "good", good))
        print(_row(name, config, f"found ({time.process_time() - tick:.0f} s cpu)", good), flush=True)
        for kind, size, axis in PERTURBATIONS if errors else ():
            label = perturbation_label(kind, size, axis)
            error = write_perturbation(kind, size, axis, centre, folder / "error.mat")
            if label not in DAMAGE:
                DAMAGE[label] = atlas_damage(atlas, error)
            metrics = score(view.template, perturbed(subject, registration, reference, error), view.spacing_mm, box)
            rows.append((name, config, label, metrics))
            print(_row(name, config, label, metrics, DAMAGE[label]), flush=True)
        if failures:
            for case, wrong_mask in natural_failures(mask, affine):
                _, _, wrong, _ = register_head(magnitude, affine, settings, template_ants,
                                               Path(tempfile.mkdtemp(dir=work)), mask=wrong_mask,
                                               labels_ants=labels_ants)
                metrics = score(wrong.template, wrong.subject, wrong.spacing_mm, box)
                rows.append((name, config, case, metrics))
                print(_row(name, config, case, metrics), flush=True)


def natural_failures(mask: np.ndarray, affine: np.ndarray):
    """Registrations ANTs gets wrong by itself: the whole field of view as the brain (no mask),
    and the brain mask eroded by 4 mm, as a QSM mask is after background removal (a 2-echo scan,
    without R2*, hands its QSM mask to the registration: ``roi.subject.subject_brain_mask``)."""
    from scipy import ndimage

    from qsmiron.io.nifti import voxel_size_mm

    yield "ANTs: no brain mask", np.ones(mask.shape, bool)
    radius = np.maximum(np.round(4.0 / np.asarray(voxel_size_mm(affine))).astype(int), 1)
    grid = np.ogrid[tuple(slice(-r, r + 1) for r in radius)]
    ball = sum((g / r) ** 2 for g, r in zip(grid, radius)) <= 1.0
    yield "ANTs: mask eroded 4 mm", ndimage.binary_erosion(mask, structure=ball)


def summary(rows: list) -> None:
    """Per metric: the worst good registration, and per error the best-looking bad one."""
    print("\nsummary: worst good (median good) | per error: best-looking bad over heads and settings")
    print("good: the registrations found with SyN; found by an affine alone (affine3), per head: " + ", ".join(
        f"{head[:24]} {m['shift_median_mm']:.2f} mm" for head, config, case, m in rows
        if case == "good" and config == "affine3"))
    cases = list(dict.fromkeys(case for _, _, case, _ in rows if case != "good"))
    for key, (higher, fmt) in METRICS.items():
        good = [m[key] for _, config, case, m in rows if case == "good" and config != "affine3"]
        worst = min(good) if higher else max(good)
        cells = []
        for case in cases:
            bad = [m[key] for _, _, c, m in rows if c == case and np.isfinite(m[key])]
            best = max(bad) if higher else min(bad)
            separated = best < worst if higher else best > worst
            cells.append(f"{case}: {best:{fmt}}{'' if separated else ' (not separated)'}")
        print(f"{key:18s} worst good {worst:{fmt}} (median {np.median(good):{fmt}})")
        for cell in cells:
            print(f"    {cell}")


def main() -> None:
    import bench_head_check  # the sibling script (benchmarks/ is on sys.path)

    parser = argparse.ArgumentParser()
    parser.add_argument("--n-sim", type=int, default=3)
    parser.add_argument("--family", default="4,5,8", help="1-based indices into simulate.heads.FAMILY ('' for none)")
    parser.add_argument("--configs", default="default,fast")
    parser.add_argument("--failures", action="store_true",
                        help="also register without a brain mask and with the mask eroded by 4 mm")
    parser.add_argument("--no-errors", action="store_true", help="skip the known errors (with --failures)")
    parser.add_argument("--only", default="", help="comma-separated substrings of the head names to run")
    parser.add_argument("--cache", default=os.environ.get("QSMIRON_HEADS_CACHE", "/tmp/qsmiron_heads"))
    args = parser.parse_args()
    from qsmiron.atlas import load_atlas
    from qsmiron.register.settings import RegistrationSettings
    from qsmiron.roi.subject import template_images

    atlas = load_atlas("cit168")
    _, template_ants = template_images(atlas.template_path)
    known = {"default": RegistrationSettings(),
             "fast": RegistrationSettings(resolution_mm=3.0, syn_iterations=(40, 10)),  # the ROI tests'
             "affine3": RegistrationSettings(resolution_mm=3.0, syn_iterations=(), syn_shrink_factors=(),
                                             syn_smoothing_vox=())}  # no SyN: the head-check tests'
    configs = {name: known[name] for name in args.configs.split(",")}
    family = [int(i) for i in args.family.split(",") if i]
    rows: list = []
    print(_header())
    with tempfile.TemporaryDirectory() as work:
        heads = bench_head_check.heads(args.n_sim, Path(work))
        for name, magnitude, affine in [*heads, *family_heads(family, Path(args.cache))]:
            if args.only and not any(part in name for part in args.only.split(",")):
                continue
            run_head(name, magnitude, affine, configs, template_ants, atlas, Path(work), args.failures, rows,
                     errors=not args.no_errors)
    summary(rows)


if __name__ == "__main__":
    main()
