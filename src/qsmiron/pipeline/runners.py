"""Where subject steps run: in this process, in local worker processes, or on a Dask cluster.

Every runner has the same small interface (``submit``, ``wait_any``, ``broken``,
``finished``, ``close``) and a ``capacity`` (tasks it runs at once), so the orchestrator
(``qsmiron.pipeline.cohort``) drives all three the same way. Tasks read their inputs from and
write their outputs to files, so the results are the same wherever they run.
"""

from __future__ import annotations

import os
import sys
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

from qsmiron.errors import InputError
from qsmiron.pipeline.runtime import send_temporary_files_to

THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS",
                    "VECLIB_MAXIMUM_THREADS")


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


BASE_GB = 1.5
"""Memory of a subject process before its data: Python, numpy, ITK and the 1 mm template pair."""
BYTES_PER_VOXEL_ECHO = 80
"""Peak bytes per voxel and echo of the reconstruction (magnitude and phase as float64 and complex
intermediates); the 3-D maps of the chain (about 40 float64 arrays) come on top."""
BYTES_PER_VOXEL_MAPS = 40 * 8


def estimate_subject_gb(unit) -> float:
    """A subject's estimated peak memory, GB, from its NIfTI headers (matrix and echoes)."""
    import nibabel as nib
    import numpy as np

    try:
        shape = nib.load(str(unit.magnitude[0])).shape
    except (OSError, IndexError, ValueError):
        return BASE_GB
    voxels = int(np.prod(shape[:3]))
    echoes = max(len(unit.magnitude), shape[3] if len(shape) > 3 else 1)
    return BASE_GB + voxels * (BYTES_PER_VOXEL_ECHO * echoes + BYTES_PER_VOXEL_MAPS) / 1e9


def limit_threads(threads: int):
    """Cap the numerical threads of this process (BLAS/OpenMP through threadpoolctl, numba, ITK);
    returns the threadpoolctl limiter (keep it to keep the BLAS cap).

    Once numba is imported its ``NUMBA_NUM_THREADS`` is left alone: numba re-reads it whenever it
    compiles, and a value other than the one its running threads started with makes that
    compilation fail ("Cannot set NUMBA_NUM_THREADS to a different value once the threads have
    been launched"); its count is capped by ``numba.set_num_threads`` instead."""
    numba_loaded = "numba" in sys.modules
    for variable in THREAD_VARIABLES:
        if not (variable == "NUMBA_NUM_THREADS" and numba_loaded):
            os.environ[variable] = str(threads)
    os.environ["ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS"] = str(threads)
    if numba_loaded:
        import numba

        numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
    try:
        from threadpoolctl import threadpool_limits

        return threadpool_limits(threads)
    except ImportError:  # pragma: no cover - threadpoolctl comes with scikit-learn
        return None


GLIBC_MAX_MMAP_THRESHOLD = 32 * 2 ** 20
"""glibc's largest M_MMAP_THRESHOLD on 64-bit systems (half its heap size)."""


