"""Shared test configuration: keep numerical libraries to the cores pytest-xdist gives us."""

import os
from pathlib import Path

import pytest

# Two xdist workers on a 2-core machine: one thread each keeps them from fighting.
for variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                 "ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS", "NUMBA_NUM_THREADS"):
    os.environ.setdefault(variable, "1")

# ../shared/data beside the project (QSMIRON_SHARED_DATA points elsewhere, e.g. from a git worktree).
SHARED_DATA = Path(os.environ.get("QSMIRON_SHARED_DATA")
                   or Path(__file__).resolve().parents[1].parent / "shared" / "data")


def _shared_data(name: str, *required: str) -> Path:
    """``SHARED_DATA/name``, or a skip when it or one of the ``required`` entries in it is absent."""
    folder = SHARED_DATA / name
    if not all((folder / entry).exists() for entry in required):
        pytest.skip(f"../shared/data/{name} is not present on this machine")
    return folder


@pytest.fixture(scope="session")
def real_gre_dir() -> Path:
    """The small real 3-echo GRE scan beside the project; the test skips when it is absent."""
    return _shared_data("gre_real_small", "mag.nii.gz", "phase.nii.gz")


@pytest.fixture(scope="session")
def philips_dicom_dir() -> Path:
    """The real Philips 3 T dual-echo scan as classic and enhanced DICOM; skips when absent."""
    return _shared_data("philips_3t_2echo", "dicom_classic", "dicom_enhanced")
