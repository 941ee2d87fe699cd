"""SimulationSettings: consensus-conform defaults and validation of bad values."""

import nibabel as nib
import numpy as np
import pytest
from pydantic import ValidationError

from qsmiron.atlas.builtin import cit168_paths
from qsmiron.simulate.settings import CIT168_REGIONS, SimulationSettings


def test_default_echoes_follow_the_consensus_short_first_and_last_near_deep_grey_t2star():
    settings = SimulationSettings()
    tes = settings.echo_times_s
    assert tes[0] <= 0.005  # first echo as short as possible
    assert 0.030 <= tes[-1] <= 0.040  # last echo about T2* of deep grey matter at 3 T
    assert all(b > a for a, b in zip(tes, tes[1:]))
    assert settings.field_strength_t == 3.0


def test_default_voxel_keeps_tens_of_voxels_in_each_ventral_pallidum():
    # VeP volume from the CIT168 label map itself (1 mm grid), divided by the default voxel.
    labels = np.asarray(nib.load(str(cit168_paths()[0])).dataobj)
    voxel_mm3 = float(np.prod(SimulationSettings().voxel_size_mm))
    for index in (12, 112):
        assert (labels == index).sum() / voxel_mm3 >= 30


def test_defaults_plant_lower_vep_and_putamen_and_negative_associations():
    settings = SimulationSettings()
    assert -0.8 <= settings.group_effect_d["VeP"] <= -0.5
    assert -0.8 <= settings.group_effect_d["Pu"] <= -0.5
    assert -0.4 <= settings.sds_r <= -0.3 and -0.4 <= settings.relapse_r <= -0.3
    assert set(CIT168_REGIONS) <= set(settings.regions)


def test_null_settings_plant_nothing():
    settings = SimulationSettings(with_effects=False)
    assert settings.effective_group_d() == {}
    assert settings.effective_sds_r() == 0.0 and settings.effective_relapse_r() == 0.0


@pytest.mark.parametrize("bad", [
    {"echo_times_s": (0.02, 0.01)},
    {"echo_times_s": (4.0, 12.0)},  # milliseconds given by mistake
    {"echo_times_s": (0.004, 0.05), "repetition_time_s": 0.04},
    {"group_effect_d": {"NotARegion": -0.5}},
    {"voxel_size_mm": (1.5, 0.0, 1.5)},
    {"oblique_probability": 1.5},
    {"unknown_key": 1},
])
def test_invalid_settings_are_rejected(bad):
    with pytest.raises(ValidationError):
        SimulationSettings(**bad)


def test_matrix_is_field_of_view_over_voxel_size():
    settings = SimulationSettings(voxel_size_mm=(1.5, 1.5, 2.0), fov_mm=(180.0, 216.0, 180.0))
    assert settings.matrix == (120, 144, 90)
