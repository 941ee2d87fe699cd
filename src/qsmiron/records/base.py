"""What every record shares: strict pydantic models, JSON-able values, one ``StepInfo``.

A record is what one layer hands to the next and writes beside its outputs. Unknown keys are
an error (a renamed key breaks a test, not a sentence of the report); new facts are added as
optional fields with a default, so records written before them still read.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import math
import os
import time
from pathlib import Path
from typing import Any, Iterator, TypeVar

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from qsmiron.errors import InputError

SCHEMA_VERSION = 1
"""Version of the record layouts; bumped when a field is renamed or removed (adding an
optional field does not need it)."""

RecordType = TypeVar("RecordType", bound="Record")


def jsonable(value: Any) -> Any:
    """A copy of ``value`` that ``json.dumps`` accepts: arrays summarised (not dumped), NumPy
    scalars as Python numbers, non-finite floats as None, models dumped, the rest as text."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        if value.size <= 16:
            return jsonable(value.tolist())
        return {"array_shape": list(value.shape), "dtype": str(value.dtype)}
    if isinstance(value, np.generic):
        return jsonable(value.item())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def utc_now() -> str:
    """The current time as an ISO 8601 UTC timestamp (seconds)."""
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


class Record(BaseModel):
    """Base of every record: unknown keys are an error, values are checked on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    def to_json(self) -> dict[str, Any]:
        """The record as plain JSON values (what is written to disk)."""
        return self.model_dump(mode="json")

    @classmethod
    def read(cls: type[RecordType], path: str | os.PathLike) -> RecordType:
        """Read a record written by ``to_json``; an ``InputError`` naming the file otherwise."""
        path = Path(path)
        try:
            payload = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise InputError(f"cannot be read as a {cls.__name__} ({exc})", path) from None
        try:
            return cls.model_validate(payload)
        except ValidationError as exc:
            from qsmiron.settings_base import describe_validation_error

            raise InputError(f"is not a {cls.__name__} of this qsmiron version: "
                             f"{describe_validation_error(exc)}", path) from None


class Exclusion(Record):
    """A participant left out of one analysis, and why."""

    participant_id: str
    analysis: str
    reason: str


class StepInfo(Record):
    """What one processing step did: the method, every parameter used, time and notes.

    The same record for every stage of the reconstruction and of the regional measurement,
    so that the methods paragraph and the timing tables read one shape.

    Attributes
    ----------
    step : str
        The stage (``qsmiron.recon.stages`` names, e.g. ``background``; ``registration``...).
    method : str
        The declared method that ran (``qsmiron.methods.Method.name``).
    parameters : dict
        Every parameter the method used, defaults included, as JSON values (``None`` = the
        method's own data-dependent default, described in ``notes``).
    seconds, cpu_seconds : float
        Wall time and process CPU time (all threads), s.
    notes : dict
        What the method reported (iterations, chosen weights, convergence, mask sizes).
    warnings : list of str
        Problems it noticed.
    """

    step: str
    method: str
    parameters: dict[str, Any] = Field(default_factory=dict)
    seconds: float = 0.0
    cpu_seconds: float = 0.0
    notes: dict[str, Any] = Field(default_factory=dict)
    warnings: list[str] = Field(default_factory=list)

    @field_validator("parameters", "notes", mode="before")
    @classmethod
    def _plain_values(cls, value: Any) -> Any:
        return jsonable(value) if value is not None else {}

    @field_validator("seconds", "cpu_seconds", mode="before")
    @classmethod
    def _rounded(cls, value: Any) -> Any:
        return round(float(value), 4)


@contextlib.contextmanager
def recorded_step(steps: list[StepInfo], step: str, method: str,
                  parameters: dict[str, Any] | None = None) -> Iterator[dict[str, Any]]:
    """Time the ``with`` block and append its ``StepInfo`` to ``steps``; yields the notes to fill.

    ::

        with recorded_step(steps, "measurement", "native_space_mean_median_and_interior_median",
                           {"erode_voxels": 0}) as notes:
            table = measure(...)
            notes["n_regions"] = len(table)
    """
    notes: dict[str, Any] = {}
    wall, cpu = time.perf_counter(), time.process_time()
    yield notes
    steps.append(StepInfo(step=step, method=method, parameters=parameters or {},
                          seconds=time.perf_counter() - wall, cpu_seconds=time.process_time() - cpu, notes=notes))
