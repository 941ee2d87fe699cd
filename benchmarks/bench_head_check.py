"""Heads versus non-heads: the similarity to the template that the head check thresholds.

Each object's first-echo magnitude goes through what ``qsmiron.roi.api.roi_from_files``
does before measuring: a mask from the magnitude (``qsmiron.recon.mask.brain_mask``), N4,
ANTs registration to the MNI152NLin2009cAsym brain, the subject resampled onto the template
grid, then ``qsmiron.roi.qc.registration_metrics``: the normalised mutual information (NMI)
inside the template brain and the Dice of the brain masks.

Heads: subjects of ``qsmiron.simulate`` (random pose, oblique, 1.5 mm... as simulated), the
template-warped phantom of the ROI tests (``qsmiron.register.phantom``), and the real Philips
3 T scan (``../shared/data/philips_3t_2echo``, converted from DICOM) when present.
Non-heads (``qsmiron.simulate.objects``): a sphere phantom with vials, a spine-like cylinder,
both at two sizes.

Registration settings: the defaults, the ROI tests' (3 mm, SyN 40/10), a 3 mm affine with N4
(the head-check and real-data tests'), a 6 mm affine without N4 (the end-to-end tests').

    .venv/bin/python benchmarks/bench_head_check.py [--n-sim 3] [--configs default,fast,affine3,affine6]
"""

from __future__ import annotations

import argparse
import itertools
import os
import tempfile
import time
from pathlib import Path

import numpy as np

PHILIPS = Path(os.environ.get("QSMIRON_SHARED_DATA") or Path(__file__).resolve().parents[2] / "shared" / "data") \
    / "philips_3t_2echo" / "dicom_classic"


def heads(n_sim: int, work: Path):
    import nibabel as nib

    if PHILIPS.is_dir():
        from qsmiron.io.dicom import convert_dicom_to_bids

        report = convert_dicom_to_bids(PHILIPS, work / "philips")
        image = nib.load(str(report.written[0]))
        yield "head: real Philips 3 T (3 mm)", image.get_fdata(dtype=np.float32), image.affine
    from qsmiron.atlas import load_atlas, load_template
    from qsmiron.register.phantom import grid_affine, make_phantom_subject

    atlas, template = load_atlas("cit168"), load_template()
    affine = grid_affine((1.5, 1.5, 1.5), (112, 136, 112))
    chi = {int(i): 0.05 for i in atlas.labels["index"]}
    subject = make_phantom_subject(np.asarray(template.dataobj, np.float32), template.affine, atlas.label_array(),
                                   chi, (112, 136, 112), affine)
    yield "head: template-warped phantom", subject.magnitude, affine
    from qsmiron.simulate.cohort import simulate_cohort

    root = simulate_cohort(work / "sim", n_sim, 11)
    for subject in sorted(root.glob("sub-*")):
        image = nib.load(str(subject / "anat" / f"{subject.name}_echo-1_part-mag_MEGRE.nii.gz"))
        yield f"head: simulated {subject.name}", image.get_fdata(dtype=np.float32), image.affine


def _non_heads():
    from qsmiron.simulate.objects import cylinder_phantom, sphere_phantom

    for radius in (80.0, 60.0):
        magnitude, _, affine = sphere_phantom(radius_mm=radius)
        yield f"non-head: sphere r={radius:g} mm", magnitude[..., 0], affine
    for radius in (55.0, 30.0):
        magnitude, _, affine = cylinder_phantom(radius_mm=radius)
        yield f"non-head: cylinder r={radius:g} mm", magnitude[..., 0], affine


