"""The participant level of a cohort: every subject through reconstruction and regions.

Each subject goes through the steps in ``DEFAULT_STEPS`` (``recon`` then ``roi``); every step
is one task, so the orchestrator knows which step of which subject is running, finished or
failed, drives a progress bar per step, and carries on with the other subjects when one
fails. Tasks run in this process (one process), in local worker processes
(``concurrent.futures.ProcessPoolExecutor``) or on a Dask distributed cluster; a task reads
its inputs from and writes its outputs to files, so the results are the same either way.

Resume: a subject's outputs are written file by file atomically into its derivative folder,
and a done-marker (``.qsmiron-done.json``) is written last, atomically, holding the hash of
the inputs, the hash of the settings that change results and the size of every output. A
later run skips a subject whose marker matches; a subject about to run first loses its
marker, so a run killed at any moment never leaves a folder that is taken as done.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import logging
import os
import sys
import threading
import time
import traceback
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from qsmiron.config import QsmironConfig
from qsmiron.errors import InputError
from qsmiron.io.atomic import write_json_atomic
from qsmiron.io.bids import SubjectInputs

DONE_MARKER = ".qsmiron-done.json"
LOG_FOLDER = "logs"
MAX_REASON_CHARS = 300
"""Failure reasons shown and tabulated are cut to this; the subject's log has them whole."""

StepFunction = Callable[["SubjectJob", logging.Logger], dict]
"""A step: reads ``job`` (inputs, earlier outputs, settings), writes files into
``job.out_dir``, returns ``{key: path}`` of what it wrote."""


# --------------------------------------------------------------------------------------------
# Names of the derivative files


def atlas_label(atlas: str) -> str:
    """A BIDS label for the atlas: the built-in name, or the label file's stem, alphanumeric."""
    name = Path(atlas).name
    for suffix in (".nii.gz", ".nii"):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
    cleaned = "".join(ch for ch in name if ch.isalnum())
    return cleaned or "custom"


def derivative_names(label: str) -> dict[str, str]:
    """File names of the reconstruction outputs of one subject (``label`` = ``sub-X[_ses-Y]``)."""
    return {
        "Chimap": f"{label}_Chimap.nii.gz",
        "mask": f"{label}_desc-qsm_mask.nii.gz",
        "fieldmap": f"{label}_desc-total_fieldmap.nii.gz",
        "localfield": f"{label}_desc-local_fieldmap.nii.gz",
        "recon_json": f"{label}_desc-recon_qsm.json",
    }


def regions_name(label: str, atlas: str) -> str:
    return f"{label}_atlas-{atlas_label(atlas)}_regions.tsv"


_MAP_SIDECARS = {
    "Chimap": {"Units": "ppm", "Description": "magnetic susceptibility relative to the mean of the mask "
                                             "(see the recon JSON for the reference)"},
    "mask": {"Type": "Brain", "Description": "voxels where Chimap and the local field are valid"},
    "fieldmap": {"Units": "Hz", "Description": "total field from the multi-echo phase"},
    "localfield": {"Units": "ppm", "Description": "local field after background field removal"},
}


# --------------------------------------------------------------------------------------------
# Jobs and steps


@dataclass
class SubjectJob:
    """Everything a worker needs for one subject; plain data, so it pickles to any worker."""

    unit: SubjectInputs
    out_dir: Path
    log_path: Path
    config: QsmironConfig
    outputs: dict[str, str] = field(default_factory=dict)
    step_seconds: dict[str, float] = field(default_factory=dict)


@dataclass
class StepOutcome:
    step: str
    ok: bool
    outputs: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0
    error: str | None = None
    error_type: str | None = None


def recon_step(job: SubjectJob, log: logging.Logger) -> dict:
    """Multi-echo GRE to susceptibility (``qsmiron.pipeline.single.reconstruct_files``)."""
    from qsmiron.pipeline.single import reconstruct_files

    unit = job.unit
    log.info("magnitude: %s", ", ".join(p.name for p in unit.magnitude))
    log.info("phase: %s", ", ".join(p.name for p in unit.phase))
    log.info("echo times (s): %s; field strength: %s T", unit.echo_times_s, unit.field_strength_t)
    paths = reconstruct_files(unit.magnitude, unit.phase, job.out_dir, echo_times_s=unit.echo_times_s,
                              field_strength_t=unit.field_strength_t, settings=job.config,
                              names=derivative_names(unit.label))
    outputs = {key: str(path) for key, path in paths.items()}
    bids_root = unit.anat_dir.parents[len(unit.relative_dir.parts)]
    sources = [f"bids:raw:{path.relative_to(bids_root)}" for path in unit.magnitude + unit.phase]
    for key, sidecar in _MAP_SIDECARS.items():
        if key in paths:
            json_path = Path(str(paths[key]).replace(".nii.gz", ".json"))
            write_json_atomic(json_path, dict(sidecar, Sources=sources))
            outputs[f"{key}_json"] = str(json_path)
    return outputs


