"""``qsmiron run``: a BIDS dataset to QSM maps, regional tables, statistics and the report.

BIDS-App levels: ``participant`` validates the dataset, reconstructs every valid subject and
measures its regions (``OUT_DIR/qsmiron/sub-X/anat/``), then writes the cohort table
``OUT_DIR/qsmiron/regions.tsv``; ``group`` runs the statistics and the report on the
subjects that succeeded (``OUT_DIR/qsmiron/group/``) and says who was left out and why. No
level means both. The study file's optional sections run at the group level
(``qsmiron.pipeline.group``); ``[voxelwise]`` reads the chi maps the roi step wrote on the
template grid, and with ``mask = "brain"`` the participant level warps the whole brain
(:func:`settings_for_study`).

Files at the top of ``OUT_DIR/qsmiron``: ``dataset_description.json`` (BIDS derivative,
GeneratedBy qsmiron, ``Authors`` from ``pipeline.authors``), ``README`` (the files and the
methods of these settings; ``qsmiron.io.derivative_dataset``), ``config.json`` (every setting;
re-run with ``--config``),
``validation.tsv`` (every problem found before processing), ``cohort_status.tsv`` (one row
per subject: done / skipped / failed / invalid, the failing step and why, its log) and
``logs/`` (one log file per subject).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from qsmiron.atlas.load import atlas_description
from qsmiron.config import QsmironConfig, load_config, write_config
from qsmiron.errors import InputError
from qsmiron.io.atomic import check_writable_dir, write_json_atomic, write_tsv_atomic
from qsmiron.io.bids import Problem, check_outside_dataset, dataset_subject_folders, discover_bids
from qsmiron.io.bids_filters import BidsFilters, load_bids_filters
from qsmiron.io.bids_validation import format_problems, valid_subjects, validate_dataset
from qsmiron.io.derivative_dataset import RunSummary, raw_link, readme_text, write_dataset_files
from qsmiron.io.derivatives import (DERIVATIVE_NAME, QC_ROLES, ROLE_RECON_RECORD, ROLE_REGIONS_RECORD, CohortPaths,
                                   cohort_paths)
from qsmiron.pipeline.cache import read_marker
from qsmiron.pipeline.cohort import SubjectStatus, collect_regions, run_cohort
from qsmiron.pipeline.lock import OutputLock, terminate_as_interrupt
from qsmiron.pipeline.runtime import announce_compilation, temporary_files_in
from qsmiron.pipeline.runners import check_scheduler_address
from qsmiron.pipeline.steps import check_roi_settings
from qsmiron.records.cohort import PipelineSummary, Provenance, ScanRecords, SubjectProblem

LEVELS = ("participant", "group")
STATUS_COLUMNS = ["participant_id", "session", "status", "step", "reason", "seconds", "log"]


@dataclass
class BidsAppResult:
    """What a run produced.

    Attributes
    ----------
    derivatives : Path
        ``OUT_DIR/qsmiron``.
    regions_tsv : Path or None
        The cohort table (participant level).
    report : Path or None
        ``group/report.html`` (group level).
    statuses : list of SubjectStatus
        This run's subjects (participant level), invalid ones included.
    problems : list of Problem
        Validation findings.
    left_out : list of SubjectProblem
        The subjects the group level went without (participant, session, step, reason).
    """

    derivatives: Path
    regions_tsv: Path | None = None
    report: Path | None = None
    statuses: list[SubjectStatus] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    left_out: list[SubjectProblem] = field(default_factory=list)


def _echo(line: str) -> None:
    try:
        from tqdm import tqdm

        tqdm.write(line, file=sys.stderr)
    except ImportError:  # pragma: no cover
        print(line, file=sys.stderr)


def run_summary(config: QsmironConfig, bids_dir: Path, root: Path) -> RunSummary:
    """What the derivative dataset's README says of the settings of this run."""
    from qsmiron import __version__
    from qsmiron.io.derivatives import atlas_label
    from qsmiron.recon.stages import RECON_STAGES
    from qsmiron.register.normalise import describe_registration

    methods = []
    for stage in RECON_STAGES:
        name = getattr(config.recon, stage.name).method
        methods.append((stage.label, name, stage.method(name).label))
    transforms, _ = describe_registration(config.registration)
    template = atlas_description(config.roi.atlas).get("SpatialReference", "the atlas's template")
    reg = config.registration
    return RunSummary(version=__version__, raw=raw_link(bids_dir, root),
                      recon_methods=tuple(methods), registration=f"ANTs {' + '.join(transforms)} to {template}",
                      atlas=atlas_label(config.roi.atlas), template=template,
                      label_interpolation=reg.label_interpolation, template_maps=reg.warp_chi_to_template,
                      r2star=config.recon.r2star.method != "none", chi_separation=config.recon.chisep.method != "none")


@dataclass(frozen=True)
class Selection:
    """Which inputs of the dataset a run takes: participants, sessions, the BIDS filters."""

    participant_labels: Sequence[str] | None = None
    session_labels: Sequence[str] | None = None
    filters: BidsFilters | None = None

    def discover(self, bids_dir: Path, *, everyone: bool = False):
        """The selected subjects (every participant and session with ``everyone``)."""
        if everyone:
            return discover_bids(bids_dir, filters=self.filters)
        return discover_bids(bids_dir, self.participant_labels, session_labels=self.session_labels,
                             filters=self.filters)

    @property
    def partial(self) -> bool:
        return self.participant_labels is not None or self.session_labels is not None


def run_bids_app(bids_dir, out_dir, level=None, participant_labels=None, study_path=None, n_procs=None,
                 dask_scheduler=None, config_path=None, *, config: QsmironConfig | None = None,
                 dask_client=None, steps=None, progress: bool | None = None,
                 echo: Callable[[str], None] | None = None, session_labels=None, bids_filters=None,
                 work_dir=None, skip_validation: bool = False) -> BidsAppResult:
    """Run the participant and/or group level on a BIDS dataset.

    Parameters
    ----------
    bids_dir : path
        The BIDS dataset (never modified).
    out_dir : path
        Output folder; the derivatives go to ``out_dir/qsmiron``.
    level : {"participant", "group"}, optional
        None runs both.
    participant_labels : sequence of str, optional
        Only these subjects (``01`` or ``sub-01``) at the participant level.
    study_path : path, optional
        The study file (groups, covariates, ...) for the group level.
    n_procs : int, optional
        Local worker processes (default from the settings: one per core).
    dask_scheduler : str, optional
        Address of a Dask distributed scheduler to run the subjects on.
    config_path : path, optional
        Settings file (TOML or JSON); ``config`` gives them as an object instead.
    config : QsmironConfig, optional
    dask_client : distributed.Client, optional
        An existing Dask client (instead of ``dask_scheduler``).
    steps : sequence of (name, function), optional
        The per-subject steps (default recon then roi).
    progress : bool, optional
        Progress bars (default from the settings).
    echo : callable, optional
        Receives the lines to show the user (default: stderr).
    session_labels : sequence of str, optional
        Only these sessions (``1`` or ``ses-1``) at the participant level.
    bids_filters : path or BidsFilters, optional
        Which files to take (``--bids-filter-file``; ``qsmiron.io.bids_filters``).
    work_dir : path, optional
        Where temporary files go (default: the system's temporary folder).
    skip_validation : bool
        Skip the checks of every input before processing (discovery problems still exclude a
        subject); a subject with a bad file then fails at its own step.

    Returns
    -------
    BidsAppResult

    Raises
    ------
    InputError
        A missing or empty dataset or an absent participant label, a ``dask_scheduler`` that is
        not an address (these checked before the output folder is made), no valid subject, no
        subject that succeeded, or a group level without a participant level before it.
    """
    echo = echo or _echo
    if level is not None and level not in LEVELS:
        raise InputError(f"unknown level {level!r}; use participant or group (or none for both)")
    levels = LEVELS if level is None else (level,)
    if config is not None and config_path is not None:
        raise ValueError("give either config or config_path, not both")
    config = config if config is not None else load_config(config_path)
    bids_dir = Path(bids_dir)
    participant = "participant" in levels
    dataset_subject_folders(bids_dir, participant_labels if participant else None,
                            session_labels=session_labels if participant else None)
    paths = cohort_paths(Path(out_dir) / DERIVATIVE_NAME)
    if paths.root.resolve() == bids_dir.resolve() or Path(out_dir).resolve() == bids_dir.resolve():
        raise InputError("the output folder must not be the BIDS folder itself (use e.g. BIDS_DIR/derivatives)",
                         out_dir)
    check_outside_dataset(bids_dir, out_dir, "output folder")
    if work_dir is not None:
        check_outside_dataset(bids_dir, work_dir, "work folder")
    if dask_scheduler is not None:
        check_scheduler_address(dask_scheduler)
    if participant:
        # Before the output folder is made: a broken study file left a locked, empty one behind, and an
        # atlas or reference mask the roi step cannot read failed every subject after its reconstruction.
        config = settings_for_study(config, study_path, echo)
        if steps is None:
            check_roi_settings(config)
    check_writable_dir(paths.root)

    if bids_filters is not None and not isinstance(bids_filters, BidsFilters):
        bids_filters = load_bids_filters(bids_filters)
    selection = Selection(participant_labels, session_labels, bids_filters)
    result = BidsAppResult(derivatives=paths.root)
    # One run per output folder; SIGTERM stops the workers like Ctrl-C, leaving a resumable state.
    # The work folder first: an unusable one is refused before the output folder is made.
    with temporary_files_in(work_dir) as work_folder, OutputLock(paths.root) as lock, terminate_as_interrupt():
        if lock.taken_over:
            echo(f"qsmiron: took over the lock left by {lock.taken_over}, which is no longer running")
        if "participant" in levels:
            _participant_level(bids_dir, paths, config, selection, skip_validation, n_procs, dask_scheduler,
                               dask_client, steps, progress, echo, result, work_folder)
        if "group" in levels:
            _group_level(bids_dir, paths, study_path, config, echo, result)
    return result


def with_run_options(config: QsmironConfig, *, n_procs: int | None = None, omp_nthreads: int | None = None,
                     mem_gb: float | None = None, stop_on_first_crash: bool = False,
                     atlas: str | None = None) -> QsmironConfig:
    """The settings with ``qsmiron run``'s command-line options in force (given ones only), so that
    ``config.json`` beside the outputs records them."""
    pipeline = {key: value for key, value in (("n_procs", n_procs), ("threads_per_process", omp_nthreads),
                                              ("mem_gb", mem_gb)) if value is not None}
    if stop_on_first_crash:
        pipeline["stop_on_first_crash"] = True
    update = {"pipeline": config.pipeline.model_copy(update=pipeline)} if pipeline else {}
    if atlas is not None:
        update["roi"] = config.roi.model_copy(update={"atlas": atlas})
    if not update:
        return config
    # Validated as a whole, like a settings file (a copy with updates is not checked).
    return type(config).model_validate({**config.model_dump(), **{k: v.model_dump() for k, v in update.items()}})


WHOLE_BRAIN_SYN = ('[voxelwise] mask = "brain" needs the non-linear (SyN) warp over the whole brain; '
                   'registration.syn_region = "atlas" deforms only the atlas regions\' box')


def settings_for_study(config: QsmironConfig, study_path, echo: Callable[[str], None]) -> QsmironConfig:
    """The participant-level settings a study file's ``[voxelwise]`` section needs.

    Chi on the template grid (``registration.warp_chi_to_template``, on by default) and, with
    ``mask = "brain"``, a SyN warp over the whole brain: ``registration.syn_region`` becomes
    ``"brain"`` unless the settings file chose ``"atlas"`` itself, which is an error.

    Raises
    ------
    InputError
        The settings turn off what the study needs (naming the study file).
    """
    from qsmiron.register.normalise import syn_stages
    from qsmiron.stats.study import load_study

    voxelwise = None if study_path is None else load_study(study_path).voxelwise
    if voxelwise is None:
        return config
    registration = config.registration
    if not registration.warp_chi_to_template:
        raise InputError("the study's [voxelwise] section analyses chi on the template grid, but the settings "
                         "turn registration.warp_chi_to_template off", study_path)
    if voxelwise.mask != "brain" or registration.syn_region == "brain" or not syn_stages(registration):
        return config
    if "syn_region" in registration.model_fields_set:
        raise InputError(f"{WHOLE_BRAIN_SYN}, which the settings chose: set it to \"brain\" or use "
                         "mask = \"subcortical\"", study_path)
    echo('qsmiron: [voxelwise] mask = "brain": the SyN warp covers the whole brain (registration.syn_region = '
         '"brain")')
    return config.model_copy(update={"registration": registration.model_copy(update={"syn_region": "brain"})})


