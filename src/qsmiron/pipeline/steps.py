"""The per-subject steps of a cohort and how one runs in a worker (logging, failures, warnings).

A step is ``function(job, log) -> {role: path}``: it reads the job (the subject's inputs, the
outputs of earlier steps, the settings), writes files into ``job.out_dir`` (names from
``qsmiron.io.derivatives``) and returns the files it wrote by role. ``DEFAULT_STEPS`` is
``recon``, ``roi`` then ``qc`` (the QC figures of the maps, for the scan's QC page).
"""

from __future__ import annotations

import logging
import os
import threading
import time
import traceback
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping, Sequence

from qsmiron.config import QsmironConfig
from qsmiron.errors import InputError
from qsmiron.io.bids import SubjectInputs
from qsmiron.io.derivatives import IRON_ROLES, ROLE_TEMPLATE_CHIMAP, CohortPaths, bids_uri, cohort_paths, recon_paths
from qsmiron.register.ants_backend import pin_itk_to_one_thread

MAX_REASON_CHARS = 300
"""Failure reasons shown and tabulated are cut to this; the subject's log has them whole."""


@dataclass
class SubjectJob:
    """Everything a worker needs for one subject; plain data, so it pickles to any worker."""

    unit: SubjectInputs
    out_dir: Path
    log_path: Path
    config: QsmironConfig
    outputs: dict[str, str] = field(default_factory=dict)
    """Role -> path of every file the steps so far wrote."""
    step_seconds: dict[str, float] = field(default_factory=dict)


StepFunction = Callable[[SubjectJob, logging.Logger], Mapping[str, str | os.PathLike]]
"""A step: reads ``job``, writes files into ``job.out_dir``, returns ``{role: path}`` of what it wrote."""


@dataclass
class StepOutcome:
    step: str
    ok: bool
    outputs: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0
    error: str | None = None
    error_type: str | None = None


def _datasets(job: SubjectJob) -> dict[str, Path]:
    """The derivative dataset (``bids::``) and the raw one (``bids:raw:``) of a job, by BIDS URI name."""
    depth = len(job.unit.relative_dir.parts)
    return {"": job.out_dir.parents[depth], "raw": job.unit.anat_dir.parents[depth]}


def uri_namer(job: SubjectJob) -> Callable[[str | os.PathLike], str]:
    """Path -> its BIDS URI (``bids:raw:sub-X/anat/...`` or ``bids::sub-X/anat/...``), for
    the sidecars and records of a cohort, which hold no absolute path."""
    datasets = _datasets(job)
    return lambda path: bids_uri(path, datasets)


def recon_step(job: SubjectJob, log: logging.Logger) -> dict[str, Path]:
    """Multi-echo GRE to susceptibility, and R2* (and chi-separation when asked for)
    (``qsmiron.pipeline.single.reconstruct_files``); every map with its BIDS sidecar."""
    from qsmiron.pipeline.single import reconstruct_files
    from qsmiron.records.recon import ReconRecord

    unit = job.unit
    log.info("magnitude: %s", ", ".join(p.name for p in unit.magnitude))
    log.info("phase: %s", ", ".join(p.name for p in unit.phase))
    log.info("echo times (s): %s; field strength: %s T", unit.echo_times_s, unit.field_strength_t)
    name = uri_namer(job)
    paths = reconstruct_files(unit.magnitude, unit.phase, job.out_dir, echo_times_s=unit.echo_times_s,
                              field_strength_t=unit.field_strength_t, settings=job.config,
                              paths=recon_paths(job.out_dir, unit.label),
                              sources=[name(path) for path in unit.magnitude + unit.phase], input_name=name)
    skipped = [role for role in IRON_ROLES if getattr(paths, role) is None]
    if skipped:
        log.info("not written: %s (see the recon record for why)", ", ".join(skipped))
    for warning in ReconRecord.read(paths.record).warnings:  # as the regions step logs its record's
        log.warning("%s", warning)
    return paths.files()


