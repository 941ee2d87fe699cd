"""A phantom sent through ``qsmiron run`` is not measured: its regions step fails, and says why.

A sphere phantom with vials (``qsmiron.simulate.objects``) goes through the participant level with
the fast end-to-end settings; it is reconstructed, registered, then refused by the head check
(``tests/roi/test_head_check.py`` tests the check itself). The reason reaches
``cohort_status.tsv``, and no regional value of it is written.
"""

from __future__ import annotations

import json

import pandas as pd
import pytest

from qsmiron.errors import InputError
from qsmiron.io.nifti import save_nifti
from qsmiron.pipeline.bids_app import run_bids_app
from qsmiron.simulate.objects import sphere_phantom

ECHO_TIMES_S = (0.004, 0.012, 0.020)


def _write_object(bids, label, magnitude, phase, affine):
    anat = bids / f"sub-{label}" / "anat"
    for echo, te in enumerate(ECHO_TIMES_S, start=1):
        for part, data in (("mag", magnitude), ("phase", phase)):
            sidecar = {"EchoTime": te, "MagneticFieldStrength": 3.0, **({"Units": "rad"} if part == "phase" else {})}
            save_nifti(anat / f"sub-{label}_echo-{echo}_part-{part}_MEGRE.nii.gz", data[..., echo - 1], affine,
                       sidecar=sidecar)
    (bids / "dataset_description.json").write_text(json.dumps({"Name": "phantom", "BIDSVersion": "1.10.0"}))
    pd.DataFrame({"participant_id": [f"sub-{label}"]}).to_csv(bids / "participants.tsv", sep="\t", index=False)


def test_a_sphere_phantom_fails_the_regions_step_and_the_cohort_status_says_why(fast_e2e_config, tmp_path):
    # 4 mm voxels keep the reconstruction quick; the size is that of the benchmark's phantom.
    _write_object(tmp_path / "bids", "sphere", *sphere_phantom((48, 48, 48), (4.0, 4.0, 4.0),
                                                                echo_times_s=ECHO_TIMES_S))
    with pytest.raises(InputError, match="no subject was processed successfully"):
        run_bids_app(tmp_path / "bids", tmp_path / "out", "participant", config=fast_e2e_config(), n_procs=1)
    status = pd.read_csv(tmp_path / "out" / "qsmiron" / "cohort_status.tsv", sep="\t", keep_default_na=False)
    row = status.set_index("participant_id").loc["sub-sphere"]
    assert row.status == "failed" and row.step == "roi"
    assert row.reason.startswith("head_check: not a head?")
    assert "a phantom, a spine" in row.reason and "registration.head_min_correlation" in row.reason
    assert not list((tmp_path / "out").rglob("sub-sphere*regions.tsv"))
    cohort_table = pd.read_csv(tmp_path / "out" / "qsmiron" / "regions.tsv", sep="\t")
    assert "sub-sphere" not in set(cohort_table.get("participant_id", []))
