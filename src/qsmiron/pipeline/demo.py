"""``qsmiron demo``: simulate a small cohort, run the whole study on it, print where the report is.

Everything runs offline. The demo trades resolution and registration effort for time so that
``make demo`` finishes within 10 minutes on 2 cores (install included); the settings that
differ from the defaults are listed in ``DEMO_OVERRIDES`` and written, resolved, beside the
outputs (``demo_config.json``; ``qsmiron_config.json`` re-runs the processing with
``qsmiron run ... --config``). Layout of ``OUT_DIR``::

    bids/                      the simulated BIDS dataset (derivatives/truth/ holds the truth)
    qsmiron/                   qsmiron run's derivatives (maps, regions.tsv, group/report.html)
    demo_config.json           demo, simulation and processing settings
    qsmiron_config.json        the processing settings alone
    study.toml                 the study design analysed (MOH vs CM, as the reference study)
    truth_effects.tsv          the planted group effects against the study's estimates and CIs
    truth_regions.tsv          recovered against true regional chi: r, bias, RMSE per region

At the end the demo prints the check against the planted truth (also a section of the
report) and how long each phase and step took, wall and CPU.

Re-running the demo into the same folder reuses the simulated cohort and every finished
subject (resume), and only redoes what changed.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from qsmiron.config import QsmironConfig, config_from_dict, config_to_dict, write_config
from qsmiron.io.atomic import check_writable_dir, write_json_atomic, write_text_atomic
from qsmiron.io.derivatives import demo_paths
from qsmiron.pipeline.settings import DemoSettings
from qsmiron.settings_base import validate_settings

DEMO_OVERRIDES: dict[str, Any] = {
    # The simulated heads are the template's anatomy moved rigidly (no anatomical variation
    # between subjects), so an affine registration aligns them and SyN has nothing to correct:
    # the demo skips it (about 8 of a subject's 25 CPU-s). On a 3 mm template grid instead of 2 mm.
    "registration": {"resolution_mm": 3.0, "syn_iterations": [], "warp_chi_to_template": False},
    # Chi under the whole-brain reference only (the study analyses it): no CSF reference.
    "roi": {"references": ["whole_brain"]},
}
"""Processing settings of the demo that differ from the defaults."""

DEMO_SIMULATION: dict[str, Any] = {
    "voxel_size_mm": [2.0, 2.0, 2.0],
    "phantom_resolution_mm": 2.0,
    # Large enough to be found by 20 + 20 subjects (power about 0.85 at alpha 0.05 before
    # reconstruction noise); the reference study's own effects are about -0.7.
    "group_effect_d": {"VeP": -1.0, "Pu": -1.0},
}
"""Simulation settings of the demo that differ from the simulator's defaults."""

