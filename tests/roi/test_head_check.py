"""A scan that is not a head is refused by the regional measurement, with the reason and a figure.

The check (``qsmiron.roi.subject.check_head``) compares the registered magnitude with the template
10 mm inside the template brain. Heads pass it in the ROI tests (the template-warped phantom,
``test_roi_api``) and on the real Philips scan (``tests/io/test_dicom_realdata.py``, |r| 0.50
with the fast registration used here, where the spine-like cylinder reaches 0.05); the margins
over simulated, warped and real heads and over non-heads are measured in
``benchmarks/bench_head_check.py``. The end-to-end path (a phantom sent
through ``qsmiron run`` fails its regions step, ``cohort_status.tsv`` says why) is in
``tests/pipeline/test_head_check.py``.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from qsmiron.config import QsmironConfig
from qsmiron.errors import InputError
from qsmiron.io.derivatives import regions_paths
from qsmiron.io.nifti import save_nifti
from qsmiron.register.settings import RegistrationSettings
from qsmiron.roi.api import measure_subject
from qsmiron.roi.subject import OnTemplate, check_head
from qsmiron.simulate.objects import cylinder_phantom

FAST_REGISTRATION = {"resolution_mm": 3.0, "syn_iterations": [], "syn_shrink_factors": [], "syn_smoothing_vox": []}
"""An affine on a 3 mm grid, N4 kept: the real-data test's settings, under which its head passes."""


def _on_template(subject: np.ndarray, template: np.ndarray) -> OnTemplate:
    return OnTemplate(template, subject, np.diag([3.0, 3.0, 3.0, 1.0]), (3.0, 3.0, 3.0))


@pytest.fixture(scope="module")
def brain():
    """A template-like brain on a 3 mm grid: a ball of smooth random structure, zero outside."""
    rng = np.random.default_rng(0)
    grid = np.indices((40, 40, 40)) - 19.5
    ball = (grid ** 2).sum(axis=0) <= 16 ** 2
    texture = ndimage.gaussian_filter(rng.normal(size=(40, 40, 40)), 2.0)
    return np.where(ball, 1.0 + texture / texture.std(), 0.0)


def test_a_head_passes_whatever_its_contrast_and_a_uniform_blob_is_refused_with_a_figure(brain, tmp_path):
    settings = RegistrationSettings()
    paths = regions_paths(tmp_path / "sub-x_regions.tsv", atlas="cit168", space="MNI152NLin2009cAsym")
    inverted = np.where(brain > 0, 5.0 - brain, 0.0)  # T2*-like contrast against a T1-like template
    metrics = check_head(_on_template(inverted, brain), settings, paths, "x")
    assert metrics["head_like"] and metrics["core_correlation"] == pytest.approx(1.0)
    assert metrics["core_voxels"] > 1000 and not paths.qc_registration.exists()
    blob = np.where(brain > 0, 1.0, 0.0) + 0.01 * np.random.default_rng(1).normal(size=brain.shape) * (brain > 0)
    with pytest.raises(InputError) as caught:
        check_head(_on_template(blob, brain), settings, paths, "x")
    assert caught.value.step == "head_check" and "not a head?" in str(caught.value)
    assert "registration.head_min_correlation" in str(caught.value)
    assert paths.qc_registration.read_bytes()[:4] == b"\x89PNG"
    off = settings.model_copy(update={"head_min_correlation": 0.0})
    unjudged = check_head(_on_template(blob, brain), off, paths, "x")  # the check off: recorded, not refused
    assert unjudged["head_like"] is None and unjudged["core_correlation"] < 0.1


def test_a_spine_like_cylinder_is_registered_then_refused_and_nothing_is_measured(tmp_path):
    magnitude, _, affine = cylinder_phantom((36, 36, 64), (4.0, 4.0, 4.0))
    body = magnitude[..., 0] > 0.3
    chi = np.where(body, 0.02 * np.sin(np.arange(body.size).reshape(body.shape)), 0).astype(np.float32)
    config = QsmironConfig.model_validate({"registration": FAST_REGISTRATION})
    out = tmp_path / "sub-spine_regions.tsv"
    with pytest.raises(InputError) as caught:
        measure_subject(save_nifti(tmp_path / "chi.nii.gz", chi, affine),
                        save_nifti(tmp_path / "mag.nii.gz", magnitude, affine), out, config=config)
    assert caught.value.step == "head_check" and "a phantom, a spine" in str(caught.value)
    assert not out.exists() and not out.with_suffix(".json").exists()
    assert (tmp_path / "sub-spine_regions_qc_registration.png").is_file()
