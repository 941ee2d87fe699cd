"""Methods declared once: the settings, the CLI, the record and the methods paragraph read the declaration."""

from __future__ import annotations

import inspect
from typing import Literal

import numpy as np
import pytest

from qsmiron.config import QsmironConfig, config_from_dict
from qsmiron.errors import InputError
from qsmiron.methods import Method, Stage
from qsmiron.recon.params import PositiveFloat
from qsmiron.recon.stages import INVERSION, RECON_STAGES, REFERENCE, ReconState, run_stages

DECLARED = [(stage, method) for stage in RECON_STAGES for method in stage.methods]


@pytest.mark.parametrize("stage, method", DECLARED, ids=[f"{s.name}.{m.name}" for s, m in DECLARED])
def test_every_declared_method_says_what_it_is_and_its_settings_default_to_its_signature(stage, method):
    assert method.label and method.description and "\n" not in method.description
    assert (method.citation is None) == (method.doi is None) or method.doi is None
    if method.doi is not None:
        assert method.doi.startswith("10.")
    signature = inspect.signature(method.function).parameters
    if not method.selectable:
        return
    block = getattr(QsmironConfig().recon, stage.name)
    for name, value in stage.parameters(block, method.name).items():
        default = signature[name].default
        assert value == (tuple(default) if isinstance(default, (list, tuple)) else default), (name, value)


def test_the_printed_configuration_holds_every_method_and_reads_back_unchanged():
    import tomllib

    from qsmiron.config_toml import config_to_toml

    text = config_to_toml(QsmironConfig())
    for stage, method in DECLARED:
        if method.selectable:
            assert f"[recon.{stage.name}.{method.name}]" in text
            for reference in method.references:
                assert reference in text
    assert config_from_dict(tomllib.loads(text)) == QsmironConfig()


def test_rts_parameters_are_settable_from_the_config_and_reach_the_record():
    config = config_from_dict({"recon": {"inversion": {"method": "rts", "rts": {"max_iter": 3, "delta": 0.2}}}})
    n = 24
    grid = np.indices((n, n, n)) - (n - 1) / 2
    mask = (grid ** 2).sum(axis=0) < (0.4 * n) ** 2
    local = np.where(mask, 0.01 * np.exp(-(grid ** 2).sum(axis=0) / 20.0), 0).astype(np.float32)
    state = ReconState(voxel_size_mm=(1.0, 1.0, 1.0), b0_direction=np.array([0.0, 0.0, 1.0]),
                       local_ppm=local, local_mask=mask)
    inversion, reference = run_stages(state, config.recon, (INVERSION, REFERENCE))
    assert inversion.method == "rts" and inversion.parameters["max_iter"] == 3
    assert inversion.parameters["delta"] == 0.2 and reference.method == "mean"
    assert np.isfinite(state.chi_ppm).all()


@pytest.mark.parametrize("payload, named", [
    ({"recon": {"background": {"pdf": {"tolerance": 0.1}}}}, "recon.background.pdf.tolerance"),
    ({"recon": {"background": {"method": "sharp"}}}, "recon.background.method"),
    ({"recon": {"background": {"pdf": {"tol": 2.0}}}}, "recon.background.pdf.tol"),
    ({"recon": {"nonsense": {}}}, "recon.nonsense"),
])
def test_a_bad_method_setting_is_an_input_error_naming_the_key(payload, named):
    with pytest.raises(InputError, match=named.replace(".", r"\.")):
        config_from_dict(payload, source="settings.toml")


def toy_filter(data, mask, *, strength: PositiveFloat = 2.0, mode: Literal["a", "b"] = "a", noise=None):
    return data * strength, {"mode": mode}


def test_a_new_stage_and_method_get_settings_from_the_signature_alone():
    stage = Stage("toy", "toy filtering", (Method("gain", toy_filter, label="gain", description="multiply"),),
                  default="gain", inputs=("noise",))
    model = stage.settings_model()
    assert model().gain.strength == 2.0 and model().method == "gain"
    assert stage.parameters(model(gain={"strength": 3})) == {"strength": 3.0, "mode": "a"}
    for bad in ({"gain": {"strength": -1}}, {"gain": {"mode": "c"}}, {"gain": {"noise": 1}}, {"method": "x"}):
        with pytest.raises(ValueError):
            model(**bad)


def test_a_former_method_name_reads_as_the_method_with_a_future_warning():
    stage = Stage("toy", "toy filtering", (Method("gain", toy_filter, label="gain", description="multiply",
                                                  former_names=("boost",), renamed_because="it multiplies"),),
                  default="gain", inputs=("noise",))
    model = stage.settings_model()
    with pytest.warns(FutureWarning, match=r"'boost' is deprecated: the method is now called 'gain' \(it multiplies\)"):
        block = model(method="boost", boost={"strength": 3})
    assert block.method == "gain" and stage.parameters(block) == {"strength": 3.0, "mode": "a"}
    assert stage.method("boost").name == "gain"  # records written under the old name find the declaration
    with pytest.raises(ValueError, match="keep 'gain'"):
        model(boost={}, gain={})
    with pytest.raises(ValueError):
        Stage("toy", "toy", (Method("gain", toy_filter, label="g", description="g", former_names=("gain2",)),
                             Method("gain2", toy_filter, label="g", description="g")), default="gain")


def test_method_names_must_be_usable_as_settings_keys():
    with pytest.raises(ValueError):
        Method("copy", toy_filter, label="x", description="x")
    with pytest.raises(ValueError):
        Stage("toy", "toy", (Method("gain", toy_filter, label="g", description="g"),), default="other")


def test_the_invert_command_lists_every_declared_inversion_method(capsys):
    from qsmiron.cli import main

    with pytest.raises(SystemExit):
        main(["invert", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for method in INVERSION.methods:
        assert f"{method.name}" in text and " ".join(method.description.split()) in text
