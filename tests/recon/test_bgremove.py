"""Background field removal against analytic and forward-simulated truth.

Spheres: a small sphere (5 mm, 0.2 ppm) at the centre of a spherical brain mask (26 mm) is
the only local source; the background is the analytic field of a strongly magnetised sphere
(6 mm, 3 ppm) 9 mm outside the mask plus a harmonic linear + quadratic field (shim terms).
A method must return the analytic local field inside its eroded mask (demeaned, relative
error). Tolerances are each method's model error measured here plus a margin: V-SHARP
about 7 % (1 % with 2 mm slices, where its core is larger in voxels), iSMV 7-10.5 %,
RESHARP about 17 % (Tikhonov shrinkage), PDF 21-23.5 % (part of a local field near the
edge is indistinguishable from outside sources: PDF's known bias, 44.5 % local-field NRMSE
on the QSM-CI head phantom).

Head: a head in air from the independent forward model ``qsm-forward`` (scalp, a dark
diamagnetic skull, an air sinus touching the brain, white matter and iron-rich nuclei); the
background field is about 13 times the local field (norms in the mask). Truth is the field of the brain's own
susceptibility.
"""

import functools

import numpy as np
import pytest

from qsmiron.recon.bgremove import BACKGROUND_METHODS, remove_background


def sphere_field(x, y, z, centre, radius_mm, chi_ppm, b0):
    """Relative field of a uniformly magnetised sphere (zero inside, Lorentz-corrected)."""
    b0 = np.asarray(b0, float) / np.linalg.norm(b0)
    dx, dy, dz = x - centre[0], y - centre[1], z - centre[2]
    r = np.sqrt(dx * dx + dy * dy + dz * dz)
    with np.errstate(invalid="ignore", divide="ignore"):
        cos = (dx * b0[0] + dy * b0[1] + dz * b0[2]) / r
        out = chi_ppm * radius_mm ** 3 / (3.0 * r ** 3) * (3.0 * cos ** 2 - 1.0)
    return np.where(r > radius_mm, out, 0.0)


def sphere_scene(voxel_size_mm, b0):
    shape = tuple(int(round(56 / v)) for v in voxel_size_mm)
    axes = [(np.arange(n) - (n - 1) / 2.0) * v for n, v in zip(shape, voxel_size_mm)]
    x, y, z = np.meshgrid(*axes, indexing="ij")
    mask = x * x + y * y + z * z < 24.0 ** 2
    local = sphere_field(x, y, z, (0.0, 0.0, 0.0), 5.0, 0.2, b0)
    background = sphere_field(x, y, z, (34.0, 0.0, 12.0), 6.0, 3.0, b0)
    background += 0.01 * x + 3e-4 * (x * y + x * x - z * z)
    return np.where(mask, local + background, 0.0), local, mask


def relative_error(estimate, truth, region):
    d = estimate[region] - truth[region]
    t = truth[region]
    return np.linalg.norm(d - d.mean()) / np.linalg.norm(t - t.mean())


GEOMETRIES = {
    "axial": ((1.0, 1.0, 1.0), (0.0, 0.0, 1.0)),
    "oblique": ((1.0, 1.0, 1.0), (0.3, -0.2, 0.93)),
    "anisotropic": ((1.0, 1.0, 2.0), (0.0, 0.0, 1.0)),
}
# method -> (extra parameters, tolerance); measured (axial, oblique, anisotropic):
# V-SHARP 7.1, 7.1, 1.0 %; PDF 22.2, 22.9, 20.4 %; RESHARP 17.3, 17.2, 17.5 %; iSMV 6.7,
# 6.7, 10.5 %; LBV 5.5, 5.5, 4.4 %; PDF + iSMV as iSMV.
TOLERANCES = {
    "vsharp": ({}, 0.10),
    "pdf": ({}, 0.26),
    "resharp": ({}, 0.22),
    "ismv": ({}, 0.12),
    "lbv": ({}, 0.08),
    "pdf_ismv": ({}, 0.12),
}