def register_head(magnitude, affine, settings, template_ants, workdir, *, mask=None, labels_ants=None):
    """What ``roi_from_files`` does before measuring: a mask from the magnitude (unless given),
    N4, ANTs to the template, the subject resampled onto the template grid. With the atlas labels
    (``labels_ants``) SyN is confined to them plus ``syn_margin_mm`` as a run confines it
    (``settings.syn_region = "atlas"``); without, SyN covers the whole brain.

    Returns the prepared subject (ANTs), the registration (its files in ``workdir``), the
    subject on the template grid (``OnTemplate``) and the mask."""
    from qsmiron.io.nifti import voxel_size_mm
    from qsmiron.recon.mask import brain_mask
    from qsmiron.register.images import prepare_subject
    from qsmiron.register.normalise import register_to_template, syn_domain_mm
    from qsmiron.roi.subject import subject_on_template

    if mask is None:
        mask = np.asarray(brain_mask(magnitude, voxel_size_mm(affine)), bool)
    subject = prepare_subject(magnitude, mask, affine, bias_correct=settings.bias_correct,
                              resolution_mm=0.75 * settings.resolution_mm)
    registration = register_to_template(subject, template_ants, settings=settings,
                                        syn_box_mm=syn_domain_mm(labels_ants, settings), workdir=workdir)
    return subject, registration, subject_on_template(subject, registration, template_ants, settings), mask


def _metrics(magnitude, affine, settings, template_ants):
    from qsmiron.io.nifti import voxel_size_mm
    from qsmiron.roi.qc import core_similarity, registration_metrics
    from qsmiron.roi.subject import HEAD_CORE_EROSION_MM

    with tempfile.TemporaryDirectory() as work:
        _, _, view, mask = register_head(magnitude, affine, settings, template_ants, work)
        metrics = registration_metrics(view.template, view.subject, view.spacing_mm)
        metrics.update(core_similarity(view.template, view.subject, view.spacing_mm, erosion_mm=HEAD_CORE_EROSION_MM))
    metrics["mask_ml"] = float(mask.sum() * np.prod(voxel_size_mm(affine)) / 1000)
    return metrics


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n-sim", type=int, default=3)
    parser.add_argument("--configs", default="default,fast,affine3,affine6",
                        help="registration settings to compare: default, fast (the ROI tests'), affine3 (3 mm "
                             "affine with N4: the head-check and real-data tests'), affine6 (6 mm affine, no N4)")
    args = parser.parse_args()
    from qsmiron.atlas import load_atlas
    from qsmiron.register.settings import RegistrationSettings
    from qsmiron.roi.subject import template_images

    _, template_ants = template_images(load_atlas("cit168").template_path)
    known = {"default": ("default", RegistrationSettings()),
             "fast": ("fast (tests)", RegistrationSettings(resolution_mm=3.0, syn_iterations=(40, 10))),
             "affine3": ("3 mm affine", RegistrationSettings(resolution_mm=3.0, syn_iterations=(), syn_shrink_factors=(),
                                                             syn_smoothing_vox=())),
             "affine6": ("6 mm affine", RegistrationSettings(resolution_mm=6.0, linear_iterations=(100, 50),
                                                             syn_iterations=(), bias_correct=False))}
    configs = dict(known[name] for name in args.configs.split(","))
    with tempfile.TemporaryDirectory() as work:
        cases = itertools.chain(heads(args.n_sim, Path(work)), _non_heads())
        print(f"{'object':38s} {'settings':13s} {'NMI':>6s} {'Dice':>6s} {'coreNMI':>7s} {'core|r|':>7s} "
              f"{'mask ml':>8s} {'cpu s':>6s}")
        for name, magnitude, affine in cases:
            for label, settings in configs.items():
                tick = time.process_time()
                m = _metrics(magnitude, affine, settings, template_ants)
                print(f"{name:38s} {label:13s} {m['nmi']:6.3f} {m['brain_dice']:6.3f} {m['core_nmi']:7.3f} "
                      f"{m['core_correlation']:7.3f} {m['mask_ml']:8.0f} "
                      f"{time.process_time() - tick:6.1f}", flush=True)


if __name__ == "__main__":
    main()