def roi_step(job: SubjectJob, log: logging.Logger) -> dict:
    """Atlas regions in subject space and their susceptibility (``qsmiron.roi.api.roi_from_files``)."""
    from qsmiron.roi.api import roi_from_files

    unit = job.unit
    atlas = job.config.roi.atlas
    tsv = job.out_dir / regions_name(unit.label, atlas)
    frame = roi_from_files(job.outputs["Chimap"], unit.magnitude[0], tsv, atlas=atlas, settings=job.config,
                           mask=job.outputs.get("mask"))
    log.info("%d regions measured", len(frame))
    outputs = {"regions": str(tsv)}
    stem = tsv.with_suffix("")
    for key, path in (("roi_json", stem.with_name(stem.name + ".json")),
                      ("qc_atlas", stem.with_name(stem.name + "_qc_atlas.png")),
                      ("qc_registration", stem.with_name(stem.name + "_qc_registration.png"))):
        if path.exists():
            outputs[key] = str(path)
    return outputs


DEFAULT_STEPS: tuple[tuple[str, StepFunction], ...] = (("recon", recon_step), ("roi", roi_step))


class _ThreadFilter(logging.Filter):
    def __init__(self) -> None:
        super().__init__()
        self.thread = threading.get_ident()

    def filter(self, record: logging.LogRecord) -> bool:
        return record.thread == self.thread


def execute_step(job: SubjectJob, steps: Sequence[tuple[str, StepFunction]], index: int) -> StepOutcome:
    """Run step ``index`` of ``steps`` for ``job`` in this process; never raises.

    Everything the step and the libraries under it log (logger ``qsmiron``) goes to the
    subject's log file, with the traceback when the step fails.
    """
    name, function = steps[index]
    job.log_path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(job.log_path, mode="a", encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    handler.addFilter(_ThreadFilter())
    package_logger = logging.getLogger("qsmiron")
    previous_level = package_logger.level
    package_logger.addHandler(handler)
    if package_logger.level == logging.NOTSET or package_logger.level > logging.INFO:
        package_logger.setLevel(logging.INFO)
    log = logging.getLogger(f"qsmiron.pipeline.{name}")
    if job.config.pipeline.reproducible_registration:
        # ITK reads this once, when the process first registers: set it before that happens.
        os.environ["ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS"] = "1"
    start = time.perf_counter()
    try:
        log.info("%s: step %s started (pid %d)", job.unit.label, name, os.getpid())
        import warnings

        with warnings.catch_warnings(record=True) as caught:
            if threading.current_thread() is threading.main_thread():
                warnings.simplefilter("always")
            outputs = function(job, log)
        for item in caught:
            log.warning("%s: %s", item.category.__name__, item.message)
        seconds = time.perf_counter() - start
        log.info("%s: step %s finished in %.1f s", job.unit.label, name, seconds)
        return StepOutcome(name, True, {k: str(v) for k, v in (outputs or {}).items()}, seconds)
    except BaseException as exc:  # noqa: BLE001 - a failed subject must not stop the cohort
        if isinstance(exc, KeyboardInterrupt):
            raise
        seconds = time.perf_counter() - start
        if isinstance(exc, InputError):
            reason = exc.one_line()
            sub_step = exc.step
            if sub_step:
                reason = f"{sub_step}: {reason}"
        else:
            reason = f"{type(exc).__name__}: {' '.join(str(exc).split())}"
        log.error("%s: step %s failed after %.1f s: %s\n%s", job.unit.label, name, seconds, reason,
                  traceback.format_exc())
        if len(reason) > MAX_REASON_CHARS:  # the whole message is in the log
            reason = reason[: MAX_REASON_CHARS - 30].rstrip() + " ... (see the subject's log)"
        return StepOutcome(name, False, {}, seconds, reason, type(exc).__name__)
    finally:
        package_logger.removeHandler(handler)
        package_logger.setLevel(previous_level)
        handler.close()


def _init_worker(threads: int) -> None:
    """Limit each local worker process to its share of the cores."""
    for variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS",
                     "VECLIB_MAXIMUM_THREADS"):
        os.environ[variable] = str(threads)
    os.environ.setdefault("ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS", str(threads))
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(threads)
    except ImportError:  # pragma: no cover - threadpoolctl comes with scikit-learn
        pass


