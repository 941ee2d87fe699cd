"""Run the official BIDS validator (``bids-validator-deno``, a test dependency) on a dataset.

Skips the calling test when the validator cannot run here, unless ``QSMIRON_REQUIRE_BIDS_VALIDATOR=1``
(set by ``.ci/run``): in CI a missing validator is a failure, not a skip.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest


def _executable() -> str | None:
    beside = Path(sys.executable).parent / "bids-validator-deno"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    return shutil.which("bids-validator-deno")


def _unavailable(reason: str):
    if os.environ.get("QSMIRON_REQUIRE_BIDS_VALIDATOR") == "1":
        pytest.fail(f"QSMIRON_REQUIRE_BIDS_VALIDATOR=1 but {reason} (pip install bids-validator-deno)")
    pytest.skip(reason)


def validate(dataset: Path) -> tuple[list[dict], list[dict]]:
    """(errors, warnings) of the validator on ``dataset``: each a dict with ``code``, ``subCode``, ``location``."""
    executable = _executable()
    if executable is None:
        _unavailable("bids-validator-deno is not installed")
    try:
        completed = subprocess.run([executable, "--format", "json", "--no-color", str(dataset)], capture_output=True,
                                   text=True, timeout=300, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as exc:
        _unavailable(f"bids-validator-deno cannot run here ({exc})")
    try:
        issues = json.loads(completed.stdout)["issues"]["issues"]
    except (json.JSONDecodeError, KeyError, TypeError):
        _unavailable(f"bids-validator-deno gave no JSON report (exit {completed.returncode}): "
                     f"{(completed.stderr or completed.stdout)[-300:]}")
    errors = [i for i in issues if i.get("severity") == "error"]
    warnings = [i for i in issues if i.get("severity") == "warning"]
    return errors, warnings


def describe(issues: list[dict]) -> str:
    return "\n".join(f"{i.get('code')} {i.get('subCode') or ''} {i.get('location') or ''}" for i in issues)
