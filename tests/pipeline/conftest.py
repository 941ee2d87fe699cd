"""Fixtures of the cohort-pipeline tests: tiny BIDS datasets and light per-subject steps.

The light steps exercise the orchestration (parallelism, failures, resume) in milliseconds;
the end-to-end tests use the real steps. Step functions live here, at module level, so that
forked worker processes find them.
"""

from __future__ import annotations

import json
import multiprocessing
import os
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from qsmiron.io.atomic import write_tsv_atomic

TINY_SHAPE = (8, 8, 6)
TINY_TES = (0.004, 0.008)


def write_tiny_subject(root: Path, label: str, *, seed: int, flags: dict | None = None,
                       session: str | None = None) -> None:
    rng = np.random.default_rng(seed)
    anat = root / f"sub-{label}" / (f"ses-{session}" if session else "") / "anat"
    prefix = f"sub-{label}" + (f"_ses-{session}" if session else "")
    anat.mkdir(parents=True, exist_ok=True)
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    for part in ("mag", "phase"):
        for echo, te in enumerate(TINY_TES, start=1):
            data = (rng.uniform(100, 200, TINY_SHAPE) if part == "mag"
                    else rng.uniform(-np.pi, np.pi, TINY_SHAPE)).astype(np.float32)
            path = anat / f"{prefix}_echo-{echo}_part-{part}_MEGRE.nii.gz"
            nib.save(nib.Nifti1Image(data, affine), str(path))
            sidecar = {"EchoTime": te, "MagneticFieldStrength": 3.0, **(flags or {})}
            path.with_name(path.name.replace(".nii.gz", ".json")).write_text(json.dumps(sidecar))


@pytest.fixture()
def tiny_bids(tmp_path):
    """A factory: ``tiny_bids(labels, flags={label: {...}})`` -> BIDS folder of random tiny scans."""

    def make(labels=("01", "02", "03"), flags=None, name="bids") -> Path:
        root = tmp_path / name
        for index, label in enumerate(labels):
            write_tiny_subject(root, label, seed=index, flags=(flags or {}).get(label))
        (root / "participants.tsv").write_text(
            "participant_id\tgroup\n" + "".join(f"sub-{label}\tCM\n" for label in labels))
        return root

    return make


@pytest.fixture()
def tiny_subject():
    """``tiny_subject(root, label, seed=, flags=, session=)`` writes one tiny subject (or session)."""
    return write_tiny_subject


def _flags(job) -> dict:
    return json.loads(Path(str(job.unit.magnitude[0]).replace(".nii.gz", ".json")).read_text())


def _record_call(job, step: str) -> None:
    root = next(p for p in job.out_dir.parents if p.name != "anat" and not p.name.startswith(("sub-", "ses-")))
    calls = root / "calls.txt"
    with calls.open("a") as handle:
        handle.write(f"{job.unit.label} {step} {os.getpid()}\n")


def measure_step(job, log):
    """Mean magnitude of each echo, as a tiny 'regions' table (one row per echo)."""
    _record_call(job, "measure")
    flags = _flags(job)
    if flags.get("PlantedCrash") and multiprocessing.parent_process() is not None:
        os._exit(3)  # a worker process dying (out of memory, killed)
    rows = [{"region": f"echo{n}", "hemisphere": "L",
             "mean_ppm": float(nib.load(str(path)).get_fdata().mean())}
            for n, path in enumerate(job.unit.magnitude, start=1)]
    job.out_dir.mkdir(parents=True, exist_ok=True)
    tsv = job.out_dir / f"{job.unit.label}_measure.tsv"
    write_tsv_atomic(tsv, pd.DataFrame(rows))
    log.info("measured %d echoes", len(rows))
    return {"regions": tsv}


def check_step(job, log):
    """Fails for subjects whose sidecar plants a failure; otherwise writes a small file."""
    _record_call(job, "check")
    if _flags(job).get("PlantedFailure"):
        raise RuntimeError("planted failure in the check step")
    path = job.out_dir / f"{job.unit.label}_check.txt"
    path.write_text("ok\n")
    return {"check": path}


LIGHT_STEPS = (("measure", measure_step), ("check", check_step))


@pytest.fixture()
def light_steps():
    return LIGHT_STEPS


