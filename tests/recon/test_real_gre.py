"""The field-mapping steps on a small real 3-echo GRE scan (../shared/data/gre_real_small).

No ground truth: robustness checks. TE = 4, 8, 12 ms (README), 12-bit phase in arbitrary
float units, phase offset already removed.
"""

import nibabel as nib
import numpy as np
import pytest

from qsmiron.recon.field import total_field
from qsmiron.recon.mask import brain_mask
from qsmiron.recon.phase import phase_to_radians
from qsmiron.recon.settings import ReconSettings
from qsmiron.recon.unwrap import unwrap_romeo

pytestmark = pytest.mark.realdata
TE = (0.004, 0.008, 0.012)


@pytest.fixture(scope="module")
def real(real_gre_dir):
    magnitude = nib.load(str(real_gre_dir / "mag.nii.gz"))
    phase = nib.load(str(real_gre_dir / "phase.nii.gz"))
    voxel = tuple(float(v) for v in np.linalg.norm(magnitude.affine[:3, :3], axis=0))
    return (magnitude.get_fdata(dtype=np.float32), phase.get_fdata(dtype=np.float32), voxel)


def test_real_phase_is_detected_as_4096_levels(real):
    _, phase, _ = real
    phase_rad, info = phase_to_radians(phase)
    assert info["method"] == "levels" and info["levels"] == 4096
    assert phase_rad.min() >= -np.pi and phase_rad.max() < np.pi
    assert np.ptp(phase_rad) > 1.9 * np.pi


def test_real_mask_is_one_sensible_component(real):
    magnitude, _, voxel = real
    mask = brain_mask(magnitude, voxel)
    # The crop lies inside the head: the mask keeps most of it.
    assert 0.6 < mask.mean() <= 1.0
    import scipy.ndimage

    assert scipy.ndimage.label(mask)[1] == 1


@pytest.fixture(scope="module")
def unwrapped(real):
    magnitude, phase, voxel = real
    phase_rad, _ = phase_to_radians(phase)
    mask = brain_mask(magnitude, voxel)
    # The README says the offset is already removed: no MCPC-3D-S here.
    result = unwrap_romeo(phase_rad, magnitude, mask, voxel, TE, phase_offset="none")
    return result, mask, phase_rad


def test_real_unwrapped_echoes_scale_with_echo_time(unwrapped):
    result, mask, phase_rad = unwrapped
    first = result[..., 0][mask]
    for n in (1, 2):
        predicted = first * TE[n] / TE[0]
        difference = result[..., n][mask] - predicted
        # Consistent: no 2*pi disagreement in 99 % of voxels (|difference| < pi), and the
        # typical disagreement is noise-sized.
        assert np.mean(np.abs(difference) < np.pi) > 0.99
        assert np.median(np.abs(difference)) < 0.5
    turns = (result - phase_rad)[mask] / (2 * np.pi)
    assert np.abs(turns - np.round(turns)).max() < 1e-3


def test_real_unwrapped_phase_has_no_2pi_jumps_between_neighbours(unwrapped):
    result, mask, _ = unwrapped
    for echo in range(3):
        values = result[..., echo]
        for axis in range(3):
            lo = [slice(None)] * 3
            hi = [slice(None)] * 3
            lo[axis] = slice(0, -1)
            hi[axis] = slice(1, None)
            pair = mask[tuple(lo)] & mask[tuple(hi)]
            jumps = np.abs(values[tuple(hi)] - values[tuple(lo)])[pair]
            assert np.mean(jumps > np.pi) < 1e-3


def test_real_total_field_runs_with_default_settings(real):
    magnitude, phase, voxel = real
    phase_rad, _ = phase_to_radians(phase)
    mask = brain_mask(magnitude, voxel)
    result = total_field(magnitude, phase_rad, mask, voxel, TE, settings=ReconSettings())
    assert result.mask.sum() > 0.8 * mask.sum()
    values = result.field_hz[result.mask]
    assert np.all(np.isfinite(values))
    # 7 T brain fields stay within a few hundred Hz after shimming.
    assert np.percentile(np.abs(values - np.median(values)), 99) < 300
    assert np.median(result.noise_hz[result.mask]) < 5
