"""Resume: finished subjects are skipped only while their outputs, inputs and settings hold.

The first tests use light steps (conftest.py); the last kills a real ``qsmiron run`` with
SIGKILL after its first subject and resumes it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from qsmiron.config import QsmironConfig
from qsmiron.io.bids import discover_bids
from qsmiron.io.derivatives import DONE_MARKER
from qsmiron.pipeline.cohort import collect_regions, run_cohort


def config(recon=None, **pipeline) -> QsmironConfig:
    payload = {"pipeline": {"progress": False, **pipeline}}
    if recon:
        payload["recon"] = recon
    return QsmironConfig.model_validate(payload)


def statuses(result) -> dict[str, str]:
    return {s.participant_id: s.status for s in result.statuses}


def test_a_second_run_skips_every_complete_subject(tiny_bids, light_steps, tmp_path, read_calls):
    units = discover_bids(tiny_bids())
    out = tmp_path / "out"
    run_cohort(units, out, config(), n_procs=1, steps=light_steps)
    n_calls = len(read_calls(out))
    again = run_cohort(units, out, config(n_procs=2, progress=False), n_procs=1, steps=light_steps)
    assert set(statuses(again).values()) == {"skipped"}
    assert len(read_calls(out)) == n_calls
    regions, included = collect_regions(out, units, again.config_hash)
    assert len(included) == 3


def test_a_changed_input_file_reruns_only_that_subject(tiny_bids, light_steps, tmp_path, read_calls):
    bids = tiny_bids()
    units = discover_bids(bids)
    out = tmp_path / "out"
    run_cohort(units, out, config(), n_procs=1, steps=light_steps)
    phase = bids / "sub-02" / "anat" / "sub-02_echo-2_part-phase_MEGRE.nii.gz"
    os.utime(phase, ns=(phase.stat().st_atime_ns, phase.stat().st_mtime_ns + 10**9))
    again = run_cohort(discover_bids(bids), out, config(), n_procs=1, steps=light_steps)
    assert statuses(again) == {"sub-01": "skipped", "sub-02": "done", "sub-03": "skipped"}
    sidecar = bids / "sub-03" / "anat" / "sub-03_echo-1_part-mag_MEGRE.json"
    sidecar.write_text(json.dumps({"EchoTime": 0.0041, "MagneticFieldStrength": 3.0}))
    third = run_cohort(discover_bids(bids), out, config(), n_procs=1, steps=light_steps)
    assert statuses(third) == {"sub-01": "skipped", "sub-02": "skipped", "sub-03": "done"}


def test_content_hashing_ignores_a_touched_file_but_not_changed_bytes(tiny_bids, light_steps, tmp_path):
    bids = tiny_bids()
    out = tmp_path / "out"
    run_cohort(discover_bids(bids), out, config(input_hash="content"), n_procs=1, steps=light_steps)
    mag = bids / "sub-01" / "anat" / "sub-01_echo-1_part-mag_MEGRE.nii.gz"
    os.utime(mag, ns=(mag.stat().st_atime_ns, mag.stat().st_mtime_ns + 10**9))
    again = run_cohort(discover_bids(bids), out, config(input_hash="content"), n_procs=1, steps=light_steps)
    assert set(statuses(again).values()) == {"skipped"}
    other = bids / "sub-02" / "anat" / "sub-02_echo-1_part-mag_MEGRE.nii.gz"
    mag.write_bytes(other.read_bytes())
    third = run_cohort(discover_bids(bids), out, config(input_hash="content"), n_procs=1, steps=light_steps)
    assert statuses(third)["sub-01"] == "done"


def test_changed_processing_settings_rerun_everyone_but_execution_settings_do_not(tiny_bids, light_steps, tmp_path):
    units = discover_bids(tiny_bids())
    out = tmp_path / "out"
    first = run_cohort(units, out, config(), n_procs=1, steps=light_steps)
    changed = run_cohort(units, out, config(recon={"unwrap": {"method": "laplacian"}}), n_procs=1, steps=light_steps)
    assert set(statuses(changed).values()) == {"done"}
    assert changed.config_hash != first.config_hash
    # Outputs made with the first settings are no longer counted for them.
    assert collect_regions(out, units, first.config_hash)[1] == []
    same = run_cohort(units, out, config(recon={"unwrap": {"method": "laplacian"}}, n_procs=3, threads_per_process=1),
                      n_procs=1, steps=light_steps)
    assert set(statuses(same).values()) == {"skipped"}


def test_a_deleted_or_truncated_output_makes_the_subject_run_again(tiny_bids, light_steps, tmp_path):
    units = discover_bids(tiny_bids())
    out = tmp_path / "out"
    run_cohort(units, out, config(), n_procs=1, steps=light_steps)
    (out / "sub-01" / "anat" / "sub-01_check.txt").unlink()
    tsv = out / "sub-03" / "anat" / "sub-03_measure.tsv"
    tsv.write_text(tsv.read_text()[:-5])
    again = run_cohort(units, out, config(), n_procs=1, steps=light_steps)
    assert statuses(again) == {"sub-01": "done", "sub-02": "skipped", "sub-03": "done"}
    assert (out / "sub-01" / "anat" / "sub-01_check.txt").exists()


def test_resume_off_reruns_complete_subjects(tiny_bids, light_steps, tmp_path):
    units = discover_bids(tiny_bids(labels=("01",)))
    run_cohort(units, tmp_path / "out", config(), n_procs=1, steps=light_steps)
    again = run_cohort(units, tmp_path / "out", config(resume=False), n_procs=1, steps=light_steps)
    assert statuses(again) == {"sub-01": "done"}


def interrupting_step(job, log):
    raise KeyboardInterrupt


def test_an_interrupted_rerun_leaves_no_subject_marked_done_and_clears_temporary_files(tiny_bids, light_steps,
                                                                                         tmp_path):
    units = discover_bids(tiny_bids())
    out = tmp_path / "out"
    run_cohort(units, out, config(), n_procs=1, steps=light_steps)
    leftover = out / "sub-01" / "anat" / ".sub-01_Chimap.nii.gz.abc123.tmp.nii.gz"
    leftover.write_bytes(b"half a file")
    new_settings = config(recon={"unwrap": {"method": "laplacian"}})
    with pytest.raises(KeyboardInterrupt):
        run_cohort(units, out, new_settings, n_procs=1, steps=(light_steps[0], ("check", interrupting_step)))
    # The subject under way lost its marker and its leftovers; the others were not started.
    assert not (out / "sub-01" / "anat" / DONE_MARKER).exists()
    assert not leftover.exists()
    resumed = run_cohort(units, out, new_settings, n_procs=1, steps=light_steps)
    assert set(statuses(resumed).values()) == {"done"}
    with pytest.raises(KeyboardInterrupt):
        run_cohort(units, out, config(recon={"unwrap": {"method": "romeo"}, "mask": {"magnitude": {"fill_holes": False}}}),
                   n_procs=1, steps=(light_steps[0], ("check", interrupting_step)))
    assert collect_regions(out, units, resumed.config_hash)[1] == units[1:]


def test_a_run_killed_after_its_first_subject_resumes_without_redoing_it(cohort_copy, fast_e2e_config, tmp_path):
    """SIGKILL a real ``qsmiron run`` once one subject is done; the rerun skips that one only."""
    participants = pd.read_csv(cohort_copy(name="all") / "participants.tsv", sep="\t")
    labels = [pid[4:] for pid in participants.participant_id[:2]]
    bids = cohort_copy(labels=labels)
    config_path = tmp_path / "config.json"
    config_path.write_text(fast_e2e_config(n_procs=1).model_dump_json())
    out = tmp_path / "out"
    root = out / "qsmiron"
    process = subprocess.Popen([sys.executable, "-m", "qsmiron", "run", str(bids), str(out), "participant",
                                "--config", str(config_path)], stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, start_new_session=True)
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and process.poll() is None:
            if list(root.glob(f"sub-*/anat/{DONE_MARKER}")):
                break
            time.sleep(0.2)
        assert process.poll() is None, process.stderr.read().decode()[-2000:]
        os.killpg(process.pid, signal.SIGKILL)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    done_before = sorted(p.parents[1].name for p in root.glob(f"sub-*/anat/{DONE_MARKER}"))
    assert len(done_before) == 1
    assert not (root / "regions.tsv").exists()

    from qsmiron.pipeline.bids_app import run_bids_app

    result = run_bids_app(bids, out, "participant", config=fast_e2e_config(n_procs=1))
    status = {s.participant_id: s.status for s in result.statuses}
    assert status == {pid: ("skipped" if pid in done_before else "done") for pid in status}
    assert sorted(pd.read_csv(root / "regions.tsv", sep="\t").participant_id.unique()) == sorted(status)
    leftovers = [p for p in root.rglob("*") if p.name.startswith(".") and ".tmp" in p.name]
    assert leftovers == []
