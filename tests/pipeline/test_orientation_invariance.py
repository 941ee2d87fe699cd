"""One acquisition stored in different voxel orders must give one susceptibility map in world space.

Scanners and converters store the same scan with its voxel axes in different orders and
directions: RAS or LPS, axial or sagittal slice order, a reversed phase-encode axis. With the
affine changed to match, every voxel keeps its world position, so ``qsmiron recon`` must give
the same Chimap once both are brought into one voxel order. For that, B0 in voxel axes must come
from the affine (``qsmiron.io.nifti.b0_direction_voxel``) and the voxel sizes must move with
the axes.

Reference: the same forward-simulated head (``gre_phantom``, qsm-forward's field and signal)
reconstructed in its original order. The truth only bounds how good that run is. Stored orders
are nibabel orientation transforms (``ornt_transform`` layout: row i gives the new axis of input
axis i and whether it is reversed).

What was measured. Chimap NRMSE % (demeaned, in the common mask) / correlation against the
original order, ``reconstruct_files`` with defaults (automatic mask); before -> after the two fixes
of results revision 15 (below):

===============================  =======================  ===================  ==================
case (grid)                      perm_zxy                 flip_y / lps         perm_flip
===============================  =======================  ===================  ==================
iso_straight 48x48x40, 1 mm      0.58 -> 0.26 / 1.00000   lps 10.7 / .994      12.7 / .992
iso_oblique  20 deg about x      5.5 -> 0.10 / 1.00000    flip_y 9.0 -> 7.9    13.4 / .991
aniso_straight 48x48x24 1x1x2    6.4 -> 0.01 / 1.00000    lps 19.3 / .981      20.2 / .980
aniso_oblique 1x1x2, 20 deg      7.4 / .997               lps 16.0 / .987      16.6 -> 15.7 / .988
===============================  =======================  ===================  ==================

Wrong geometry (B0 or voxel sizes not moved with the axes): 85-181 %, correlation 0.86 at best.

Fixed at results revision 15, which made every permutation the same map (0.01-0.26 %,
correlation 1.00000: FFT rounding in another memory layout, iterative solvers stopped at a
tolerance), and which these tests keep fixed:

- the dipole kernel was not even in k on the Nyquist planes of even FFT grids when B0 is
  oblique (``qsmiron.recon.dipole.dipole_kernel``), which changed PDF's local field by 8-10 %
  (24-29 % with the brain mask given);
- the inconsistency level of ``wtv_bregman`` was a mean over rfftn's half spectrum, so it
  depended on which axis is stored last (``qsmiron.recon.invert._common.inconsistency_ppm``),
  which moved its weight by 17-40 % with anisotropic voxels.

None was in ``qsmiron.io``, whose B0 and voxel sizes follow the axes exactly
(``test_the_stored_order_keeps_world_positions_and_moves_b0_and_voxel_size``). What remains is
on reversed axes (7.7-19.3 %), marked ``xfail(strict=True)`` by name:

- ``TV_MIRROR``: forward-difference TV is not mirror-symmetric, which gives 7-12 % NRMSE in
  the inversion alone when an axis is reversed;
- ``ECHO_FIT_MIRROR`` (0.3 % of the total field) and ``PDF_CASCADE`` (2 % of the local field, on
  a reversed axis of odd extent).

Two tiers of tolerance:

- The same map (``SAME_MAP_*``: 2 % and 0.999), a few times the 0.26 % baseline. Cases that
  one of the problems above breaks are ``xfail(strict=True)`` naming it; they start to pass (and
  then fail as XPASS) when it is fixed.
- The geometry followed (``FOLLOWS_*``: 35 % and 0.95), which passes now. Its worst case today
  is 20.2 % / 0.980. A wrong geometry fails it by a wide margin
  (``test_a_wrong_b0_or_voxel_size_fails_both_tiers_by_a_wide_margin``): B0 not moved with the
  axes gives 85-181 % (correlation 0.86 at best, on an oblique flip), voxel sizes not moved
  give 90-99 %.
"""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path
from types import SimpleNamespace