@pytest.mark.parametrize("geometry", sorted(GEOMETRIES))
@pytest.mark.parametrize("method", sorted(TOLERANCES))
def test_background_removal_leaves_analytic_local_field_of_sphere(method, geometry):
    voxel, b0 = GEOMETRIES[geometry]
    total, local_truth, mask = sphere_scene(voxel, b0)
    params, tolerance = TOLERANCES[method]
    local, eroded, info = remove_background(total, mask, voxel, b0, method=method, return_info=True,
                                            **params)
    assert eroded.sum() > 0.3 * mask.sum()
    assert not (eroded & ~mask).any()
    assert np.all(local[~eroded] == 0)
    # Without removal the background would swamp the local field by two orders of magnitude.
    assert relative_error(total, local_truth, eroded) > 5
    assert relative_error(local, local_truth, eroded) < tolerance
    assert info["method"] == method


def test_background_removal_keeps_units_scaling_linearly():
    """Units in = units out: a field in Hz (x 127.7 at 3 T) gives the local field in Hz."""
    voxel, b0 = GEOMETRIES["axial"]
    total, _, mask = sphere_scene(voxel, b0)
    local_ppm, _ = remove_background(total, mask, voxel, b0)
    local_hz, _ = remove_background(total * 127.7, mask, voxel, b0)
    np.testing.assert_allclose(local_hz, local_ppm * 127.7, rtol=1e-3, atol=1e-4 * np.abs(local_hz).max())


def test_vsharp_skips_radii_whose_core_is_tiny():
    voxel, b0 = GEOMETRIES["axial"]
    total, _, mask = sphere_scene(voxel, b0)
    _, _, info = remove_background(total, mask, voxel, b0, method="vsharp", return_info=True)
    assert max(info["parameters"]["radii_mm"] or [18.0]) == 18.0  # the default asked for
    assert max(info["radii_mm"]) < 18.0  # an 18 mm sphere fits only a 6 mm core of this mask


def test_resharp_reports_the_lcurve_lambda():
    voxel, b0 = GEOMETRIES["axial"]
    total, _, mask = sphere_scene(voxel, b0)
    _, _, info = remove_background(total, mask, voxel, b0, method="resharp", return_info=True)
    assert info["lambda_rule"] == "lcurve"
    assert info["lambda"] in info["lambdas"]


def test_remove_background_rejects_unknown_method_and_parameter():
    field = np.zeros((16, 16, 16), np.float32)
    mask = np.zeros_like(field, bool)
    mask[4:12, 4:12, 4:12] = True
    with pytest.raises(ValueError, match="unknown background method"):
        remove_background(field, mask, (1, 1, 1), (0, 0, 1), method="sharp")
    with pytest.raises(ValueError, match="no parameter"):
        remove_background(field, mask, (1, 1, 1), (0, 0, 1), method="vsharp", radius_mm=3)
    assert set(BACKGROUND_METHODS) == {"vsharp", "pdf", "resharp", "ismv", "lbv", "pdf_ismv", "none"}


def test_default_vsharp_radii_survive_float32_noise_in_voxel_sizes():
    """1.50000005 mm (a float32 affine read back) must give the radii of 1.5 mm, down to 3 mm."""
    from qsmiron.recon.bgremove._common import default_radii_mm

    exact = default_radii_mm((1.5, 1.5, 1.5))
    for noisy in [(1.50000005, 1.5, 1.50000005), (1.49999995, 1.5, 1.5), (1.50000005,) * 3]:
        radii = default_radii_mm(noisy)
        assert len(radii) == len(exact) == 9
        np.testing.assert_allclose(radii, exact, rtol=1e-6)
        assert min(radii) >= 2.0 * max(noisy)
    assert default_radii_mm((1.0, 1.0, 1.0)) == tuple(float(r) for r in range(18, 1, -2))
    assert default_radii_mm((1.0, 1.0, 2.0)) == (18.0, 14.0, 10.0, 6.0)  # as QSM.jl's 18:-4:4


