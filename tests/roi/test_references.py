"""Reference regions of the regional table: whole brain, ventricle CSF, a user's mask.

The warp of the template's ventricle prior is replaced by a planted one (the registration is
tested in test_roi_api.py), so that what is checked here is the subject-side logic: the CSF
found from the prior and the subject's R2*, its offset, and an empty CSF mask that leaves the
CSF out with its reason instead of failing the subject.
"""

import numpy as np
import pytest

from qsmiron.roi import references
from qsmiron.roi.settings import RoiSettings
from qsmiron.roi.subject import SubjectImages

SHAPE = (40, 40, 40)
CSF_CHI = -0.02


def _subject(with_r2star=True):
    rng = np.random.default_rng(0)
    brain = np.zeros(SHAPE, bool)
    brain[4:36, 4:36, 4:36] = True
    ventricles = np.zeros(SHAPE, bool)
    ventricles[14:20, 12:28, 14:22] = True
    ventricles[22:28, 12:28, 14:22] = True
    chi = np.where(brain, 0.01 + rng.normal(0, 0.01, SHAPE), 0).astype(np.float32)
    chi[ventricles] = CSF_CHI
    r2star = np.where(brain, 20.0, 0).astype(np.float32)
    r2star[ventricles] = 3.0
    magnitude = np.where(brain, 100.0, 5.0).astype(np.float32)
    magnitude[ventricles] = 60.0
    images = SubjectImages(chi_ppm=chi, magnitude=magnitude, affine=np.eye(4), voxel_size_mm=(1.0, 1.0, 1.0),
                           chi_support=brain, given_mask=None, measure_mask=brain)
    if with_r2star:
        images.r2star_per_s, images.r2star_valid = r2star, brain
    return images, ventricles


@pytest.fixture()
def planted_prior(monkeypatch):
    """The prior lands on the planted ventricles grown by 2 voxels (registration error, partial volume)."""
    from scipy import ndimage

    def warp(prior, affine, registration, reference_ants):
        return ndimage.binary_dilation(_subject()[1], iterations=2).astype(np.int32)

    monkeypatch.setattr(references, "warp_from_template", warp)


def test_csf_from_the_prior_and_low_r2star_gives_the_ventricle_offset_and_size(planted_prior):
    images, ventricles = _subject()
    found = references.reference_regions(images, None, None, RoiSettings(), "MNI152NLin2009cAsym")
    records = {r.name: r for r in found.records}
    assert records["csf"].available and records["whole_brain"].available
    # Low R2* removes the tissue the grown prior took in; erosion then keeps the core.
    assert set(np.unique(ventricles[found.regions["csf"]])) == {True}
    assert records["csf"].offset_ppm == pytest.approx(CSF_CHI, abs=1e-6)
    assert records["csf"].volume_ml == pytest.approx(found.regions["csf"].sum() / 1000.0, abs=1e-3)
    assert records["whole_brain"].offset_ppm == pytest.approx(float(images.chi_ppm[images.measure_mask].mean()),
                                                             abs=1e-6)
    assert list(found.offsets()) == ["whole_brain", "csf"] and found.warnings == []


def test_an_empty_ventricle_mask_leaves_the_csf_out_with_its_reason_and_does_not_fail(monkeypatch):
    images, _ = _subject()
    monkeypatch.setattr(references, "warp_from_template", lambda *args: np.zeros(SHAPE, np.int32))
    found = references.reference_regions(images, None, None, RoiSettings(), "MNI152NLin2009cAsym")
    csf = {r.name: r for r in found.records}["csf"]
    assert not csf.available and "ventricle CSF mask is empty" in csf.reason and "prior_in_mask 0" in csf.reason
    assert set(found.regions) == {"whole_brain"} and list(found.offsets()) == ["whole_brain"]
    assert found.warnings == [f"reference 'csf' left out: {csf.reason}"]


def test_the_csf_needs_the_template_space_of_its_prior():
    images, _ = _subject()
    found = references.reference_regions(images, None, None, RoiSettings(), "OtherSpace")
    csf = {r.name: r for r in found.records}["csf"]
    assert not csf.available and "MNI152NLin2009cAsym" in csf.reason


def test_a_user_mask_on_the_subject_grid_is_a_third_reference_and_one_outside_the_brain_is_stated(planted_prior):
    images, _ = _subject()
    box = np.zeros(SHAPE, bool)
    box[30:34, 30:34, 30:34] = True
    images.reference_mask = box
    found = references.reference_regions(images, None, None, RoiSettings(references=("whole_brain",)), "x")
    records = {r.name: r for r in found.records}
    assert list(records) == ["whole_brain", "mask"]
    assert records["mask"].offset_ppm == pytest.approx(float(images.chi_ppm[box].mean()), abs=1e-6)
    assert records["mask"].n_voxels == 64 and records["mask"].volume_ml == pytest.approx(0.064)
    images.reference_mask = ~images.measure_mask
    outside = {r.name: r for r in references.reference_regions(images, None, None, RoiSettings(references=()),
                                                               "x").records}
    assert not outside["mask"].available and "no voxel where chi is measured" in outside["mask"].reason
