"""Cohort orchestration: every subject through the steps, failures isolated, logs, progress.

These tests inject light steps (see conftest.py) to check the orchestration itself; the
end-to-end tests (test_bids_app.py, test_resume.py, test_dask.py) run the real steps.
"""

from __future__ import annotations

import os
from concurrent.futures.process import BrokenProcessPool

import pandas as pd
import pytest

from qsmiron.config import QsmironConfig
from qsmiron.io.bids import discover_bids
from qsmiron.io.derivatives import DONE_MARKER, recon_paths
from qsmiron.pipeline.cache import config_hash
from qsmiron.pipeline.cohort import collect_regions, run_cohort
from qsmiron.pipeline.runners import PoolRunner, resolve_workers
from qsmiron.records.cohort import DoneMarker


def config(**pipeline) -> QsmironConfig:
    return QsmironConfig.model_validate({"pipeline": {"progress": False, **pipeline}})


def test_every_subject_is_processed_and_regions_match_an_independent_reading(tiny_bids, light_steps,
                                                                             reference_means, tmp_path):
    bids = tiny_bids()
    units = discover_bids(bids)
    out = tmp_path / "out"
    result = run_cohort(units, out, config(), n_procs=1, steps=light_steps)
    assert [s.status for s in result.statuses] == ["done"] * 3
    regions, included = collect_regions(out, units, result.config_hash)
    assert [u.participant_id for u in included] == ["sub-01", "sub-02", "sub-03"]
    assert list(regions.columns[:2]) == ["participant_id", "region"]
    for label in ("01", "02", "03"):
        rows = regions[regions.participant_id == f"sub-{label}"]
        # The light step writes a table of the earlier form (mean_ppm): read as chi, whole brain.
        assert rows["mean"].tolist() == pytest.approx(reference_means(bids, label), rel=1e-6)
        assert set(rows["measure"]) == {"chi"} and set(rows["reference"]) == {"whole_brain"}
    marker = DoneMarker.read(out / "sub-02" / "anat" / DONE_MARKER)
    assert set(marker.outputs) == {"regions", "check"}
    assert marker.outputs["regions"].file == "sub-02_measure.tsv"
    assert set(marker.step_seconds) == {"measure", "check"}
    log = (out / "logs" / "sub-02.log").read_text()
    assert "step measure started" in log and "measured 2 echoes" in log and "step check finished" in log


def test_a_failing_subject_is_reported_with_step_and_reason_and_the_others_finish(tiny_bids, light_steps, tmp_path):
    bids = tiny_bids(flags={"02": {"PlantedFailure": True}})
    units = discover_bids(bids)
    out = tmp_path / "out"
    lines = []
    result = run_cohort(units, out, config(), n_procs=1, steps=light_steps, echo=lines.append)
    by_id = {s.participant_id: s for s in result.statuses}
    assert by_id["sub-01"].status == by_id["sub-03"].status == "done"
    failed = by_id["sub-02"]
    assert (failed.status, failed.step) == ("failed", "check")
    assert failed.reason == "RuntimeError: planted failure in the check step"
    assert not (out / "sub-02" / "anat" / DONE_MARKER).exists()
    log = (out / "logs" / "sub-02.log").read_text()
    assert "Traceback" in log and "planted failure" in log
    assert any(line.startswith("sub-02: FAILED at step check") for line in lines)
    regions, included = collect_regions(out, units, result.config_hash)
    assert sorted(regions.participant_id.unique()) == ["sub-01", "sub-03"]


def test_local_processes_give_the_same_regions_as_one_process(tiny_bids, light_steps, tmp_path, read_calls):
    bids = tiny_bids(labels=("01", "02", "03", "04"))
    units = discover_bids(bids)
    serial = run_cohort(units, tmp_path / "serial", config(), n_procs=1, steps=light_steps)
    parallel = run_cohort(units, tmp_path / "parallel", config(start_method="fork"), n_procs=2, steps=light_steps)
    assert [s.status for s in parallel.statuses] == ["done"] * 4
    a, _ = collect_regions(tmp_path / "serial", units, serial.config_hash)
    b, _ = collect_regions(tmp_path / "parallel", units, parallel.config_hash)
    pd.testing.assert_frame_equal(a, b)
    pids = {line.split()[2] for line in read_calls(tmp_path / "parallel")}
    assert 1 <= len(pids) <= 2 and str(os.getpid()) not in pids, "steps ran in (at most two) worker processes"


def test_a_dying_worker_process_is_retried_then_reported_and_the_others_finish(tiny_bids, light_steps, tmp_path,
                                                                              read_calls):
    bids = tiny_bids(labels=("01", "02", "03"), flags={"02": {"PlantedCrash": True}})
    units = discover_bids(bids)
    out = tmp_path / "out"
    result = run_cohort(units, out, config(start_method="fork", max_attempts=2), n_procs=2, steps=light_steps)
    by_id = {s.participant_id: s for s in result.statuses}
    assert by_id["sub-01"].status == by_id["sub-03"].status == "done"
    assert (by_id["sub-02"].status, by_id["sub-02"].step) == ("failed", "measure")
    assert "worker process died" in by_id["sub-02"].reason
    assert sum(line.startswith("sub-02 measure") for line in read_calls(out)) == 2  # tried twice
    assert "retrying" in (out / "logs" / "sub-02.log").read_text()


