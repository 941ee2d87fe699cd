"""The recon warns when its map runs beyond what brain tissue holds (streaking from bone or air in the mask)."""

from __future__ import annotations

import numpy as np
import qsm_forward
import scipy.ndimage

from qsmiron.recon.chain import reconstruct_arrays
from qsmiron.recon.plausibility import MAX_IMPLAUSIBLE_FRACTION, implausible_share, plausibility_warning
from qsmiron.recon.settings import ReconSettings

HZ_PER_PPM = 3.0 * 42.58
TES = (0.004, 0.008, 0.012)


def test_share_and_percentile_count_the_mask_only():
    chi = np.zeros((10, 10, 10))
    mask = np.zeros_like(chi, bool)
    mask[:, :, :5] = True
    chi[0, 0, :2] = [0.9, -0.7]  # 2 of 500 mask voxels beyond 0.5 ppm
    chi[0, 0, 8] = 5.0  # outside the mask: ignored
    share, p999 = implausible_share(chi, mask)
    assert share == 2 / 500 and 0.7 <= p999 <= 0.9
    notes, warning = plausibility_warning(chi, mask)
    assert notes["share_beyond_limit"] == 0.004 and "0.40 % of the mask" in warning
    sparse = np.zeros((20, 10, 10))
    sparse[0, 0, 0] = -0.9  # a calcification: 1 of 2000 voxels, 0.05 %
    assert plausibility_warning(sparse, np.ones_like(sparse, bool))[1] is None


def _head_with_skull(n: int = 48):
    """A qsm-forward cylinder (brain) inside a -2.4 ppm shell (skull) 3 voxels away; the field of both."""
    brain = qsm_forward.generate_susceptibility_phantom(
        resolution=(n, n, n), background=0.0, large_cylinder_val=0.05,
        small_cylinder_radii=[4, 3], small_cylinder_vals=[0.15, -0.1])
    inside = brain != 0
    around = scipy.ndimage.binary_dilation(inside, iterations=3)
    skull = scipy.ndimage.binary_dilation(around, iterations=3) & ~around
    chi = np.where(skull, -2.4, brain)
    field_ppm = qsm_forward.generate_field(chi, voxel_size=[1.0, 1.0, 1.0], B0_dir=[0, 0, 1])
    magnitude = np.where(inside | skull, 1.0, np.where(around, 0.9, 0.0))
    phase = np.stack([2 * np.pi * field_ppm * HZ_PER_PPM * te for te in TES], axis=-1)
    magnitude = np.repeat(magnitude[..., None], len(TES), axis=-1).astype(np.float32)
    return magnitude, np.angle(np.exp(1j * phase)).astype(np.float32), inside, around | skull


def test_a_mask_that_takes_in_the_skull_is_warned_about_and_the_brain_alone_is_not():
    magnitude, phase, brain, with_skull = _head_with_skull()
    settings = ReconSettings.model_validate({"inversion": {"method": "tkd"}})

    def warnings(mask):
        result = reconstruct_arrays(magnitude, phase, (1.0, 1.0, 1.0), (0.0, 0.0, 1.0), TES, 3.0,
                                    settings=settings, mask=mask)
        step = next(s for s in result.steps if s.step == "reference")
        return step.notes["plausibility"], [w for w in step.warnings if "beyond +-0.5 ppm" in w]

    notes, found = warnings(with_skull)
    assert notes["share_beyond_limit"] > MAX_IMPLAUSIBLE_FRACTION and len(found) == 1
    notes, found = warnings(brain)
    assert notes["share_beyond_limit"] <= MAX_IMPLAUSIBLE_FRACTION and not found
