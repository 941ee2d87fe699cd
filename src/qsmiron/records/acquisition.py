"""The acquisition as the images and sidecars describe it (part of the reconstruction record)."""

from __future__ import annotations

from qsmiron.records.base import Record


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
