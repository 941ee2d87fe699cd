"""Atomic writes: a file is either absent or complete, never half-written.

Every output goes to a temporary name in the destination directory and is renamed into place
(``os.replace`` is atomic on POSIX within one file system), so a run killed at any moment
leaves nothing that a later run could mistake for a finished result.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator


def check_writable_dir(folder: str | os.PathLike, role: str = "output folder") -> Path:
    """Make sure files can be written into ``folder`` before any heavy work starts.

    A probe file is written and removed in the folder, or, when it does not exist yet, in
    its nearest existing parent (nothing is created), which catches what ``os.access``
    misses (read-only mounts, full disks, quotas, ACLs).

    Raises
    ------
    InputError
        Naming the folder, called ``role`` in the message: it exists and is a file, or it
        cannot be created or written.
    """
    from qsmiron.errors import InputError, resource_error

    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise InputError(f"the {role} exists and is not a folder", folder)
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise InputError(f"the {role} cannot be created: {existing} is not a folder",
                         folder)
    try:
        fd, probe = tempfile.mkstemp(prefix=".qsmiron-write-probe.", dir=existing)
        try:
            os.write(fd, b"qsmiron")
        finally:
            os.close(fd)
            os.unlink(probe)
    except OSError as error:
        problem = resource_error(error)
        reason = problem.message if problem is not None else f"cannot be written ({error})"
        raise InputError(f"the {role} cannot be used: {reason}", folder) from None
    return folder


def check_inputs_spared(outputs, inputs) -> None:
    """Refuse, before any work, outputs that would replace an input or land inside an input folder.

    Parameters
    ----------
    outputs, inputs : iterables of paths
        Every path a command would write, and every path it reads (None entries are skipped).
        Paths are compared resolved (symbolic links and ``..`` followed), and as the same file
        when both exist (a hard link).

    Raises
    ------
    InputError
        Naming the first output that is an input, or that lies inside an input folder.
    """
    from qsmiron.errors import InputError

    given = [Path(path) for path in inputs if path is not None]
    for output in (Path(path) for path in outputs if path is not None):
        resolved = output.resolve()
        for source in given:
            if resolved == source.resolve() or (output.exists() and source.exists() and output.samefile(source)):
                raise InputError("is also an input of this command, and inputs are never modified: "
                                 "choose another output", output)
            if source.is_dir() and resolved.is_relative_to(source.resolve()):
                raise InputError(f"lies inside the input folder {source}, and inputs are never modified: "
                                 f"choose an output outside it", output)


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _give_default_permissions(path: Path, *, directory: bool = False) -> None:
    """mkstemp/mkdtemp create owner-only entries; outputs get what a plain open() would give."""
    os.chmod(path, (0o777 if directory else 0o666) & ~_current_umask())


@contextlib.contextmanager
def atomic_path(destination: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``destination``; move it into place on success.

    The temporary name keeps the destination's full suffix (``.nii.gz`` included) so that
    writers choosing a format by extension behave the same. On error the temporary file is
    removed and ``destination`` is untouched.
    """
    destination = Path(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    if suffix is None:
        suffix = "".join(destination.suffixes)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{destination.name}.", suffix=f".tmp{suffix}",
                                    dir=destination.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        _give_default_permissions(tmp)
        os.replace(tmp, destination)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_text_atomic(destination: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``destination`` atomically."""
    with atomic_path(destination) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(destination)


def write_bytes_atomic(destination: str | os.PathLike, data: bytes) -> Path:
    with atomic_path(destination) as tmp:
        tmp.write_bytes(data)
    return Path(destination)


def _json_default(value: Any) -> Any:
    import numpy as np

    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json")
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def write_json_atomic(destination: str | os.PathLike, payload: Any) -> Path:
    """Write ``payload`` as indented JSON atomically (NumPy scalars and arrays allowed)."""
    return write_text_atomic(destination, json_text(payload))


def json_text(payload: Any) -> str:
    """``payload`` as indented JSON text (NumPy scalars and arrays allowed; NaN refused)."""
    return json.dumps(payload, indent=2, default=_json_default, allow_nan=False) + "\n"


def write_tsv_atomic(destination: str | os.PathLike, frame) -> Path:
    """Write a pandas DataFrame as TSV (no index, ``n/a`` for missing, as BIDS does)."""
    with atomic_path(destination) as tmp:
        frame.to_csv(tmp, sep="\t", index=False, na_rep="n/a")
    return Path(destination)


@contextlib.contextmanager
def atomic_directory(destination: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary directory beside ``destination``; it replaces ``destination`` on success.

    Use it when a set of files must appear together (a subject's outputs): readers either
    see the previous complete set or the new complete set.
    """
    destination = Path(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{destination.name}.", suffix=".tmp",
                                dir=destination.parent))
    try:
        yield tmp
        _give_default_permissions(tmp, directory=True)
        if destination.exists():
            backup = destination.with_name(f".{destination.name}.old")
            if backup.exists():
                shutil.rmtree(backup)
            os.replace(destination, backup)
            os.replace(tmp, destination)
            shutil.rmtree(backup)
        else:
            os.replace(tmp, destination)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