def _merge(base: dict, overrides: dict) -> dict:
    merged = dict(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def demo_config() -> QsmironConfig:
    """The processing settings of the demo: the defaults with ``DEMO_OVERRIDES``."""
    base = QsmironConfig().model_dump(mode="json")
    return config_from_dict(_merge(base, DEMO_OVERRIDES), source="qsmiron.pipeline.demo")


def demo_simulation_settings():
    from qsmiron.simulate.settings import SimulationSettings

    return SimulationSettings.model_validate(_merge(SimulationSettings().model_dump(mode="json"), DEMO_SIMULATION))


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _holds_cohort(bids_dir: Path, n_subjects: int, seed: int, simulation) -> bool:
    """Whether ``bids_dir`` already holds this exact simulated cohort (False: none).

    The simulator records its seed, size and settings in ``derivatives/truth/simulation.json``
    and writes the dataset atomically, so a folder with that file is complete.

    Raises
    ------
    InputError
        It holds another one.
    """
    from qsmiron.errors import InputError
    from qsmiron.simulate.cohort import simulation_record_path

    record = simulation_record_path(bids_dir)
    if not record.exists():
        return False
    try:
        found = json.loads(record.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        found = {}
    if (found.get("seed") == seed and found.get("n_subjects") == n_subjects
            and found.get("settings") == simulation.model_dump(mode="json")):
        return True
    raise InputError("holds another simulated cohort (other seed, size or settings); remove it or choose "
                     "another output folder", bids_dir)


def simulate_once(bids_dir: Path, n_subjects: int, seed: int, simulation, n_procs: int | None = None) -> bool:
    """Simulate the cohort unless ``bids_dir`` already holds this exact one; True if simulated now."""
    from qsmiron.simulate.cohort import simulate_cohort

    if _holds_cohort(bids_dir, n_subjects, seed, simulation):
        return False
    simulate_cohort(bids_dir, n_subjects, seed, settings=simulation, n_procs=n_procs or os.cpu_count())
    return True


def _check_folder(paths, demo, simulation) -> None:
    """Refuse, before the demo writes its files (study.toml, demo_config.json, qsmiron_config.json), a
    folder where they would replace someone's: not empty and without an earlier demo, or with an earlier
    demo of another cohort (found only after they had been replaced)."""
    from qsmiron.errors import InputError

    folder = paths.out_dir
    if folder.is_dir() and any(folder.iterdir()) and not paths.demo_config.exists():
        raise InputError(f"is not empty and holds no earlier demo: the demo writes {paths.study.name}, "
                         f"{paths.demo_config.name}, {paths.processing_config.name}, bids/ and qsmiron/ here, "
                         "replacing files of those names; choose a new or empty folder", folder)
    _holds_cohort(paths.bids, demo.n_subjects, demo.seed, simulation)


DEMO_STUDY = """\
# The reference study's design: chronic migraine with medication overuse (MOH) against
# chronic migraine without it (CM), adjusted for age and sex; within MOH, susceptibility
# against dependence, disability and disease duration, and relapse after withdrawal.
covariates = ["age", "sex"]
regions = []
primary_regions = ["VeP", "Pu"]
measures = ["chi"]

[groups]
column = "group"
compare = ["MOH", "CM"]

[associations]
group = "MOH"
variables = ["sds", "ldq", "disease_duration", "hit6", "midas"]
method = "spearman"

[relapse]
group = "MOH"
outcome = "relapse"
time = "time_to_relapse"
event = "relapse"
count = "relapse_count"
"""
"""The study file the demo writes beside its outputs and analyses the cohort with."""


def run_demo(out_dir, n_subjects: int | None = None, seed: int = 0, n_procs: int | None = None) -> Path:
    """Simulate a small cohort and run the whole study on it.

    Parameters
    ----------
    out_dir : path
        Everything goes here (see the module docstring).
    n_subjects : int, optional
        Default ``DemoSettings().n_subjects``.
    seed : int
    n_procs : int, optional
        Local processes (default: one per core).

    Returns
    -------
    Path
        The HTML report.

    Raises
    ------
    InputError
        Too few subjects, a negative seed, or an output folder that cannot be written, before
        anything is made.
    """
    from qsmiron.pipeline.bids_app import run_bids_app

    start = time.perf_counter()
    paths = demo_paths(out_dir)
    given = {"n_subjects": n_subjects, "seed": seed, "n_procs": n_procs}
    demo = validate_settings(DemoSettings, {key: value for key, value in given.items() if value is not None},
                             what="demo settings")
    check_writable_dir(paths.out_dir)
    simulation = demo_simulation_settings()
    _check_folder(paths, demo, simulation)
    paths.out_dir.mkdir(parents=True, exist_ok=True)
    config = demo_config()
    if demo.n_procs is not None:
        config.pipeline.n_procs = demo.n_procs
    write_json_atomic(paths.demo_config, {
        "demo": demo.model_dump(mode="json"),
        "simulation": simulation.model_dump(mode="json"),
        "simulation_overrides": DEMO_SIMULATION,
        "processing": config_to_dict(config),
        "processing_overrides": DEMO_OVERRIDES,
    })
    write_config(config, paths.processing_config)
    study_path = write_text_atomic(paths.study, DEMO_STUDY)

    bids_dir = paths.bids
    _say(f"qsmiron demo: simulating {demo.n_subjects} subjects (seed {demo.seed}, "
         f"{'x'.join(f'{v:g}' for v in simulation.voxel_size_mm)} mm voxels) into {bids_dir}")
    phases = {}
    t0 = time.perf_counter()
    if simulate_once(bids_dir, demo.n_subjects, demo.seed, simulation, demo.n_procs):
        _say(f"qsmiron demo: simulated in {time.perf_counter() - t0:.0f} s")
    else:
        _say("qsmiron demo: the simulated cohort is already there (reused)")
    phases["simulation"] = time.perf_counter() - t0

    _say("qsmiron demo: reconstruction, registration and regions for every subject, then the statistics")
    t0 = time.perf_counter()
    result = run_bids_app(bids_dir, paths.out_dir, study_path=study_path, n_procs=demo.n_procs,
                          config=config)
    phases["processing and statistics"] = time.perf_counter() - t0
    phases["total"] = time.perf_counter() - start
    from qsmiron.pipeline.demo_check import process_cpu_seconds, summary_lines

    for line in summary_lines(paths, phases, process_cpu_seconds()):
        _say(f"qsmiron demo: {line}")
    return Path(result.report)
