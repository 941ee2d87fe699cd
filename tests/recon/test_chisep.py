"""chi-separation against qsm-forward's chi-separation phantom and relaxometric model.

Phantom: ``qsm_forward.generate_chisep_phantom`` (paramagnetic cylinders of 0.05-0.20 ppm
inside diamagnetic shells of 0.02-0.05 ppm). Link: ``R2' = Dr (|chi+| + |chi-|)``
(``qsm_forward.generate_r2prime``, Dr = 137 Hz/ppm, Shin et al. 2021), R2 = 15 s^-1,
R2* = R2 + R2'. Field: ``qsm_forward.generate_field`` of chi+ + chi- (qsm-forward keeps chi-
negative), B0 along z.
"""

import numpy as np
import pytest
import qsm_forward

from qsmiron.errors import InputError
from qsmiron.recon.chisep import (DR_3T_HZ_PER_PPM, check_r2_map, r2prime_from_r2star,
                                  relaxometric_constant, separate_susceptibility)

PARA = (0.05, 0.10, 0.15, 0.20)
DIA = (-0.02, -0.03, -0.04, -0.05)
R2 = 15.0
VOXEL = (1.0, 1.0, 1.0)


@pytest.fixture(scope="module")
def phantom():
    chi_pos, chi_neg, mask = qsm_forward.generate_chisep_phantom([48, 48, 48])
    mask = mask.astype(bool)
    field = qsm_forward.generate_field(chi_pos + chi_neg, None, voxel_size=list(VOXEL), B0_dir=[0, 0, 1])
    r2star = np.where(mask, R2 + qsm_forward.generate_r2prime(chi_pos, chi_neg), 0.0)
    rng = np.random.default_rng(0)
    noisy_field = np.where(mask, field + 0.003 * rng.standard_normal(field.shape), 0.0)
    noisy_r2star = np.where(mask, r2star + 0.5 * rng.standard_normal(field.shape), 0.0)
    regions = {("para", v): np.isclose(chi_pos, v) for v in PARA}
    regions.update({("dia", v): np.isclose(chi_neg, v) for v in DIA})
    regions[("background", 0.0)] = mask & (chi_pos == 0) & (chi_neg == 0)
    return dict(mask=mask, field=noisy_field, r2star=noisy_r2star, regions=regions)


def separate(phantom, r2_factor=1.0, **kwargs):
    r2 = np.where(phantom["mask"], R2 * r2_factor, 0.0)
    return separate_susceptibility(phantom["field"], phantom["r2star"], phantom["mask"], VOXEL,
                                   (0, 0, 1), field_strength_t=3.0, r2_per_s=r2, pad_mm=8.0,
                                   **kwargs)


def region_means(result, regions):
    return {key: (float(result.paramagnetic_ppm[r].mean()), float(result.diamagnetic_ppm[r].mean()))
            for key, r in regions.items()}


@pytest.fixture(scope="module")
def correct(phantom):
    return separate(phantom)


def test_chisep_recovers_planted_sources_within_10_percent_with_little_crosstalk(phantom, correct):
    means = region_means(correct, phantom["regions"])
    for (kind, value), (para, dia) in means.items():
        if kind == "para":
            assert para == pytest.approx(value, rel=0.10)
            assert dia < 0.005
        elif kind == "dia":
            assert dia == pytest.approx(-value, rel=0.10)
            assert para < 0.005
        else:
            assert para < 0.003 and dia < 0.003
    mask = phantom["mask"]
    for volume in (correct.paramagnetic_ppm, correct.diamagnetic_ppm):
        assert volume.min() >= 0 and np.all(volume[~mask] == 0)
    assert correct.info["approximation"] is False and correct.info["converged"]
    assert correct.info["parameters"]["dr_hz_per_ppm"] == DR_3T_HZ_PER_PPM
    # The TV weight is wtv's automatic choice for this field, whose solution starts the run.
    assert correct.info["alpha_source"].startswith("wtv") and correct.info["started_from"] == "wtv solution"
    assert correct.info["parameters"]["alpha"] == correct.info["alpha_selection"]["alpha"] > 0


def source_magnitude(phantom):
    """A magnitude darker where the paramagnetic sources are: its edges are their boundaries,
    where TV is lifted (per gradient component by default, as the dipole inversion does)."""
    chi_pos = np.zeros(phantom["mask"].shape)
    for (kind, value), region in phantom["regions"].items():
        chi_pos[region] = value if kind == "para" else 0.0
    return np.where(phantom["mask"], 1.0 - 2.0 * chi_pos, 0.0)


@pytest.mark.parametrize("edge_mask", ["per_axis", "voxel"])
def test_magnitude_edges_per_axis_or_per_voxel_keep_the_planted_sources(phantom, edge_mask):
    result = separate(phantom, magnitude=source_magnitude(phantom), edge_mask=edge_mask)
    assert result.info["parameters"]["edge_mask"] == edge_mask and result.info["converged"]
    for (kind, value), (para, dia) in region_means(result, phantom["regions"]).items():
        if kind == "para":
            assert para == pytest.approx(value, rel=0.10) and dia < 0.005
        elif kind == "dia":
            assert dia == pytest.approx(-value, rel=0.10) and para < 0.005