import nibabel as nib
import numpy as np
import pytest
from gre_phantom import FIELD_STRENGTH_T, TES, nrmse_percent, rotation_x, simulate_gre, write_image
from nibabel.orientations import apply_orientation, inv_ornt_aff, io_orientation, ornt_transform

from qsmiron.io.acquisition import clean_voxel_size_mm
from qsmiron.io.nifti import b0_direction_voxel, voxel_size_mm
from qsmiron.pipeline.single import reconstruct_files
from qsmiron.records.recon import ReconRecord
from qsmiron.recon.chain import reconstruct_arrays
from qsmiron.recon.settings import ReconSettings
from qsmiron.recon.stages import RECON_STAGES, ReconState, run_stages

CASES = {  # grid, voxel (mm), rotation about x (deg): B0 oblique to the voxel axes when non-zero
    "iso_straight": ((48, 48, 40), (1.0, 1.0, 1.0), 0.0),
    "iso_oblique": ((48, 48, 40), (1.0, 1.0, 1.0), 20.0),
    "aniso_straight": ((48, 48, 24), (1.0, 1.0, 2.0), 0.0),
    "aniso_oblique": ((48, 48, 24), (1.0, 1.0, 2.0), 20.0),
}
STORED_ORDERS = {
    "perm_zxy": ((1, 1), (2, 1), (0, 1)),      # axes stored (z, x, y): coronal slices last
    "flip_x": ((0, -1), (1, 1), (2, 1)),       # x reversed
    "flip_y": ((0, 1), (1, -1), (2, 1)),       # the phase-encode axis reversed
    "flip_z": ((0, 1), (1, 1), (2, -1)),       # slices stored in reverse order
    "lps": ((0, -1), (1, -1), (2, 1)),         # LPS storage of a RAS acquisition
    "perm_flip": ((2, -1), (0, 1), (1, -1)),   # stored as (y, -z, -x)
}

SAME_MAP_NRMSE, SAME_MAP_CORR = 2.0, 0.999
"""The same map: a few times the legitimate 0.01-0.26 % (module docstring)."""
FOLLOWS_NRMSE, FOLLOWS_CORR = 35.0, 0.95
"""B0 and voxel sizes followed: worst correct case 20.2 % / 0.980, wrong geometry 85-181 % / <= 0.86."""
FIELD_NRMSE, LOCAL_NRMSE = 0.05, 1.0
"""Array level, per output. Permutations give 0.000 % (total field), 0.04-0.40 % (local field) and
0.01-0.26 % (map). Flips give 0.29-0.36 % in the echo fit (ECHO_FIT_MIRROR)."""
RECON_NRMSE_BOUND = 55.0
"""Sanity bound against the truth, as in test_single.py (these runs measure 25-42 %)."""

TV_MIRROR = (
    "recon, src/qsmiron/recon/invert (wtv_bregman): TV on periodic forward differences "
    "(_kernels.py) is not mirror-symmetric, and the per-axis edge mask (wtv.magnitude_edge_weights) "
    "comes from np.gradient's centred differences, half a voxel off the forward differences it "
    "exempts. A reversed axis changes the map by 7-12 % in the inversion alone (4 % even "
    "without a magnitude, and still 4 % with ten times the iterations).")
ECHO_FIT_MIRROR = (
    "recon, src/qsmiron/recon/unwrap/_common.py smooth_phase_linear (echo fit offset='smooth'): "
    "the slope is smoothed from one-sided neighbour pairs (_pair_phasors, phase[v+1] - phase[v]), "
    "so a reversed axis shifts it by one voxel: 0.29-0.36 % of the total field (up to 0.3-3 Hz "
    "near the mask's edge), 1.2-1.6 % of the local field downstream.")
