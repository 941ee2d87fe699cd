"""Write a simulated cohort as a BIDS dataset with its ground truth.

Layout (``sub-XX`` zero-padded to at least two digits)::

    OUT_BIDS/
      dataset_description.json, README, participants.tsv, participants.json
      sub-XX/anat/sub-XX_echo-<n>_part-<mag|phase>_MEGRE.nii.gz (+ .json sidecars)
      derivatives/truth/
        dataset_description.json
        simulation.json          settings, seed, number of subjects, phantom description
        planted_effects.json     what was planted and what the drawn cohort realised
        regions_truth.tsv        participant_id, region, hemisphere, mean_ppm, mean_ppm_grid,
                                 r2star_per_s_grid, n_voxels, volume_mm3 (CIT168 regions)
        desc-cit168_dseg.tsv     index, name, region, hemisphere of the label maps
        sub-XX/anat/
          sub-XX_Chimap.nii.gz             true chi, ppm, whole-brain-mean referenced, 0 outside
          sub-XX_desc-brain_mask.nii.gz    true brain mask
          sub-XX_desc-local_fieldmap.nii.gz  field of the referenced chi in the mask, ppm
          sub-XX_fieldmap.nii.gz           total field after shimming, Hz
          sub-XX_dseg.nii.gz               CIT168 labels on the scan grid (nearest neighbour)
          sub-XX_xfm.json                  head position: MNI -> scanner transform, affine, B0

``mean_ppm`` in ``regions_truth.tsv`` is the value the subject's region was given, minus the
subject's brain-mean susceptibility (the whole-brain reference); ``mean_ppm_grid`` is the
mean of the true chi map over the region's voxels on the scan grid (partial volume included);
``r2star_per_s_grid`` the same for the R2* the magnitude decays with (s^-1).

The dataset is assembled in a temporary folder beside ``out_bids`` and moved into place when
complete, so an interrupted run leaves nothing that looks finished. The same seed and settings
give byte-identical files.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd

from qsmiron import GYROMAGNETIC_RATIO_HZ_PER_T, __version__
from qsmiron.errors import InputError
from qsmiron.io.atomic import (atomic_directory, check_writable_dir, write_json_atomic, write_text_atomic,
                               write_tsv_atomic)
from qsmiron.io.nifti import save_nifti
from qsmiron.settings_base import validate_settings
from qsmiron.simulate.clinical import PARTICIPANTS_JSON, CohortSample, sample_cohort
from qsmiron.simulate.phantom import build_head_phantom, cit168_label_table
from qsmiron.simulate.settings import CIT168_REGIONS, SimulationSettings
from qsmiron.simulate.subject import make_context, sample_pose, simulate_scan

log = logging.getLogger(__name__)

MAX_SUBJECTS = 10_000
TRUTH_DIR = Path("derivatives") / "truth"
SIMULATION_RECORD = "simulation.json"


def simulation_record_path(bids_dir: str | os.PathLike) -> Path:
    """Where a simulated dataset records its seed, size and settings (written last: it is complete)."""
    return Path(bids_dir) / TRUTH_DIR / SIMULATION_RECORD


def _check_arguments(n_subjects, seed, settings):
    if isinstance(n_subjects, bool) or not isinstance(n_subjects, (int, np.integer)):
        raise InputError(f"the number of subjects must be a whole number, got {n_subjects!r}")
    if not 1 <= int(n_subjects) <= MAX_SUBJECTS:
        raise InputError(f"the number of subjects must be between 1 and {MAX_SUBJECTS}, got {n_subjects}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or int(seed) < 0:
        raise InputError(f"the seed must be a non-negative whole number, got {seed!r}")
    if settings is None:
        return SimulationSettings()
    if isinstance(settings, SimulationSettings):
        return settings
    if isinstance(settings, dict):
        return validate_settings(SimulationSettings, settings, what="simulation settings")
    raise TypeError(f"settings must be SimulationSettings, a dict or None, not {type(settings).__name__}")


def _check_destination(out_bids: Path) -> None:
    if out_bids.exists() and not out_bids.is_dir():
        raise InputError("exists and is not a folder; choose a new output folder", out_bids)
    if out_bids.is_dir() and any(out_bids.iterdir()):
        raise InputError("is not empty; simulate into a new folder (existing data are never "
                         "overwritten)", out_bids)
    check_writable_dir(out_bids)


def simulate_cohort(out_bids, n_subjects: int, seed: int, *,
                    settings: SimulationSettings | dict | None = None,
                    n_procs: int | None = None) -> Path:
    """Simulate a cohort with known truth and write it as a BIDS dataset.

    Parameters
    ----------
    out_bids : str or PathLike
        Folder to create (absent or empty).
    n_subjects : int
        Number of participants (1 to 10000).
    seed : int
        Non-negative seed; the same seed and settings give identical files.
    settings : SimulationSettings or dict, optional
        Defaults: ``SimulationSettings()`` (1.5 mm, 5 echoes, planted effects).
    n_procs : int, optional
        Subjects simulated in parallel by forked processes (default 1). Every subject has its
        own random stream, so the files do not depend on ``n_procs``.

    Returns
    -------
    Path
        ``out_bids``.

    Raises
    ------
    InputError
        Invalid number of subjects, seed or settings, or a destination that is not empty or
        cannot be written.
    """
    settings = _check_arguments(n_subjects, seed, settings)
    n_subjects, seed = int(n_subjects), int(seed)
    out_bids = Path(out_bids)
    _check_destination(out_bids)

    streams = np.random.SeedSequence(seed).spawn(n_subjects + 1)
    cohort = sample_cohort(n_subjects, np.random.default_rng(streams[0]), settings)
    phantom = build_head_phantom(float(settings.phantom_resolution_mm))
    context = make_context(phantom, settings)
    ids = list(cohort.participants["participant_id"])

    with atomic_directory(out_bids) as tmp:
        _write_dataset_files(tmp, cohort, settings, seed)
        jobs = [(tmp, pid, streams[i + 1]) for i, pid in enumerate(ids)]
        n_procs = max(1, min(int(n_procs or 1), n_subjects, os.cpu_count() or 1))
        if n_procs == 1 or "fork" not in multiprocessing.get_all_start_methods():
            results = [_simulate_subject(context, cohort, job) for job in jobs]
        else:
            # Forked workers share the phantom and the maps already built here (copy on write).
            global _FORK_STATE
            _FORK_STATE = (context, cohort)
            try:
                pool = ProcessPoolExecutor(n_procs, mp_context=multiprocessing.get_context("fork"))
                with pool:
                    results = list(pool.map(_simulate_subject_forked, jobs))
            finally:
                _FORK_STATE = None
        truth_rows = [row for rows in results for row in rows]
        regions_truth = pd.DataFrame(truth_rows)
        write_tsv_atomic(tmp / TRUTH_DIR / "regions_truth.tsv", regions_truth)
        write_json_atomic(tmp / TRUTH_DIR / "planted_effects.json",
                          planted_effects(settings, cohort, regions_truth))
    return out_bids


_FORK_STATE = None


def _simulate_subject_forked(job):
    context, cohort = _FORK_STATE
    return _simulate_subject(context, cohort, job)


def _simulate_subject(context, cohort: CohortSample, job) -> list[dict]:
    """Simulate and write one subject; return its rows of the regional truth."""
    root, participant_id, stream = job
    settings, phantom = context.settings, context.phantom
    rng = np.random.default_rng(stream)
    pose = sample_pose(rng, settings, phantom)
    chi_table = phantom.chi_table(cohort.chi_by_subject(participant_id))
    scan = simulate_scan(context, chi_table, pose, rng)
    _write_subject(root, participant_id, scan, pose, settings)
    log.info("simulated %s in %.1f s", participant_id, sum(scan.info["seconds"].values()))
    return _regional_truth(participant_id, scan, cohort, settings)


def _write_dataset_files(root: Path, cohort: CohortSample, settings: SimulationSettings,
                         seed: int) -> None:
    generated_by = [{"Name": "qsmiron simulate", "Version": __version__,
                     "Description": "Simulated multi-echo GRE of an MNI152NLin2009cAsym head "
                                    "phantom with CIT168 nuclei"}]
    write_json_atomic(root / "dataset_description.json", {
        "Name": "qsmiron simulated migraine cohort", "BIDSVersion": "1.9.0",
        "DatasetType": "raw", "License": "CC0", "GeneratedBy": generated_by,
        "Authors": ["qsmiron simulator"]})
    write_text_atomic(root / "README", (
        "Simulated cohort written by `qsmiron simulate` (seed {seed}, {n} participants).\n"
        "Multi-echo GRE magnitude and phase of a head phantom built from the "
        "MNI152NLin2009cAsym template and the CIT168 atlas, with known susceptibility.\n"
        "Ground truth: derivatives/truth/ (see simulation.json and planted_effects.json).\n"
    ).format(seed=seed, n=len(cohort.participants)))
    write_tsv_atomic(root / "participants.tsv", cohort.participants)
    write_json_atomic(root / "participants.json", PARTICIPANTS_JSON)

    truth = root / TRUTH_DIR
    write_json_atomic(truth / "dataset_description.json", {
        "Name": "qsmiron simulation ground truth", "BIDSVersion": "1.9.0",
        "DatasetType": "derivative", "GeneratedBy": generated_by})
    write_json_atomic(truth / SIMULATION_RECORD, {
        "qsmiron_version": __version__, "seed": seed, "n_subjects": len(cohort.participants),
        "settings": settings.model_dump(mode="json"), "matrix": list(settings.matrix),
        "phantom": {"space": "MNI152NLin2009cAsym", "atlas": "CIT168",
                    "resolution_mm": settings.phantom_resolution_mm,
                    "description": "qsmiron.simulate.phantom"},
        "latent": cohort.latent,
        "units": {"Chimap": "ppm", "local_fieldmap": "ppm", "fieldmap": "Hz"},
        "reference": "mean over the true brain mask (whole brain)",
        "phase_convention": "phase = 2 pi f TE + offset; integers -L..L-1 map to [-pi, pi)",
    })
    labels = cit168_label_table()
    write_tsv_atomic(truth / "desc-cit168_dseg.tsv", labels)


def acquisition_sidecar(settings: SimulationSettings, echo_number: int, part: str) -> dict:
    """The BIDS JSON sidecar of one echo's magnitude or phase."""
    te = settings.echo_times_s[echo_number - 1]
    frequency_mhz = GYROMAGNETIC_RATIO_HZ_PER_T * settings.field_strength_t * 1e-6
    # BIDS requires Units for part-phase: the simulator stores vendor integers, not radians.
    phase_keys = {"Units": "arbitrary", "PhaseScaling": {
        "Method": "levels", "Description": f"integers -{settings.phase_levels}..{settings.phase_levels - 1} "
                                           "cover [-pi, pi) (Siemens-like vendor phase)"}} if part == "phase" else {}
    return {
        "Modality": "MR", "MagneticFieldStrength": settings.field_strength_t,
        "ImagingFrequency": round(frequency_mhz, 6), "Manufacturer": "qsmiron-simulator",
        "ManufacturersModelName": "MNI152NLin2009cAsym head phantom",
        "SoftwareVersions": __version__, "ReceiveCoilName": "simulated",
        "MRAcquisitionType": "3D", "ScanningSequence": "GR", "SequenceVariant": "SP",
        "SeriesDescription": "qsm_megre",
        "ImageType": ["ORIGINAL", "PRIMARY", "M" if part == "mag" else "P"],
        "EchoTime": te, "EchoNumber": echo_number, "EchoTrainLength": len(settings.echo_times_s),
        "RepetitionTime": settings.repetition_time_s, "FlipAngle": settings.flip_angle_deg,
        "SliceThickness": settings.voxel_size_mm[2], "ParallelReductionFactorInPlane": 1,
        "PartialFourier": 1, "PhaseEncodingDirection": "j",
        "ConversionSoftware": "qsmiron simulate", **phase_keys,
    }


