"""The registration settings: per-level lists describe the same levels, checked where a settings
file is read (``qsmiron config FILE`` refuses what registration could not run)."""

import pytest

from qsmiron.cli import main
from qsmiron.register.settings import RegistrationSettings


@pytest.mark.parametrize("lists, stage", [
    ({"linear_iterations": [200, 100], "linear_shrink_factors": [2]}, "linear_iterations"),
    ({"syn_iterations": [40, 20, 10]}, "syn_iterations"),
    ({"syn_smoothing_vox": [1.0]}, "syn_iterations"),
])
def test_config_refuses_per_level_lists_of_different_lengths_in_one_line(lists, stage, tmp_path, capsys):
    settings = tmp_path / "settings.toml"
    settings.write_text("[registration]\n" + "".join(f"{key} = {value}\n" for key, value in lists.items()))
    assert main(["config", str(settings)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith(f"qsmiron config: error: {settings}: "), err
    assert stage in err and "one value per level" in err


def test_no_syn_iterations_skip_syn_whatever_its_other_lists_hold():
    assert RegistrationSettings(syn_iterations=()).syn_iterations == ()
    assert RegistrationSettings(syn_iterations=(20,), syn_shrink_factors=(1,), syn_smoothing_vox=(0.0,))