def test_vsharp_erodes_the_same_mask_for_float32_noisy_voxel_sizes():
    shape = (40, 40, 40)
    axes = [(np.arange(n) - (n - 1) / 2.0) * 1.5 for n in shape]
    x, y, z = np.meshgrid(*axes, indexing="ij")
    mask = x * x + y * y + z * z < 27.0 ** 2
    field = np.where(mask, 1e-3 * x, 0.0)
    _, eroded_exact = remove_background(field, mask, (1.5, 1.5, 1.5), (0, 0, 1), method="vsharp")
    _, eroded_noisy, info = remove_background(field, mask, (1.50000005, 1.5, 1.50000005), (0, 0, 1),
                                              method="vsharp", return_info=True)
    assert min(info["radii_mm"]) == pytest.approx(3.0, rel=1e-6)
    assert np.array_equal(eroded_noisy, eroded_exact)


def _ellipsoid(x, y, z, centre, semi_axes):
    return sum(((c - c0) / a) ** 2 for c, c0, a in zip((x, y, z), centre, semi_axes)) <= 1.0


def _head_tissues(x, y, z):
    """Brain susceptibility (ppm), the outside sources (air +9.4 ppm, skull -2 ppm), brain mask."""
    head = _ellipsoid(x, y, z, (0, 0, 1), (20.5, 22, 17.5))
    sinus = _ellipsoid(x, y, z, (0, 15, -11), (5, 4.5, 4.5))
    brain = _ellipsoid(x, y, z, (0, -1, 2.5), (17.2, 18.7, 13.7)) & ~sinus
    skull = _ellipsoid(x, y, z, (0, -1, 2.5), (19, 20.5, 15.5)) & head & ~brain & ~sinus
    chi = np.where(_ellipsoid(x, y, z, (0, -1, 3), (12, 13.5, 9)), -0.03, 0.0)
    for centre, semi, value in [((7, 1, 2), (3, 4, 3), 0.18), ((-7, 1, 2), (3, 4, 3), 0.17),
                                ((4, -7, -3), (2, 3, 2), 0.14), ((0, -12, 9), (1.2, 6, 1.2), 0.3)]:
        chi[_ellipsoid(x, y, z, centre, semi)] = value
    outside = np.where(~head | sinus, 9.4, 0.0) + np.where(skull, -2.0, 0.0)
    return np.where(brain, chi, 0.0), outside, brain


@functools.lru_cache(maxsize=2)
def head_scene(voxel_size_mm, tilt_deg):
    """Total field (ppm) of a head in air, the local truth and the brain mask, from qsm-forward.

    The image grid is tilted by ``tilt_deg`` about x (B0 along world z). The background (sharp
    9.4 ppm edges) is simulated on a scanner-aligned 1 mm grid and interpolated at the voxel
    centres, as a scanner samples a continuous field (a dipole kernel tilted on the image
    grid would ring at those edges: an artefact of the simulation, not of the data); the
    tissue field is simulated on the image grid with B0 in voxel axes. Returns the field,
    the truth, the mask and B0 in voxel axes.
    """
    import qsm_forward
    import scipy.ndimage

    t = np.deg2rad(tilt_deg)
    rotation = np.array([[1, 0, 0], [0, np.cos(t), -np.sin(t)], [0, np.sin(t), np.cos(t)]])
    shape = tuple(int(round(48 / v)) for v in voxel_size_mm)
    ijk = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij")).reshape(3, -1)
    centred = (ijk - (np.asarray(shape)[:, None] - 1) / 2.0) * np.asarray(voxel_size_mm)[:, None]
    world = (rotation @ centred).reshape(3, *shape)
    chi, _, brain = _head_tissues(*world)
    b0 = rotation.T @ np.array([0.0, 0.0, 1.0])
    local = qsm_forward.generate_field(chi, voxel_size=list(voxel_size_mm), B0_dir=list(b0))
    axes = np.arange(56) - 27.5
    _, outside, _ = _head_tissues(*np.meshgrid(axes, axes, axes, indexing="ij"))
    background = qsm_forward.generate_field(outside, voxel_size=[1, 1, 1], B0_dir=[0, 0, 1])
    background = scipy.ndimage.map_coordinates(background, world.reshape(3, -1) + 27.5, order=3,
                                               mode="nearest").reshape(shape)
    return np.where(brain, local + background, 0.0), local, brain, tuple(b0)