PDF_CASCADE = (
    "recon, src/qsmiron/recon/bgremove/pdf.py fit_outside_sources: the coarse-to-fine cascade averages "
    "2x2x2 blocks of a grid (sourcegrid.source_grid) in which an odd mask extent starts (n - e) // 2 "
    "voxels in, so a reversed axis gets another block partition. PDF stops at tol 0.03, so the local "
    "field differs by 2.0 % (3.5 % with the brain mask given; 0.5 % without the coarse grids).")


def xfail(*reasons):
    return pytest.mark.xfail(strict=True, reason=" | ".join(reasons))


# ------------------------------------------------------------------------------------ helpers
def stored(sim, order):
    """The acquisition stored in ``order``; ``affine`` keeps every voxel at its world position."""
    ornt = np.array(order, dtype=float)
    shape = sim["magnitude"].shape[:3]
    return SimpleNamespace(**{name: np.ascontiguousarray(apply_orientation(sim[name], ornt))
                              for name in ("magnitude", "phase", "brain")},
                           affine=sim["affine"] @ inv_ornt_aff(ornt, shape))


def in_original_order(image, affine, original_affine):
    """An image stored with ``affine`` brought into the voxel order of ``original_affine``."""
    return apply_orientation(image, ornt_transform(io_orientation(affine), io_orientation(original_affine)))


def expected_b0_and_voxel(sim, order):
    """B0 (voxel axes) and voxel sizes of the stored order, moved by hand from the original's."""
    b0, voxel = np.zeros(3), np.zeros(3)
    for axis, (new_axis, sign) in enumerate(order):
        b0[new_axis] = sign * sim["b0"][axis]
        voxel[new_axis] = sim["voxel_mm"][axis]
    return b0, tuple(voxel)


def agreement(estimate, reference, mask):
    """(demeaned NRMSE %, correlation) of two maps inside ``mask``."""
    return nrmse_percent(estimate, reference, mask), float(np.corrcoef(estimate[mask], reference[mask])[0, 1])


def recon_folder(folder: Path, data):
    """``reconstruct_files`` with its defaults on a 4D magnitude and phase written with ``data.affine``."""
    folder.mkdir(parents=True, exist_ok=True)
    mag = write_image(folder / "mag.nii.gz", data.magnitude, data.affine)
    pha = write_image(folder / "phase.nii.gz", data.phase, data.affine)
    paths = reconstruct_files(mag, pha, folder / "out", echo_times_s=TES, field_strength_t=FIELD_STRENGTH_T)
    chimap = nib.load(str(paths.chimap))
    return SimpleNamespace(chi=chimap.get_fdata(), affine=chimap.affine,
                           mask=nib.load(str(paths.mask)).get_fdata() > 0,
                           acquisition=ReconRecord.read(paths.record).acquisition)


@pytest.fixture(scope="module")
def simulation():
    cache = {}

    def get(case):
        if case not in cache:
            shape, voxel, degrees = CASES[case]
            cache[case] = simulate_gre(shape, voxel, rotation_x(degrees))
        return cache[case]

    return get


@pytest.fixture(scope="module")
def file_run(simulation, tmp_path_factory):
    """``file_run(case, order)`` -> (the original order's run, this order's run), each cached."""
    cache = {}
    root = tmp_path_factory.mktemp("orientation")

    def run(case, order_name):
        sim = simulation(case)
        for name in (None, order_name):
            if (case, name) not in cache:
                data = SimpleNamespace(**sim) if name is None else stored(sim, STORED_ORDERS[name])
                cache[case, name] = recon_folder(root / case / str(name), data)
        return cache[case, None], cache[case, order_name]

    return run


