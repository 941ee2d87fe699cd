"""One run per output folder, and a run that stops cleanly when it is told to.

``OutputLock`` is an advisory lock on ``OUT_DIR/qsmiron/.qsmiron.lock`` (a hidden file, empty
when no run holds it) held for a whole ``qsmiron run``: a second run on the same folder refuses at once, naming the holder (process
id, host, start time, command), instead of redoing every subject and deleting the first run's
temporary files. The lock is the kernel's ``flock``, so it dies with its process: a lock file
left by a killed run holds no lock and is taken over (its old holder is reported). On file
systems without ``flock`` (some network mounts) an exclusive create is used instead, and a
holder on this host whose process is gone is recognised as stale.

``terminate_as_interrupt`` turns SIGTERM (what ``kill``, schedulers and ``timeout`` send) into
the same exception as Ctrl-C for the duration of a run, so that the cohort runner stops its
workers and leaves only what a rerun resumes from.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import signal
import socket
import sys
import threading
from pathlib import Path
from typing import Iterator

from qsmiron.errors import InputError

LOCK_NAME = ".qsmiron.lock"


class Terminated(KeyboardInterrupt):
    """The run was asked to stop by a signal (SIGTERM); handled like Ctrl-C, with its number."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"signal {signum}")
        self.signum = signum


def _holder_text(path: Path) -> tuple[dict, str]:
    try:
        holder = json.loads(path.read_text(encoding="utf-8") or "{}")
    except (OSError, ValueError):
        holder = {}
    if not isinstance(holder, dict) or "pid" not in holder:
        return {}, "an unknown process"
    return holder, (f"process {holder['pid']} on {holder.get('host', '?')}, started "
                    f"{holder.get('started', '?')} ({holder.get('command', 'qsmiron')})")


def _alive_here(holder: dict) -> bool:
    """Whether a holder recorded on this host still runs (True when it cannot be told)."""
    if holder.get("host") != socket.gethostname():
        return True
    try:
        os.kill(int(holder["pid"]), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, ValueError, TypeError, KeyError):
        return True
    return True


def _our_holder() -> dict:
    return {"pid": os.getpid(), "host": socket.gethostname(),
            "started": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
            "command": " ".join(["qsmiron", *sys.argv[1:]])[:300]}


class OutputLock:
    """Exclusive use of an output folder by this process (a context manager).

    Attributes
    ----------
    taken_over : str or None
        The holder of a stale lock file this lock replaced, in words (None when there was none).
    """

    def __init__(self, folder: str | os.PathLike) -> None:
        self.path = Path(folder) / LOCK_NAME
        self._fd: int | None = None
        self.taken_over: str | None = None

    def acquire(self) -> "OutputLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        previous, previous_text = _holder_text(self.path) if self.path.exists() else ({}, None)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            self._lock(fd, previous, previous_text)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        if previous:
            self.taken_over = previous_text
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps(_our_holder()).encode())
        os.fsync(fd)
        return self

    def _lock(self, fd: int, previous: dict, previous_text: str | None) -> None:
        try:
            import fcntl
        except ImportError:  # pragma: no cover - not POSIX: rely on the holder's liveness
            if previous and _alive_here(previous) and previous.get("pid") != os.getpid():
                raise self._busy(previous_text) from None
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            _, holder_text = _holder_text(self.path)
            raise self._busy(holder_text) from None
        except OSError:  # no flock on this file system: judge the recorded holder instead
            if previous and _alive_here(previous) and previous.get("pid") != os.getpid():
                raise self._busy(previous_text) from None

    def _busy(self, holder_text: str | None) -> InputError:
        return InputError(f"another qsmiron run is using this output folder ({holder_text}); wait "
                          f"for it to finish or stop it, or choose another output folder",
                          self.path.parent)

    def release(self) -> None:
        if self._fd is None:
            return
        # The file stays, empty: unlinking it would let a process that opened it just before
        # hold a lock on a deleted file while a third creates a new one.
        with contextlib.suppress(OSError):
            os.ftruncate(self._fd, 0)
        os.close(self._fd)  # closing releases the flock
        self._fd = None

    def __enter__(self) -> "OutputLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


@contextlib.contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """Within the block, SIGTERM raises :class:`Terminated` in the main thread (else a no-op)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise Terminated(signum)

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
