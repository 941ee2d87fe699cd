"""Each subject's log keeps its own lines when steps of several subjects share one process."""

from __future__ import annotations

import logging
import threading

from qsmiron.config import QsmironConfig
from qsmiron.io.bids import discover_bids
from qsmiron.pipeline.steps import SubjectJob, execute_step


def test_a_step_ending_in_one_thread_does_not_silence_another(tiny_bids, tmp_path):
    """Dask runs subjects as threads of one worker: sub-02 ends while sub-01 is still logging."""
    units = discover_bids(tiny_bids(labels=("01", "02")))
    config = QsmironConfig.model_validate({"pipeline": {"progress": False}})
    first_started, second_started, second_ended = threading.Event(), threading.Event(), threading.Event()

    def slow_step(job, log):
        first_started.set()
        assert second_ended.wait(10)
        log.info("late line of %s", job.unit.label)
        return {}

    def fast_step(job, log):
        second_started.set()
        assert first_started.wait(10)
        log.info("line of %s", job.unit.label)
        return {}

    jobs = [SubjectJob(unit, tmp_path / unit.label, tmp_path / "logs" / f"{unit.label}.log", config)
            for unit in units]
    level_before = logging.getLogger("qsmiron").level

    def run_second():
        execute_step(jobs[1], [("fast", fast_step)], 0)
        second_ended.set()

    # sub-02 starts first and ends first: the order that used to restore the level too early
    threads = [threading.Thread(target=run_second),
               threading.Thread(target=execute_step, args=(jobs[0], [("slow", slow_step)], 0))]
    threads[0].start()
    assert second_started.wait(10)
    threads[1].start()
    for thread in threads:
        thread.join(20)
    first_log = jobs[0].log_path.read_text()
    assert "late line of sub-01" in first_log and "step slow finished" in first_log
    assert "line of sub-02" not in first_log
    assert "line of sub-02" in jobs[1].log_path.read_text()
    assert logging.getLogger("qsmiron").level == level_before


def test_the_recon_step_logs_its_record_warnings(tiny_bids, tmp_path, monkeypatch):
    """As the regions step logs its record's: a bipolar readout corrected is in the subject's log."""
    from types import SimpleNamespace

    import qsmiron.pipeline.single as single
    import qsmiron.records.recon as recon_records
    from qsmiron.pipeline.steps import IRON_ROLES, recon_step

    unit = discover_bids(tiny_bids(labels=("01",)))[0]
    config = QsmironConfig.model_validate({"pipeline": {"progress": False}})
    job = SubjectJob(unit, tmp_path / unit.label, tmp_path / "logs" / f"{unit.label}.log", config)
    paths = SimpleNamespace(record=tmp_path / "r.json", files=lambda: {}, **{role: None for role in IRON_ROLES})
    monkeypatch.setattr(single, "reconstruct_files", lambda *args, **kwargs: paths)
    monkeypatch.setattr(recon_records.ReconRecord, "read", classmethod(
        lambda cls, path: SimpleNamespace(warnings=["a bipolar readout; corrected"])))
    execute_step(job, [("recon", recon_step)], 0)
    assert "a bipolar readout; corrected" in job.log_path.read_text()
