"""The template brain on a subject's grid: skipped with its reason where it cannot work, and on
the real whole-head Philips scan a brain of plausible volume that removes the skull base and neck."""

import numpy as np
import pytest

from qsmiron.recon.mask import brain_mask, restrict_to_template_brain
from qsmiron.register.brainmask import template_brain_probability


def test_template_step_skips_a_field_of_view_smaller_than_a_brain_and_says_why():
    magnitude = np.ones((40, 40, 30), np.float32)
    magnitude[5:35, 5:35, 5:25] = 100.0
    found = template_brain_probability(magnitude, np.diag([1.0, 1.0, 1.0, 1.0]))
    assert found.probability is None and not found.info["used"]
    assert "field of view too small" in found.info["reason"] and "magnitude mask only" in found.info["reason"]


@pytest.mark.realdata
def test_template_step_skips_the_real_small_crop(real_gre_dir):
    import nibabel as nib

    image = nib.load(str(real_gre_dir / "mag.nii.gz"))
    found = template_brain_probability(image.get_fdata(), image.affine)
    assert found.probability is None and "crop or slab" in found.info["reason"]


@pytest.mark.realdata
def test_philips_whole_head_mask_loses_skull_base_and_neck_but_not_the_brain(philips_dicom_dir, tmp_path):
    """Converted with dcm2niix; the registered template brain has a plausible adult volume
    (measured 1.39-1.41 L over repeated runs) and the restricted mask drops most of the head."""
    import nibabel as nib

    from qsmiron.io.dicom import convert_dicom_to_bids

    convert_dicom_to_bids(philips_dicom_dir / "dicom_classic", tmp_path / "bids", subject="p")
    anat = tmp_path / "bids" / "sub-p" / "anat"
    images = [nib.load(str(p)) for p in sorted(anat.glob("*part-mag*.nii.gz"))]
    magnitude = np.stack([i.get_fdata() for i in images], axis=-1).astype(np.float32)
    voxel = images[0].header.get_zooms()[:3]
    found = template_brain_probability(magnitude, images[0].affine)
    assert found.info["used"], found.info
    brain = found.probability >= 0.5
    voxel_ml = float(np.prod(voxel)) / 1000
    assert 1100 < brain.sum() * voxel_ml < 1700
    head = brain_mask(magnitude, voxel)
    restricted, info = restrict_to_template_brain(head, found.probability, voxel)
    assert restricted.sum() < 0.6 * head.sum()  # the magnitude mask holds the neck and skull base
    assert info["outside_template_brain_before"] > 0.4
    assert (restricted & brain).sum() > 0.97 * brain.sum()  # the brain itself is kept


def test_template_step_leaves_no_transform_files_in_the_temporary_folder(tmp_path, monkeypatch):
    """ANTs writes its transforms as files; one reconstruction left two in the system's temporary
    folder before, and a cohort's workers piled them up."""
    import tempfile

    pytest.importorskip("ants")
    from qsmiron.simulate.phantom import build_head_phantom

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    phantom = build_head_phantom(2.0)
    magnitude = np.where(phantom.brain, 100.0, np.where(phantom.codes > 0, 150.0, 0.0)).astype(np.float32)
    found = template_brain_probability(magnitude, phantom.affine)
    assert found.info["used"], found.info
    assert list(tmp_path.iterdir()) == []


def test_ants_is_imported_ahead_only_for_a_mask_that_takes_the_template_brain():
    """The import that the template step would wait for starts before the inputs are read."""
    import sys

    from qsmiron.pipeline.single import uses_template_brain
    from qsmiron.recon.settings import ReconSettings
    from qsmiron.register.brainmask import start_importing_ants

    settings = ReconSettings()
    assert uses_template_brain(settings)
    settings.mask.magnitude.template_brain = False
    assert not uses_template_brain(settings)
    pytest.importorskip("ants")
    thread = start_importing_ants()
    thread.join(timeout=120)
    assert not thread.is_alive() and "ants" in sys.modules


def test_the_import_thread_also_reads_and_resamples_the_template():
    """The registration then finds the template, its brain and its 4 mm grid made (0.4-0.6 s
    that used to wait for the inputs to be read)."""
    pytest.importorskip("ants")
    from qsmiron.register import brainmask, normalise

    brainmask._template_and_brain.cache_clear()
    normalise._TEMPLATE_CACHE.clear()
    thread = brainmask.start_importing_ants()
    thread.join(timeout=120)
    assert brainmask._template_and_brain.cache_info().currsize == 1
    assert len(normalise._TEMPLATE_CACHE) == 1
    grids = dict(normalise._TEMPLATE_CACHE)
    path, template, brain = brainmask.prepared_template()
    assert brainmask._template_and_brain.cache_info().hits >= 1
    assert dict(normalise._TEMPLATE_CACHE) == grids  # nothing made again
    assert path.name.endswith("_brain.nii.gz") and template.shape == brain.shape
