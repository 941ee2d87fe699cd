"""The one exception type for problems with what a user gave us."""

from __future__ import annotations

import errno
import os


class InputError(Exception):
    """A problem with user input: a file, a value or a setting.

    The command line prints it as one line (``path: message``) and exits with code 2;
    programming errors are other exception types and keep their tracebacks.

    Parameters
    ----------
    message : str
        What is wrong and, where it helps, how to fix it. One sentence, no trailing period
        needed.
    path : str or os.PathLike, optional
        The file or directory the problem is in.
    step : str, optional
        The processing step that found the problem (a reconstruction stage, say), so that the
        pipeline can attribute it and a cohort's status table can say where a subject failed.
    """

    def __init__(self, message: str, path: str | os.PathLike | None = None, *,
                 step: str | None = None):
        self.message = str(message)
        self.path = None if path is None else os.fspath(path)
        self.step = step
        super().__init__(self.one_line())

    def one_line(self) -> str:
        text = " ".join(self.message.split())
        return f"{self.path}: {text}" if self.path else text

    def with_path(self, path: str | os.PathLike) -> "InputError":
        """The same problem, attributed to ``path`` (kept if one is already set)."""
        if self.path is not None:
            return self
        return InputError(self.message, path, step=self.step)

    def in_step(self, step: str) -> "InputError":
        """The same problem, attributed to ``step`` (kept if one is already set)."""
        if self.step is None:
            self.step = step
        return self


_RESOURCE_ERRNOS = {
    errno.ENOSPC: "the disk is full",
    errno.EDQUOT: "the disk quota is exceeded",
    errno.EROFS: "the file system is read-only",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
}
"""Errors of the machine rather than of qsmiron: reported like bad input, in one line."""


def resource_error(error: OSError) -> InputError | None:
    """The one-line ``InputError`` for a disk-full, read-only or permission error, else None."""
    reason = _RESOURCE_ERRNOS.get(error.errno)
    if reason is None:
        return None
    return InputError(f"cannot write or read here: {reason} ({error.strerror or error})",
                      error.filename)