def expected_means(bids: Path, label: str) -> list[float]:
    """Independent reference: the mean of each magnitude echo read straight from disk."""
    anat = bids / f"sub-{label}" / "anat"
    return [float(nib.load(str(anat / f"sub-{label}_echo-{n}_part-mag_MEGRE.nii.gz")).get_fdata().mean())
            for n in range(1, len(TINY_TES) + 1)]


@pytest.fixture()
def reference_means():
    return expected_means


def calls(out_root: Path) -> list[str]:
    path = Path(out_root) / "calls.txt"
    return path.read_text().splitlines() if path.exists() else []


@pytest.fixture()
def read_calls():
    return calls


# --------------------------------------------------------------------------------------------
# End to end: a small simulated cohort and fast (coarse) settings for the real steps

E2E_SIMULATION = {
    "voxel_size_mm": [3.0, 3.0, 3.0],
    "phantom_resolution_mm": 2.0,
}
"""Coarse scans (60 x 72 x 60 voxels, 5 echoes): the real chain in seconds per subject, with deep
nuclei still large enough (10-120 voxels) for their means to track the truth."""

E2E_PROCESSING = {
    # The template-brain mask (an affine registration per subject) is tested on its own in
    # tests/register/test_brainmask.py and tests/pipeline/test_single.py.
    "recon": {"inversion": {"method": "tkd"}, "mask": {"magnitude": {"template_brain": False}}},
    "registration": {
        "resolution_mm": 6.0,
        "linear_iterations": [100, 50],
        "linear_shrink_factors": [2, 1],
        "linear_smoothing_vox": [1.0, 0.0],
        "syn_iterations": [],
        "bias_correct": False,
    },
    "pipeline": {"progress": False},
}
"""Fast processing for the end-to-end tests: TKD inversion, magnitude mask, affine registration on a
6 mm grid (chi-separation off, its default; one test turns it on, ``E2E_CHISEP``)."""


E2E_CHISEP = {"method": "shin", "shin": {"alpha": 0.03, "max_iter": 40}}
"""Chi-separation for the end-to-end test that checks every measure: a fixed TV weight (TKD
chooses none to share, and the automatic one costs a wtv solve) and fewer iterations."""


def e2e_config(*, recon: dict | None = None, **pipeline):
    from qsmiron.config import QsmironConfig

    payload = json.loads(json.dumps(E2E_PROCESSING))
    payload["pipeline"].update(pipeline)
    payload["recon"].update(recon or {})
    return QsmironConfig.model_validate(payload)


@pytest.fixture(scope="session")
def simulated_cohort(tmp_path_factory) -> Path:
    """Five simulated subjects with truth (seed 3); copy before modifying."""
    from qsmiron.simulate.cohort import simulate_cohort
    from qsmiron.simulate.settings import SimulationSettings

    root = tmp_path_factory.mktemp("simulated") / "bids"
    simulate_cohort(root, 5, 3, settings=SimulationSettings.model_validate(E2E_SIMULATION))
    return root


@pytest.fixture()
def cohort_copy(simulated_cohort, tmp_path):
    """A factory: ``cohort_copy(labels=None)`` -> a private copy of (some of) the simulated cohort."""
    import shutil

    def make(labels=None, name="bids") -> Path:
        target = tmp_path / name
        shutil.copytree(simulated_cohort, target, ignore=shutil.ignore_patterns("derivatives"))
        if labels is not None:
            keep = {f"sub-{label}" for label in labels}
            for folder in target.glob("sub-*"):
                if folder.name not in keep:
                    shutil.rmtree(folder)
            participants = pd.read_csv(target / "participants.tsv", sep="\t", dtype=str, keep_default_na=False)
            participants[participants.participant_id.isin(keep)].to_csv(target / "participants.tsv", sep="\t",
                                                                       index=False)
        return target

    return make


@pytest.fixture()
def fast_e2e_config():
    return e2e_config


@pytest.fixture()
def e2e_chisep():
    """Chi-separation settings of the end-to-end tests (``E2E_CHISEP``), a copy."""
    return json.loads(json.dumps(E2E_CHISEP))


@pytest.fixture()
def e2e_settings():
    """(simulation overrides, processing overrides) of the end-to-end tests, as plain dicts."""
    processing = json.loads(json.dumps(E2E_PROCESSING))
    processing.pop("pipeline")
    return json.loads(json.dumps(E2E_SIMULATION)), processing