def test_a_pool_broken_before_its_dead_worker_is_seen_still_takes_new_work():
    # The race CI met: a subject's step finished and its next step was submitted while another
    # worker had already died, before that worker's future had been handled.
    runner = PoolRunner(n_workers=2, threads=1, start_method="fork")
    try:
        crashed = runner.submit(os._exit, 3)
        with pytest.raises(BrokenProcessPool):
            crashed.result(timeout=60)
        survivor = runner.submit(abs, -7)
        assert survivor.result(timeout=60) == 7
        runner.broken(crashed)  # handled late: must not replace the pool that now works
        runner.finished(crashed)
        assert runner.owner[survivor] is runner.main
        assert runner.submit(abs, -8).result(timeout=60) == 8
    finally:
        runner.close()


def test_progress_bars_on_a_terminal_and_plain_lines_otherwise(tiny_bids, light_steps, tmp_path, capsys,
                                                                monkeypatch):
    units = discover_bids(tiny_bids(labels=("01", "02")))
    monkeypatch.setattr("sys.stderr.isatty", lambda: True)
    run_cohort(units, tmp_path / "out", config(progress=True), n_procs=1, steps=light_steps)
    err = capsys.readouterr().err
    assert "subjects: 100%" in err and "measure: 100%" in err and "check: 100%" in err
    assert "sub-01: done in" in err

    monkeypatch.setattr("sys.stderr.isatty", lambda: False)  # a log file or a pipe: no bars
    run_cohort(units, tmp_path / "out2", config(progress=True), n_procs=1, steps=light_steps)
    err = capsys.readouterr().err
    assert "%|" not in err and "subjects:" not in err
    assert "sub-01: done in" in err and "sub-02: done in" in err


def test_config_hash_ignores_execution_settings_but_not_processing_ones():
    base = config_hash(QsmironConfig())
    assert config_hash(QsmironConfig.model_validate({"pipeline": {"n_procs": 7, "progress": False}})) == base
    assert config_hash(QsmironConfig.model_validate({"recon": {"unwrap": {"method": "laplacian"}}})) != base
    assert config_hash(QsmironConfig.model_validate({"roi": {"erode_voxels": 1}})) != base
    # Only the chosen method's parameters count: the others do not run.
    assert config_hash(QsmironConfig.model_validate({"recon": {"background": {"pdf": {"tol": 0.05}}}})) == base
    assert config_hash(QsmironConfig.model_validate({"recon": {"background": {"pdf_ismv": {"ismv_tol": 0.005}}}})) != base


def test_config_hash_changes_with_the_results_revision(monkeypatch):
    """Resuming after a change to what the outputs hold re-runs the subjects."""
    import qsmiron.pipeline.cache as cache

    before = config_hash(QsmironConfig())
    monkeypatch.setattr(cache, "RESULTS_REVISION", cache.RESULTS_REVISION + 1)
    assert config_hash(QsmironConfig()) != before


def test_resolve_workers_never_exceeds_the_subjects_and_splits_the_cores():
    workers, threads = resolve_workers(8, 3)
    assert workers == 3 and threads >= 1
    assert resolve_workers(1, 10, 4) == (0, 4)  # in this process
    assert resolve_workers(2, 1)[0] == 1  # processes were asked for: one worker process


def test_derivative_names_follow_bids_with_the_session_in_the_prefix(tmp_path):
    paths = recon_paths(tmp_path, "sub-01_ses-pre")
    assert paths.chimap.name == "sub-01_ses-pre_Chimap.nii.gz"
    names = [path.name for path in paths.files().values()]
    # Four maps and their sidecars, the record, six iron-specific maps and their sidecars.
    assert len(set(names)) == len(names) == 21
    assert paths.r2starmap.name == "sub-01_ses-pre_R2starmap.nii.gz"
    assert paths.chimap_paramagnetic.name == "sub-01_ses-pre_desc-paramagnetic_Chimap.nii.gz"


def long_failure_step(job, log):
    raise ValueError("x" * 5000 + " the end")


def test_a_long_failure_message_is_cut_in_the_table_but_whole_in_the_log(tiny_bids, tmp_path):
    units = discover_bids(tiny_bids(labels=("01",)))
    result = run_cohort(units, tmp_path / "out", config(), n_procs=1, steps=(("boom", long_failure_step),),
                        echo=lambda line: None)
    (status,) = result.statuses
    assert status.step == "boom" and len(status.reason) <= 300 and status.reason.endswith("(see the subject's log)")
    assert "x" * 5000 + " the end" in (tmp_path / "out" / "logs" / "sub-01.log").read_text()


def test_reproducible_registration_pins_itk_to_one_thread_and_is_part_of_the_settings_hash(tiny_bids, light_steps,
                                                                                          tmp_path, monkeypatch):
    import os

    monkeypatch.setenv("ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS", "2")
    units = discover_bids(tiny_bids(labels=("01",)))
    run_cohort(units, tmp_path / "out", config(), n_procs=1, steps=light_steps)
    assert os.environ["ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS"] == "1"
    assert config_hash(config(reproducible_registration=False)) != config_hash(config())
