"""A run owns its output folder and its workers: locks, SIGTERM, SIGKILL, a second run.

The runs under test are real ``run_bids_app`` calls in a child process with local worker
processes (spawn); their one step either sleeps (so that the run can be stopped while workers
are busy) or writes a small file at once (to check the rerun resumes).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from qsmiron.errors import InputError
from qsmiron.pipeline.bids_app import run_bids_app
from qsmiron.pipeline.lock import LOCK_NAME, OutputLock, terminate_as_interrupt, Terminated

SRC = Path(__file__).resolve().parents[2] / "src"

STEP_MODULE = textwrap.dedent('''
    """Steps for the lock tests: 'slow' sleeps in a worker, 'fast' writes its file at once."""
    import os
    import time
    from pathlib import Path


    def slow_step(job, log):
        pids = Path(os.environ["QSMIRON_TEST_PIDS"])
        (pids / f"{job.unit.label}.pid").write_text(str(os.getpid()))
        time.sleep(120)
        return {}


    def fast_step(job, log):
        job.out_dir.mkdir(parents=True, exist_ok=True)
        path = job.out_dir / f"{job.unit.label}_done.txt"
        path.write_text("done\\n")
        return {"done": path}
''')

RUN_SCRIPT = textwrap.dedent('''
    import sys
    import test_lock_steps
    from qsmiron.pipeline.bids_app import run_bids_app

    try:
        run_bids_app(sys.argv[1], sys.argv[2], "participant", n_procs=2, progress=False,
                     steps=[("slow", test_lock_steps.slow_step)], echo=lambda line: None)
    except KeyboardInterrupt as stop:
        sys.exit(128 + getattr(stop, "signum", 2))
''')


@pytest.fixture()
def slow_run(tiny_bids, tmp_path):
    """Start a run whose two workers sleep; yields (process, out_dir, worker pids)."""
    (tmp_path / "test_lock_steps.py").write_text(STEP_MODULE)
    pids = tmp_path / "pids"
    pids.mkdir()
    bids, out = tiny_bids(("01", "02", "03")), tmp_path / "out"
    env = {**os.environ, "QSMIRON_TEST_PIDS": str(pids),
           "PYTHONPATH": os.pathsep.join([str(tmp_path), str(SRC), os.environ.get("PYTHONPATH", "")])}
    process = subprocess.Popen([sys.executable, "-c", RUN_SCRIPT, str(bids), str(out)], env=env,
                               cwd=tmp_path, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while len(list(pids.glob("*.pid"))) < 2:
        if process.poll() is not None:
            pytest.fail(f"the run ended early: {process.stderr.read().decode()}")
        if time.monotonic() > deadline:
            process.kill()
            pytest.fail("the workers did not start within 120 s")
        time.sleep(0.2)
    workers = [int(p.read_text()) for p in pids.glob("*.pid")]
    yield process, bids, out, workers
    if process.poll() is None:
        process.kill()
        process.wait()


def _gone(pid: int) -> bool:
    """True when the process has ended (a zombie not yet reaped counts as ended)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return True
    return state in ("Z", "X")


def _wait_until_gone(pids: list[int], seconds: float) -> list[int]:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not all(_gone(pid) for pid in pids):
        time.sleep(0.1)
    return [pid for pid in pids if not _gone(pid)]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_sigterm_stops_the_workers_releases_the_folder_and_the_rerun_resumes(slow_run, tmp_path):
    process, bids, out, workers = slow_run
    # While it runs, a second run on the same folder refuses at once, naming the holder.
    with pytest.raises(InputError, match=f"another qsmiron run .*process {process.pid} on"):
        run_bids_app(bids, out, "participant", steps=[("fast", lambda job, log: {})], n_procs=1)
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) == 128 + signal.SIGTERM
    assert _wait_until_gone(workers, 10) == []
    with OutputLock(out / "qsmiron") as lock:  # free, and nothing stale was left in it
        assert lock.taken_over is None
    sys.path.insert(0, str(tmp_path))
    try:
        import test_lock_steps

        result = run_bids_app(bids, out, "participant", steps=[("fast", test_lock_steps.fast_step)],
                              n_procs=1, progress=False, echo=lambda line: None)
    finally:
        sys.path.remove(str(tmp_path))
    assert [s.status for s in result.statuses] == ["done", "done", "done"]
    leftovers = [p for p in (out / "qsmiron").rglob("*") if ".tmp" in p.name]
    assert leftovers == []


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_workers_end_within_seconds_when_the_run_is_killed_with_sigkill(slow_run):
    process, _, out, workers = slow_run
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    assert _wait_until_gone(workers, 5) == []
    with OutputLock(out / "qsmiron") as lock:  # the dead run's lock file is taken over
        assert lock.taken_over is not None and f"process {process.pid}" in lock.taken_over


def test_a_lock_names_its_holder_and_a_dead_holders_lock_is_taken_over(tmp_path):
    with OutputLock(tmp_path):
        holder = json.loads((tmp_path / LOCK_NAME).read_text())
        assert holder["pid"] == os.getpid() and "started" in holder and "host" in holder
        with pytest.raises(InputError, match=f"process {os.getpid()} on {holder['host']}"):
            OutputLock(tmp_path).acquire()
    assert (tmp_path / LOCK_NAME).read_text() == ""  # released: empty, not deleted
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()
    (tmp_path / LOCK_NAME).write_text(json.dumps({"pid": int(dead), "host": holder["host"],
                                                  "started": "earlier"}))
    with OutputLock(tmp_path) as lock:
        assert f"process {dead}" in lock.taken_over


def test_sigterm_inside_the_guard_raises_terminated_with_its_number_and_the_handler_found_returns():
    def found(signum, frame):  # a handler of the caller's own, neither the default nor the guard's
        raise AssertionError("the caller's handler ran inside the guard")

    outside = signal.signal(signal.SIGTERM, found)
    try:
        with pytest.raises(Terminated) as caught, terminate_as_interrupt():
            assert signal.getsignal(signal.SIGTERM) is not found
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)
        assert caught.value.signum == signal.SIGTERM
        assert signal.getsignal(signal.SIGTERM) is found
    finally:
        signal.signal(signal.SIGTERM, outside)


def test_the_command_reports_a_signal_in_one_line_with_its_exit_code(monkeypatch, capsys):
    from qsmiron import cli

    def terminated(args):
        raise Terminated(signal.SIGTERM)

    monkeypatch.setattr(cli, "_cmd_run", terminated)
    code = cli.main(["run", "bids", "out", "participant"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 128 + signal.SIGTERM and len(err) == 1 and "resumes" in err[0]
