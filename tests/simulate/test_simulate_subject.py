"""One simulated scan: geometry and B0, the field by the dipole model, the multi-echo signal.

Independent references: the ``qsm-forward`` package's ``generate_field`` (its own dipole
kernel and FFT, float64, doubled grid) for the local field; physical invariance for the B0
handling (the field at a point of the head must not depend on how the slices are tilted);
the signal model read back from the stored integers.
"""

import numpy as np
import pytest
import qsm_forward
from scipy import ndimage

from qsmiron import GYROMAGNETIC_RATIO_HZ_PER_T
from qsmiron.io.nifti import b0_direction_voxel
from qsmiron.recon.dipole import forward_field
from qsmiron.simulate.phantom import CIT168_CODE_OFFSET, build_head_phantom, population_chi
from qsmiron.simulate.settings import SimulationSettings
from qsmiron.simulate.subject import make_context, make_pose, rotation_matrix, sample_pose, simulate_scan

COARSE = SimulationSettings(voxel_size_mm=(3.0, 3.0, 3.0), phantom_resolution_mm=2.0)


@pytest.fixture(scope="module")
def context():
    return make_context(build_head_phantom(2.0), COARSE)


@pytest.fixture(scope="module")
def axial_scan(context):
    phantom = context.phantom
    pose = make_pose(phantom, COARSE, head_rotation_deg=(3.0, -2.0, 4.0), translation_mm=(2, -1, 3))
    scan = simulate_scan(context, phantom.chi_table(population_chi(COARSE)), pose,
                         np.random.default_rng(5))
    return pose, scan


@pytest.fixture(scope="module")
def tilted_pair(context):
    """The same head position in the scanner, once with slices tilted 20 deg, once axial."""
    phantom = context.phantom
    table = phantom.chi_table(population_chi(COARSE))
    oblique = make_pose(phantom, COARSE, oblique_deg=(20.0, 0.0))
    axial = make_pose(phantom, COARSE, head_rotation_deg=(20.0, 0.0, 0.0))
    assert np.allclose(oblique.mni_to_world, axial.mni_to_world)
    return [(pose, simulate_scan(context, table, pose, np.random.default_rng(1)))
            for pose in (oblique, axial)]


def test_oblique_affine_carries_the_tilt_and_b0_follows_it(context):
    rng = np.random.default_rng(3)
    settings = COARSE.model_copy(update={"oblique_probability": 1.0})
    pose = sample_pose(rng, settings, context.phantom)
    tilt_x, tilt_y = pose.oblique_deg
    assert settings.oblique_min_deg <= abs(tilt_x) <= settings.oblique_max_deg
    slab = rotation_matrix([tilt_x, tilt_y, 0.0])
    assert np.allclose(pose.affine[:3, :3], slab * 3.0)
    assert np.allclose(b0_direction_voxel(pose.affine), slab.T @ [0, 0, 1])
    expected = np.degrees(np.arccos(np.cos(np.radians(tilt_x)) * np.cos(np.radians(tilt_y))))
    assert pose.oblique_angle_deg == pytest.approx(expected, abs=1e-6)


def test_local_field_at_a_point_of_the_head_does_not_depend_on_the_slice_tilt(tilted_pair):
    (pose_a, scan_a), (pose_b, scan_b) = tilted_pair
    inner = ndimage.binary_erosion(scan_a.mask, iterations=2)
    voxels = np.argwhere(inner)
    world = voxels @ pose_a.affine[:3, :3].T + pose_a.affine[:3, 3]
    in_b = (world - pose_b.affine[:3, 3]) @ np.linalg.inv(pose_b.affine[:3, :3]).T
    keep = ndimage.map_coordinates(scan_b.mask.astype(float), in_b.T, order=1) > 0.99
    field_a = scan_a.local_field_ppm[tuple(voxels.T)][keep]
    field_b = ndimage.map_coordinates(scan_b.local_field_ppm, in_b.T, order=1)[keep]
    right = np.corrcoef(field_a, field_b)[0, 1]
    # Had B0 been taken along the voxel z axis of the tilted scan, the fields would differ:
    wrong_field = forward_field(scan_a.chi_ppm, (3.0, 3.0, 3.0), (0.0, 0.0, 1.0), pad_factor=1.0)
    wrong = np.corrcoef(wrong_field[tuple(voxels.T)][keep], field_b)[0, 1]
    assert right > 0.93  # different grids sample the small nuclei differently at 3 mm
    assert right - wrong > 0.08


def test_local_field_matches_qsm_forward_generate_field_within_2_percent(axial_scan):
    pose, scan = axial_scan
    assert np.allclose(pose.b0_direction_voxel, [0, 0, 1])
    n = max(scan.chi_ppm.shape)
    cube = np.zeros((n, n, n))
    cube[tuple(slice(0, s) for s in scan.chi_ppm.shape)] = scan.chi_ppm
    reference = qsm_forward.generate_field(cube, voxel_size=[3.0, 3.0, 3.0], B0_dir=[0, 0, 1])
    reference = reference[tuple(slice(0, s) for s in scan.chi_ppm.shape)][scan.mask]
    ours = scan.local_field_ppm[scan.mask].astype(float)
    # qsm-forward keeps D(0) = 1/3 (a constant offset); compare the fields about their means.
    reference -= reference.mean()
    ours -= ours.mean()
    assert np.sqrt(np.mean((ours - reference) ** 2)) < 0.02 * np.sqrt(np.mean(reference ** 2))


