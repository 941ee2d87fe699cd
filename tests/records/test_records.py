"""Records are strict: a renamed or unknown key is an error, values are plain JSON, files read back."""

from __future__ import annotations

import json

import numpy as np
import pytest
from pydantic import ValidationError

from qsmiron.errors import InputError
from qsmiron.records import StepInfo
from qsmiron.records.cohort import DoneMarker, MarkerFile


def test_step_info_turns_numpy_values_into_json_and_summarises_arrays():
    step = StepInfo(step="inversion", method="tv", parameters={"alpha": np.float32(0.5), "radii": (1, 2)},
                    seconds=np.float64(1.23456), notes={"map": np.zeros((10, 10)), "bad": float("nan")})
    assert step.parameters == {"alpha": 0.5, "radii": [1, 2]}
    assert step.notes == {"map": {"array_shape": [10, 10], "dtype": "float64"}, "bad": None}
    assert step.seconds == 1.2346
    json.dumps(step.to_json())


def test_an_unknown_key_is_an_error_not_ignored():
    with pytest.raises(ValidationError, match="seconds_wall"):
        StepInfo.model_validate({"step": "mask", "method": "magnitude", "seconds_wall": 1.0})


def test_a_record_file_reads_back_and_a_renamed_key_names_the_file(tmp_path):
    marker = DoneMarker(participant_id="sub-01", inputs_hash="a", config_hash="b",
                        outputs={"regions": MarkerFile(file="x.tsv", size=10)})
    path = tmp_path / "marker.json"
    path.write_text(json.dumps(marker.to_json()))
    assert DoneMarker.read(path) == marker
    payload = marker.to_json()
    payload["inputs_digest"] = payload.pop("inputs_hash")
    path.write_text(json.dumps(payload))
    with pytest.raises(InputError) as error:
        DoneMarker.read(path)
    assert str(path) in error.value.one_line() and "inputs_digest" in error.value.one_line()