# --------------------------------------------------------------------------- the stored order
@pytest.mark.parametrize("case", ["iso_oblique", "aniso_oblique"])
@pytest.mark.parametrize("order", list(STORED_ORDERS))
def test_the_stored_order_keeps_world_positions_and_moves_b0_and_voxel_size(case, order, simulation):
    """The test's own geometry, and ``qsmiron.io``'s B0 and voxel sizes, checked by hand."""
    sim = simulation(case)
    data = stored(sim, STORED_ORDERS[order])
    shape = data.magnitude.shape[:3]

    def world(affine, grid):
        ijk = np.stack(np.meshgrid(*[np.arange(n) for n in grid], indexing="ij"), axis=-1)
        return ijk @ affine[:3, :3].T + affine[:3, 3]

    moved_back = in_original_order(world(data.affine, shape), data.affine, sim["affine"])
    np.testing.assert_allclose(moved_back, world(sim["affine"], sim["magnitude"].shape[:3]), atol=1e-9)
    np.testing.assert_array_equal(in_original_order(data.phase, data.affine, sim["affine"]), sim["phase"])
    b0, voxel = expected_b0_and_voxel(sim, STORED_ORDERS[order])
    np.testing.assert_allclose(b0_direction_voxel(data.affine), b0, atol=1e-12)
    assert voxel_size_mm(data.affine) == pytest.approx(voxel) and clean_voxel_size_mm(data.affine) == voxel


# ---------------------------------------------------------------------------- files, end to end
FILE_CASES = [
    ("iso_straight", "perm_zxy"),
    ("iso_straight", "lps"),
    ("iso_oblique", "perm_zxy"),
    ("iso_oblique", "flip_y"),
    ("aniso_straight", "perm_zxy"),   # the voxel sizes must follow the axes: (2, 1, 1) mm stored
    ("aniso_oblique", "perm_flip"),
]
FILE_MARKS = {
    ("iso_straight", "lps"): xfail(TV_MIRROR),
    ("iso_oblique", "flip_y"): xfail(TV_MIRROR),
    ("aniso_oblique", "perm_flip"): xfail(TV_MIRROR),
}


def _compared(file_run, simulation, case, order):
    original, run = file_run(case, order)
    assert np.allclose(run.affine, stored(simulation(case), STORED_ORDERS[order]).affine, atol=1e-4)
    chi = in_original_order(run.chi, run.affine, original.affine)
    mask = in_original_order(run.mask, run.affine, original.affine)
    common = original.mask & mask
    assert common.sum() > 0.98 * original.mask.sum()  # the automatic mask follows the head
    return original, run, chi, mask, common


@pytest.mark.parametrize("case, order", FILE_CASES)
def test_reconstruct_files_follows_b0_and_voxel_size_of_the_stored_order(case, order, file_run, simulation):
    sim = simulation(case)
    original, run, chi, mask, common = _compared(file_run, simulation, case, order)
    b0, voxel = expected_b0_and_voxel(sim, STORED_ORDERS[order])
    np.testing.assert_allclose(run.acquisition.b0_direction_voxel, b0, atol=1e-6)
    assert run.acquisition.voxel_size_mm == pytest.approx(list(voxel))
    nrmse, corr = agreement(chi, original.chi, common)
    print(f"{case} {order}: NRMSE {nrmse:.2f} %, correlation {corr:.5f} against the original order")
    assert nrmse < FOLLOWS_NRMSE and corr > FOLLOWS_CORR
    assert nrmse_percent(original.chi, sim["chi_brain"], original.mask) < RECON_NRMSE_BOUND
    assert nrmse_percent(chi, sim["chi_brain"], mask) < RECON_NRMSE_BOUND


@pytest.mark.parametrize("case, order", [pytest.param(*key, marks=FILE_MARKS.get(key, ()))
                                         for key in FILE_CASES])
def test_reconstruct_files_gives_the_same_map_in_any_stored_order(case, order, file_run, simulation):
    original, _, chi, _, common = _compared(file_run, simulation, case, order)
    nrmse, corr = agreement(chi, original.chi, common)
    assert nrmse < SAME_MAP_NRMSE and corr > SAME_MAP_CORR, f"NRMSE {nrmse:.2f} %, correlation {corr:.5f}"


