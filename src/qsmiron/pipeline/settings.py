"""Parameters of cohort execution."""

from __future__ import annotations

from qsmiron.settings_base import Settings


class PipelineSettings(Settings):
    """How subjects are run: processes, resume, what is written."""

    n_procs: int = 1
