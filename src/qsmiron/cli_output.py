"""What the ``qsmiron`` command writes besides its results: log lines, warnings, a closed stdout."""

from __future__ import annotations

import contextlib
import sys
import warnings
from typing import Iterator


@contextlib.contextmanager
def one_line_warnings(prefix: str) -> Iterator[None]:
    """Warnings raised inside reach the user as one line each, like errors:
    ``qsmiron recon: warning: ...``. Python's own form adds the file and source line that raised
    it, which mean nothing to a user of the command. Only the text changes (``formatwarning``):
    filters and whoever records warnings (``catch_warnings(record=True)``) see them as before,
    and the previous form comes back after."""
    def one_line(message, category, filename, lineno, line=None) -> str:
        return f"{prefix}: warning: {message}\n"

    saved = warnings.formatwarning
    warnings.formatwarning = one_line
    try:
        yield
    finally:
        warnings.formatwarning = saved


def configure_logging(verbose: int) -> None:
    """``-v``: the package's INFO lines on stderr; ``-vv``: DEBUG too; none: warnings only."""
    import logging

    if not verbose:
        return
    logger = logging.getLogger("qsmiron")
    if not any(getattr(h, "qsmiron_console", False) for h in logger.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%H:%M:%S"))
        handler.qsmiron_console = True
        logger.addHandler(handler)
    logger.setLevel(logging.INFO if verbose == 1 else logging.DEBUG)


def silence_stdout() -> None:
    """Point stdout at /dev/null so that Python's exit flush does not raise again."""
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass
