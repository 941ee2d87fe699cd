"""The ``qsmiron`` command: a thin layer over the Python API.

Each subcommand parses its arguments and calls one API function; problems with the user's
input arrive as ``InputError`` and are printed as one line with exit code 2.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

from qsmiron import __version__
from qsmiron.cli_output import configure_logging, one_line_warnings, silence_stdout
from qsmiron.errors import InputError, resource_error


EXAMPLES = {
    "invert": "example:\n  qsmiron invert sub-01_localfield.nii.gz sub-01_desc-qsm_mask.nii.gz -o chi.nii.gz "
              "--method rts",
    "recon": "example:\n  qsmiron recon --magnitude mag.nii.gz --phase phase.nii.gz --echo-times 0.004,0.008,0.012 "
             "--field-strength 3 -o recon_out",
    "roi": "example:\n  qsmiron roi --chi recon_out/Chimap.nii.gz --magnitude mag.nii.gz "
           "--mask recon_out/mask.nii.gz -o sub-01_regions.tsv",
    "stats": "example:\n  qsmiron stats derivatives/qsmiron/regions.tsv bids/participants.tsv -o analysis "
             "--study study.toml",
    "voxelwise": "example:\n  qsmiron voxelwise derivatives/qsmiron bids/participants.tsv --study study.toml "
                 "-o voxelwise_out",
    "run": "examples:\n  qsmiron run study_bids study_bids/derivatives participant --nprocs 4 -w /scratch/work\n"
           "  qsmiron run study_bids study_bids/derivatives group --study study.toml",
    "simulate": "example:\n  qsmiron simulate sim_bids --subjects 12 --seed 1",
    "demo": "example:\n  qsmiron demo demo_output --subjects 8",
    "convert": "example:\n  qsmiron convert /media/export study_bids --mapping patients.tsv",
    "config": "examples:\n  qsmiron config > qsmiron.toml\n  qsmiron config my_settings.toml --json",
}
"""The example each command's ``--help`` ends with."""


def _floats(text: str) -> list[float]:
    try:
        return [float(part) for part in text.replace(" ", "").split(",") if part]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