# --------------------------------------------------------------------------------------------
# Hashes and the done-marker


def config_hash(config: QsmironConfig, steps: Sequence[tuple[str, StepFunction]] = DEFAULT_STEPS) -> str:
    """SHA-256 of every setting that changes a subject's results, and of the steps run.

    The ``pipeline`` block (processes, resume, progress) changes no result and is left out,
    except ``reproducible_registration``.
    """
    from qsmiron import __version__

    payload = config.model_dump(mode="json")
    pipeline = payload.pop("pipeline", {}) or {}
    payload["_reproducible_registration"] = pipeline.get("reproducible_registration", True)
    payload["_steps"] = [f"{name}:{getattr(fn, '__module__', '')}.{getattr(fn, '__qualname__', '')}"
                         for name, fn in steps]
    payload["_qsmiron_version"] = __version__
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def _file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def inputs_hash(unit: SubjectInputs, method: str = "stat") -> str:
    """SHA-256 over the subject's input files (images and sidecars).

    ``stat``: absolute path, size and modification time of each file; ``content``: the
    files' bytes (and names), so a copied dataset is recognised as unchanged.
    """
    digest = hashlib.sha256()
    for path in unit.input_files():
        path = Path(path)
        if method == "content":
            digest.update(f"{path.name}\0{_file_digest(path)}\n".encode())
        else:
            stat = path.stat()
            digest.update(f"{path.resolve()}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def marker_path(out_dir: Path) -> Path:
    return Path(out_dir) / DONE_MARKER


def read_marker(out_dir: Path) -> dict | None:
    path = marker_path(out_dir)
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return None
    return payload if isinstance(payload, dict) else None


def marker_is_valid(out_dir: Path, inputs_digest: str, config_digest: str) -> bool:
    """True when the subject's outputs are complete and were made from these inputs and settings."""
    marker = read_marker(out_dir)
    if marker is None or marker.get("inputs_hash") != inputs_digest or marker.get("config_hash") != config_digest:
        return False
    outputs = marker.get("outputs")
    if not isinstance(outputs, dict) or not outputs:
        return False
    for item in outputs.values():
        path = Path(out_dir) / item.get("file", "")
        if not path.is_file() or path.stat().st_size != item.get("size"):
            return False
    return True


def _write_marker(job: SubjectJob, inputs_digest: str, config_digest: str) -> None:
    outputs = {}
    for key, value in job.outputs.items():
        path = Path(value)
        try:
            relative = path.relative_to(job.out_dir)
        except ValueError:
            continue  # a file outside the subject folder is not the subject's output
        outputs[key] = {"file": str(relative), "size": path.stat().st_size}
    write_json_atomic(marker_path(job.out_dir), {
        "participant_id": job.unit.participant_id,
        "session": job.unit.session,
        "inputs_hash": inputs_digest,
        "config_hash": config_digest,
        "outputs": outputs,
        "step_seconds": {k: round(v, 3) for k, v in job.step_seconds.items()},
        "finished": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    })


def _clear_for_rerun(out_dir: Path) -> None:
    """Remove the marker and leftovers of an interrupted run (temporary files and folders)."""
    marker = marker_path(out_dir)
    if marker.exists():
        marker.unlink()
    if not out_dir.is_dir():
        return
    import shutil

    for entry in out_dir.iterdir():
        if entry.name.startswith(".") and ".tmp" in entry.name:
            if entry.is_dir():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)


# --------------------------------------------------------------------------------------------
# Running tasks: in process, local processes, Dask


class _SerialRunner:
    """Runs each task at once in this process (one subject at a time)."""

    capacity = 1

    def submit(self, function, *args, isolated: bool = False) -> Future:
        future: Future = Future()
        try:
            future.set_result(function(*args))
        except BaseException as exc:  # noqa: BLE001
            if isinstance(exc, KeyboardInterrupt):
                raise
            future.set_exception(exc)
        return future

    def wait_any(self, futures) -> list:
        return list(futures)[:1]

    def broken(self, future) -> None:  # pragma: no cover - nothing to restart
        pass

    def finished(self, future) -> None:
        pass

    def close(self, abort: bool = False) -> None:
        pass