def keep_freed_memory() -> bool:
    """Let this process reuse freed blocks up to 32 MiB instead of returning them (glibc only).

    glibc gives large blocks their own memory map and unmaps them when freed, so the next array
    of that size is paged in again, page by page. The reconstruction frees and allocates arrays
    of 10 to 30 MB on every FFT and solver iteration (the padded grids of a 1 mm head: 180 x 216
    x 180 float32 is 28 MB). Served from the heap, and kept there, they are reused instead. On
    head_obl15 (the input of ``benchmarks/bench_recon_cli.py``, 2 runs each, one machine)
    ``qsmiron recon`` took 38.8 and 41.0 s wall with 8.7 and 9.9 s of system time and 616 000
    minor page faults; with these settings 34.6 and 38.6 s, 5.6 and 6.4 s, 400 000; peak memory
    2.05 -> 2.13 to 2.18 GB. Returns whether the C library took the settings (False elsewhere:
    nothing changes). Called by the command line and the cohort's own worker processes only: a
    notebook's process is the user's, and Dask's workers are the cluster's (``distributed``
    sets its own ``MALLOC_TRIM_THRESHOLD_``, trimming eagerly so that its memory monitor sees
    what a worker really holds).
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes

        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # pragma: no cover - not glibc
        return False
    trim_threshold, top_pad, mmap_threshold = -1, -2, -3  # glibc's M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_THRESHOLD
    settings = ((mmap_threshold, GLIBC_MAX_MMAP_THRESHOLD), (trim_threshold, 2 ** 30), (top_pad, 2 ** 28))
    return all(mallopt(option, value) == 1 for option, value in settings)


PARENT_CHECK_SECONDS = 0.5
"""How often a worker looks whether the process that started it is still there."""


def _exit_with_parent() -> None:
    """End this worker as soon as the process that started it is gone (killed with SIGKILL).

    On Linux the kernel delivers SIGKILL at the parent's death (``PR_SET_PDEATHSIG``), which
    works even while the worker is deep in compiled code holding the GIL; everywhere a daemon
    thread also compares the parent's process id every half second (a reparented worker has
    another one), which covers a forkserver in between.
    """
    import signal
    import sys
    import threading
    import time

    parent = os.getppid()
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGKILL), 0, 0, 0)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):  # pragma: no cover - no prctl: the thread below suffices
            pass

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(PARENT_CHECK_SECONDS)
        os._exit(1)

    if os.getppid() != parent:  # pragma: no cover - the parent died while this worker started
        os._exit(1)
    threading.Thread(target=watch, name="qsmiron-parent-watch", daemon=True).start()


def init_worker(threads: int, pids=None) -> None:
    """Prepare a local worker process.

    It ignores Ctrl-C (the parent, which owns it, stops it; a terminal sends SIGINT to the
    whole process group), ends with its parent, keeps its freed memory for reuse
    (``keep_freed_memory``), is limited to its share of the cores, and reports its process id.
    """
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _exit_with_parent()
    keep_freed_memory()
    limit_threads(threads)
    if pids is not None:
        pids.put(os.getpid())


def _with_threads(threads: int, function, *args):
    """``function(*args)`` with the numerical threads capped, the process's settings restored after."""
    saved = {name: os.environ.get(name) for name in (*THREAD_VARIABLES, "ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS")}
    numba_threads = None
    if "numba" in sys.modules:
        import numba

        numba_threads = numba.get_num_threads()
    limiter = limit_threads(threads)
    try:
        return function(*args)
    finally:
        if limiter is not None:
            limiter.restore_original_limits()
        if numba_threads is not None:
            import numba

            numba.set_num_threads(numba_threads)
        for name, value in saved.items():
            if name == "NUMBA_NUM_THREADS" and "numba" in sys.modules:
                continue  # numba has read the value its threads run with (see limit_threads)
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def is_infrastructure_error(exc: BaseException) -> bool:
    """A worker lost (killed, out of memory, cluster trouble), as opposed to the step's own error."""
    if isinstance(exc, BrokenProcessPool):
        return True
    return type(exc).__name__ in ("KilledWorker", "CancelledError", "CommClosedError")


class SerialRunner:
    """Runs each task at once in this process (one subject at a time), with at most ``threads``
    numerical threads when given (``--omp-nthreads``)."""

    capacity = 1

    def __init__(self, threads: int | None = None) -> None:
        self.threads = threads

    def submit(self, function, *args, isolated: bool = False) -> Future:
        future: Future = Future()
        try:
            if self.threads is None:
                future.set_result(function(*args))
            else:
                future.set_result(_with_threads(self.threads, function, *args))
        except BaseException as exc:  # noqa: BLE001 - the future carries it
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