# method -> bound (%) on the head, axial 1 mm and tilted 20 deg with 1 x 1 x 1.5 mm voxels;
# measured: iSMV 27.9 / 24.6 (2 mm / 3 mm ball: more of the mask than RESHARP keeps), RESHARP 17.0 / 16.0, V-SHARP 39.0 / 31.8 (its rim, see
# vsharp.py), PDF 34.3 / 54.5 (the tilted case stops at 500 iterations; on H3's phantom of
# tests/pipeline PDF gave 150-200 % before its stopping rule was fixed), LBV 100.7 / 76.8
# (the sinus touches the mask: LBV takes the total field on the boundary as background, and
# next to the sinus the interpolated near field is not harmonic on the grid), PDF + iSMV 19.3 /
# 44.9 (PDF's sources touching the brain at the sinus leave a field iSMV does not remove; the
# tilted case stops at pdf_ismv's cap of 50 PDF iterations: 40.1 % when PDF runs its 168).
# Results revision 15 (dipole kernel even in k on the Nyquist planes) moved only the two PDF
# methods, tilted: PDF 54.5 -> 54.6, PDF + iSMV 44.9 -> 45.05; the others are unchanged.
HEAD_BOUNDS = {"ismv": (31.0, 28.0), "resharp": (20.0, 19.0), "vsharp": (43.0, 36.0), "pdf": (40.0, 60.0),
               "lbv": (110.0, 85.0), "pdf_ismv": (22.0, 46.0)}
HEAD_GEOMETRIES = {"axial": ((1.0, 1.0, 1.0), 0.0), "oblique": ((1.0, 1.0, 1.5), 20.0)}


@pytest.mark.parametrize("geometry", sorted(HEAD_GEOMETRIES))
@pytest.mark.parametrize("method", sorted(HEAD_BOUNDS))
def test_background_removal_of_a_head_with_an_air_sinus_against_qsm_forward(method, geometry):
    bound = HEAD_BOUNDS[method][0 if geometry == "axial" else 1]
    voxel, tilt = HEAD_GEOMETRIES[geometry]
    total, truth, brain, b0 = head_scene(voxel, tilt)
    local, eroded = remove_background(total, brain, voxel, b0, method=method)
    assert relative_error(total, truth, brain) > 10  # the background dwarfs the local field
    assert relative_error(total, truth, eroded) > 2
    assert 100 * relative_error(local, truth, eroded) < bound


def test_pdf_fits_a_background_ten_times_the_local_field_and_reports_convergence():
    """The old rule (CG to 1e-3 of the initial residual) stopped at 13 iterations with 160 %."""
    voxel, tilt = HEAD_GEOMETRIES["axial"]
    total, truth, brain, b0 = head_scene(voxel, tilt)
    local, _, info = remove_background(total, brain, voxel, b0, method="pdf", return_info=True)
    assert info["converged"] and info["iterations"] > 100
    assert info["last_relative_change"] < info["parameters"]["tol"]
    # Away from the edge (the 4 mm core) PDF is better than over the whole mask.
    _, core = remove_background(total, brain, voxel, b0, method="ismv", radius_mm=4.0)
    assert 100 * relative_error(local, truth, core) < 15
    capped, _, info = remove_background(total, brain, voxel, b0, method="pdf", max_iter=5,
                                        return_info=True)
    assert not info["converged"] and "before the background fit settled" in info["warnings"][0]


