"""Parameters of cohort execution: how subjects are run, resumed and reported.

Apart from ``reproducible_registration`` none of these change a result: two runs that differ
only in them give the same maps and tables, which is why they are left out of the hash that
decides whether a finished subject can be reused (see ``qsmiron.pipeline.cache.config_hash``).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, StringConstraints

from qsmiron.settings_base import Settings


class PipelineSettings(Settings):
    """How subjects are run (processes, threads, resume, validation, progress) and who is credited
    for the derivative dataset."""

    n_procs: int | None = Field(
        None, ge=1, description="subjects processed at once on this machine; None = one per CPU core "
        "(never more than the subjects to run). Ignored with a Dask scheduler")
    threads_per_process: int | None = Field(
        None, ge=1, description="numerical threads (numba, BLAS, ITK) per subject process; None = the cores "
        "divided by n_procs (--omp-nthreads)")
    mem_gb: float | None = Field(
        None, gt=0, description="memory the run may use, GB: fewer subjects run at once when each one's "
        "estimated peak (from its matrix size and echoes) times n_procs would exceed it; None = no limit "
        "(--mem-gb)")
    stop_on_first_crash: bool = Field(
        False, description="stop the run at the first subject that fails, instead of carrying on with the "
        "others (--stop-on-first-crash)")
    start_method: Literal["spawn", "forkserver", "fork"] = Field(
        "spawn", description="how local worker processes start; 'spawn' is the safe choice with "
        "threaded libraries (ITK, numba, OpenBLAS)")
    reproducible_registration: bool = Field(
        True, description="run ANTs/ITK single-threaded in every subject task and in the recon and roi "
        "commands (and their Python functions): multi-threaded ITK registration differs from run to run "
        "(on a real 3 T scan regional means by up to 16 ppb, the automatic mask by thousands of voxels), "
        "single-threaded it gives the same result in any process, on any worker. Subjects still run in "
        "parallel. Unlike the other settings here this one can change results, so it is part of the "
        "settings hash that decides what a resumed run may reuse")
    max_attempts: int = Field(
        2, ge=1, description="tries of a step whose worker process died (killed, out of memory) before "
        "the subject is reported as failed; a step that raises an error is not retried")
    resume: bool = Field(
        True, description="skip subjects whose outputs are complete and whose inputs and settings are "
        "unchanged since they were made")
    input_hash: Literal["stat", "content"] = Field(
        "stat", description="how unchanged inputs are recognised: 'stat' = path, size and modification "
        "time of every input file; 'content' = SHA-256 of their bytes (slower, survives copies)")
    validate_image_data: bool = Field(
        True, description="validation reads every voxel of every input (catches truncated or corrupt "
        "files before any heavy work); False reads headers only")
    progress: bool = Field(True, description="progress bars for the cohort and each step when stderr is a "
                                             "terminal (plain log lines otherwise)")
    authors: list[Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]] = Field(
        default_factory=list, description="the people credited for the derivative dataset, one name per entry "
        "(Authors of its dataset_description.json); empty = the key is left out, since qsmiron cannot know "
        "them. BIDS recommends the key, and the BIDS validator notes TOO_FEW_AUTHORS while it holds fewer "
        "than two names")


class DemoSettings(Settings):
    """The demo: a small simulated cohort run end to end with fast settings.

    Written beside the demo's outputs (``demo_config.json``) with the full processing
    configuration, so the demo can be re-run exactly.
    """

    # 40 subjects (20 per group) find the planted d = -1.0 (power about 0.85) and keep
    # `make demo` within 10 minutes on an idle 2-core machine, install included.
    n_subjects: int = Field(40, ge=4, description="simulated subjects (two groups)")
    seed: int = Field(0, ge=0)
    n_procs: int | None = Field(None, ge=1, description="None = one per CPU core")