class PoolRunner:
    """Local worker processes.

    When a worker dies (killed, out of memory) the pool breaks and every task in it fails
    with ``BrokenProcessPool``, so the culprit is unknown: the pool is replaced and each of
    those tasks is retried alone in a one-process pool of its own, where a second death can
    only be its own. Each worker reports its process id when it starts, so that an
    interrupted run can stop them (``close(abort=True)``) without the executor's internals.
    """

    def __init__(self, n_workers: int, threads: int, start_method: str) -> None:
        import multiprocessing

        self.n_workers, self.threads = n_workers, threads
        self.capacity = n_workers
        self.context = multiprocessing.get_context(start_method)
        self.pids = self.context.SimpleQueue()
        self.main = self._new(n_workers)
        self.owner: dict[Future, ProcessPoolExecutor] = {}

    def _new(self, n_workers: int) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(max_workers=n_workers, mp_context=self.context,
                                   initializer=init_worker, initargs=(self.threads, self.pids))

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

    def worker_pids(self) -> list[int]:
        """Process ids of every worker started so far (some may have ended)."""
        pids = []
        while not self.pids.empty():
            pids.append(int(self.pids.get()))
        return pids

    def close(self, abort: bool = False) -> None:
        executors = {id(e): e for e in [self.main, *self.owner.values()]}.values()
        for executor in executors:
            executor.shutdown(wait=not abort, cancel_futures=True)
        if abort:  # interrupted: stop the workers now rather than wait for their current subject
            self._stop_workers()

    def _stop_workers(self, grace_seconds: float = 5.0) -> None:
        """Terminate every live worker and wait until it is gone, so that nothing of this run
        writes into a subject folder after ``close`` returns (a rerun may start at once)."""
        import multiprocessing

        ours = set(self.worker_pids())
        workers = [p for p in multiprocessing.active_children() if p.pid in ours]  # live only
        for process in workers:
            process.terminate()
        for process in workers:
            process.join(grace_seconds)
            if process.is_alive():  # pragma: no cover - a worker that ignores SIGTERM
                process.kill()
                process.join(grace_seconds)


def _with_temporary_folder(work_dir: str, function, *args):
    """Run a task on a Dask worker with its temporary files in the run's work folder.

    A cluster's workers do not inherit this process's environment, so the folder travels with
    each task. It stays the worker's temporary folder after the task: a worker runs several
    tasks in threads, and restoring the old folder when one ends would move another's mid-run
    (every task of the run names the same folder).
    """
    send_temporary_files_to(work_dir)
    return function(*args)


class DaskRunner:
    """Tasks on a Dask distributed cluster (the scheduler itself retries tasks of lost workers).

    ``work_dir``: where the tasks' temporary files go on the workers (``--work-dir``; None: the
    workers' own temporary folder)."""

    def __init__(self, client, work_dir: str | os.PathLike | None = None) -> None:
        from distributed import as_completed

        self.client = client
        self.work_dir = None if work_dir is None else str(Path(work_dir).resolve())
        try:
            self.capacity = max(1, sum(client.nthreads().values()))
        except Exception:  # noqa: BLE001 - a scheduler that does not say: one task per worker later
            self.capacity = 1
        self.completed = as_completed(loop=client.loop)
        self.submitted: list = []

    def submit(self, function, *args, isolated: bool = False):
        if self.work_dir is not None:
            function, args = _with_temporary_folder, (self.work_dir, function, *args)
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


def check_scheduler_address(address: str) -> None:
    """Refuse, before anything is made, an ``address`` Dask cannot read as a scheduler's.

    Raises
    ------
    InputError
        Naming the address: no port, a port that is not a number, an unknown scheme.
    """
    try:
        from distributed.comm.addressing import get_address_host_port, parse_address
    except ImportError as exc:  # pragma: no cover - a dependency
        raise InputError(f"--dask-scheduler needs the 'distributed' package ({exc})") from None
    try:
        if parse_address(address)[0] != "inproc":  # an in-process scheduler (tests) has no host and port
            get_address_host_port(address)
    except ValueError as exc:
        raise InputError(f"not a Dask scheduler address ({exc}); give one as tcp://host:8786", address) from None


def connect(address: str, timeout: str = "30s"):
    """A Dask client of the scheduler at ``address`` (an ``InputError`` when it is not an address or
    is unreachable)."""
    check_scheduler_address(address)
    from distributed import Client

    try:
        return Client(address, timeout=timeout)
    except (OSError, TimeoutError) as exc:
        raise InputError(f"cannot reach the Dask scheduler ({exc})", address) from None
