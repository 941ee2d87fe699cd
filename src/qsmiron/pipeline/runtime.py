"""The run's surroundings: where temporary files go (``--work-dir``), and whether the
numerical kernels still have to be compiled (numba's first run).

Every temporary file of a run (registration scratch folders, ANTs's own temporary images) is
made through ``tempfile``, so pointing ``tempfile.tempdir`` and ``TMPDIR`` at the work
folder sends them all there, in this process and in the worker processes it starts (which
inherit the environment).
"""

from __future__ import annotations

import contextlib
import importlib
import os
import sys
import tempfile
from pathlib import Path
from typing import Iterator

from qsmiron.io.atomic import check_writable_dir

RECON_KERNEL_MODULES = ("qsmiron.recon.phase", "qsmiron.recon.mask", "qsmiron.recon.echofit",
                        "qsmiron.recon.unwrap._common", "qsmiron.recon.invert._kernels")
"""Modules whose numba kernels (``cache=True``) every reconstruction calls."""

TEMP_VARIABLES = ("TMPDIR", "TEMP", "TMP")


def send_temporary_files_to(folder: str | os.PathLike) -> None:
    """From now on this process's temporary files, and those of the processes it starts, go to
    ``folder`` (created if needed)."""
    Path(folder).mkdir(parents=True, exist_ok=True)
    for name in TEMP_VARIABLES:
        os.environ[name] = str(folder)
    tempfile.tempdir = str(folder)


@contextlib.contextmanager
def temporary_files_in(work_dir: str | os.PathLike | None) -> Iterator[Path | None]:
    """Within the block, temporary files (this process's and its workers') go to ``work_dir``
    (created if needed); None leaves the system's temporary folder."""
    if work_dir is None:
        yield None
        return
    work_dir = check_writable_dir(Path(work_dir).resolve(), role="work folder")
    saved_env = {name: os.environ.get(name) for name in TEMP_VARIABLES}
    saved_dir = tempfile.tempdir
    send_temporary_files_to(work_dir)
    try:
        yield work_dir
    finally:
        tempfile.tempdir = saved_dir
        for name, value in saved_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _dispatchers(module) -> list:
    from numba.core.dispatcher import Dispatcher

    return [value for value in vars(module).values() if isinstance(value, Dispatcher)]


def _cache_index_exists(dispatcher) -> bool:
    """Whether numba's on-disk cache holds an index for this kernel (``<file>.<name>-<line>.py<ver>.nbi``,
    in ``__pycache__`` beside the source or under ``NUMBA_CACHE_DIR``)."""
    source = Path(dispatcher.py_func.__code__.co_filename)
    pattern = f"{source.stem}.{dispatcher.py_func.__qualname__}-*.nbi"
    folders = [source.parent / "__pycache__"]
    cache_dir = os.environ.get("NUMBA_CACHE_DIR")
    if cache_dir:
        folders.append(Path(cache_dir))
    return any(next(folder.rglob(pattern), None) is not None for folder in folders if folder.is_dir())


def cold_kernels(modules=RECON_KERNEL_MODULES) -> list[str]:
    """The numba kernels of ``modules`` with no compiled version cached on disk yet (their
    first call compiles them: tens of seconds in all)."""
    if "numba" not in sys.modules:
        try:
            importlib.import_module("numba")
        except ImportError:  # pragma: no cover - a dependency
            return []
    cold = []
    for name in modules:
        module = importlib.import_module(name)
        cold.extend(f"{name}.{d.py_func.__name__}" for d in _dispatchers(module) if not _cache_index_exists(d))
    return cold


def cache_is_cold(modules=RECON_KERNEL_MODULES) -> bool:
    """True when none of the kernels of ``modules`` is compiled on disk: a new installation (or a
    cleared cache), whose first reconstruction compiles them all. Some kernels stay uncached
    on a warm installation (inlined helpers, methods not used yet), so one cached kernel is
    taken as a sign of a warm cache."""
    total = sum(len(_dispatchers(importlib.import_module(name))) for name in modules)
    return total > 0 and len(cold_kernels(modules)) == total


def announce_compilation(echo, modules=RECON_KERNEL_MODULES) -> bool:
    """One line before the first reconstruction when the kernel cache is cold; whether it was said."""
    if not cache_is_cold(modules):
        return False
    echo("qsmiron: first run on this installation: compiling the numerical kernels (numba) before the "
         "first reconstruction; this takes a minute or two, once")
    return True