def test_ismv_preconditioner_changes_speed_not_the_solution():
    voxel, b0 = GEOMETRIES["anisotropic"]
    total, _, mask = sphere_scene(voxel, b0)
    fast, _, info_fast = remove_background(total, mask, voxel, b0, method="ismv", tol=1e-6,
                                           threshold=0.01, return_info=True)
    slow, _, info_slow = remove_background(total, mask, voxel, b0, method="ismv", tol=1e-6,
                                           threshold=0.9, return_info=True)
    assert info_fast["converged"] and info_slow["converged"]
    assert info_fast["iterations"] < info_slow["iterations"]
    np.testing.assert_allclose(fast, slow, atol=1e-3 * np.abs(slow).max())


def test_pdf_then_ismv_is_the_default_everywhere():
    from qsmiron.recon.bgremove import DEFAULT_BACKGROUND, method_parameters
    from qsmiron.recon.settings import BackgroundSettings
    from qsmiron.recon.stages import BACKGROUND

    assert DEFAULT_BACKGROUND == "pdf_ismv" == BackgroundSettings().method == BACKGROUND.default
    declared = {name: value for name, value in method_parameters("pdf_ismv").items() if name != "noise"}
    assert BACKGROUND.parameters(BackgroundSettings()) == declared  # the noise map is a data input


def test_pdf_then_ismv_equals_ismv_when_the_background_is_harmonic():
    """iSMV removes every field harmonic in its mask, PDF's fitted background included: on a
    harmonic background the hybrid keeps iSMV's local field, not PDF's (to 5.8 % of its norm:
    PDF's discrete sources next to the mask are not exactly harmonic on the grid)."""
    voxel, b0 = GEOMETRIES["oblique"]
    total, truth, mask = sphere_scene(voxel, b0)
    hybrid, eroded, info = remove_background(total, mask, voxel, b0, method="pdf_ismv", return_info=True)
    alone, eroded_alone = remove_background(total, mask, voxel, b0, method="ismv")
    assert np.array_equal(eroded, eroded_alone)
    assert relative_error(hybrid, alone, eroded) < 0.08
    assert info["pdf"]["iterations"] > 0 and info["ismv"]["converged"]


def test_lbv_removes_an_analytic_harmonic_background_to_a_thousandth():
    """A harmonic background (an outside sphere's analytic field plus shim terms) with no
    local field: LBV must return almost nothing (the background is 100 times the local
    field of the sphere scene)."""
    voxel, b0 = GEOMETRIES["oblique"]
    _, _, mask = sphere_scene(voxel, b0)
    shape = mask.shape
    axes = [(np.arange(n) - (n - 1) / 2.0) * v for n, v in zip(shape, voxel)]
    x, y, z = np.meshgrid(*axes, indexing="ij")
    background = sphere_field(x, y, z, (34.0, 0.0, 12.0), 6.0, 3.0, b0) + 0.01 * x + 3e-4 * (x * y + x * x - z * z)
    local, eroded, info = remove_background(np.where(mask, background, 0.0), mask, voxel, b0,
                                            method="lbv", return_info=True, tol=1e-6)
    assert info["converged"]
    assert np.abs(local[eroded]).max() < 1e-3 * np.abs(background[eroded]).max()


def test_lbv_peels_the_requested_layers_and_zeroes_the_boundary():
    voxel, b0 = GEOMETRIES["axial"]
    total, _, mask = sphere_scene(voxel, b0)
    from scipy import ndimage

    cross = ndimage.generate_binary_structure(3, 1)
    for peel in (0, 2):
        local, eroded = remove_background(total, mask, voxel, b0, method="lbv", peel=peel)
        expected = ndimage.binary_erosion(mask, cross, iterations=1 + peel, border_value=0)
        assert np.array_equal(eroded, expected)
        assert np.all(local[~eroded] == 0)