class _PoolRunner:
    """Local worker processes.

    When a worker dies (killed, out of memory) the pool breaks and every task in it fails
    with ``BrokenProcessPool``, so the culprit is unknown: the pool is replaced and each of
    those tasks is retried alone in a one-process pool of its own, where a second death can
    only be its own.
    """

    def __init__(self, n_workers: int, threads: int, start_method: str) -> None:
        import multiprocessing

        self.n_workers, self.threads = n_workers, threads
        self.capacity = n_workers
        self.context = multiprocessing.get_context(start_method)
        self.main = self._new(n_workers)
        self.owner: dict[Future, ProcessPoolExecutor] = {}

    def _new(self, n_workers: int) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(max_workers=n_workers, mp_context=self.context,
                                   initializer=_init_worker, initargs=(self.threads,))

    def submit(self, function, *args, isolated: bool = False) -> Future:
        executor = self._new(1) if isolated else self.main
        try:
            future = executor.submit(function, *args)
        except BrokenProcessPool:
            # A worker died after the futures being handled completed, before its own future
            # was seen: the main pool is broken already, so it is replaced now.
            self._replace_main()
            executor = self.main
            future = executor.submit(function, *args)
        self.owner[future] = executor
        return future

    def _replace_main(self) -> None:
        self.main.shutdown(wait=False, cancel_futures=True)
        self.main = self._new(self.n_workers)

    def wait_any(self, futures) -> list:
        done, _ = wait(list(futures), return_when=FIRST_COMPLETED)
        return list(done)

    def broken(self, future) -> None:
        if self.owner.get(future) is self.main:
            self._replace_main()

    def finished(self, future) -> None:
        executor = self.owner.pop(future, None)
        if executor is not None and executor is not self.main:
            executor.shutdown(wait=False)

    def close(self, abort: bool = False) -> None:
        executors = {id(e): e for e in [self.main, *self.owner.values()]}.values()
        for executor in executors:
            if not abort:
                executor.shutdown(wait=True, cancel_futures=True)
                continue
            # Interrupted: stop the workers now rather than wait for their current subject.
            processes = list((getattr(executor, "_processes", None) or {}).values())
            executor.shutdown(wait=False, cancel_futures=True)
            for process in processes:
                if process.is_alive():
                    process.terminate()


class _DaskRunner:
    """Tasks on a Dask distributed cluster (the scheduler itself retries tasks of lost workers)."""

    def __init__(self, client) -> None:
        from distributed import as_completed

        self.client = client
        try:
            self.capacity = max(1, sum(client.nthreads().values()))
        except Exception:  # noqa: BLE001 - a scheduler that does not say: one task per worker later
            self.capacity = 1
        self.completed = as_completed(loop=client.loop)
        self.submitted: list = []

    def submit(self, function, *args, isolated: bool = False):
        future = self.client.submit(function, *args, pure=False)
        self.completed.add(future)
        self.submitted.append(future)
        return future

    def wait_any(self, futures) -> list:
        return [next(self.completed)]

    def broken(self, future) -> None:
        pass

    def finished(self, future) -> None:
        pass

    def close(self, abort: bool = False) -> None:
        if abort:
            self.client.cancel([f for f in self.submitted if not f.done()])


def _is_infrastructure_error(exc: BaseException) -> bool:
    if isinstance(exc, BrokenProcessPool):
        return True
    return type(exc).__name__ in ("KilledWorker", "CancelledError", "CommClosedError")


# --------------------------------------------------------------------------------------------
# The cohort


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


def unit_out_dir(out_root: Path, unit: SubjectInputs) -> Path:
    """``OUT/qsmiron/sub-X[/ses-Y]/anat``: where a subject's derivatives go."""
    return Path(out_root) / unit.relative_dir / "anat"


def unit_log_path(out_root: Path, unit: SubjectInputs) -> Path:
    return Path(out_root) / LOG_FOLDER / f"{unit.label}.log"