def check_roi_settings(config: QsmironConfig) -> None:
    """Refuse, before any subject is processed, an atlas or a template-space reference mask
    ``roi_step`` cannot measure with: found there, they failed every subject after its
    reconstruction.

    Raises
    ------
    InputError
        ``roi.atlas`` is neither a built-in atlas nor a readable label image; or it is a label
        image, whose table of index and name ``roi_step`` has no way to be given; or
        ``roi.reference_mask`` cannot be read.
    """
    from qsmiron.atlas.load import BUILTIN_ATLASES, load_atlas
    from qsmiron.roi.references import check_template_reference_mask

    check_template_reference_mask(config.roi)
    atlas = config.roi.atlas
    if atlas.lower() in BUILTIN_ATLASES:
        return
    if not Path(atlas).is_file():
        load_atlas(atlas)  # names what is wrong: an unknown atlas name, a missing file
    raise InputError(f"a cohort is measured with a built-in atlas ({', '.join(BUILTIN_ATLASES)}): a label image "
                     "needs its table of index and name, which only qsmiron roi takes (--atlas-labels)", atlas)


def roi_step(job: SubjectJob, log: logging.Logger) -> dict[str, Path]:
    """Atlas regions in subject space and their chi (under each reference region), R2*, chi+ and
    chi- where the recon step made them (``qsmiron.roi.api.measure_subject``), and chi on the
    template grid (``template_chimap``, for voxel-wise statistics) unless
    ``registration.warp_chi_to_template`` is off; the done-marker lists every file returned."""
    from qsmiron.roi.api import measure_subject
    from qsmiron.roi.subject import IronMaps

    unit = job.unit
    tsv = CohortPaths.regions_table(job.out_dir, unit.label, job.config.roi.atlas)
    made = job.outputs
    iron = IronMaps(r2star=made.get("r2starmap"), r2star_mask=made.get("r2star_mask"),
                    paramagnetic=made.get("chimap_paramagnetic"), diamagnetic=made.get("chimap_diamagnetic"))
    figures = cohort_paths(_datasets(job)[""]).figures_dir(unit.relative_dir)
    # The total field is defined on the reconstruction's brain mask before background removal
    # eroded it: the registration's brain when there is no R2* (fewer than three echoes).
    result = measure_subject(made["chimap"], unit.magnitude[0], tsv, config=job.config, mask=made["mask"],
                             label=unit.label, iron=iron, figures_dir=figures, input_name=uri_namer(job),
                             brain_mask=made.get("fieldmap"))
    table = result.table
    log.info("%d rows measured: %s", len(table),
             ", ".join(f"{m} {r}" if isinstance(r, str) else m
                       for m, r in dict.fromkeys(zip(table["measure"], table["reference"]))))
    for warning in result.record.warnings:
        log.warning("%s", warning)
    if ROLE_TEMPLATE_CHIMAP in result.written:
        log.info("chi on the template grid: %s", result.written[ROLE_TEMPLATE_CHIMAP].name)
    return result.written


def qc_step(job: SubjectJob, log: logging.Logger) -> dict[str, Path]:
    """The QC figures of the reconstruction's maps: chi at the fixed window with the mask, the
    total and local field (``qsmiron.report.qc_figures``). A figure that cannot be drawn is
    logged and left out (its page says so): the subject's values stand without it."""
    from qsmiron.io.derivatives import qc_figure_paths
    from qsmiron.report.qc_figures import write_recon_qc_figures

    try:
        figures = cohort_paths(_datasets(job)[""]).figures_dir(job.unit.relative_dir)
        written = write_recon_qc_figures(job.outputs, qc_figure_paths(figures, job.unit.label), job.unit.label)
    except Exception as exc:  # noqa: BLE001 - a drawing problem must not drop the subject's values
        log.warning("QC figures not drawn: %s: %s", type(exc).__name__, exc)
        return {}
    log.info("QC figures: %s", ", ".join(path.name for path in written.values()))
    return written