def test_the_edge_mask_changes_which_gradient_components_tv_acts_on(phantom):
    magnitude = source_magnitude(phantom)
    by_axis = separate(phantom, magnitude=magnitude, alpha=1e-3, max_iter=5)
    by_voxel = separate(phantom, magnitude=magnitude, alpha=1e-3, max_iter=5, edge_mask="voxel")
    assert by_voxel.info["parameters"]["edge_mask"] == "voxel"
    assert np.abs(by_axis.paramagnetic_ppm - by_voxel.paramagnetic_ppm).max() > 1e-4


@pytest.mark.parametrize("r2_factor", [0.8, 1.2])
def test_r2_wrong_by_20_percent_moves_each_source_by_at_most_the_model_bound(phantom, correct, r2_factor):
    """An R2 error dR2 moves R2' by -dR2, so the R2' term asks for chi+ + chi- to move by
    -dR2 / Dr (0.022 ppm here); no source can move by more. Where one source is absent, the
    other takes nearly all of it (the field, which would pin chi+ - chi-, constrains less
    than R2'), so the error is real and about that size."""
    wrong = separate(phantom, r2_factor)
    bound = abs(r2_factor - 1.0) * R2 / DR_3T_HZ_PER_PPM
    before = region_means(correct, phantom["regions"])
    after = region_means(wrong, phantom["regions"])
    moved = []
    for key in before:
        (p0, n0), (p1, n1) = before[key], after[key]
        assert abs(p1 - p0) <= bound + 0.002 and abs(n1 - n0) <= bound + 0.002
        moved.append(abs(p1 - p0) + abs(n1 - n0))
    assert 0.5 * bound < np.median(moved) <= 1.1 * bound


def test_r2star_only_separation_is_labelled_an_approximation_with_its_constants(phantom):
    start = np.zeros(phantom["mask"].shape, np.float32)
    result = separate_susceptibility(phantom["field"], phantom["r2star"], phantom["mask"], VOXEL,
                                     (0, 0, 1), field_strength_t=3.0, max_iter=3, pad_mm=8.0,
                                     alpha=1e-3, chi_ppm=start)
    assert result.info["approximation"] is True
    assert result.info["alpha_source"] == "given" and result.info["started_from"] == "given susceptibility"
    pseudo = result.info["r2prime"]["pseudo_r2"]
    assert (pseudo["intercept_per_s"], pseudo["slope"]) == (5.25, 0.5)
    assert "Gelman" in pseudo["reference"]
    mask = phantom["mask"]
    expected = phantom["r2star"] - (5.25 + 0.5 * phantom["r2star"])
    np.testing.assert_allclose(result.r2prime_per_s[mask], expected[mask], rtol=1e-5, atol=1e-4)
    assert not result.info["converged"] and result.info["warnings"]


def test_pseudo_r2_at_another_field_strength_warns():
    r2star = np.full((4, 4, 4), 40.0)
    _, info = r2prime_from_r2star(r2star, np.ones((4, 4, 4), bool), field_strength_t=7.0)
    assert any("3 T" in w for w in info["warnings"])


def test_relaxometric_constant_is_137_hz_per_ppm_at_3t_and_scales_with_b0():
    assert relaxometric_constant(3.0)[0] == 137.0
    assert relaxometric_constant(1.5)[0] == pytest.approx(68.5)
    assert "Shin" in relaxometric_constant(3.0)[1]
    assert relaxometric_constant(3.0, 114.0) == (114.0, "given")


@pytest.mark.parametrize("values, unit", [(80.0, "T2 in ms"), (0.08, "T2 in s or R2 in ms"),
                                          (1e5, "in s\\^-1")])
def test_r2_map_in_other_units_is_a_one_line_input_error_naming_the_unit(values, unit):
    mask = np.ones((6, 6, 6), bool)
    with pytest.raises(InputError, match=unit):
        check_r2_map(np.full(mask.shape, values), np.full(mask.shape, 25.0), mask)


def test_r2_map_on_another_grid_or_above_r2star_is_refused():
    mask = np.ones((6, 6, 6), bool)
    with pytest.raises(InputError, match="resample it onto the GRE grid"):
        check_r2_map(np.full((6, 6, 5), 15.0), np.full(mask.shape, 25.0), mask)
    with pytest.raises(InputError, match="R2\\* = R2 \\+ R2'"):
        check_r2_map(np.full(mask.shape, 30.0), np.full(mask.shape, 20.0), mask)
    ok = check_r2_map(np.full(mask.shape, 18.0), np.full(mask.shape, 20.0), mask)
    assert ok.dtype == np.float32