def resolve_workers(n_procs: int | None, n_tasks: int, threads_per_process: int | None = None) -> tuple[int, int]:
    """(worker processes, threads per process) for ``n_tasks`` subjects on this machine.

    0 worker processes means: run in this process (``n_procs`` 1, or one core and no request).
    """
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    requested = n_procs if n_procs is not None else cores
    if requested <= 1:
        return 0, threads_per_process if threads_per_process is not None else cores
    workers = max(1, min(requested, max(n_tasks, 1)))
    threads = threads_per_process if threads_per_process is not None else max(1, cores // workers)
    return workers, threads


def run_cohort(units: Sequence[SubjectInputs], out_root: str | os.PathLike, config: QsmironConfig, *,
               n_procs: int | None = None, dask_scheduler: str | None = None, dask_client=None,
               steps: Sequence[tuple[str, StepFunction]] | None = None,
               progress: bool | None = None, echo: Callable[[str], None] | None = None) -> CohortResult:
    """Run every subject through the steps, in parallel, skipping those already complete.

    Parameters
    ----------
    units : sequence of SubjectInputs
        Validated subjects (``qsmiron.io.bids.valid_subjects``).
    out_root : path
        The derivative dataset (``OUT_DIR/qsmiron``); subject ``X`` goes to ``sub-X/anat``,
        its log to ``logs/sub-X.log``.
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
        Progress bars; default ``config.pipeline.progress``.
    echo : callable, optional
        Receives one line per finished or failed subject (default: printed above the bars).

    Returns
    -------
    CohortResult
    """
    from tqdm import tqdm

    start = time.perf_counter()
    out_root = Path(out_root)
    steps = tuple(steps or DEFAULT_STEPS)
    settings = config.pipeline
    progress = settings.progress if progress is None else progress
    config_digest = config_hash(config, steps)
    echo = echo or (lambda line: tqdm.write(line, file=sys.stderr))

    statuses: dict[tuple[str, str | None], SubjectStatus] = {}
    digests: dict[tuple[str, str | None], str] = {}
    jobs: list[SubjectJob] = []
    for unit in units:
        key = (unit.participant_id, unit.session)
        out_dir = unit_out_dir(out_root, unit)
        log_path = unit_log_path(out_root, unit)
        digests[key] = inputs_hash(unit, settings.input_hash)
        if settings.resume and marker_is_valid(out_dir, digests[key], config_digest):
            statuses[key] = SubjectStatus(unit.participant_id, unit.session, "skipped", log=str(log_path),
                                          out_dir=str(out_dir))
            continue
        jobs.append(SubjectJob(unit=unit, out_dir=out_dir, log_path=log_path, config=config))

    own_client = None
    if jobs:
        if dask_client is not None or dask_scheduler is not None:
            if dask_client is None:
                dask_client = own_client = _connect(dask_scheduler)
            runner = _DaskRunner(dask_client)
            where = "on the Dask cluster"
        else:
            workers, threads = resolve_workers(n_procs if n_procs is not None else settings.n_procs, len(jobs),
                                               settings.threads_per_process)
            runner = _SerialRunner() if workers == 0 else _PoolRunner(workers, threads, settings.start_method)
            where = "in this process" if workers == 0 else f"in {workers} process(es) x {threads} thread(s)"
        skipped = len(units) - len(jobs)
        echo(f"qsmiron: {len(jobs)} subject(s) to process {where}"
             + (f", {skipped} already complete (skipped)" if skipped else ""))
    else:
        runner = None
        if units:
            echo(f"qsmiron: all {len(units)} subject(s) already complete (skipped)")

    disable = not progress
    bars = {"cohort": tqdm(total=len(units), desc="subjects", unit="subj", position=0, disable=disable,
                           initial=len(units) - len(jobs), leave=True)}
    for position, (name, _) in enumerate(steps, start=1):
        bars[name] = tqdm(total=len(jobs), desc=f"  {name}", unit="subj", position=position, disable=disable,
                          leave=True)

    inflight: dict[Any, tuple[SubjectJob, int, int]] = {}

    def submit(job: SubjectJob, index: int, attempt: int) -> None:
        future = runner.submit(execute_step, job, steps, index, isolated=attempt > 1)
        inflight[future] = (job, index, attempt)

    def finish(job: SubjectJob, status: str, step: str | None = None, reason: str | None = None) -> None:
        key = (job.unit.participant_id, job.unit.session)
        statuses[key] = SubjectStatus(job.unit.participant_id, job.unit.session, status, step, reason,
                                      round(sum(job.step_seconds.values()), 3), str(job.log_path), str(job.out_dir))
        bars["cohort"].update(1)
        if status == "done":
            echo(f"{job.unit.label}: done in {sum(job.step_seconds.values()):.1f} s")
        else:
            echo(f"{job.unit.label}: FAILED at step {step}: {reason} (log: {job.log_path})")

    waiting = list(reversed(jobs))

    def start_subjects() -> None:
        # Depth first: a subject's next step is submitted as soon as its step ends, and a new
        # subject starts only when a worker is free, so subjects finish one after another.
        while waiting and len(inflight) < runner.capacity:
            job = waiting.pop()
            _clear_for_rerun(job.out_dir)
            submit(job, 0, 1)

    try:
        if runner is not None:
            start_subjects()
        while inflight:
            for future in runner.wait_any(list(inflight)):
                job, index, attempt = inflight.pop(future)
                name = steps[index][0]
                try:
                    outcome: StepOutcome = future.result()
                except Exception as exc:  # noqa: BLE001 - infrastructure trouble, not the step's error
                    if not _is_infrastructure_error(exc):
                        raise
                    runner.broken(future)
                    runner.finished(future)
                    if attempt < settings.max_attempts:
                        _log_line(job.log_path, f"{job.unit.label}: step {name}: worker lost "
                                                f"({type(exc).__name__}), retrying")
                        submit(job, index, attempt + 1)
                        continue
                    outcome = StepOutcome(name, False, error=f"the worker process died ({type(exc).__name__}: "
                                                             f"{exc}); out of memory?", error_type=type(exc).__name__)
                    _log_line(job.log_path, f"{job.unit.label}: step {name} failed: {outcome.error}")
                else:
                    runner.finished(future)
                bars[name].update(1)
                job.step_seconds[name] = outcome.seconds
                if not outcome.ok:
                    for later, _ in steps[index + 1:]:
                        bars[later].update(1)
                    finish(job, "failed", name, outcome.error)
                    continue
                job.outputs.update(outcome.outputs)
                if index + 1 < len(steps):
                    submit(job, index + 1, 1)
                    continue
                _write_marker(job, digests[(job.unit.participant_id, job.unit.session)], config_digest)
                finish(job, "done")
            start_subjects()
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
        for bar in bars.values():
            bar.close()

    ordered = [statuses[(u.participant_id, u.session)] for u in units]
    return CohortResult(ordered, config_digest, time.perf_counter() - start)


def _log_line(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    stamp = datetime.datetime.now().strftime("%Y-%m-%d %H:%M:%S")
    with path.open("a", encoding="utf-8") as handle:
        handle.write(f"{stamp} ERROR   qsmiron.pipeline.cohort: {text}\n")


def _connect(address: str, timeout: str = "30s"):
    try:
        from distributed import Client
    except ImportError as exc:  # pragma: no cover - a dependency
        raise InputError(f"--dask-scheduler needs the 'distributed' package ({exc})") from None
    try:
        return Client(address, timeout=timeout)
    except (OSError, TimeoutError) as exc:
        raise InputError(f"cannot reach the Dask scheduler ({exc})", address) from None


# --------------------------------------------------------------------------------------------
# The cohort table


def collect_regions(out_root: str | os.PathLike, units: Sequence[SubjectInputs], config_digest: str,
                    *, inputs_method: str = "stat"):
    """The regional table of every complete subject: ``participant_id`` [``session``] + region columns.

    A subject counts when its done-marker matches its current inputs and ``config_digest``
    (outputs made with other settings are left out, so one table never mixes settings).

    Returns
    -------
    (DataFrame, list of SubjectInputs)
        The table and the subjects in it.
    """
    import pandas as pd

    frames = []
    included = []
    with_sessions = any(unit.session is not None for unit in units)
    for unit in units:
        out_dir = unit_out_dir(Path(out_root), unit)
        if not marker_is_valid(out_dir, inputs_hash(unit, inputs_method), config_digest):
            continue
        marker = read_marker(out_dir)
        regions = marker["outputs"].get("regions")
        if regions is None:
            continue
        frame = pd.read_csv(out_dir / regions["file"], sep="\t", na_values=["n/a"], keep_default_na=False)
        frame.insert(0, "participant_id", unit.participant_id)
        if with_sessions:
            frame.insert(1, "session", unit.session or "n/a")
        frames.append(frame)
        included.append(unit)
    if not frames:
        return pd.DataFrame(columns=["participant_id"]), included
    return pd.concat(frames, ignore_index=True), included
