"""A user's R2 map: on the GRE grid, in s^-1, or a one-line error naming the file."""

import numpy as np
import pytest

from qsmiron.errors import InputError
from qsmiron.io.nifti import save_nifti
from qsmiron.io.relaxometry import load_r2_map
from qsmiron.recon.chisep import check_r2_map

AFFINE = np.diag([1.0, 1.0, 2.0, 1.0])
SHAPE = (8, 8, 6)


def test_r2_map_on_the_gre_grid_is_read_as_float32(tmp_path):
    path = save_nifti(tmp_path / "R2map.nii.gz", np.full(SHAPE, 15.0), AFFINE)
    r2 = load_r2_map(path, SHAPE, AFFINE)
    assert r2.dtype == np.float32 and r2.shape == SHAPE and np.all(r2 == 15.0)


@pytest.mark.parametrize("shape, affine", [((8, 8, 5), AFFINE), (SHAPE, np.diag([1.0, 1.0, 1.0, 1.0]))])
def test_r2_map_on_another_grid_is_a_one_line_error_naming_the_file(tmp_path, shape, affine):
    path = save_nifti(tmp_path / "R2map.nii.gz", np.full(shape, 15.0), affine)
    with pytest.raises(InputError, match="another grid") as caught:
        load_r2_map(path, SHAPE, AFFINE)
    assert str(path) in str(caught.value) and "\n" not in str(caught.value)


def test_r2_map_in_ms_is_attributed_to_its_file_by_the_caller(tmp_path):
    path = save_nifti(tmp_path / "T2map_ms.nii.gz", np.full(SHAPE, 85.0), AFFINE)
    r2 = load_r2_map(path, SHAPE, AFFINE)
    mask = np.ones(SHAPE, bool)
    with pytest.raises(InputError) as caught:
        try:
            check_r2_map(r2, np.full(SHAPE, 22.0), mask)
        except InputError as error:
            raise error.with_path(path) from None
    assert caught.value.one_line().startswith(str(path)) and "T2 in ms" in str(caught.value)


def test_a_4d_r2_map_is_refused(tmp_path):
    path = save_nifti(tmp_path / "R2map.nii.gz", np.full((*SHAPE, 2), 15.0), AFFINE)
    with pytest.raises(InputError, match="must be 3D"):
        load_r2_map(path, SHAPE, AFFINE)
