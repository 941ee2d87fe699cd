"""Shared test configuration: keep numerical libraries to the cores pytest-xdist gives us."""

import os
from pathlib import Path

import pytest

# Two xdist workers on a 2-core machine: one thread each keeps them from fighting.
for variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                 "ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS", "NUMBA_NUM_THREADS"):
    os.environ.setdefault(variable, "1")

# ../shared/data beside the project (QSMIRON_SHARED_DATA points elsewhere, e.g. from a git worktree).
SHARED_DATA = Path(os.environ.get("QSMIRON_SHARED_DATA") or Path(__file__).resolve().parents[1].parent / "shared" / "data")


@pytest.fixture(scope="session")
def real_gre_dir() -> Path:
    """The small real 3-echo GRE scan beside the project; the test skips when it is absent."""
    folder = SHARED_DATA / "gre_real_small"
    if not (folder / "mag.nii.gz").exists() or not (folder / "phase.nii.gz").exists():
        pytest.skip("../shared/data/gre_real_small is not present on this machine")
    return folder


@pytest.fixture(scope="session")
def philips_dicom_dir() -> Path:
    """The real Philips 3 T dual-echo scan as classic and enhanced DICOM; skips when absent."""
    folder = SHARED_DATA / "philips_3t_2echo"
    if not (folder / "dicom_classic").is_dir() or not (folder / "dicom_enhanced").is_dir():
        pytest.skip("../shared/data/philips_3t_2echo is not present on this machine")
    return folder
