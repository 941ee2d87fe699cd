"""The participant level of a cohort: every subject through its steps, and the cohort table.

Each subject goes through the steps (``qsmiron.pipeline.steps.DEFAULT_STEPS``: ``recon``
then ``roi``); every step is one task, so the orchestrator knows which step of which subject
is running, finished or failed, drives a progress bar per step, and carries on with the other
subjects when one fails. Tasks run in this process, in local worker processes or on a Dask
cluster (``qsmiron.pipeline.runners``). Finished subjects are skipped on a later run when
their inputs and settings are unchanged (``qsmiron.pipeline.cache``).
"""

from __future__ import annotations

import datetime
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from qsmiron.config import QsmironConfig
from qsmiron.io.bids import SubjectInputs
from qsmiron.io.derivatives import ROLE_REGIONS, cohort_paths
from qsmiron.pipeline import cache
from qsmiron.pipeline.runners import (DaskRunner, PoolRunner, SerialRunner, connect, estimate_subject_gb,
                                      is_infrastructure_error, resolve_workers)
from qsmiron.pipeline.steps import DEFAULT_STEPS, StepFunction, StepOutcome, SubjectJob, execute_step


@dataclass
class SubjectStatus:
    """What happened to one subject (and session) in a run.

    ``status``: ``done`` (processed now), ``skipped`` (complete from an earlier run), ``failed``
    (a step failed: ``step`` and ``reason`` say which and why) or ``invalid`` (excluded by
    validation before any work).
    """

    participant_id: str
    session: str | None
    status: str
    step: str | None = None
    reason: str | None = None
    seconds: float = 0.0
    log: str | None = None
    out_dir: str | None = None

    @property
    def label(self) -> str:
        return self.participant_id if self.session is None else f"{self.participant_id}_{self.session}"

    @property
    def succeeded(self) -> bool:
        return self.status in ("done", "skipped")


@dataclass
class CohortResult:
    statuses: list[SubjectStatus]
    config_hash: str
    seconds: float = 0.0

    @property
    def succeeded(self) -> list[SubjectStatus]:
        return [s for s in self.statuses if s.succeeded]

    @property
    def failed(self) -> list[SubjectStatus]:
        return [s for s in self.statuses if not s.succeeded]


def _key(unit: SubjectInputs) -> tuple[str, str | None]:
    return unit.participant_id, unit.session