def _check_voxelwise_registrations(study_path, scans: list[ScanRecords]) -> None:
    """A ``[voxelwise] mask = "brain"`` study needs every scan warped non-linearly over the whole brain."""
    from qsmiron.stats.study import load_study

    voxelwise = None if study_path is None else load_study(study_path).voxelwise
    if voxelwise is None or voxelwise.mask != "brain":
        return
    narrow = [scan for scan in scans if scan.regions is not None and "SyN" in scan.regions.registration.transforms
              and scan.regions.registration.domain != "brain"]
    if narrow:
        names = ", ".join(f"{s.participant_id}{' ' + s.session if s.session else ''}" for s in narrow[:5])
        raise InputError(f"{WHOLE_BRAIN_SYN}, and {len(narrow)} scan(s) were registered so ({names}"
                         f"{' ...' if len(narrow) > 5 else ''}); run the participant level again with this study "
                         "file, which sets syn_region = \"brain\"", study_path)


def _validate(bids_dir: Path, paths: CohortPaths, config: QsmironConfig, selection: Selection, skip: bool, echo,
              result: BidsAppResult):
    """Discover and validate the subjects; write the dataset description, settings and findings."""
    units = selection.discover(bids_dir)
    if skip:
        echo(f"qsmiron: {len(units)} subject(s) in {bids_dir}; input validation skipped")
        problems = [problem for unit in units for problem in unit.discovery_problems]
    else:
        echo(f"qsmiron: validating {len(units)} subject(s) in {bids_dir}")
        problems = validate_dataset(bids_dir, units, check_data=config.pipeline.validate_image_data)
    result.problems = problems
    if problems:
        echo(f"qsmiron: {sum(p.fatal for p in problems)} error(s), {sum(not p.fatal for p in problems)} "
             "warning(s) in the dataset:")
        for line in format_problems(problems).splitlines():
            echo(f"  {line}")
    valid = valid_subjects(units, problems)
    paths.root.mkdir(parents=True, exist_ok=True)
    write_dataset_files(paths, bids_dir, authors=config.pipeline.authors,
                        readme=readme_text(run_summary(config, bids_dir, paths.root)))
    write_json_atomic(paths.atlas_description(config.roi.atlas), atlas_description(config.roi.atlas))
    write_config(config, paths.config)
    _write_validation(paths.validation, problems)
    if not valid:
        _write_status(paths, _invalid_statuses(units, problems))
        raise InputError(f"no subject passed validation ({len(units)} checked; the problems are listed above "
                         f"and in {paths.validation})", bids_dir)
    return units, valid, problems


def _participant_level(bids_dir: Path, paths: CohortPaths, config: QsmironConfig, selection: Selection,
                       skip_validation: bool, n_procs, dask_scheduler, dask_client, steps, progress, echo,
                       result: BidsAppResult, work_folder: Path | None) -> None:
    units, valid, problems = _validate(bids_dir, paths, config, selection, skip_validation, echo, result)
    if steps is None and dask_scheduler is None and dask_client is None:
        announce_compilation(echo)
    cohort = run_cohort(valid, paths.root, config, n_procs=n_procs, dask_scheduler=dask_scheduler,
                        dask_client=dask_client, steps=steps, progress=progress, echo=echo,
                        work_dir=work_folder)
    statuses = _invalid_statuses([u for u in units if u not in valid], problems) + cohort.statuses
    order = {(u.participant_id, u.session): i for i, u in enumerate(units)}
    statuses.sort(key=lambda s: order[(s.participant_id, s.session)])
    result.statuses = statuses
    _write_status(paths, statuses)

    # The cohort table holds every complete subject of the dataset, this run's or earlier ones'.
    all_units = selection.discover(bids_dir, everyone=True) if selection.partial else units
    regions, included = collect_regions(paths.root, all_units, cohort.config_hash,
                                        inputs_method=config.pipeline.input_hash)
    write_tsv_atomic(paths.regions, regions)
    result.regions_tsv = paths.regions
    failed = [s for s in statuses if not s.succeeded]
    echo(f"qsmiron: participant level: {len(cohort.succeeded)} of {len(statuses)} subject(s) succeeded "
         f"({sum(s.status == 'skipped' for s in statuses)} reused); {len(included)} in {paths.regions}")
    for status in failed:
        echo(f"  left out: {status.label}: {status.step}: {status.reason}")
    first = next((s for s in cohort.statuses if s.status == "failed" and s.step is not None), None)
    if config.pipeline.stop_on_first_crash and first is not None:
        raise InputError(f"stopped at the first failure: {first.label}: {first.step}: {first.reason} (see "
                         f"{paths.status})", bids_dir)
    if not cohort.succeeded:
        raise InputError(f"no subject was processed successfully; see {paths.status} and the "
                         f"logs in {paths.logs}", bids_dir)