def _write_subject(root: Path, participant_id: str, scan, pose, settings) -> None:
    anat = root / participant_id / "anat"
    for n, (magnitude, phase) in enumerate(zip(scan.magnitude, scan.phase), start=1):
        for part, data in (("mag", magnitude), ("phase", phase)):
            save_nifti(anat / f"{participant_id}_echo-{n}_part-{part}_MEGRE.nii.gz", data,
                       scan.affine, sidecar=acquisition_sidecar(settings, n, part))
    truth = root / TRUTH_DIR / participant_id / "anat"
    stem = truth / participant_id
    save_nifti(f"{stem}_Chimap.nii.gz", scan.chi_ppm, scan.affine, sidecar={
        "Units": "ppm", "Reference": "mean over the true brain mask",
        "BrainMeanRelativeToWater_ppm": scan.brain_mean_ppm})
    save_nifti(f"{stem}_desc-brain_mask.nii.gz", scan.mask.astype(np.uint8), scan.affine)
    save_nifti(f"{stem}_desc-local_fieldmap.nii.gz", scan.local_field_ppm, scan.affine, sidecar={
        "Units": "ppm", "Description": "field of the referenced true chi inside the brain mask, "
                                       "zero outside the mask"})
    save_nifti(f"{stem}_fieldmap.nii.gz", scan.total_field_hz, scan.affine, sidecar={
        "Units": "Hz", "Description": "total field after shimming (what the phase encodes "
                                      "besides the echo-independent offset)",
        "ShimOrder": settings.shim_order})
    save_nifti(f"{stem}_dseg.nii.gz", scan.labels.astype(np.int16), scan.affine, sidecar={
        "Atlas": "CIT168", "Lookup": "../../../desc-cit168_dseg.tsv",
        "Resampling": "nearest neighbour from MNI152NLin2009cAsym via the true head position"})
    write_json_atomic(f"{stem}_xfm.json", {
        **pose.as_dict(), "noise_sd": scan.info["noise_sd"],
        "shim_coefficients_ppm": scan.info["shim_coefficients_ppm"],
        "description": "world = mni_to_world @ [x_mni, y_mni, z_mni, 1]; voxel -> world is "
                       "'affine'; B0 is world +z"})


def _regional_truth(participant_id, scan, cohort: CohortSample, settings) -> list[dict]:
    values = cohort.chi_by_subject(participant_id)
    labels = cit168_label_table()
    voxel_volume = float(np.prod(settings.voxel_size_mm))
    counts = np.bincount(scan.labels.ravel().astype(np.int64), minlength=256)
    sums = np.bincount(scan.labels.ravel().astype(np.int64), weights=scan.chi_ppm.ravel(),
                       minlength=256)
    r2star_sums = np.bincount(scan.labels.ravel().astype(np.int64), weights=scan.r2star_per_s.ravel(),
                              minlength=256)
    rows = []
    for row in labels.itertuples():
        n = int(counts[row.index]) if row.index < counts.size else 0
        rows.append({
            "participant_id": participant_id, "region": row.region, "hemisphere": row.hemisphere,
            "mean_ppm": round(values[(row.region, row.hemisphere)] - scan.brain_mean_ppm, 7),
            "mean_ppm_grid": round(float(sums[row.index] / n), 7) if n else np.nan,
            "r2star_per_s_grid": round(float(r2star_sums[row.index] / n), 4) if n else np.nan,
            "n_voxels": n, "volume_mm3": round(n * voxel_volume, 3)})
    return rows


def planted_effects(settings: SimulationSettings, cohort: CohortSample,
                    regions_truth: pd.DataFrame) -> dict:
    """What was planted, and what the drawn cohort realised in the true regional values."""
    participants = cohort.participants.set_index("participant_id")
    group_d = settings.effective_group_d()
    planted_group = {
        region: {"cohen_d": d, "delta_ppm": d * settings.regions[region].sd_ppm,
                 "sd_ppm": settings.regions[region].sd_ppm}
        for region, d in group_d.items()}
    realised_group, realised_assoc = [], []
    table = regions_truth.join(participants[["group", "sds", "relapse"]], on="participant_id")
    for (region, hemisphere), rows in table.groupby(["region", "hemisphere"], sort=False):
        a = rows.loc[rows["group"] == "MOH", "mean_ppm"].to_numpy(float)
        b = rows.loc[rows["group"] == "CM", "mean_ppm"].to_numpy(float)
        if a.size >= 2 and b.size >= 2:
            pooled = np.sqrt(((a.size - 1) * a.var(ddof=1) + (b.size - 1) * b.var(ddof=1))
                             / (a.size + b.size - 2))
            realised_group.append({"region": region, "hemisphere": hemisphere,
                                   "cohen_d": float((a.mean() - b.mean()) / pooled) if pooled > 0 else None,
                                   "mean_difference_ppm": float(a.mean() - b.mean())})
        moh = rows[rows["group"] == "MOH"]
        for variable in ("sds", "relapse"):
            x = moh["mean_ppm"].to_numpy(float)
            y = moh[variable].to_numpy(float)
            keep = np.isfinite(y)
            if keep.sum() >= 3 and np.std(y[keep]) > 0 and np.std(x[keep]) > 0:
                r = float(np.corrcoef(x[keep], y[keep])[0, 1])
                realised_assoc.append({"region": region, "hemisphere": hemisphere, "group": "MOH",
                                       "variable": variable, "pearson_r": r})
    return {
        "with_effects": settings.with_effects,
        "reference": "regional values are relative to each subject's whole-brain mean",
        "group_difference": {"column": "group", "compare": ["MOH", "CM"],
                             "direction": "MOH minus CM", "regions": planted_group,
                             "hemispheres": ["L", "R"],
                             "unaffected_regions": [r for r in CIT168_REGIONS if r not in group_d]},
        "associations": [
            {"region": settings.association_region, "group": "MOH", "variable": "sds",
             "pearson_r": settings.effective_sds_r(),
             "note": "hemisphere-level correlation before rounding SDS to integers"},
            {"region": settings.association_region, "group": "MOH", "variable": "relapse",
             "pearson_r": settings.effective_relapse_r(), "note": "point-biserial correlation"},
            {"region": settings.association_region, "group": "MOH", "variable": "ldq",
             "pearson_r": 0.6 * settings.effective_sds_r(),
             "note": "inherited through the SDS-LDQ correlation"},
        ],
        "realised": {"group_difference": realised_group, "associations": realised_assoc},
    }
