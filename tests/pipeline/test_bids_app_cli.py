"""``qsmiron run`` follows the BIDS-App conventions (fMRIPrep, QSMxT).

The command line is checked against what reaches the Python API; each option's behaviour is
checked on tiny datasets with the light steps of ``conftest.py`` (filters, sessions, work
folder, stopping at the first failure, memory and thread limits), and the help texts and
examples on the parser itself.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from qsmiron import __version__, cli
from qsmiron.config import QsmironConfig
from qsmiron.errors import InputError
from qsmiron.io.bids import discover_bids
from qsmiron.io.bids_filters import load_bids_filters, parse_bids_filters
from qsmiron.pipeline.bids_app import read_status, run_bids_app
from qsmiron.pipeline.cohort import run_cohort


def fast_config(**pipeline) -> QsmironConfig:
    return QsmironConfig.model_validate({"pipeline": {"progress": False, "n_procs": 1, **pipeline}})


@pytest.fixture()
def captured_run(monkeypatch):
    """Replace ``run_bids_app`` with a recorder of its arguments."""
    calls = []
    monkeypatch.setattr("qsmiron.pipeline.bids_app.run_bids_app", lambda **kwargs: calls.append(kwargs))
    return calls


# ------------------------------------------------------------------------------ the command line
def test_the_analysis_level_is_required(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["run", "bids", "out"])
    assert exit_info.value.code == 2
    assert "{participant,group}" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["run", "bids", "out", "both"])


def test_every_run_option_reaches_the_api(captured_run, tmp_path):
    filters = tmp_path / "filters.json"
    code = cli.main(["run", "bids", "out", "participant", "--participant-label", "01", "sub-02",
                     "--session-label", "1", "--bids-filter-file", str(filters), "--work-dir", str(tmp_path / "w"),
                     "--nprocs", "3", "--omp-nthreads", "2", "--mem-gb", "12.5", "--skip-bids-validation",
                     "--stop-on-first-crash", "--atlas", "my_atlas.nii.gz", "--study", "study.toml"])
    assert code == 0
    (call,) = captured_run
    assert (call["bids_dir"], call["out_dir"], call["level"]) == ("bids", "out", "participant")
    assert call["participant_labels"] == ["01", "sub-02"] and call["session_labels"] == ["1"]
    assert call["bids_filters"] == str(filters) and call["work_dir"] == str(tmp_path / "w")
    assert call["skip_validation"] is True and call["study_path"] == "study.toml"
    pipeline = call["config"].pipeline
    assert (pipeline.n_procs, pipeline.threads_per_process, pipeline.mem_gb) == (3, 2, 12.5)
    assert pipeline.stop_on_first_crash is True and call["config"].roi.atlas == "my_atlas.nii.gz"


def test_n_procs_is_kept_as_an_alias_and_defaults_come_from_the_settings(captured_run, tmp_path):
    settings = tmp_path / "settings.toml"
    settings.write_text("[pipeline]\nn_procs = 5\n")
    cli.main(["run", "bids", "out", "group", "--config", str(settings)])
    cli.main(["run", "bids", "out", "group", "--n-procs", "2"])
    assert captured_run[0]["config"].pipeline.n_procs == 5
    assert captured_run[0]["config"].pipeline.stop_on_first_crash is False
    assert captured_run[1]["config"].pipeline.n_procs == 2


def test_verbose_sets_the_log_level_and_version_prints_it(captured_run, capsys):
    logger = logging.getLogger("qsmiron")
    before = (logger.level, list(logger.handlers))
    try:
        cli.main(["run", "bids", "out", "participant", "-v"])
        assert logger.level == logging.INFO
        cli.main(["run", "bids", "out", "participant", "-vv"])
        assert logger.level == logging.DEBUG
        assert sum(getattr(h, "qsmiron_console", False) for h in logger.handlers) == 1
    finally:
        logger.setLevel(before[0])
        logger.handlers[:] = before[1]
    for argv in (["--version"], ["run", "--version"]):
        assert cli.main(argv) == 0 and capsys.readouterr().out.strip() == f"qsmiron {__version__}"


def test_every_option_has_a_help_text_and_every_command_an_example():
    parser = cli.build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices
    assert "run" in commands and "example" in parser.epilog
    for name, sub in commands.items():
        assert sub.epilog and "example" in sub.epilog and f"qsmiron {name}" in sub.epilog, name
        for action in sub._actions:
            assert action.help and action.help != argparse.SUPPRESS, f"{name} {action.option_strings or action.dest}"
        assert f"qsmiron {name}" in sub.format_help()  # the example is printed by --help


# -------------------------------------------------------------------------------- what they do
def _two_series(root: Path) -> Path:
    """sub-01 with two MEGRE series (acq-low, acq-high) and a T1w; sub-02 with one."""
    import nibabel as nib
    import numpy as np

    from conftest import TINY_SHAPE, TINY_TES, write_tiny_subject

    write_tiny_subject(root, "01", seed=0)
    anat = root / "sub-01" / "anat"
    for path in sorted(anat.glob("sub-01_echo-*")):
        path.rename(anat / path.name.replace("sub-01_", "sub-01_acq-low_"))
    for part in ("mag", "phase"):
        for echo, te in enumerate(TINY_TES, start=1):
            stem = anat / f"sub-01_acq-high_echo-{echo}_part-{part}_MEGRE"
            nib.save(nib.Nifti1Image(np.ones(TINY_SHAPE, np.float32), np.eye(4)), f"{stem}.nii.gz")
            Path(f"{stem}.json").write_text(json.dumps({"EchoTime": te, "MagneticFieldStrength": 3.0}))
    write_tiny_subject(root, "02", seed=1)
    (root / "participants.tsv").write_text("participant_id\tgroup\nsub-01\tCM\nsub-02\tCM\n")
    return root


def test_a_bids_filter_file_chooses_the_series(tmp_path):
    bids = _two_series(tmp_path / "bids")
    unfiltered = discover_bids(bids)[0]
    assert "several MEGRE series" in unfiltered.discovery_problems[0].message
    filters = tmp_path / "filters.json"
    filters.write_text(json.dumps({"megre": {"acquisition": "high"}}))
    units = discover_bids(bids, filters=load_bids_filters(filters))
    assert not units[0].discovery_problems
    assert [p.name for p in units[0].magnitude] == ["sub-01_acq-high_echo-1_part-mag_MEGRE.nii.gz",
                                                    "sub-01_acq-high_echo-2_part-mag_MEGRE.nii.gz"]
    assert units[1].magnitude == []  # sub-02 has no acq-high series: nothing to process
    # null: the entity must be absent (sub-02's series, not sub-01's two)
    absent = discover_bids(bids, filters=parse_bids_filters({"megre": {"acq": None}}))
    assert absent[0].magnitude == [] and len(absent[1].magnitude) == 2


def test_the_filter_file_reaches_discovery_through_run(tmp_path, light_steps):
    bids = _two_series(tmp_path / "bids")
    filters = tmp_path / "filters.json"
    filters.write_text(json.dumps({"megre": {"acq": ["low"]}, "t1w": {}}))
    result = run_bids_app(bids, tmp_path / "out", "participant", config=fast_config(), steps=light_steps,
                          bids_filters=filters, participant_labels=["01"])
    assert [s.status for s in result.statuses] == ["done"]


@pytest.mark.parametrize("payload, message", [
    ({"bold": {}}, "unknown filter 'bold'"),
    ({"megre": {"colour": "red"}}, "unknown BIDS entity 'colour'"),
    ({"megre": {"session": "1"}}, "--session-label"),
    (["megre"], "JSON object"),
])
def test_a_bad_filter_file_is_one_input_error(tmp_path, payload, message):
    path = tmp_path / "filters.json"
    path.write_text(json.dumps(payload))
    with pytest.raises(InputError, match=message):
        load_bids_filters(path)


def test_session_labels_select_sessions(tmp_path, tiny_subject, light_steps):
    bids = tmp_path / "bids"
    for session in ("1", "2"):
        tiny_subject(bids, "01", seed=0, session=session)
    tiny_subject(bids, "02", seed=1, session="2")
    (bids / "participants.tsv").write_text("participant_id\nsub-01\nsub-02\n")
    assert [u.label for u in discover_bids(bids, session_labels=["ses-1"])] == ["sub-01_ses-1"]
    result = run_bids_app(bids, tmp_path / "out", "participant", config=fast_config(), steps=light_steps,
                          session_labels=["2"])
    assert [(s.participant_id, s.session) for s in result.statuses] == [("sub-01", "ses-2"), ("sub-02", "ses-2")]
    with pytest.raises(InputError, match="no subject has session"):
        discover_bids(bids, session_labels=["3"])


def temp_step(job, log):
    """A step that makes a temporary file the usual way and says where it was."""
    handle, name = tempfile.mkstemp(prefix="qsmiron-test-")
    os.close(handle)
    os.unlink(name)
    path = job.out_dir / f"{job.unit.label}_tmp.txt"
    job.out_dir.mkdir(parents=True, exist_ok=True)
    path.write_text(name)
    return {"tmp": path}


def test_work_dir_receives_the_temporary_files_of_every_worker(tiny_bids, tmp_path, monkeypatch):
    bids = tiny_bids(labels=("01", "02"))
    sentinel, work = tmp_path / "system_tmp", tmp_path / "work"
    sentinel.mkdir()
    monkeypatch.setenv("TMPDIR", str(sentinel))
    monkeypatch.setattr(tempfile, "tempdir", None)
    untouched = sentinel.stat().st_mtime_ns
    # Two spawned worker processes: they inherit the work folder through the environment.
    run_bids_app(bids, tmp_path / "out", "participant", config=fast_config(n_procs=2),
                 steps=[("temp", temp_step)], work_dir=work)
    for label in ("sub-01", "sub-02"):
        made = Path((tmp_path / "out" / "qsmiron" / label / "anat" / f"{label}_tmp.txt").read_text())
        assert made.parent == work.resolve()
    assert sentinel.stat().st_mtime_ns == untouched  # nothing made (or removed) there
    assert tempfile.gettempdir() == str(sentinel)  # the process's own setting is back


def test_stop_on_first_crash_stops_the_run_and_names_the_subject(tiny_bids, light_steps, tmp_path, read_calls):
    bids = tiny_bids(labels=("01", "02", "03"), flags={"01": {"PlantedFailure": True}})
    with pytest.raises(InputError, match="stopped at the first failure: sub-01: check: RuntimeError"):
        run_bids_app(bids, tmp_path / "out", "participant", config=fast_config(stop_on_first_crash=True),
                     steps=light_steps)
    root = tmp_path / "out" / "qsmiron"
    status = read_status(root).set_index("participant_id")
    assert status.loc["sub-01", "step"] == "check"
    assert all("not run" in status.loc[pid, "reason"] for pid in ("sub-02", "sub-03"))
    assert [line.split()[0] for line in read_calls(root)] == ["sub-01", "sub-01"]  # nobody after it
    # Without the option the others carry on.
    result = run_bids_app(bids, tmp_path / "out2", "participant", config=fast_config(), steps=light_steps)
    assert [s.status for s in result.statuses] == ["failed", "done", "done"]


def test_mem_gb_limits_the_subjects_run_at_once(tiny_bids, light_steps, tmp_path):
    from qsmiron.pipeline.runners import BASE_GB, estimate_subject_gb

    units = discover_bids(tiny_bids(labels=("01", "02")))
    peak = estimate_subject_gb(units[0])
    assert BASE_GB < peak < BASE_GB + 0.01  # 8 x 8 x 6 voxels, 2 echoes
    lines = []
    run_cohort(units, tmp_path / "out", fast_config(n_procs=2, mem_gb=1.5 * peak), steps=light_steps,
               echo=lines.append)
    assert any("1 subject(s) at once instead of 2" in line for line in lines)
    assert any("in this process" in line for line in lines)


def thread_step(job, log):
    """Records the numerical thread limits the step ran under."""
    import numba
    from threadpoolctl import threadpool_info

    path = job.out_dir / f"{job.unit.label}_threads.json"
    job.out_dir.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"numba": numba.get_num_threads(),
                                "blas": [pool["num_threads"] for pool in threadpool_info()],
                                "itk": os.environ.get("ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS")}))
    return {"threads": path}


def test_omp_nthreads_caps_numba_blas_and_itk_threads_per_subject(tiny_bids, tmp_path):
    import numba

    before = numba.get_num_threads()
    units = discover_bids(tiny_bids(labels=("01",)))
    config = fast_config(threads_per_process=1, reproducible_registration=False)
    run_cohort(units, tmp_path / "out", config, steps=[("threads", thread_step)])
    seen = json.loads((tmp_path / "out" / "sub-01" / "anat" / "sub-01_threads.json").read_text())
    assert seen["numba"] == 1 and set(seen["blas"]) <= {1} and seen["itk"] == "1"
    assert numba.get_num_threads() == before  # this process gets its threads back


# ------------------------------------------------------------------------- numba's first run
def test_a_cold_numba_cache_is_announced_once(tmp_path, monkeypatch):
    from qsmiron.pipeline.runtime import announce_compilation, cold_kernels

    (tmp_path / "cold_kernel_module.py").write_text(
        "import numba\n\n@numba.njit(cache=True)\ndef twice(x):\n    return 2 * x\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    lines = []
    assert cold_kernels(["cold_kernel_module"]) == ["cold_kernel_module.twice"]
    assert announce_compilation(lines.append, ["cold_kernel_module"]) and "compiling the numerical" in lines[0]
    sys.modules["cold_kernel_module"].twice(3)  # compiles and writes the cache
    assert cold_kernels(["cold_kernel_module"]) == []
    assert not announce_compilation(lines.append, ["cold_kernel_module"]) and len(lines) == 1


@pytest.mark.parametrize("work, message", [
    ("a_file", "the work folder exists and is not a folder"),
    ("a_file/work", "the work folder cannot be created: .*a_file is not a folder"),
])
def test_an_unusable_work_folder_is_one_line_before_any_output(tiny_bids, tmp_path, capsys, work, message):
    bids = tiny_bids(labels=("01",))
    (tmp_path / "a_file").write_text("not a folder")
    code = cli.main(["run", str(bids), str(tmp_path / "out"), "participant", "--work-dir", str(tmp_path / work)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "Traceback" not in err
    assert re.search(f"qsmiron run: error: {re.escape(str(tmp_path / work))}: {message}", err)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("address, words", [("notanaddress", "missing port"), ("tcp://host:abc", "invalid literal"),
                                            ("foo://host:8786", "unknown address scheme")])
def test_a_dask_scheduler_that_is_not_an_address_is_one_line_before_any_output(tiny_bids, tmp_path, capsys,
                                                                              address, words):
    bids = tiny_bids(labels=("01",))
    code = cli.main(["run", str(bids), str(tmp_path / "out"), "participant", "--dask-scheduler", address])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1, err
    assert err.startswith(f"qsmiron run: error: {address}: not a Dask scheduler address") and words in err, err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("case, message", [("no subjects", "no sub-\\* folder: not a BIDS dataset"),
                                           ("absent label", "no folder for participant\\(s\\) sub-02"),
                                           ("absent session", "no subject has session\\(s\\) ses-2"),
                                           ("broken description", "dataset_description.json: is not valid JSON")])
def test_a_wrong_dataset_is_one_line_before_the_output_folder_is_made(tiny_bids, tmp_path, capsys, case, message):
    bids = tiny_bids(labels=("01",))
    if case == "no subjects":
        shutil.rmtree(bids / "sub-01")
    elif case == "broken description":
        (bids / "dataset_description.json").write_text('{"Name": ')
    labels = {"absent label": ["--participant-label", "02"], "absent session": ["--session-label", "2"]}.get(case, [])
    code = cli.main(["run", str(bids), str(tmp_path / "out"), "participant", *labels])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert re.search(message, err), err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("case, message", [
    ("broken study", "study.toml: cannot be parsed"),
    ("atlas image", "atlas.nii.gz: a cohort is measured with a built-in atlas \\(cit168\\)"),
    ("missing atlas", "missing.nii.gz: atlas label image not found"),
    ("unknown atlas", "unknown atlas 'cit186'"),
    ("missing reference mask", "ref.nii.gz: file not found \\(the setting roi.reference_mask\\)"),
])
def test_a_broken_study_file_or_an_unusable_atlas_or_reference_mask_is_one_line_before_any_output(
        tiny_bids, tmp_path, capsys, case, message):
    """The study file was read inside the locked output folder (left behind, with its lock), and the
    atlas only at each subject's roi step, after its reconstruction."""
    bids = tiny_bids(labels=("01",))
    study = tmp_path / "study.toml"
    study.write_text('[groups\ncolumn = "group"\n' if case == "broken study" else '[groups]\ncolumn = "group"\n')
    nib.save(nib.Nifti1Image(np.ones((4, 4, 4), np.int16), np.eye(4)), str(tmp_path / "atlas.nii.gz"))
    atlas = {"atlas image": ["--atlas", str(tmp_path / "atlas.nii.gz")],
             "missing atlas": ["--atlas", str(tmp_path / "missing.nii.gz")],
             "unknown atlas": ["--atlas", "cit186"]}.get(case, [])
    if case == "missing reference mask":
        (tmp_path / "settings.toml").write_text(f'[roi]\nreference_mask = "{tmp_path / "ref.nii.gz"}"\n')
        atlas = ["--config", str(tmp_path / "settings.toml")]
    code = cli.main(["run", str(bids), str(tmp_path / "out"), "participant", "--study", str(study), *atlas])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert re.search(message, err), err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("where", ["output", "work"])
def test_an_output_or_work_folder_inside_the_dataset_but_not_in_its_derivatives_is_refused(
        tiny_bids, tmp_path, capsys, where):
    """Derivatives once went into ``sub-01/anat/qsmiron/`` of the input dataset, and the work folder
    was left behind in it."""
    bids = tiny_bids(labels=("01",))
    before = sorted(p.relative_to(bids) for p in bids.rglob("*"))
    inside = bids / "sub-01" / "anat" / "out"
    out, work = (inside, []) if where == "output" else (bids / "derivatives", ["--work-dir", str(inside)])
    code = cli.main(["run", str(bids), str(out), "participant", *work])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert err.startswith(f"qsmiron run: error: {inside}: the {where} folder lies inside the BIDS folder"), err
    assert sorted(p.relative_to(bids) for p in bids.rglob("*")) == before
