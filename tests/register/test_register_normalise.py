"""ANTs image conversion keeps the world position; a linear registration recovers a known motion."""

import nibabel as nib
import numpy as np
import pandas as pd

from qsmiron.atlas import load_template
from qsmiron.register.images import from_ants, threshold_brain_mask, to_ants
from qsmiron.register.normalise import register_to_template
from qsmiron.register.phantom import KnownWarp, grid_affine, sample_in_subject
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


def test_linear_registration_recovers_a_known_rigid_motion_within_1_5_mm():
    import ants

    template = load_template()
    data = np.asarray(template.dataobj, dtype=np.float32)
    warp = KnownWarp(rotation_deg=(5.0, -3.0, 4.0), translation_mm=(6.0, -4.0, 5.0), amplitude_mm=0.0)
    shape = (45, 53, 45)
    affine = grid_affine((4.0, 4.0, 4.0), shape)
    subject = sample_in_subject(data, template.affine, warp, shape, affine, order=1)
    settings = RegistrationSettings(resolution_mm=4.0, linear_iterations=(200, 100), syn_iterations=())
    registration = register_to_template(to_ants(subject, affine), to_ants(data, template.affine), settings=settings)
    assert registration.warp is None
    points = np.random.default_rng(0).uniform([-40, -60, -30], [40, 40, 50], (200, 3))
    files, invert = registration.to_subject
    lps = pd.DataFrame(points * [-1, -1, 1], columns=["x", "y", "z"])
    mapped = ants.apply_transforms_to_points(3, lps, files, whichtoinvert=invert)[["x", "y", "z"]].to_numpy()
    error = np.linalg.norm(mapped * [-1, -1, 1] - warp(points), axis=1)
    assert np.median(error) < 1.5