def test_truth_chi_is_whole_brain_referenced_and_keeps_configured_nucleus_values(axial_scan):
    _, scan = axial_scan
    assert abs(scan.chi_ppm[scan.mask].mean()) < 1e-6
    assert np.all(scan.chi_ppm[~scan.mask] == 0)
    putamen = ndimage.binary_erosion(np.isin(scan.labels, (1, 101)))
    assert putamen.sum() > 50
    assert np.median(scan.chi_ppm[putamen]) + scan.brain_mean_ppm == pytest.approx(0.06, abs=0.003)


def test_vep_truth_equals_the_configured_value_on_a_grid_aligned_with_the_phantom(context):
    # 2 mm voxels on the 2 mm phantom's own voxel centres: no partial volume, so every voxel
    # labelled VeP must carry exactly the configured value (minus the brain-mean reference).
    regions = dict(COARSE.regions)
    regions["VeP"] = regions["VeP"].model_copy(update={"chi_ppm": 0.3, "sd_ppm": 0.0})
    settings = COARSE.model_copy(update={"voxel_size_mm": (2.0, 2.0, 2.0), "regions": regions,
                                         "fov_mm": (150.0, 186.0, 160.0)})
    phantom = context.phantom
    first = phantom.brain_centre_mm - (np.asarray(settings.matrix) - 1) / 2.0 * 2.0
    offset = -np.mod(first - phantom.affine[:3, 3], 2.0)
    pose = make_pose(phantom, settings, fov_offset_mm=offset)
    scan = simulate_scan(make_context(phantom, settings), phantom.chi_table(population_chi(settings)),
                         pose, np.random.default_rng(1))
    for index in (12, 112):
        values = scan.chi_ppm[scan.labels == index] + scan.brain_mean_ppm
        assert values.size >= 10
        assert np.allclose(values, 0.3, atol=1e-5)


def test_phase_wraps_and_encodes_the_field_with_positive_sign(axial_scan):
    _, scan = axial_scan
    settings = COARSE
    levels = settings.phase_levels
    phase = np.stack(scan.phase, axis=-1)
    assert phase.dtype == np.int16 and phase.min() >= -levels and phase.max() <= levels - 1
    assert phase.min() < -0.95 * levels and phase.max() > 0.95 * levels
    brain = ndimage.binary_erosion(scan.mask, iterations=2)
    tes = np.asarray(settings.echo_times_s)
    # The true phase change over the echoes spans far more than 2 pi: the stored phase wraps.
    span = (scan.total_field_hz[brain].max() - scan.total_field_hz[brain].min()) * 2 * np.pi * tes[-1]
    assert span > 4 * np.pi
    # Echo differences give 2 pi f dTE (offset cancels), read back from the integers.
    radians = phase.astype(float) * np.pi / levels
    for e in range(1, len(tes)):
        measured = np.angle(np.exp(1j * (radians[..., e] - radians[..., 0])))[brain]
        expected = 2 * np.pi * scan.total_field_hz[brain] * (tes[e] - tes[0])
        error = np.angle(np.exp(1j * (measured - expected)))
        assert np.median(np.abs(error)) < 0.1


def test_field_in_hz_is_ppm_times_larmor_frequency(axial_scan):
    pose, scan = axial_scan
    hz_per_ppm = GYROMAGNETIC_RATIO_HZ_PER_T * 3.0 * 1e-6
    assert hz_per_ppm == pytest.approx(127.73, abs=0.01)
    # The field inside the brain after a second-order shim stays within a realistic range.
    brain = ndimage.binary_erosion(scan.mask, iterations=2)
    p1, p99 = np.percentile(scan.total_field_hz[brain], [1, 99])
    assert 10 < p99 - p1 < 600


def test_magnitude_has_configured_snr_and_iron_faster_t2star_decay(axial_scan):
    _, scan = axial_scan
    magnitude = np.stack(scan.magnitude, axis=-1).astype(float)
    assert magnitude[scan.mask, 0].mean() == pytest.approx(COARSE.magnitude_brain_level, rel=0.05)
    # Air in the corners of the field of view: Rayleigh noise, mean sigma sqrt(pi/2).
    corner = magnitude[:6, :6, -6:, :].ravel()
    sigma = corner.mean() / np.sqrt(np.pi / 2)
    assert sigma == pytest.approx(COARSE.magnitude_brain_level / COARSE.snr, rel=0.1)
    assert scan.info["noise_sd"] == pytest.approx(COARSE.magnitude_brain_level / COARSE.snr)
    pallidum = np.isin(scan.labels, (5, 105))
    white = np.isin(scan.labels, (0,)) & scan.mask
    decay_gp = magnitude[pallidum, -1].mean() / magnitude[pallidum, 0].mean()
    decay_brain = magnitude[white, -1].mean() / magnitude[white, 0].mean()
    assert decay_gp < decay_brain < 1.0


def test_true_r2star_and_code_tables_on_the_scan_match_what_the_signal_was_made_with(context, axial_scan):
    """The first echo read back from the stored integers decays with ``scan.r2star_per_s``;
    ``code_table_on_scan`` of the R2* table reproduces that map (the same smoothing and
    sampling)."""
    from qsmiron.simulate.phantom import mr_property_tables
    from qsmiron.simulate.subject import code_table_on_scan

    pose, scan = axial_scan
    _, r2s_table = mr_property_tables(context.phantom, COARSE)
    np.testing.assert_allclose(code_table_on_scan(context, pose, r2s_table), scan.r2star_per_s,
                               rtol=1e-5, atol=1e-4)
    mask = scan.mask
    te = np.asarray(COARSE.echo_times_s)
    ratio = scan.magnitude[-1][mask].astype(float) / np.maximum(scan.magnitude[0][mask], 1)
    measured = -np.log(np.maximum(ratio, 1e-6)) / (te[-1] - te[0])
    assert np.median(measured - scan.r2star_per_s[mask]) == pytest.approx(0.0, abs=1.0)
