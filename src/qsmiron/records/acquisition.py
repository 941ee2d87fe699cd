"""The acquisition as the images and sidecars describe it (part of the reconstruction record)."""

from __future__ import annotations

from typing import Any, Literal

from qsmiron.records.base import Record


class ReadoutInfo(Record):
    """The readout polarity as the reconstruction read it from the phase (``qsmiron.recon.bipolar``):
    no export records it.

    Attributes
    ----------
    polarity : {"monopolar", "bipolar", "not checked"}
        ``bipolar``: the even echoes' extra phase reached ``detection_rad`` and was removed.
    reason : str or None
        Why it was not checked (two echoes, unequal spacing, switched off).
    even_echo_phase_rad, even_echo_gradient_rad_per_mm, largest_rad, coherence, detection_rad
        The fitted model (constant at the mask's centre, gradient along the voxel axes), its
        largest size in the mask, how much of the alternation it explains, and the threshold.
    """

    polarity: Literal["monopolar", "bipolar", "not checked"]
    reason: str | None = None
    even_echo_phase_rad: float | None = None
    even_echo_gradient_rad_per_mm: list[float] | None = None
    largest_rad: float | None = None
    coherence: float | None = None
    detection_rad: float | None = None

    @classmethod
    def from_notes(cls, notes: dict[str, Any]) -> "ReadoutInfo":
        """From the ``readout`` method's info (``odd_even_linear``, ``none``)."""
        fields = {key: notes.get(key) for key in cls.model_fields if key != "polarity"}
        return cls(polarity=notes.get("readout", "not checked"), **fields)


class Acquisition(Record):
    """What the images and their sidecars say about the scan (None where they do not say).

    Filled by ``qsmiron.io.gre.load_gre``; the methods paragraph reports every field and
    names the ones that are None as unknown.
    """

    field_strength_t: float
    field_strength_source: str
    """``argument`` (given by the user) or ``sidecar``."""
    echo_times_s: list[float]
    echo_times_source: str
    n_echoes: int
    matrix: list[int]
    voxel_size_mm: list[float]
    b0_direction_voxel: list[float]
    oblique_angle_deg: float
    manufacturer: str | None = None
    manufacturers_model_name: str | None = None
    software_versions: str | None = None
    receive_coil: str | None = None
    mr_acquisition_type: str | None = None
    sequence_name: str | None = None
    repetition_time_s: float | None = None
    flip_angle_deg: float | None = None
    parallel_reduction_factor_in_plane: float | None = None
    partial_fourier: float | str | None = None
