"""Native maps to the template grid with saved transforms, on a synthetic shifted sphere."""

import numpy as np
import pytest

from qsmiron.register.images import to_ants
from qsmiron.register.normalise import Registration
from qsmiron.register.template_maps import warp_to_template

SUBJECT_AFFINE = np.array([[1.5, 0, 0, -30.0], [0, 1.5, 0, -27.0], [0, 0, 1.5, -24.0], [0, 0, 0, 1]])
TEMPLATE_AFFINE = np.array([[2.0, 0, 0, -32.0], [0, 2.0, 0, -32.0], [0, 0, 2.0, -32.0], [0, 0, 0, 1]])
TEMPLATE_SHAPE = (32, 32, 32)


def _world(shape, affine):
    ijk = np.indices(shape).reshape(3, -1).T
    return (ijk @ affine[:3, :3].T + affine[:3, 3]).reshape(*shape, 3)


def _subject(centre_ras):
    """A 0.1 ppm sphere (radius 7 mm) inside a 20 mm mask, chi 0.02 elsewhere in the mask."""
    world = _world((40, 40, 36), SUBJECT_AFFINE)
    distance = np.linalg.norm(world - np.asarray(centre_ras), axis=-1)
    mask = np.linalg.norm(world, axis=-1) <= 20.0
    chi = np.where(distance <= 7.0, 0.1, 0.02) * mask
    return chi.astype(np.float32), mask


def _registration(tmp_path, shift_lps, warp_lps=None):
    """An affine translation (template point + shift = subject point, LPS) and optionally a constant warp."""
    import ants

    transform = ants.create_ants_transform(transform_type="AffineTransform", dimension=3,
                                           matrix=np.eye(3), translation=tuple(shift_lps))
    affine_path = tmp_path / "xfm.mat"
    ants.write_transform(transform, str(affine_path))
    warp_path = None
    if warp_lps is not None:
        reference = to_ants(np.zeros(TEMPLATE_SHAPE, np.float32), TEMPLATE_AFFINE)
        field = np.broadcast_to(np.asarray(warp_lps, np.float32), (*TEMPLATE_SHAPE, 3)).copy()
        image = ants.from_numpy(field, origin=reference.origin, spacing=reference.spacing,
                                direction=reference.direction, has_components=True)
        warp_path = tmp_path / "warp.nii.gz"
        ants.image_write(image, str(warp_path))
    return Registration(affine=affine_path, warp=warp_path, inverse_warp=warp_path)


@pytest.mark.parametrize("warp_lps", [None, (2.0, 0.0, -3.0)])
def test_warp_to_template_moves_a_sphere_by_the_saved_transforms(tmp_path, warp_lps):
    centre = np.array([4.0, -3.0, 2.0])
    chi, mask = _subject(centre)
    shift_lps = np.array([3.0, -4.0, 5.0])
    registration = _registration(tmp_path, shift_lps, warp_lps)
    out = warp_to_template(chi, mask, SUBJECT_AFFINE, registration, template_shape=TEMPLATE_SHAPE,
                           template_affine=TEMPLATE_AFFINE)
    total_lps = shift_lps + (np.asarray(warp_lps) if warp_lps is not None else 0.0)
    total_ras = total_lps * [-1, -1, 1]
    expected_centre = centre - total_ras          # template point q maps to subject point q + shift
    world = _world(TEMPLATE_SHAPE, TEMPLATE_AFFINE)
    sphere = np.nan_to_num(out) > 0.06
    found_centre = world[sphere].mean(axis=0)
    np.testing.assert_allclose(found_centre, expected_centre, atol=0.6)
    inner = np.linalg.norm(world - expected_centre, axis=-1) <= 4.0
    np.testing.assert_allclose(out[inner], 0.1, atol=1e-5)
    # normalised interpolation: the mask's edge keeps chi (0.02), not a blend with the zeros outside
    covered = np.isfinite(out)
    edge = covered & (np.linalg.norm(world + total_ras, axis=-1) > 17.0)
    np.testing.assert_allclose(out[edge], 0.02, atol=1e-5)
    assert not covered[np.linalg.norm(world + total_ras, axis=-1) > 22.0].any()


def test_template_map_from_files_needs_the_saved_transforms(tmp_path):
    from qsmiron.errors import InputError
    from qsmiron.register.template_maps import template_map_from_files

    with pytest.raises(InputError, match="no saved subject-to-template transforms"):
        template_map_from_files(tmp_path / "chi.nii.gz", tmp_path / "mask.nii.gz", tmp_path / "sub-01_regions",
                                tmp_path / "out.nii.gz")