def _key_value(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key.strip() or not value.strip():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key.strip(), value.strip()


def _cmd_invert(args: argparse.Namespace) -> int:
    from qsmiron.io.nifti import read_sidecar
    from qsmiron.pipeline.single import invert_file
    from qsmiron.records.recon import InversionRecord

    out = invert_file(args.field, args.mask, args.output, method=args.method, config_path=args.config,
                      magnitude=args.magnitude, params=dict(args.param or []))
    # As recon's: a warning of the steps (TFI's compressed regional values) is one line, not
    # only a key in the sidecar.
    record = InversionRecord.model_validate(read_sidecar(out)["qsmiron"])
    for message in (warning for step in record.steps for warning in step.warnings):
        warnings.warn(message, UserWarning, stacklevel=1)
    return 0


def _cmd_recon(args: argparse.Namespace) -> int:
    from qsmiron.pipeline.single import reconstruct_files
    from qsmiron.records.recon import ReconRecord

    paths = reconstruct_files(
        magnitude=args.magnitude,
        phase=args.phase,
        out_dir=args.output,
        echo_times_s=args.echo_times,
        field_strength_t=args.field_strength,
        mask=args.mask,
        r2=args.r2,
        config_path=args.config,
    )
    # A map the data could not give (R2* from fewer than 3 echoes) is not an error: a note. Every
    # other warning of the record (a bipolar readout corrected, an implausible map) is one line.
    record = ReconRecord.read(paths.record)
    notes = {info.skipped for info in (record.r2star, record.chi_separation) if info is not None and info.skipped}
    for message in record.warnings:
        if message in notes:
            print(f"qsmiron recon: note: {args.magnitude[0]}: {message}", file=sys.stderr)
        else:
            warnings.warn(message, UserWarning, stacklevel=1)
    return 0


def _cmd_roi(args: argparse.Namespace) -> int:
    from qsmiron.roi.api import roi_from_files
    from qsmiron.roi.subject import IronMaps

    roi_from_files(
        chi=args.chi,
        magnitude=args.magnitude,
        out_tsv=args.output,
        atlas=args.atlas,
        atlas_labels=args.atlas_labels,
        template=args.template,
        config_path=args.config,
        mask=args.mask,
        iron=IronMaps(r2star=args.r2star, r2star_mask=args.r2star_mask, paramagnetic=args.paramagnetic,
                      diamagnetic=args.diamagnetic),
        reference_mask=args.reference_mask,
        brain_mask=args.brain_mask,
    )
    return 0


def _cmd_stats(args: argparse.Namespace) -> int:
    from qsmiron.pipeline.group import run_group_analysis

    run_group_analysis(args.regions, args.participants, args.output, study_path=args.study, session=args.session,
                       sessions=args.sessions)
    return 0


def _cmd_voxelwise(args: argparse.Namespace) -> int:
    from qsmiron.io.derivatives import voxelwise_paths
    from qsmiron.report.voxelwise_figures import add_contrast_figures
    from qsmiron.stats.voxelwise import run_voxelwise

    results = run_voxelwise(args.derivatives_dir, args.participants, args.output, study_path=args.study,
                            session=args.session)
    add_contrast_figures(results, args.output)
    print(f"{len(results.clusters)} cluster(s) with p_FWE < {results.record.settings.alpha:g}: "
          f"{voxelwise_paths(args.output).clusters}")
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    from qsmiron.config import load_config
    from qsmiron.pipeline.bids_app import run_bids_app, with_run_options

    config = with_run_options(load_config(args.config), n_procs=args.nprocs, omp_nthreads=args.omp_nthreads,
                              mem_gb=args.mem_gb, stop_on_first_crash=args.stop_on_first_crash, atlas=args.atlas)
    run_bids_app(
        bids_dir=args.bids_dir,
        out_dir=args.output_dir,
        level=args.level,
        participant_labels=args.participant_label,
        session_labels=args.session_label,
        bids_filters=args.bids_filter_file,
        study_path=args.study,
        dask_scheduler=args.dask_scheduler,
        config=config,
        work_dir=args.work_dir,
        skip_validation=args.skip_bids_validation,
    )
    return 0


def _cmd_simulate(args: argparse.Namespace) -> int:
    from qsmiron.simulate.cohort import simulate_cohort

    simulate_cohort(args.out_bids, n_subjects=args.subjects, seed=args.seed)
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from qsmiron.pipeline.demo import run_demo

    report = run_demo(args.out_dir, n_subjects=args.subjects, seed=args.seed, n_procs=args.n_procs)
    print(f"report: {Path(report).resolve()}")
    return 0


def _cmd_convert(args: argparse.Namespace) -> int:
    from qsmiron.io.dicom import convert_dicom_to_bids

    try:
        report = convert_dicom_to_bids(args.dicom_dir, args.bids_dir, mapping=args.mapping, subject=args.subject,
                                       session=args.session)
    except InputError as error:
        if getattr(error, "report", None) is not None:
            print(error.report.summary())
        raise
    print(report.summary())
    return 0


def _cmd_config(args: argparse.Namespace) -> int:
    from qsmiron.config import config_to_dict, load_config

    config = load_config(args.config)
    if args.json:
        import json

        print(json.dumps(config_to_dict(config), indent=2))
    else:
        from qsmiron.config_toml import config_to_toml

        print(config_to_toml(config), end="")
    return 0


def _methods_help(stage_name: str) -> str:
    """The methods of a reconstruction stage, as their declarations describe them."""
    from qsmiron.recon.stages import stage

    declared = stage(stage_name)
    return "; ".join(f"{m.name}{' (default)' if m.name == declared.default else ''}: {m.description}"
                     for m in declared.methods if m.selectable)


def _add_study_commands(add) -> None:
    """``stats`` and ``voxelwise``: a study's analyses of regional tables and of template-space maps."""
    sub = add("stats", _cmd_stats, "Cohort statistics and the study report.")
    sub.add_argument("regions", metavar="REGIONS.tsv", help="the cohort's regional table (qsmiron run's regions.tsv)")
    sub.add_argument("participants", metavar="PARTICIPANTS.tsv", help="groups and clinical variables per participant")
    sub.add_argument("-o", "--output", metavar="OUTDIR", required=True, help="where the tables and report go")
    sub.add_argument("--study", metavar="study.toml", default=None,
                     help="the study file (groups, covariates, thresholds, optional sections)")
    sub.add_argument("--session", metavar="LABEL", default=None,
                     help="with a longitudinal regions table: the session analysed (default: each separately)")
    sub.add_argument("--sessions", metavar="SESSIONS.tsv", default=None,
                     help="per-session participant values (participant_id, session_id, ...), e.g. age at each scan")

    sub = add("voxelwise", _cmd_voxelwise,
              "Voxel-wise GLM (permutations, TFCE, FWE) of the study's contrasts on template-space chi maps.")
    sub.add_argument("derivatives_dir", metavar="DERIVATIVES_DIR",
                     help="holds sub-*/[ses-*/]anat/sub-*_space-MNI152NLin2009cAsym_Chimap.nii.gz")
    sub.add_argument("participants", metavar="PARTICIPANTS_TSV", help="groups and clinical variables per participant")
    sub.add_argument("--study", metavar="STUDY_TOML", default=None,
                     help="study file; its [voxelwise] section sets mask, n_permutations, smoothing_fwhm_mm, seed")
    sub.add_argument("-o", "--output", metavar="OUT_DIR", required=True, help="where the maps and tables go")
    sub.add_argument("--session", metavar="LABEL", default=None,
                     help="the session analysed when the maps have several")


def _methods_taking(stage_name: str, keyword: str) -> str:
    """The selectable methods of a reconstruction stage whose function takes ``keyword``."""
    from qsmiron.recon.stages import accepts, stage

    return ", ".join(m.name for m in stage(stage_name).methods if m.selectable and accepts(m, keyword))


def _add_config(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("--config", metavar="FILE", default=None,
                     help="settings file (TOML or JSON); see `qsmiron config`")


def _invert_arguments(sub: argparse.ArgumentParser) -> None:
    """The arguments of ``qsmiron invert``; the method help comes from the declarations."""
    sub.add_argument("field", metavar="FIELD", help="local field, ppm, 3D NIfTI")
    sub.add_argument("mask", metavar="MASK", help="binary mask NIfTI on the same grid")
    sub.add_argument("-o", "--output", metavar="CHI", required=True, help="susceptibility map to write (ppm)")
    sub.add_argument("--method", metavar="NAME", default=None,
                     help="inversion method (default: the configuration's recon.inversion.method). "
                          + _methods_help("inversion"))
    sub.add_argument("--magnitude", metavar="MAG", default=None,
                     help="magnitude on the same grid (3D, or 4D with echoes last, of which the last echo "
                          "is used, as in recon): edge prior and data weights of the methods that take one "
                          f"({_methods_taking('inversion', 'magnitude')})")
    sub.add_argument("--param", metavar="KEY=VALUE", action="append", type=_key_value, default=None,
                     help="a parameter of the method (repeat the option), e.g. --param max_outer=4; "
                          "checked against the method's declared parameters (see `qsmiron config`) "
                          "and recorded in the sidecar")
    _add_config(sub)


def _add_convert(sub: argparse.ArgumentParser) -> None:
    """The arguments of ``qsmiron convert``."""
    sub.add_argument("dicom_dir", metavar="DICOM_DIR", help="the DICOM export (only read)")
    sub.add_argument("bids_dir", metavar="BIDS_DIR", help="BIDS dataset to create or add to")
    sub.add_argument("--mapping", default=None, metavar="TSV",
                     help="PatientID -> participant_id table (optional columns session_id, StudyDate, group); "
                          "patients not listed are skipped")
    sub.add_argument("--subject", default=None, metavar="LABEL",
                     help="subject label for an export of one patient, letters and digits (default: the "
                          "PatientID, other characters dropped)")
    sub.add_argument("--session", default=None, metavar="LABEL",
                     help="session label for an export of one visit (default: none, or the study date when a "
                          "subject has several visits)")


def _recon_arguments(sub: argparse.ArgumentParser) -> None:
    # "extend": one file per echo given as a list (a shell glob) or by repeating the option.
    sub.add_argument("--magnitude", metavar="MAG", action="extend", nargs="+", required=True,
                     help="4D magnitude (echoes last) or one file per echo in echo order (list them, "
                          "or repeat the option)")
    sub.add_argument("--phase", metavar="PHASE", action="extend", nargs="+", required=True,
                     help="4D phase (echoes last) or one file per echo in echo order (list them, "
                          "or repeat the option)")
    sub.add_argument("--echo-times", metavar="TE1,TE2,...", type=_floats, default=None,
                     help="echo times in seconds (default: from BIDS JSON sidecars)")
    sub.add_argument("--field-strength", metavar="TESLA", type=float, default=None,
                     help="B0 in tesla (default: MagneticFieldStrength from the sidecars)")
    sub.add_argument("--mask", metavar="MASK", default=None, help="brain mask to use instead of the automatic one")
    sub.add_argument("--r2", metavar="R2MAP", default=None,
                     help="measured R2 map (s^-1, on the GRE grid) for chi-separation "
                          "([recon.chisep] method = \"shin\"); without it R2' is approximated")
    sub.add_argument("-o", "--output", metavar="OUTDIR", required=True,
                     help="where the maps (Chimap.nii.gz, ...) and recon.json go")


def _roi_arguments(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("--chi", metavar="CHI", required=True, help="susceptibility map (ppm)")
    sub.add_argument("--magnitude", metavar="MAG", required=True, help="magnitude on the same grid (first echo used)")
    sub.add_argument("-o", "--output", metavar="OUT.tsv", required=True,
                     help="the regional table; the other outputs take its name without .tsv as their stem")
    sub.add_argument("--atlas", default="cit168", metavar="cit168|PATH", help="built-in atlas name or a label NIfTI in template space")
    sub.add_argument("--atlas-labels", metavar="TSV", default=None, help="index and name of each label (required with --atlas PATH)")
    sub.add_argument("--template", metavar="PATH", default=None, help="template the atlas is defined on (default: MNI152NLin2009cAsym)")
    sub.add_argument("--mask", metavar="MASK", default=None,
                     help="where chi is valid (the recon's mask; default: chi's non-zero support)")
    sub.add_argument("--r2star", metavar="R2STARMAP", default=None,
                     help="R2* map (s^-1) on the same grid: measured per region, and cleans the ventricle CSF reference")
    sub.add_argument("--r2star-mask", metavar="MASK", default=None, help="where R2* is valid (default: its finite non-zero voxels)")
    sub.add_argument("--paramagnetic", metavar="CHIMAP", default=None, help="chi+ map (ppm) from chi-separation")
    sub.add_argument("--diamagnetic", metavar="CHIMAP", default=None, help="chi- map (ppm) from chi-separation")
    sub.add_argument("--reference-mask", metavar="MASK", default=None,
                     help="a reference region on the same grid: chi is also given relative to its mean")
    sub.add_argument("--brain-mask", metavar="MASK", default=None, help="the whole brain before background removal "
                     "eroded it (or the recon's fieldmap.nii.gz): registration's brain when no --r2star is given")



def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected 1 or more, got {value}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a number above 0, got {text}")
    return value


def _run_arguments(sub: argparse.ArgumentParser) -> None:
    """The arguments of ``qsmiron run``, as BIDS Apps (fMRIPrep, QSMxT) name them."""
    sub.add_argument("bids_dir", metavar="BIDS_DIR", help="the BIDS dataset (only read)")
    sub.add_argument("output_dir", metavar="OUTPUT_DIR",
                     help="where the derivatives go (OUTPUT_DIR/qsmiron), e.g. BIDS_DIR/derivatives")
    sub.add_argument("level", metavar="{participant,group}", choices=["participant", "group"],
                     help="participant: reconstruct and measure every subject, then the cohort table; group: "
                          "statistics and the report on the subjects that succeeded")
    sub.add_argument("--participant-label", nargs="+", default=None, metavar="LABEL",
                     help="only these participants (01 or sub-01)")
    sub.add_argument("--session-label", nargs="+", default=None, metavar="LABEL",
                     help="only these sessions (1 or ses-1)")
    sub.add_argument("--bids-filter-file", default=None, metavar="FILE",
                     help='JSON selecting input files per kind, as fMRIPrep: {"megre": {"acquisition": "wb"}, '
                          '"t1w": {"run": 1}}; null means the entity must be absent')
    sub.add_argument("--work-dir", "-w", default=None, metavar="DIR",
                     help="where temporary files go (registration scratch, ANTs images), also on the workers "
                          "of --dask-scheduler, which must see it; default: the system's temporary folder")
    sub.add_argument("--nprocs", "--n-procs", dest="nprocs", type=_positive_int, default=None, metavar="N",
                     help="subjects processed at once (default: the settings' pipeline.n_procs, one per core)")
    sub.add_argument("--omp-nthreads", type=_positive_int, default=None, metavar="N",
                     help="numerical threads per subject (numba, BLAS, ITK); default: the cores divided by --nprocs")
    sub.add_argument("--mem-gb", type=_positive_float, default=None, metavar="GB",
                     help="memory the run may use: fewer subjects run at once when their estimated peaks would "
                          "exceed it")
    sub.add_argument("--skip-bids-validation", action="store_true",
                     help="skip checking every input before processing (a subject with a bad file then fails at "
                          "its own step)")
    sub.add_argument("--stop-on-first-crash", action="store_true",
                     help="stop at the first subject that fails instead of carrying on with the others")
    sub.add_argument("--atlas", default=None, metavar="cit168", help="built-in atlas of the regional values (default: "
                     "the settings' roi.atlas, cit168); a label image needs its table, which only qsmiron roi takes")
    sub.add_argument("--study", metavar="STUDY_TOML", default=None,
                     help="the study file (groups, covariates, optional sections) for the group level")
    sub.add_argument("--dask-scheduler", default=None, metavar="ADDRESS",
                     help="run the subjects on a Dask cluster (tcp://host:8786) instead of local processes")
    _add_config(sub)
    sub.add_argument("-v", "--verbose", action="count", default=0,
                     help="more log lines on stderr: -v the steps of each subject (INFO), -vv everything (DEBUG)")
    sub.add_argument("--version", action="version", version=f"qsmiron {__version__}",
                     help="print the version and exit")


class OneLineParser(argparse.ArgumentParser):
    """A usage error is one line naming the command, as every other bad input is; ``--help``
    still prints the usage (argparse's own error printed the usage block first)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="qsmiron",
        description="Quantitative susceptibility mapping for clinical brain-iron studies.",
        epilog="example:\n  qsmiron run study_bids study_bids/derivatives participant\n"
               "see `qsmiron COMMAND --help` for each command's options and example",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"qsmiron {__version__}",
                        help="print the version and exit")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def add(name: str, handler, help_text: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text, description=help_text, epilog=EXAMPLES[name],
                                  formatter_class=argparse.RawDescriptionHelpFormatter)
        sub.set_defaults(handler=handler)
        return sub

    _invert_arguments(add("invert", _cmd_invert, "Dipole inversion: local field (ppm) to susceptibility (ppm)."))

    sub = add("recon", _cmd_recon, "Multi-echo GRE magnitude and phase to a susceptibility map (and R2*, T2*, "
                                   "S0; chi-separation when asked for).")
    _recon_arguments(sub)
    _add_config(sub)

    sub = add("roi", _cmd_roi, "Per-region susceptibility (and R2*, chi+, chi-) in atlas regions brought into "
                               "subject space.")
    _roi_arguments(sub)
    _add_config(sub)

    _add_study_commands(add)

    _run_arguments(add("run", _cmd_run, "BIDS-App: a BIDS dataset to QSM maps, regional tables, statistics and "
                                        "the report."))

    sub = add("simulate", _cmd_simulate, "Simulate a cohort with known truth as a BIDS dataset.")
    sub.add_argument("out_bids", metavar="OUT_BIDS", help="the BIDS dataset to write")
    sub.add_argument("--subjects", type=int, default=24, metavar="N", help="simulated subjects (two groups)")
    sub.add_argument("--seed", type=int, default=0, metavar="S", help="random seed (same seed, same cohort)")

    sub = add("demo", _cmd_demo, "Simulate a small cohort, run everything and print where the report is.")
    sub.add_argument("out_dir", metavar="OUT_DIR", help="where the simulated dataset, derivatives and report go")
    from qsmiron.pipeline.settings import DemoSettings

    demo_subjects = DemoSettings.model_fields["n_subjects"].default
    sub.add_argument("--subjects", type=int, default=None, metavar="N",
                     help=f"simulated subjects (default {demo_subjects})")
    sub.add_argument("--seed", type=int, default=0, metavar="S", help="random seed of the simulation")
    sub.add_argument("--nprocs", "--n-procs", dest="n_procs", type=_positive_int, default=None, metavar="N",
                     help="subjects processed at once (default: one per core)")

    _add_convert(add("convert", _cmd_convert, "Convert the multi-echo GRE of a DICOM export (any subjects, "
                     "visits and folder layout) to BIDS, with participants.tsv; prints what it converted and skipped."))

    sub = add("config", _cmd_config, "Print the full configuration as TOML (defaults, or a file's values "
                                     "resolved), with every stage's methods and their references.")
    sub.add_argument("config", metavar="FILE", nargs="?", default=None,
                     help="a settings file to resolve (default: print the defaults)")
    sub.add_argument("--json", action="store_true", help="print JSON (as written beside the outputs) instead")
    return parser


VERSION_ONLY = (["--version"], ["run", "--version"])
"""Command lines answered before the parser is built: building it imports every stage to list
their methods (about 1 s), and a pipeline asking for the version (a BIDS-App's provenance) should
not wait for that."""


def main(argv: list[str] | None = None) -> int:
    from qsmiron.pipeline.runners import keep_freed_memory

    if list(sys.argv[1:] if argv is None else argv) in VERSION_ONLY:
        print(f"qsmiron {__version__}")
        return 0
    parser = build_parser()
    args = parser.parse_args(argv)
    configure_logging(getattr(args, "verbose", 0))
    keep_freed_memory()
    try:
        with one_line_warnings(f"qsmiron {args.command}"):
            return int(args.handler(args) or 0)
    except InputError as error:
        print(f"qsmiron {args.command}: error: {error.one_line()}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # The reader of our output went away (`qsmiron config | head`): not an error of ours.
        silence_stdout()
        return 0
    except OSError as error:
        resource = resource_error(error)
        if resource is None:
            raise
        print(f"qsmiron {args.command}: error: {resource.one_line()}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as interrupt:
        signum = getattr(interrupt, "signum", 2)
        print(f"qsmiron {args.command}: stopped by signal {signum}; outputs of finished steps are "
              f"kept and the same command resumes the rest", file=sys.stderr)
        return 128 + signum


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