@pytest.mark.parametrize("case, order, wrong", [
    ("iso_straight", "perm_zxy", "b0"),     # B0 left along the stored z (now the old y)
    ("iso_oblique", "flip_y", "b0"),        # the unflipped oblique B0: the closest wrong guess
    ("aniso_straight", "perm_zxy", "voxel"),  # 1 x 1 x 2 mm left on the old axes
])
def test_a_wrong_b0_or_voxel_size_fails_both_tiers_by_a_wide_margin(case, order, wrong, file_run, simulation):
    """The control: the tolerances catch a geometry that did not follow the axes.
    Measured: 166 % / -0.54, 93 % / 0.86, 91 % / 0.43."""
    sim = simulation(case)
    original = file_run(case, None)[0]
    data = stored(sim, STORED_ORDERS[order])
    b0, voxel = expected_b0_and_voxel(sim, STORED_ORDERS[order])
    b0, voxel = (sim["b0"], voxel) if wrong == "b0" else (b0, sim["voxel_mm"])
    result = reconstruct_arrays(data.magnitude, data.phase, voxel, b0, TES, FIELD_STRENGTH_T)
    chi = in_original_order(result.chi_ppm, data.affine, original.affine)
    common = original.mask & in_original_order(result.mask, data.affine, original.affine)
    nrmse, corr = agreement(chi, original.chi, common)
    print(f"{case} {order}, {wrong} not moved: NRMSE {nrmse:.1f} %, correlation {corr:.3f}")
    assert nrmse > 2 * FOLLOWS_NRMSE and corr < 0.9, f"NRMSE {nrmse:.1f} %, correlation {corr:.3f}"


# ------------------------------------------------------------------ arrays: which stage breaks
ARRAY_CASES = [
    pytest.param("iso_straight", "perm_zxy"),
    pytest.param("iso_straight", "flip_x", marks=xfail(ECHO_FIT_MIRROR, TV_MIRROR)),
    pytest.param("iso_oblique", "perm_zxy"),
    pytest.param("aniso_straight", "perm_zxy"),
]


@pytest.fixture(scope="module")
def array_run(simulation):
    """``array_run(case, order)``: ``reconstruct_arrays`` with B0 and voxel sizes of the stored
    order (defaults, automatic mask), its outputs in the original order."""
    cache = {}

    def run(case, order):
        if (case, order) not in cache:
            sim = simulation(case)
            data = SimpleNamespace(**sim) if order is None else stored(sim, STORED_ORDERS[order])
            result = reconstruct_arrays(data.magnitude, data.phase, voxel_size_mm(data.affine),
                                        b0_direction_voxel(data.affine), TES, FIELD_STRENGTH_T)
            cache[case, order] = {name: in_original_order(getattr(result, name), data.affine, sim["affine"])
                                  for name in ("field_hz", "field_mask", "local_ppm", "mask", "chi_ppm")}
        return cache[case, order]

    return run


@pytest.mark.parametrize("case, order", ARRAY_CASES)
def test_reconstruct_arrays_gives_the_same_field_local_field_and_map_in_any_stored_order(case, order, array_run):
    reference, result = array_run(case, None), array_run(case, order)
    assert np.array_equal(result["field_mask"], reference["field_mask"])
    assert np.array_equal(result["mask"], reference["mask"])
    errors = {"field_hz (echo fit)": nrmse_percent(result["field_hz"], reference["field_hz"], reference["field_mask"]),
              "local_ppm (background)": nrmse_percent(result["local_ppm"], reference["local_ppm"], reference["mask"]),
              "chi_ppm (inversion)": nrmse_percent(result["chi_ppm"], reference["chi_ppm"], reference["mask"])}
    report = ", ".join(f"{name} {value:.3f} %" for name, value in errors.items())
    print(f"{case} {order}: {report}")
    for (name, value), bound in zip(errors.items(), (FIELD_NRMSE, LOCAL_NRMSE, SAME_MAP_NRMSE)):
        assert value < bound, f"first stage off: {name}; {report}"


