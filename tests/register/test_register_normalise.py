"""ANTs image conversion keeps the world position; labels reach the subject through saved transforms.

The accuracy of a full registration (a known rigid + non-linear motion recovered at subject
points) is tested on the shared registration of tests/roi/test_roi_api.py, so that the suite
runs at most two registrations.
"""

import nibabel as nib
import numpy as np

from qsmiron.atlas import load_template
from qsmiron.register.images import from_ants, threshold_brain_mask, to_ants
from qsmiron.register.normalise import Registration, labels_to_subject, template_grid
from qsmiron.register.phantom import grid_affine, rotation_matrix
from qsmiron.register.settings import RegistrationSettings


def test_to_ants_matches_ants_reading_the_same_nifti_for_an_oblique_lps_affine(tmp_path):
    import ants

    affine = grid_affine((1.5, 1.0, 2.5), (8, 9, 10), rotation_deg=(10, -7, 20), flip_lps=True)
    data = np.random.default_rng(0).random((8, 9, 10)).astype(np.float32)
    path = tmp_path / "x.nii.gz"
    image = nib.Nifti1Image(data, affine)
    image.header.set_xyzt_units("mm")
    nib.save(image, str(path))
    read = ants.image_read(str(path))
    ours = to_ants(data, affine)
    assert np.allclose(ours.origin, read.origin, atol=1e-4)
    assert np.allclose(ours.direction, read.direction, atol=1e-5)
    assert np.allclose(ours.spacing, read.spacing)
    back, back_affine = from_ants(ours)
    assert np.array_equal(back, data) and np.allclose(back_affine, affine, atol=1e-5)


def test_threshold_mask_keeps_a_bright_ball_and_drops_noise():
    rng = np.random.default_rng(0)
    x, y, z = np.mgrid[-16:16, -16:16, -16:16]
    image = np.where(x**2 + y**2 + z**2 < 10**2, 1.0, 0.0) + rng.rayleigh(0.05, x.shape)
    mask = threshold_brain_mask(image, (1, 1, 1))
    ball = x**2 + y**2 + z**2 < 10**2
    assert (mask & ball).sum() / ball.sum() > 0.95 and (mask & ~ball).sum() < 0.05 * ball.sum()


def testsyn_stages_use_mi_at_the_coarse_levels_and_cc_at_the_finest_only():
    from qsmiron.register.normalise import syn_stages

    staged = RegistrationSettings(syn_metric="MI+CC", syn_iterations=(40, 20), syn_shrink_factors=(2, 1),
                                  syn_smoothing_vox=(1.0, 0.0))
    # MI's finest level runs 0 iterations so both fields end on one grid (ANTs collapses them).
    assert syn_stages(staged) == [("MI", (40, 0), (2, 1), (1.0, 0.0)), ("CC", (20,), (1,), (0.0,))]
    assert syn_stages(RegistrationSettings()) == syn_stages(staged)  # the default
    single = RegistrationSettings(syn_metric="MI+CC", syn_iterations=(20,), syn_shrink_factors=(1,),
                                  syn_smoothing_vox=(0.0,))
    assert syn_stages(single) == [("CC", (20,), (1,), (0.0,))]
    assert syn_stages(RegistrationSettings(syn_metric="MI")) == [("MI", (40, 20), (2, 1), (1.0, 0.0))]
    assert syn_stages(RegistrationSettings(syn_iterations=(), syn_shrink_factors=(), syn_smoothing_vox=())) == []


def test_template_grid_is_resampled_once_per_process_and_keeps_the_brain():
    template = load_template()
    image = to_ants(np.asarray(template.dataobj, dtype=np.float32), template.affine)
    first = template_grid(image, 4.0)
    assert template_grid(to_ants(image.numpy(), template.affine), 4.0) is first  # same content: cached
    assert np.allclose(first.spacing, 4.0)
    # Cropped to the brain plus a 10 mm margin: the brain's extent (about 140 x 175 x 150 mm) fits.
    extent = np.asarray(first.shape) * 4.0
    assert np.all(extent < np.asarray(template.shape) * 1.0) and np.all(extent > [140, 170, 130])


def test_labels_cropped_to_their_box_equal_labels_warped_on_the_whole_subject_grid(tmp_path):
    """labels_to_subject resamples only around the mapped label box: same labels as a full resampling."""
    import ants

    label_affine = grid_affine((2.0, 2.0, 2.0), (40, 44, 40), centre_mm=(0.0, 0.0, 0.0))
    labels = np.zeros((40, 44, 40), np.float32)
    labels[12:17, 18:24, 16:22] = 1  # left (x < 0)
    labels[23:28, 18:24, 16:22] = 101  # right
    labels[18:22, 10:14, 10:13] = 7
    transform = ants.create_ants_transform(transform_type="AffineTransform", dimension=3,
                                           matrix=rotation_matrix((4.0, -3.0, 6.0)) * 1.03,
                                           translation=(3.0, -5.0, 2.0))
    path = tmp_path / "affine.mat"
    ants.write_transform(transform, str(path))
    registration = Registration(affine=path)
    subject_affine = grid_affine((1.5, 1.5, 2.5), (64, 70, 36), centre_mm=(2.0, -3.0, 4.0),
                                 rotation_deg=(10.0, 0.0, -8.0), flip_lps=True)
    reference = to_ants(np.zeros((64, 70, 36), np.float32), subject_affine)
    moving = to_ants(labels, label_affine)
    cropped = labels_to_subject(moving, registration, reference)
    files, invert = registration.to_subject
    full = ants.apply_transforms(fixed=reference, moving=moving, transformlist=files, whichtoinvert=invert,
                                 interpolator="genericLabel", defaultvalue=0)
    full = np.rint(full.numpy()).astype(np.int32)
    assert set(np.unique(full)) == {0, 1, 7, 101}
    assert np.array_equal(cropped, full)