def _invalid_statuses(units, problems: list[Problem]) -> list[SubjectStatus]:
    statuses = []
    for unit in units:
        reasons = [p.message for p in problems if p.fatal and p.participant_id == unit.participant_id
                   and p.session == unit.session]
        if reasons:
            statuses.append(SubjectStatus(unit.participant_id, unit.session, "invalid", "validation",
                                          "; ".join(reasons)))
    return statuses


def _write_validation(path: Path, problems: list[Problem]) -> None:
    import pandas as pd

    rows = [{"participant_id": p.participant_id or "n/a", "session": p.session or "n/a",
             "severity": "error" if p.fatal else "warning", "message": p.message,
             "path": "n/a" if p.path is None else str(p.path)} for p in problems]
    write_tsv_atomic(path, pd.DataFrame(rows, columns=["participant_id", "session", "severity", "message", "path"]))


def read_status(out_root: Path):
    """``cohort_status.tsv`` of the derivative dataset at ``out_root`` as a DataFrame (empty when absent)."""
    import pandas as pd

    path = cohort_paths(out_root).status
    if not path.exists():
        return pd.DataFrame(columns=STATUS_COLUMNS)
    return pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False).replace({"n/a": None})


def _write_status(paths: CohortPaths, statuses: Sequence[SubjectStatus]) -> None:
    """Merge this run's subjects into ``cohort_status.tsv`` (rows of other subjects are kept)."""
    import pandas as pd

    previous = read_status(paths.root)
    rows = [{"participant_id": s.participant_id, "session": s.session, "status": s.status, "step": s.step,
             "reason": s.reason, "seconds": f"{s.seconds:.1f}", "log": s.log} for s in statuses]
    current = {(r["participant_id"], r["session"]) for r in rows}
    kept = [r for r in previous.to_dict("records")
            if (r["participant_id"], r.get("session") or None) not in current]
    frame = pd.DataFrame(kept + rows, columns=STATUS_COLUMNS).sort_values(["participant_id", "session"],
                                                                          na_position="first")
    write_tsv_atomic(paths.status, frame)


def _included_scans(paths: CohortPaths) -> list[tuple[str, str | None]]:
    """(participant, session) of every scan in ``regions.tsv``."""
    import pandas as pd

    from qsmiron.io.participants import normalise_session_id

    if not paths.regions.exists():
        raise InputError("no regions.tsv: run the participant level first", paths.root)
    regions = pd.read_csv(paths.regions, sep="\t", dtype=str, keep_default_na=False)
    if "participant_id" not in regions or regions.empty:
        raise InputError("regions.tsv holds no subject: nothing for the group level", paths.regions)
    # A scan is a participant in a dataset without sessions, a participant's session otherwise.
    sessions = regions["session"].map(normalise_session_id) if "session" in regions else [None] * len(regions)
    return sorted(set(zip(regions["participant_id"], sessions)), key=lambda unit: (unit[0], unit[1] or ""))