# Each stage alone: the original order's input to the stage, stored in the new order.
SETTINGS = ReconSettings()
ISOLATED = {  # stage: (its output and that output's mask, tolerance)
    "echo_fit": (lambda state: (state.fit.field_hz, state.mask), FIELD_NRMSE),
    "background": (lambda state: (state.local_ppm, state.local_mask), LOCAL_NRMSE),
    "inversion": (lambda state: (state.chi_ppm, state.local_mask), SAME_MAP_NRMSE),
}
STAGE_MARKS = {
    ("iso_straight", "flip_x", "echo_fit"): xfail(ECHO_FIT_MIRROR),
    ("iso_straight", "flip_x", "inversion"): xfail(TV_MIRROR),
    ("iso_oblique", "flip_y", "echo_fit"): xfail(ECHO_FIT_MIRROR),
    ("iso_oblique", "flip_y", "inversion"): xfail(TV_MIRROR),
}


def in_stored_order(value, ornt, shape):
    """Every voxel array of a stage's state (and of the results it holds) in the stored order."""
    if isinstance(value, np.ndarray) and value.shape[:3] == tuple(shape):
        return np.ascontiguousarray(apply_orientation(value, ornt))
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        moved = copy.copy(value)
        for field in dataclasses.fields(value):
            item = getattr(value, field.name)
            if isinstance(item, np.ndarray) or (dataclasses.is_dataclass(item) and not isinstance(item, type)):
                object.__setattr__(moved, field.name, in_stored_order(item, ornt, shape))
        return moved
    return value


@pytest.fixture(scope="module")
def staged_run(simulation):
    """``staged_run(case)`` -> the state before each isolated stage and that stage's output, for
    the original order (defaults, automatic mask)."""
    cache = {}

    def run(case):
        if case not in cache:
            sim = simulation(case)
            state = ReconState(voxel_size_mm=tuple(sim["voxel_mm"]), magnitude=sim["magnitude"], phase=sim["phase"],
                               b0_direction=sim["b0"], echo_times_s=TES, field_strength_t=FIELD_STRENGTH_T)
            before, outputs = {}, {}
            for stage in RECON_STAGES:
                if stage.name in ISOLATED:
                    before[stage.name] = copy.deepcopy(state)
                run_stages(state, SETTINGS, [stage])
                if stage.name in ISOLATED:
                    outputs[stage.name] = [np.copy(a) for a in ISOLATED[stage.name][0](state)]
            cache[case] = before, outputs
        return cache[case]

    return run


@pytest.mark.parametrize("case, order, stage", [
    pytest.param(case, order, stage, marks=STAGE_MARKS.get((case, order, stage), ()))
    for case, order in (("iso_straight", "flip_x"), ("iso_oblique", "perm_zxy"), ("iso_oblique", "flip_y"),
                        ("aniso_straight", "perm_zxy"))
    for stage in ISOLATED] + [pytest.param("iso_straight", "flip_z", "background", marks=xfail(PDF_CASCADE))])
def test_each_stage_alone_gives_the_same_output_in_any_stored_order(case, order, stage, simulation, staged_run):
    sim = simulation(case)
    before, outputs = staged_run(case)
    ornt, shape = np.array(STORED_ORDERS[order], dtype=float), sim["magnitude"].shape[:3]
    affine = stored(sim, STORED_ORDERS[order]).affine
    state = in_stored_order(copy.deepcopy(before[stage]), ornt, shape)
    state.voxel_size_mm, state.b0_direction = voxel_size_mm(affine), b0_direction_voxel(affine)
    (step,) = run_stages(state, SETTINGS, [next(s for s in RECON_STAGES if s.name == stage)])
    output, tolerance = ISOLATED[stage]
    value, mask = (in_original_order(a, affine, sim["affine"]) for a in output(state))
    reference, reference_mask = outputs[stage]
    assert np.array_equal(mask, reference_mask)
    nrmse = nrmse_percent(value, reference, reference_mask)
    notes = {key: step.notes[key] for key in ("alpha", "inconsistency_ppm", "level_ppm") if key in step.notes}
    assert nrmse < tolerance, f"{stage} ({step.method}) alone: NRMSE {nrmse:.3f} % {notes}"
