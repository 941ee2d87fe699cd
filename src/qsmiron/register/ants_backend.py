"""The one place qsmiron uses ANTsPy's private interface (``ants.internal``), and where it makes
ANTs repeat itself exactly (one ITK thread, a fixed seed).

``antsRegistration`` is called through ANTsPy's compiled library with a command line whose
image arguments are ITK pointers; ANTsPy's public ``ants.registration`` cannot express the
two-stage schedule qsmiron runs (MI then CC in one SyN, a cropped domain). The two private
functions used here are wrapped so that a change in them breaks one module, and
``pyproject.toml`` caps antspyx below the next release series that could change them.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from typing import Any, Iterator

ANTS_VERBOSE_ENV = "QSMIRON_ANTS_VERBOSE"
"""Set this environment variable to see antsRegistration's own output."""
ITK_THREADS_ENV = "ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS"
ANTS_SEED_ENV = "ANTS_RANDOM_SEED"


def pin_itk_to_one_thread() -> None:
    """Run ITK, and so ANTs, on one thread in this process: registrations then repeat exactly.

    Multi-threaded ITK adds up the per-thread histograms of the Mattes mutual information in an
    order that changes from run to run, and the optimiser ends somewhere else. Measured on the
    real Philips 3 T scan, two runs each:
    - ``qsmiron roi`` (SyN normalisation): on 2 threads the regional means differed in 48 of 56
      rows, by up to 16 ppb (nucleus accumbens; median 2 ppb), in 20 s wall; on one thread they
      were identical, in 30 s wall.
    - The template brain of the automatic mask: on 2 threads 4 630 voxels differed (so did the
      Chimap, by up to 0.29 ppm); on one thread none, in the same wall time (2.6 s).
    A fixed seed alone did not help (4 367 voxels). ITK reads the variable when the process first
    runs a threaded filter and never again (ANTsPy's own ``set_ants_deterministic`` relies on the
    same), so this must come before any ANTs work in the process; a cohort still runs its
    subjects in parallel, one process each.
    """
    os.environ[ITK_THREADS_ENV] = "1"


@contextlib.contextmanager
def ants_random_seed(seed: int) -> Iterator[None]:
    """antsRegistration calls inside use ``seed`` for their sampling.

    Through ``ANTS_RANDOM_SEED``, which antsRegistration reads on every call that has no
    ``--random-seed``: antspyx 0.6's ``ants.registration`` silently ignores a ``random_seed``
    keyword (0.5 took it), and takes a seed only from its private ``ants.config``.
    """
    saved = os.environ.get(ANTS_SEED_ENV)
    os.environ[ANTS_SEED_ENV] = str(int(seed))
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop(ANTS_SEED_ENV, None)
        else:
            os.environ[ANTS_SEED_ENV] = saved


def ants_argument(item: Any) -> str:
    """One antsRegistration argument: a list with images inside becomes ITK pointer strings."""
    from ants.internal import process_arguments

    if isinstance(item, list):
        return "".join(process_arguments(item))
    return str(item)


class RegistrationFailed(RuntimeError):
    """``antsRegistration`` stopped with an error; the message ends with ITK's description of it."""


@contextlib.contextmanager
def _stderr_captured() -> Iterator[Any]:
    """The process's stderr (file descriptor 2, where ITK's C++ writes) goes to a temporary file."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield sink
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def run_ants_registration(args: list) -> None:
    """Run ``antsRegistration`` with ``args`` (strings, or lists holding ANTs images).

    What it prints on stderr is held back: a failure becomes one exception, with ITK's
    ``Description:`` line (its own report, an ``itk::ExceptionObject`` dump, took a dozen lines
    of the user's terminal before the error); after a success it is passed on.

    Raises
    ------
    RegistrationFailed
        A non-zero exit code.
    """
    from ants.internal import get_lib_fn

    args = args + ["--verbose", "1" if os.environ.get(ANTS_VERBOSE_ENV) else "0"]
    with _stderr_captured() as sink:
        exit_code = get_lib_fn("antsRegistration")([ants_argument(item) for item in args])
        sink.seek(0)
        printed = sink.read().decode("utf-8", "replace")
    if exit_code != 0:
        described = [line.split("Description:", 1)[1].strip() for line in printed.splitlines()
                     if "Description:" in line]
        raise RegistrationFailed(f"antsRegistration failed with exit code {exit_code}"
                                 + (f": {described[-1]}" if described else ""))
    if printed:
        sys.stderr.write(printed)