def _log_line(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    stamp = datetime.datetime.now().strftime("%Y-%m-%d %H:%M:%S")
    with path.open("a", encoding="utf-8") as handle:
        handle.write(f"{stamp} ERROR   qsmiron.pipeline.cohort: {text}\n")


class _Progress:
    """One bar for the cohort and one per step (tqdm, on stderr)."""

    def __init__(self, n_units: int, n_jobs: int, steps, enabled: bool) -> None:
        from tqdm import tqdm

        self.bars = {"cohort": tqdm(total=n_units, desc="subjects", unit="subj", position=0, disable=not enabled,
                                    initial=n_units - n_jobs, leave=True)}
        for position, (name, _) in enumerate(steps, start=1):
            self.bars[name] = tqdm(total=n_jobs, desc=f"  {name}", unit="subj", position=position,
                                   disable=not enabled, leave=True)

    def step_done(self, *names: str) -> None:
        for name in names:
            self.bars[name].update(1)

    def close(self) -> None:
        for bar in self.bars.values():
            bar.close()


class _Orchestration:
    """The state of one run: jobs waiting, tasks in flight, statuses, and how each outcome moves on."""

    def __init__(self, jobs, steps, runner, settings, digests, config_digest, statuses, progress, echo) -> None:
        self.waiting = list(reversed(jobs))
        self.steps, self.runner, self.settings = steps, runner, settings
        self.digests, self.config_digest = digests, config_digest
        self.statuses, self.progress, self.echo = statuses, progress, echo
        self.inflight: dict[Any, tuple[SubjectJob, int, int]] = {}
        self.crashed: SubjectJob | None = None
        """With ``stop_on_first_crash``: the subject that failed first (no subject starts after it)."""

    def submit(self, job: SubjectJob, index: int, attempt: int) -> None:
        future = self.runner.submit(execute_step, job, self.steps, index, isolated=attempt > 1)
        self.inflight[future] = (job, index, attempt)

    def start_subjects(self) -> None:
        # Depth first: a subject's next step is submitted as soon as its step ends, and a new
        # subject starts only when a worker is free, so subjects finish one after another.
        while self.waiting and len(self.inflight) < self.runner.capacity:
            job = self.waiting.pop()
            cache.clear_for_rerun(job.out_dir)
            self.submit(job, 0, 1)

    def finish(self, job: SubjectJob, status: str, step: str | None = None, reason: str | None = None) -> None:
        seconds = sum(job.step_seconds.values())
        self.statuses[_key(job.unit)] = SubjectStatus(job.unit.participant_id, job.unit.session, status, step,
                                                      reason, round(seconds, 3), str(job.log_path), str(job.out_dir))
        self.progress.step_done("cohort")
        if status == "done":
            self.echo(f"{job.unit.label}: done in {seconds:.1f} s")
        else:
            self.echo(f"{job.unit.label}: FAILED at step {step}: {reason} (log: {job.log_path})")

    def outcome_of(self, future, job: SubjectJob, name: str, attempt: int, index: int) -> StepOutcome | None:
        """The step's outcome; None when the worker was lost and the step resubmitted."""
        try:
            outcome: StepOutcome = future.result()
        except Exception as exc:  # noqa: BLE001 - infrastructure trouble, not the step's error
            if not is_infrastructure_error(exc):
                raise
            self.runner.broken(future)
            self.runner.finished(future)
            if attempt < self.settings.max_attempts:
                _log_line(job.log_path, f"{job.unit.label}: step {name}: worker lost ({type(exc).__name__}), retrying")
                self.submit(job, index, attempt + 1)
                return None
            outcome = StepOutcome(name, False, error=f"the worker process died ({type(exc).__name__}: {exc}); "
                                                     "out of memory?", error_type=type(exc).__name__)
            _log_line(job.log_path, f"{job.unit.label}: step {name} failed: {outcome.error}")
            return outcome
        self.runner.finished(future)
        return outcome

    def handle(self, future) -> None:
        job, index, attempt = self.inflight.pop(future)
        name = self.steps[index][0]
        outcome = self.outcome_of(future, job, name, attempt, index)
        if outcome is None:
            return
        self.progress.step_done(name)
        job.step_seconds[name] = outcome.seconds
        if not outcome.ok:
            self.progress.step_done(*(later for later, _ in self.steps[index + 1:]))
            self.finish(job, "failed", name, outcome.error)
            if self.settings.stop_on_first_crash and self.crashed is None:
                self.crashed = job
            return
        job.outputs.update(outcome.outputs)
        if index + 1 < len(self.steps):
            self.submit(job, index + 1, 1)
            return
        cache.write_marker(job.out_dir, job.unit, job.outputs, job.step_seconds, self.digests[_key(job.unit)],
                           self.config_digest, within=job.out_dir.parents[len(job.unit.relative_dir.parts) - 1])
        self.finish(job, "done")

    def run(self) -> None:
        self.start_subjects()
        while self.inflight and self.crashed is None:
            for future in self.runner.wait_any(list(self.inflight)):
                self.handle(future)
            if self.crashed is None:
                self.start_subjects()
        if self.crashed is not None:
            self.stop_after_crash()

    def stop_after_crash(self) -> None:
        """``stop_on_first_crash``: the subjects running or waiting are not run (the caller stops the workers)."""
        crashed = self.crashed.unit.label
        for job in [job for job, _, _ in self.inflight.values()] + list(reversed(self.waiting)):
            if _key(job.unit) not in self.statuses:
                self.statuses[_key(job.unit)] = SubjectStatus(
                    job.unit.participant_id, job.unit.session, "failed", None,
                    f"not run: the run stopped at the first failure ({crashed}; stop_on_first_crash)",
                    log=str(job.log_path), out_dir=str(job.out_dir))
        self.inflight.clear()
        self.waiting.clear()
        self.echo(f"qsmiron: stopped at the first failure ({crashed}); the other subjects were not run")


def _runner(jobs: Sequence[SubjectJob], settings, n_procs, dask_scheduler, dask_client, echo, work_dir=None):
    """The runner for this run, where it runs (in words), and a Dask client to close (or None)."""
    if dask_client is not None or dask_scheduler is not None:
        own = None
        if dask_client is None:
            dask_client = own = connect(dask_scheduler)
        return DaskRunner(dask_client, work_dir=work_dir), "on the Dask cluster", own
    workers, threads = resolve_workers(n_procs if n_procs is not None else settings.n_procs, len(jobs),
                                       settings.threads_per_process)
    if settings.mem_gb is not None and workers > 1:
        peak_gb = max(estimate_subject_gb(job.unit) for job in jobs)
        fitting = max(1, int(settings.mem_gb // peak_gb))
        if fitting < workers:
            echo(f"qsmiron: {fitting} subject(s) at once instead of {workers}: about {peak_gb:.1f} GB each, "
                 f"mem_gb {settings.mem_gb:g}")
            workers = fitting if fitting > 1 else 0
    if workers == 0:
        return SerialRunner(threads if settings.threads_per_process is not None else None), "in this process", None
    return PoolRunner(workers, threads, settings.start_method), f"in {workers} process(es) x {threads} thread(s)", None


def run_cohort(units: Sequence[SubjectInputs], out_root: str | os.PathLike, config: QsmironConfig, *,
               n_procs: int | None = None, dask_scheduler: str | None = None, dask_client=None,
               steps: Sequence[tuple[str, StepFunction]] | None = None,
               progress: bool | None = None, echo: Callable[[str], None] | None = None,
               work_dir: str | os.PathLike | None = None) -> CohortResult:
    """Run every subject through the steps, in parallel, skipping those already complete.

    Parameters
    ----------
    units : sequence of SubjectInputs
        Validated subjects (``qsmiron.io.bids.valid_subjects``).
    out_root : path
        The derivative dataset (``OUT_DIR/qsmiron``); subject ``X`` goes to ``sub-X/anat``,
        its log to ``logs/sub-X.log`` (``qsmiron.io.derivatives.CohortPaths``).
    config : QsmironConfig
    n_procs : int, optional
        Local worker processes; default ``config.pipeline.n_procs`` (None = one per core).
        1 runs everything in this process.
    dask_scheduler : str, optional
        Address of a Dask distributed scheduler (``tcp://host:8786``); the tasks run on its
        workers, which must see the same file system and have qsmiron installed.
    dask_client : distributed.Client, optional
        An existing client instead of an address.
    steps : sequence of (name, function), optional
        Default ``DEFAULT_STEPS``.
    progress : bool, optional
        Progress bars; default ``config.pipeline.progress`` when stderr is a terminal.
    echo : callable, optional
        Receives one line per finished or failed subject (default: printed above the bars).
    work_dir : path, optional
        The run's work folder (``--work-dir``). Local workers inherit it from this process's
        environment; tasks on a Dask cluster are given it (``runners.DaskRunner``), so it must
        be on a file system the cluster's workers share.

    Returns
    -------
    CohortResult
    """
    from tqdm import tqdm

    start = time.perf_counter()
    paths = cohort_paths(out_root)
    steps = tuple(steps or DEFAULT_STEPS)
    settings = config.pipeline
    config_digest = cache.config_hash(config, steps)
    echo = echo or (lambda line: tqdm.write(line, file=sys.stderr))
    statuses: dict[tuple[str, str | None], SubjectStatus] = {}
    digests: dict[tuple[str, str | None], str] = {}
    jobs: list[SubjectJob] = []
    for unit in units:
        out_dir, log_path = paths.subject_dir(unit.relative_dir), paths.subject_log(unit.label)
        digests[_key(unit)] = cache.inputs_hash(unit, settings.input_hash)
        if settings.resume and cache.marker_is_valid(out_dir, digests[_key(unit)], config_digest):
            statuses[_key(unit)] = SubjectStatus(unit.participant_id, unit.session, "skipped", log=str(log_path),
                                                 out_dir=str(out_dir))
        else:
            jobs.append(SubjectJob(unit=unit, out_dir=out_dir, log_path=log_path, config=config))
    runner, own_client = None, None
    if jobs:
        runner, where, own_client = _runner(jobs, settings, n_procs, dask_scheduler, dask_client, echo, work_dir)
        skipped = len(units) - len(jobs)
        echo(f"qsmiron: {len(jobs)} subject(s) to process {where}"
             + (f", {skipped} already complete (skipped)" if skipped else ""))
    elif units:
        echo(f"qsmiron: all {len(units)} subject(s) already complete (skipped)")
    # Bars only on a terminal: in a log file or a pipe they are noise; the echoed lines remain.
    bars = _Progress(len(units), len(jobs), steps,
                     settings.progress and sys.stderr.isatty() if progress is None else progress)
    try:
        if runner is not None:
            orchestration = _Orchestration(jobs, steps, runner, settings, digests, config_digest, statuses, bars, echo)
            orchestration.run()
            if orchestration.crashed is not None:  # stop the subjects still running now
                runner.close(abort=True)
                runner = None
    except BaseException:
        if runner is not None:
            runner.close(abort=True)
            runner = None
        raise
    finally:
        if runner is not None:
            runner.close()
        if own_client is not None:
            own_client.close()
        bars.close()
    return CohortResult([statuses[_key(u)] for u in units], config_digest, time.perf_counter() - start)


def collect_regions(out_root: str | os.PathLike, units: Sequence[SubjectInputs], config_digest: str,
                    *, inputs_method: str = "stat"):
    """The regional table of every complete subject: ``participant_id`` [``session``] + the
    subject's table (region, hemisphere, measure, reference, unit, mean, ...; one tidy long form).

    A subject counts when its done-marker matches its current inputs and ``config_digest``
    (outputs made with other settings are left out, so one table never mixes settings).

    Returns
    -------
    (DataFrame, list of SubjectInputs)
        The table and the subjects in it.
    """
    import pandas as pd

    from qsmiron.stats.regions import upgrade_regions_table

    paths = cohort_paths(out_root)
    frames, included = [], []
    with_sessions = any(unit.session is not None for unit in units)
    for unit in units:
        out_dir = paths.subject_dir(unit.relative_dir)
        if not cache.marker_is_valid(out_dir, cache.inputs_hash(unit, inputs_method), config_digest):
            continue
        regions = cache.read_marker(out_dir).outputs.get(ROLE_REGIONS)
        if regions is None:
            continue
        frame = pd.read_csv(out_dir / regions.file, sep="\t", na_values=["n/a"], keep_default_na=False)
        frame = upgrade_regions_table(frame)  # a subject finished by an earlier version: chi only
        frame.insert(0, "participant_id", unit.participant_id)
        if with_sessions:
            frame.insert(1, "session", unit.session or "n/a")
        frames.append(frame)
        included.append(unit)
    if not frames:
        return pd.DataFrame(columns=["participant_id"]), included
    return pd.concat(frames, ignore_index=True), included
