"""Subjects on a Dask distributed cluster give the same results as local processes."""

from __future__ import annotations

import os
import tempfile

import pandas as pd
import pytest

from qsmiron.config import QsmironConfig
from qsmiron.io.bids import discover_bids
from qsmiron.pipeline.cohort import collect_regions, run_cohort

distributed = pytest.importorskip("distributed")


def config(**pipeline) -> QsmironConfig:
    return QsmironConfig.model_validate({"pipeline": {"progress": False, **pipeline}})


@pytest.fixture(scope="module")
def cluster():
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None) as c:
        yield c


def test_dask_cluster_gives_the_same_regions_and_failures_as_one_process(tiny_bids, light_steps, tmp_path, cluster):
    bids = tiny_bids(labels=("01", "02", "03", "04"), flags={"03": {"PlantedFailure": True}})
    units = discover_bids(bids)
    local = run_cohort(units, tmp_path / "local", config(), n_procs=1, steps=light_steps)
    with distributed.Client(cluster) as client:
        remote = run_cohort(units, tmp_path / "dask", config(), dask_client=client, steps=light_steps)
    assert [(s.participant_id, s.status, s.step, s.reason) for s in remote.statuses] == \
        [(s.participant_id, s.status, s.step, s.reason) for s in local.statuses]
    assert remote.statuses[2].status == "failed"
    a, _ = collect_regions(tmp_path / "local", units, local.config_hash)
    b, _ = collect_regions(tmp_path / "dask", units, remote.config_hash)
    pd.testing.assert_frame_equal(a, b)


def test_dask_scheduler_address_is_used_like_the_cli_option(tiny_bids, light_steps, tmp_path, cluster):
    units = discover_bids(tiny_bids(labels=("01", "02")))
    result = run_cohort(units, tmp_path / "dask", config(), dask_scheduler=cluster.scheduler_address,
                        steps=light_steps)
    assert [s.status for s in result.statuses] == ["done", "done"]
    log = (tmp_path / "dask" / "logs" / "sub-01.log").read_text()
    assert "step measure finished" in log


def test_an_unreachable_scheduler_is_an_input_error(tiny_bids, light_steps, tmp_path):
    from qsmiron.errors import InputError
    from qsmiron.pipeline.runners import connect

    with pytest.raises(InputError, match="cannot reach the Dask scheduler"):
        connect("tcp://127.0.0.1:1", timeout="1s")


def test_real_steps_on_a_dask_cluster_match_a_local_worker_process(cohort_copy, fast_e2e_config, tmp_path, cluster):
    """The same regional table (to float precision) from a local worker process and from the Dask cluster."""
    participants = pd.read_csv(cohort_copy(name="all") / "participants.tsv", sep="\t")
    units = discover_bids(cohort_copy(labels=[participants.participant_id[0][4:]]))
    local = run_cohort(units, tmp_path / "local", fast_e2e_config(), n_procs=2)
    with distributed.Client(cluster) as client:
        remote = run_cohort(units, tmp_path / "dask", fast_e2e_config(), dask_client=client)
    assert [s.status for s in local.statuses] == [s.status for s in remote.statuses] == ["done"]
    a, _ = collect_regions(tmp_path / "local", units, local.config_hash)
    b, _ = collect_regions(tmp_path / "dask", units, remote.config_hash)
    assert len(a) > 20 and a["mean"].notna().sum() > 20
    pd.testing.assert_frame_equal(a, b, rtol=1e-6, atol=1e-9)


def test_tasks_on_dask_worker_processes_put_temporary_files_in_the_work_folder(tmp_path):
    """A cluster's workers do not inherit the client's environment: the work folder travels
    with each task (``--work-dir`` with ``--dask-scheduler``)."""
    from qsmiron.pipeline.runners import DaskRunner

    work = tmp_path / "work"
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=":0") as c, \
            distributed.Client(c) as client:
        before = client.submit(tempfile.mkdtemp, pure=False).result()
        made = DaskRunner(client, work_dir=work).submit(tempfile.mkdtemp).result()
    assert not before.startswith(str(tmp_path))
    assert os.path.dirname(made) == str(work.resolve()) and os.path.isdir(made)


def _record_temporary_folder(job, log):
    job.out_dir.mkdir(parents=True, exist_ok=True)
    path = job.out_dir / "temporary_folder.txt"
    path.write_text(tempfile.gettempdir())
    return {"temporary_folder": path}


def test_run_cohort_gives_dask_tasks_the_work_folder(tiny_bids, tmp_path, cluster, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", tempfile.tempdir)  # restored after the test
    for name in ("TMPDIR", "TEMP", "TMP"):
        monkeypatch.setenv(name, os.environ.get(name, str(tmp_path)))
    units = discover_bids(tiny_bids(labels=("01",)))
    work = tmp_path / "work"
    with distributed.Client(cluster) as client:
        result = run_cohort(units, tmp_path / "dask", config(), dask_client=client,
                            steps=(("temporary_folder", _record_temporary_folder),), work_dir=work)
    assert [s.status for s in result.statuses] == ["done"]
    recorded = next((tmp_path / "dask").rglob("temporary_folder.txt")).read_text()
    assert recorded == str(work.resolve())