def _left_out(paths: CohortPaths, participants_tsv: Path, included) -> tuple[list[SubjectProblem], list[SubjectProblem]]:
    """Scans that failed or were invalid, and participants with no complete outputs or not in the table."""
    from qsmiron.io.bids import read_participant_ids
    from qsmiron.io.participants import normalise_participant_id

    failed = []
    for row in read_status(paths.root).to_dict("records"):
        unit = (row["participant_id"], row.get("session") or None)
        if row["status"] in ("failed", "invalid") and unit not in included:
            failed.append(SubjectProblem(participant_id=unit[0], session=unit[1], step=row["step"],
                                         reason=row["reason"]))
    known = {item.participant_id for item in failed} | {pid for pid, _ in included}
    listed = [normalise_participant_id(pid) for pid in read_participant_ids(participants_tsv)]  # 01 is sub-01
    excluded = [SubjectProblem(participant_id=pid, reason="no complete outputs (not processed, or processed "
                                                          "with other settings)") for pid in listed if pid not in known]
    # Processed but not in the table: the statistics leave them out, which the run said nowhere.
    return failed, excluded + [SubjectProblem(participant_id=pid, reason="not in participants.tsv, which gives the "
                               "group and clinical values") for pid in sorted({p for p, _ in included} - set(listed))]


def _scan_records(bids_dir: Path, paths: CohortPaths, included) -> list[ScanRecords]:
    """The recon and regions records and the QC images of every included scan (from its marker)."""
    from qsmiron.records.recon import ReconRecord
    from qsmiron.records.regions import RegionsRecord

    scans = []
    units = {(u.participant_id, u.session): u for u in discover_bids(bids_dir)}
    for participant_id, session in included:
        unit = units.get((participant_id, session))
        marker = None if unit is None else read_marker(paths.subject_dir(unit.relative_dir))
        if marker is None:
            continue
        folder = paths.subject_dir(unit.relative_dir)
        files = {role: folder / item.file for role, item in marker.outputs.items()}
        records = {}
        for role, kind in ((ROLE_RECON_RECORD, ReconRecord), (ROLE_REGIONS_RECORD, RegionsRecord)):
            try:
                records[role] = kind.read(files[role]) if role in files else None
            except InputError:
                records[role] = None  # written by another qsmiron version: its methods are unknown
        scans.append(ScanRecords(participant_id=participant_id, session=session, recon=records[ROLE_RECON_RECORD],
                                 regions=records[ROLE_REGIONS_RECORD],
                                 qc_images=[str(files[role]) for role in QC_ROLES if role in files],
                                 outputs={role: str(path) for role, path in files.items()}))
    return scans


def _group_level(bids_dir: Path, paths: CohortPaths, study_path, config: QsmironConfig, echo,
                 result: BidsAppResult) -> None:
    from qsmiron.io.participants import read_bids_sessions
    from qsmiron.pipeline.group import run_group_analysis

    included = _included_scans(paths)
    participants_tsv = bids_dir / "participants.tsv"
    if not participants_tsv.exists():
        raise InputError("participants.tsv is missing: the group analysis needs the groups and clinical "
                         "variables", bids_dir)
    failed, excluded = _left_out(paths, participants_tsv, included)
    result.left_out = failed + excluded
    scans = _scan_records(bids_dir, paths, included)
    _check_voxelwise_registrations(study_path, scans)
    provenance = Provenance(scans=scans, pipeline=PipelineSummary(
        n_subjects=len(included) + len(failed), failed=failed, excluded=excluded, derivatives=str(paths.root)))
    with_sessions = any(session is not None for _, session in included)
    echo(f"qsmiron: group level on {len({pid for pid, _ in included})} participant(s)"
         + (f", {len(included)} scan sessions" if with_sessions else ""))
    for item in failed:
        who = item.participant_id + (f" {item.session}" if item.session else "")
        echo(f"  left out: {who} (failed at {item.step}: {item.reason})")
    for item in excluded:
        echo(f"  left out: {item.participant_id} ({item.reason})")
    report = run_group_analysis(paths.regions, participants_tsv, paths.group, study_path=study_path,
                                sessions=read_bids_sessions(bids_dir),
                                provenance=provenance, derivatives_dir=paths.root, atlas=config.roi.atlas)
    result.report = Path(report)
    echo(f"qsmiron: report: {Path(report).resolve()}")
