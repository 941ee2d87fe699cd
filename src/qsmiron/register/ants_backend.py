"""The one place qsmiron uses ANTsPy's private interface (``ants.internal``).

``antsRegistration`` is called through ANTsPy's compiled library with a command line whose
image arguments are ITK pointers; ANTsPy's public ``ants.registration`` cannot express the
two-stage schedule qsmiron runs (MI then CC in one SyN, a cropped domain). The two private
functions used here are wrapped so that a change in them breaks one module, and
``pyproject.toml`` caps antspyx below the next release series that could change them.
"""

from __future__ import annotations

import os
from typing import Any

ANTS_VERBOSE_ENV = "QSMIRON_ANTS_VERBOSE"
"""Set this environment variable to see antsRegistration's own output."""


def ants_argument(item: Any) -> str:
    """One antsRegistration argument: a list with images inside becomes ITK pointer strings."""
    from ants.internal import process_arguments

    if isinstance(item, list):
        return "".join(process_arguments(item))
    return str(item)


def run_ants_registration(args: list) -> None:
    """Run ``antsRegistration`` with ``args`` (strings, or lists holding ANTs images).

    Raises
    ------
    RuntimeError
        A non-zero exit code.
    """
    from ants.internal import get_lib_fn

    args = args + ["--verbose", "1" if os.environ.get(ANTS_VERBOSE_ENV) else "0"]
    exit_code = get_lib_fn("antsRegistration")([ants_argument(item) for item in args])
    if exit_code != 0:
        raise RuntimeError(f"antsRegistration failed with exit code {exit_code}")
