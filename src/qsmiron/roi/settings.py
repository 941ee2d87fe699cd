"""Parameters of the per-region measurement."""

from __future__ import annotations

from qsmiron.settings_base import Settings


class RoiSettings(Settings):
    """Which atlas, and how regions are measured."""

    atlas: str = "cit168"
    erode_voxels: int = 0
