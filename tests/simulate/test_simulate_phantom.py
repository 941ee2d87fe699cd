"""The MNI head phantom: brain from the template and CIT168, head, skull and air around it."""

import nibabel as nib
import numpy as np
import pytest

from qsmiron.atlas.builtin import cit168_paths, template_brain_path
from qsmiron.simulate import phantom as ph
from qsmiron.simulate.settings import CIT168_REGIONS, SimulationSettings


@pytest.fixture(scope="module")
def phantom():
    return ph.build_head_phantom(2.0)


def _code_at(phantom, mni_mm):
    index = np.rint((np.asarray(mni_mm) - phantom.affine[:3, 3]) / phantom.resolution_mm).astype(int)
    return int(phantom.codes[tuple(index)])


def test_every_cit168_region_and_hemisphere_is_in_the_phantom(phantom):
    present = set(np.unique(phantom.codes).tolist())
    names = {phantom.regions[c] for c in phantom.cit168_index if c in present}
    assert names == {(r, h) for r in CIT168_REGIONS for h in ("L", "R")}


def test_vep_sits_near_its_literature_position(phantom):
    # Ventral pallidum centred near MNI (+-12, 3, -9) (study-model.md).
    for side, sign in (("L", -1), ("R", 1)):
        code = ph.CIT168_CODE_OFFSET[side] + 12
        index = np.argwhere(phantom.codes == code)
        centre = index.mean(axis=0) * phantom.resolution_mm + phantom.affine[:3, 3]
        assert np.linalg.norm(centre - np.array([sign * 12, 3, -9])) < 8.0


def test_phantom_brain_is_the_template_brain(phantom):
    # The phantom's brain voxels (2 mm centres) fall on brain voxels of the 1 mm template.
    template = nib.load(str(template_brain_path()))
    mni = np.argwhere(phantom.brain)[::20] * phantom.resolution_mm + phantom.affine[:3, 3]
    index = np.rint(mni - template.affine[:3, 3]).astype(int)
    values = np.asarray(template.dataobj)[tuple(index.T)]
    assert np.mean(values > 0) > 0.97
    assert 1.2e6 < phantom.brain.sum() * phantom.resolution_mm ** 3 < 2.2e6  # mm^3


def test_head_has_skull_around_the_brain_and_air_outside(phantom):
    # Along the vertex line x = y = 0 upwards: brain, then CSF/meninges, skull, scalp, air.
    top = [(_code_at(phantom, (0, -20, z))) for z in range(60, 106, 2)]
    order = [c for i, c in enumerate(top) if i == 0 or c != top[i - 1]]
    brain_codes = set(phantom.regions)
    first_non_brain = next(i for i, c in enumerate(order) if c not in brain_codes)
    assert order[first_non_brain:] == [ph.CODE_MENINGES, ph.CODE_SKULL, ph.CODE_SOFT, ph.CODE_AIR]


def test_air_cavities_lie_at_the_sinuses_and_never_touch_the_brain(phantom):
    assert _code_at(phantom, (0, 12, -42)) == ph.CODE_CAVITY  # sphenoid sinus
    assert _code_at(phantom, (0, 55, -52)) == ph.CODE_CAVITY  # nasal cavity
    from scipy import ndimage

    near_brain = ndimage.binary_dilation(phantom.brain, iterations=1)
    assert not np.any(near_brain & (phantom.codes == ph.CODE_CAVITY))


def test_chi_table_gives_each_code_its_configured_value(phantom):
    settings = SimulationSettings()
    values = ph.population_chi(settings)
    values[("VeP", "L")] = 0.123
    table = phantom.chi_table(values)
    assert table[ph.CIT168_CODE_OFFSET["L"] + 12] == pytest.approx(0.123)
    assert table[ph.CIT168_CODE_OFFSET["R"] + 12] == pytest.approx(settings.regions["VeP"].chi_ppm)
    assert table[ph.CODE_WM] == pytest.approx(-0.025)
    # Air minus tissue is about 9.4 ppm (air +0.36, water -9.05 ppm).
    assert table[ph.CODE_AIR] - table[ph.CODE_SOFT] == pytest.approx(9.41)
    assert table[ph.CODE_CAVITY] == table[ph.CODE_AIR]


def test_magnitude_properties_give_t1_weighted_contrast_and_iron_driven_r2star(phantom):
    s0, r2s = ph.mr_property_tables(phantom, SimulationSettings())
    # Spoiled GRE with TR 42 ms, flip 15 deg: WM > GM > CSF.
    assert s0[ph.CODE_WM] > s0[ph.CODE_GM] > s0[ph.CODE_CSF] > 0
    gp = ph.CIT168_CODE_OFFSET["L"] + 5
    pu = ph.CIT168_CODE_OFFSET["L"] + 1
    assert r2s[gp] > r2s[pu] > r2s[ph.CODE_GM]
    assert s0[ph.CODE_AIR] == 0 and s0[ph.CODE_CAVITY] == 0


def test_cit168_lookup_names_match_the_atlas_file():
    table = ph.cit168_label_table()
    assert len(table) == 28
    labels = set(np.unique(np.asarray(nib.load(str(cit168_paths()[0])).dataobj)).astype(int)) - {0}
    assert set(table["index"]) == labels
    assert set(table["hemisphere"]) == {"L", "R"}