def test_fft_field_of_binary_air_with_oblique_b0_is_not_harmonic_where_its_analytic_field_is():
    """The mechanism behind issue 9's 84 % (``qsmiron.recon.bgremove``): the FFT dipole
    model of a binary air sphere with B0 oblique to the grid gives a background that is not
    harmonic on the grid, and harmonic-background methods turn that into local-field error
    (measured: LBV 75.6 %, iSMV 73.4 %); the sphere's analytic field costs them nothing (7.5,
    7.7 %), nor does the FFT field with B0 along a grid axis (8.3, 8.5 %), and PDF (the
    same discrete kernel) absorbs the oblique FFT one."""
    from qsmiron.recon.dipole import forward_field

    voxel = (1.0, 1.0, 1.0)
    axes = [np.arange(80) - 39.5] * 3
    x, y, z = np.meshgrid(*axes, indexing="ij")
    mask = x * x + y * y + z * z < 22.0 ** 2
    centre, radius = (0.0, 0.0, 34.0), 8.0  # 4 mm above the 22 mm mask
    binary = (((x - centre[0]) ** 2 + (y - centre[1]) ** 2 + (z - centre[2]) ** 2) <= radius ** 2)
    errors = {}
    for tilt, b0 in (("axial", (0.0, 0.0, 1.0)), ("oblique", (0.3, -0.2, 0.93))):
        b0 = tuple(np.asarray(b0) / np.linalg.norm(b0))
        local_truth = sphere_field(x, y, z, (0.0, 0.0, 0.0), 5.0, 0.2, b0)
        backgrounds = {"analytic": sphere_field(x, y, z, centre, radius, 9.4, b0),
                       "fft": forward_field(9.4 * binary.astype(np.float32), voxel, b0, pad_factor=1.0)}
        for name, background in backgrounds.items():
            for method in ("lbv", "ismv", "pdf", "pdf_ismv"):
                if method in ("pdf", "pdf_ismv") and (tilt, name) != ("oblique", "fft"):
                    continue
                local, eroded = remove_background(np.where(mask, local_truth + background, 0.0), mask,
                                                  voxel, b0, method=method)
                errors[tilt, name, method] = relative_error(local, local_truth, eroded)
    for method in ("lbv", "ismv"):
        assert errors["oblique", "analytic", method] < 0.1, errors
        assert errors["axial", "fft", method] < 0.1, errors
        assert errors["oblique", "fft", method] > 0.5, errors
        assert errors["oblique", "fft", "pdf"] < 0.5 * errors["oblique", "fft", method], errors
    # PDF + iSMV: PDF absorbs the artefact, iSMV keeps its tissue field (measured 13.5 %).
    assert errors["oblique", "fft", "pdf_ismv"] < 0.2, errors


def test_pdf_ismv_ignores_voxels_marked_without_field():
    """500 voxels of the sphere scene carry +-0.3 ppm of garbage (what a failed echo fit
    leaves next to a sinus). Unmarked, iSMV spreads it: 122 % error outside them. Marked by
    infinite noise, PDF gives them no weight and they are filled from their neighbours
    before iSMV: the error outside them stays that of the clean scene (8.5 %)."""
    voxel, b0 = GEOMETRIES["oblique"]
    total, truth, mask = sphere_scene(voxel, b0)
    axes = [(np.arange(n) - (n - 1) / 2.0) * v for n, v in zip(mask.shape, voxel)]
    x, y, z = np.meshgrid(*axes, indexing="ij")
    bad = mask & (x > 12) & (x < 17) & (np.abs(y) < 5) & (np.abs(z) < 5)
    garbage = np.random.default_rng(0).choice([-0.3, 0.3], size=mask.shape)
    corrupt = np.where(bad, total + garbage, total)
    noise = np.where(mask, 1e-3, 0).astype(np.float32)
    marked = np.where(bad, np.inf, noise).astype(np.float32)
    clean, eroded = remove_background(total, mask, voxel, b0, method="pdf_ismv", noise=noise)
    spread, _ = remove_background(corrupt, mask, voxel, b0, method="pdf_ismv", noise=noise)
    kept, eroded_kept, info = remove_background(corrupt, mask, voxel, b0, method="pdf_ismv", noise=marked,
                                                return_info=True)
    region = eroded & ~bad
    assert info["pdf"]["filled_voxels"] == int(bad.sum())
    assert np.array_equal(eroded_kept, eroded)
    assert relative_error(spread, truth, region) > 0.5
    assert relative_error(kept, truth, region) < relative_error(clean, truth, region) + 0.01
    assert np.isfinite(kept).all()