DEFAULT_STEPS: tuple[tuple[str, StepFunction], ...] = (("recon", recon_step), ("roi", roi_step), ("qc", qc_step))


class _ThreadFilter(logging.Filter):
    """Only the records of the thread that runs the step (a serial runner shares the process)."""

    def __init__(self) -> None:
        super().__init__()
        self.thread = threading.get_ident()

    def filter(self, record: logging.LogRecord) -> bool:
        return record.thread == self.thread


def _failure_reason(exc: BaseException) -> str:
    if isinstance(exc, InputError):
        reason = exc.one_line()
        return f"{exc.step}: {reason}" if exc.step else reason
    return f"{type(exc).__name__}: {' '.join(str(exc).split())}"


class _PackageLogLevel:
    """Raise logger ``qsmiron`` to INFO while any step of this process runs, then restore it.

    Threads of one process (a Dask worker, a serial runner) run steps at once, so the level
    saved by the first step is restored only when the last one ends; a per-step save and
    restore let one subject's end silence another's INFO lines.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._active = 0
        self._saved = logging.NOTSET

    def enter(self) -> None:
        logger = logging.getLogger("qsmiron")
        with self._lock:
            if self._active == 0:
                self._saved = logger.level
                if logger.level == logging.NOTSET or logger.level > logging.INFO:
                    logger.setLevel(logging.INFO)
            self._active += 1

    def leave(self) -> None:
        with self._lock:
            self._active -= 1
            if self._active == 0:
                logging.getLogger("qsmiron").setLevel(self._saved)


_PACKAGE_LOG_LEVEL = _PackageLogLevel()


def _subject_log(job: SubjectJob) -> logging.Handler:
    """Send the package's log records of this thread to the subject's log file."""
    job.log_path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(job.log_path, mode="a", encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    handler.addFilter(_ThreadFilter())
    _PACKAGE_LOG_LEVEL.enter()
    logging.getLogger("qsmiron").addHandler(handler)
    return handler


def execute_step(job: SubjectJob, steps: Sequence[tuple[str, StepFunction]], index: int) -> StepOutcome:
    """Run step ``index`` of ``steps`` for ``job`` in this process; never raises.

    Everything the step and the libraries under it log (logger ``qsmiron``) goes to the
    subject's log file, with the traceback when the step fails.
    """
    name, function = steps[index]
    handler = _subject_log(job)
    log = logging.getLogger(f"qsmiron.pipeline.{name}")
    if job.config.pipeline.reproducible_registration:
        pin_itk_to_one_thread()
    start = time.perf_counter()
    try:
        log.info("%s: step %s started (pid %d)", job.unit.label, name, os.getpid())
        with warnings.catch_warnings(record=True) as caught:
            if threading.current_thread() is threading.main_thread():
                warnings.simplefilter("always")
            outputs = function(job, log)
        for item in caught:
            log.warning("%s: %s", item.category.__name__, item.message)
        seconds = time.perf_counter() - start
        log.info("%s: step %s finished in %.1f s", job.unit.label, name, seconds)
        return StepOutcome(name, True, {k: str(v) for k, v in (outputs or {}).items()}, seconds)
    except BaseException as exc:  # noqa: BLE001 - a failed subject must not stop the cohort
        if isinstance(exc, KeyboardInterrupt):
            raise
        seconds = time.perf_counter() - start
        reason = _failure_reason(exc)
        log.error("%s: step %s failed after %.1f s: %s\n%s", job.unit.label, name, seconds, reason,
                  traceback.format_exc())
        if len(reason) > MAX_REASON_CHARS:  # the whole message is in the log
            reason = reason[: MAX_REASON_CHARS - 30].rstrip() + " ... (see the subject's log)"
        return StepOutcome(name, False, {}, seconds, reason, type(exc).__name__)
    finally:
        logging.getLogger("qsmiron").removeHandler(handler)
        _PACKAGE_LOG_LEVEL.leave()
        handler.close()
