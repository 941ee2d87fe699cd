"""A scan that is not a head is flagged, not measured: the regions step fails with the reason.

One simulated head (qsmiron.simulate, from the shared simulated cohort) and two objects that
are not heads (qsmiron.simulate.objects: a sphere phantom with vials, a spine-like cylinder)
go through the participant level with the fast end-to-end settings. The head gets its
regional table; the others fail at the regions step with a reason that says why, and have no
regional values in the cohort table.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from qsmiron.io.nifti import save_nifti
from qsmiron.pipeline.bids_app import run_bids_app
from qsmiron.simulate.objects import cylinder_phantom, sphere_phantom

ECHO_TIMES_S = (0.004, 0.012, 0.020)


def _write_object(bids, label, magnitude, phase, affine):
    anat = bids / f"sub-{label}" / "anat"
    for echo, te in enumerate(ECHO_TIMES_S, start=1):
        for part, data in (("mag", magnitude), ("phase", phase)):
            sidecar = {"EchoTime": te, "MagneticFieldStrength": 3.0, **({"Units": "rad"} if part == "phase" else {})}
            save_nifti(anat / f"sub-{label}_echo-{echo}_part-{part}_MEGRE.nii.gz", data[..., echo - 1], affine,
                       sidecar=sidecar)
    participants = pd.read_csv(bids / "participants.tsv", sep="\t", dtype=str, keep_default_na=False)
    row = {column: "n/a" for column in participants.columns} | {"participant_id": f"sub-{label}"}
    pd.concat([participants, pd.DataFrame([row])]).to_csv(bids / "participants.tsv", sep="\t", index=False)


def test_a_sphere_phantom_and_a_spine_fail_the_head_check_while_a_simulated_head_is_measured(
        cohort_copy, fast_e2e_config, tmp_path):
    participants = pd.read_csv(cohort_copy(name="all") / "participants.tsv", sep="\t")
    head = participants.participant_id[0]
    bids = cohort_copy(labels=[head[4:]])
    # 4 mm voxels keep the objects' reconstructions quick; their size is that of the benchmark's.
    _write_object(bids, "sphere", *sphere_phantom((48, 48, 48), (4.0, 4.0, 4.0), echo_times_s=ECHO_TIMES_S))
    _write_object(bids, "spine", *cylinder_phantom((32, 32, 72), (4.0, 4.0, 4.0), echo_times_s=ECHO_TIMES_S))
    result = run_bids_app(bids, tmp_path / "out", "participant", config=fast_e2e_config(n_procs=2))
    statuses = {s.participant_id: s for s in result.statuses}
    assert statuses[head].succeeded, statuses[head].reason
    for label in ("sub-sphere", "sub-spine"):
        status = statuses[label]
        assert not status.succeeded and status.step == "roi"
        assert status.reason.startswith("head_check: ") and "not a head?" in status.reason
        assert "a phantom, a spine" in status.reason and "registration.head_min_correlation" in status.reason
    table = pd.read_csv(result.regions_tsv, sep="\t")
    assert set(table.participant_id) == {head}
    # The head passed with a margin: its recorded similarity is above the threshold.
    record = json.loads(next((tmp_path / "out").rglob(f"{head}*regions.json")).read_text())
    metrics = record["registration"]["metrics"]
    assert metrics["head_like"] and metrics["core_correlation"] > 2 * metrics["head_min_correlation"]
    assert np.isfinite(metrics["nmi"])
