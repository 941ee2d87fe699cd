"""The base of every settings model: validated, strict about unknown keys, JSON-able."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Settings(BaseModel):
    """A block of parameters: unknown keys are an error, values are validated on assignment.

    Every processing parameter of qsmiron lives in one of these blocks so that the full
    configuration can be written beside every output and any result re-run from it.
    """

    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=False)
