"""The total field of a simulated head on the slab's 1 mm grid, in one of two frames.

See ``simulate.heads`` (step 3 of its docstring) for why there are two. In the scanner frame
the field is computed on a scanner-aligned grid and carried to the slab by interpolation.
That step must not blur the field: the truth it is scored against (the local field of the
slab's own susceptibility map) is not blurred by it. Linear interpolation at sub-voxel
offsets averages neighbours. Half a voxel off, it passes the field's frequencies along an
axis with gain cos(pi k / 2) (k in cycles per voxel over the Nyquist), 0.71 at a quarter of
the sampling rate. A nucleus's field has much of its energy at such frequencies. Cubic
B-splines pass them with a gain within a few percent of 1, as a scanner's sampling of the
continuous field does (``tests/simulate/test_simulate_heads.py`` measures both).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from qsmiron.io.nifti import box_through_affine
from qsmiron.recon.dipole import forward_field
from qsmiron.simulate.subject import extended_grid, phantom_transform, resample

FINE_VOXEL_MM = 1.0


def interpolate_field(field: np.ndarray, matrix: np.ndarray, offset: np.ndarray, shape) -> np.ndarray:
    """``field`` at the points ``matrix @ index + offset`` of a grid of ``shape``, by cubic
    B-splines (outside ``field``, its nearest edge value)."""
    return ndimage.affine_transform(np.asarray(field, np.float64), matrix, offset,
                                    output_shape=tuple(int(n) for n in shape), order=3,
                                    mode="nearest", prefilter=True, output=np.float32)


def field_in_slab_frame(phantom, pose, chi_mni, outside_value, workers) -> np.ndarray:
    """The field on the slab's 1 mm grid, the FFT dipole model run on that (tilted) grid."""
    start, ext_shape = extended_grid(phantom, pose)
    ext_affine = pose.affine @ np.vstack([np.hstack([np.eye(3), start[:, None]]), [0, 0, 0, 1]])
    matrix, offset = phantom_transform(phantom, pose, ext_affine)
    chi_ext = resample(chi_mni, matrix, offset, ext_shape, order=1, cval=outside_value)
    chi_ext -= np.float32(outside_value)
    fov = tuple(slice(-s, -s + n) for s, n in zip(start, pose.shape))
    return forward_field(chi_ext, (FINE_VOXEL_MM,) * 3, pose.b0_direction_voxel, pad_factor=0.5,
                         workers=workers)[fov]


def field_in_scanner_frame(phantom, pose, chi_mni, outside_value, workers) -> np.ndarray:
    """The field on a 1 mm grid aligned with the scanner (B0 along z), interpolated onto the
    slab's 1 mm grid (``interpolate_field``)."""
    first, last = box_through_affine(*phantom.head_bounds_mm, pose.mni_to_world)
    low = np.floor(first) - 3.0
    shape = tuple(int(n) for n in np.ceil(last + 3.0 - low) + 1)
    scanner_affine = np.eye(4)
    scanner_affine[:3, 3] = low
    matrix, offset = phantom_transform(phantom, pose, scanner_affine)
    chi_scanner = resample(chi_mni, matrix, offset, shape, order=1, cval=outside_value)
    chi_scanner -= np.float32(outside_value)
    field = forward_field(chi_scanner, (FINE_VOXEL_MM,) * 3, (0.0, 0.0, 1.0), pad_factor=0.5,
                          workers=workers)
    del chi_scanner
    to_scanner = np.linalg.inv(scanner_affine) @ pose.affine
    return interpolate_field(field, to_scanner[:3, :3], to_scanner[:3, 3], pose.shape)