@pytest.mark.parametrize("method, spreads", [("vsharp", True), ("resharp", True), ("ismv", False), ("lbv", False)])
def test_sharp_methods_fill_an_enclosed_patch_marked_without_field(method, spreads):
    """500 voxels of the sphere scene carry a wrong +0.3 ppm patch (what an unwrapping error
    leaves). Unmarked, V-SHARP's and RESHARP's truncated deconvolutions spread it over the brain
    (measured 91 and 95 % error outside it); iSMV and LBV keep it where it is. Marked by
    infinite noise, the patch, enclosed by usable voxels, is filled from its neighbours first:
    every method's error outside it stays within a point of the clean scene's (V-SHARP +0.8)."""
    voxel, b0 = GEOMETRIES["axial"]
    total, truth, mask = sphere_scene(voxel, b0)
    axes = [(np.arange(n) - (n - 1) / 2.0) * v for n, v in zip(mask.shape, voxel)]
    x, y, z = np.meshgrid(*axes, indexing="ij")
    bad = mask & (x > 12) & (x < 17) & (np.abs(y) < 5) & (np.abs(z) < 5)
    corrupt = np.where(bad, total + 0.3, total)
    marked = np.where(bad, np.inf, np.where(mask, 1e-3, 0)).astype(np.float32)
    clean, eroded = remove_background(total, mask, voxel, b0, method=method)
    spread, _ = remove_background(corrupt, mask, voxel, b0, method=method)
    kept, eroded_kept, info = remove_background(corrupt, mask, voxel, b0, method=method, noise=marked,
                                                return_info=True)
    region = eroded & ~bad
    assert info["filled_voxels"] == int(bad.sum()) and info["excluded_voxels"] == 0 and info["noise_map"]
    assert np.array_equal(eroded_kept, eroded)
    if spreads:
        assert relative_error(spread, truth, region) > relative_error(clean, truth, region) + 0.5
    assert relative_error(kept, truth, region) < relative_error(clean, truth, region) + 0.012
    assert np.isfinite(kept).all()


@pytest.mark.parametrize("method", ["ismv", "vsharp", "resharp", "lbv"])
def test_sharp_methods_leave_a_patch_without_field_at_the_mask_edge_out(method):
    """A patch without usable field at the mask's edge, facing the scene's 3 ppm outside
    sphere, where the background is steepest (misfit voxels next to a sinus). Filling it from
    the usable side would extrapolate that background: left out of the mask instead, with the
    method's erosion around it, every method's error elsewhere stays within 1.5 points of the
    clean scene's on the same voxels (measured: iSMV 6.8 against 6.7 %; filled, iSMV's error
    was 15.7 %)."""
    from qsmiron.recon.fill import filled_where_no_data

    voxel, b0 = GEOMETRIES["axial"]
    total, truth, mask = sphere_scene(voxel, b0)
    axes = [(np.arange(n) - (n - 1) / 2.0) * v for n, v in zip(mask.shape, voxel)]
    x, y, z = np.meshgrid(*axes, indexing="ij")
    towards = np.array([34.0, 0.0, 12.0]) / np.linalg.norm([34.0, 0.0, 12.0]) * 24.0
    near = (x - towards[0]) ** 2 + (y - towards[1]) ** 2 + (z - towards[2]) ** 2 < 7.0 ** 2
    bad = mask & near & (x * x + y * y + z * z > 21.0 ** 2)
    garbage = np.random.default_rng(1).choice([-0.3, 0.3], size=mask.shape)
    corrupt = np.where(bad, total + garbage, total)
    marked = np.where(bad, np.inf, np.where(mask, 1e-3, 0)).astype(np.float32)
    clean, eroded = remove_background(total, mask, voxel, b0, method=method)
    kept, eroded_kept, info = remove_background(corrupt, mask, voxel, b0, method=method, noise=marked,
                                                return_info=True)
    assert info["excluded_voxels"] == int(bad.sum()) > 100 and info["filled_voxels"] == 0
    assert not (eroded_kept & bad).any() and eroded_kept.sum() > 0.9 * eroded.sum()
    assert relative_error(kept, truth, eroded_kept) < relative_error(clean, truth, eroded_kept) + 0.015
    if method == "ismv":
        filled, _ = filled_where_no_data(corrupt, mask, marked, voxel)
        everywhere, _ = remove_background(filled, mask, voxel, b0, method=method)
        assert relative_error(everywhere, truth, eroded_kept) > relative_error(kept, truth, eroded_kept) + 0.05


@pytest.mark.parametrize("method", ["ismv", "vsharp", "resharp", "lbv", "pdf", "pdf_ismv"])
def test_a_noise_map_of_another_shape_is_refused_by_name(method):
    voxel, b0 = GEOMETRIES["axial"]
    total, _, mask = sphere_scene(voxel, b0)
    with pytest.raises(ValueError, match=r"noise map has shape \(56, 56, 55\), the field \(56, 56, 56\)"):
        remove_background(total, mask, voxel, b0, method=method, noise=np.ones((56, 56, 55), np.float32))


def test_filled_from_neighbours_is_exact_for_a_constant_and_leaves_known_voxels():
    from qsmiron.recon.fill import filled_from_neighbours

    region = np.zeros((20, 20, 20), bool)
    region[2:18, 2:18, 2:18] = True
    known = region.copy()
    known[8:11, 8:11, 8:11] = False
    values = np.where(known, 0.25, 99.0).astype(np.float32)
    filled = filled_from_neighbours(values, known, region, (1.0, 1.0, 2.0), 2.0)
    assert np.allclose(filled[region], 0.25, atol=1e-6)
    assert np.array_equal(filled[~region], values[~region])


def test_filled_from_neighbours_on_its_box_equals_the_whole_volume_computation():
    """The fill filters only the box its kernels reach; the values must be those of the
    normalised convolution over the whole volume, also where the box meets the border."""
    from scipy import ndimage

    from qsmiron.recon.fill import filled_from_neighbours

    rng = np.random.default_rng(3)
    values = rng.normal(size=(30, 26, 22)).astype(np.float32)
    region = np.ones(values.shape, bool)
    known = rng.random(values.shape) > 0.02
    known[:, :, :4] = True  # no unknown voxel near z = 0: there the box stops short of the border
    voxel, sigma_mm = (1.0, 1.2, 2.0), 2.0
    sigma = [sigma_mm / v for v in voxel]
    weight = ndimage.gaussian_filter(known.astype(np.float32), sigma, truncate=3.0)
    total = ndimage.gaussian_filter(np.where(known, values, 0).astype(np.float32), sigma, truncate=3.0)
    expected = np.where(known, values, total / weight)
    filled = filled_from_neighbours(values, known, region, voxel, sigma_mm)
    assert np.allclose(filled, expected, rtol=1e-5, atol=1e-6)
