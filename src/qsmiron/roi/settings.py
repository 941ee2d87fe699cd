"""Parameters of the per-region measurement."""

from __future__ import annotations

from pydantic import Field

from qsmiron.settings_base import Settings


class RoiSettings(Settings):
    """Which atlas, and how regions are measured."""

    atlas: str = "cit168"
    erode_voxels: int = Field(0, ge=0, le=5, description="erode each region by this many voxels "
                              "(6-connected) before measuring, to keep edge voxels out. 0 (default) measures "
                              "the whole warped region: its mean includes partial-volume and misregistered "
                              "edge voxels (the median resists them). 1 removes them, but a voxel-wide rim "
                              "is most of a small nucleus at clinical resolution (VeP, HN, MN, STH at 1.5 mm "
                              "are flagged small); see benchmarks/bench_roi.py for both")
    min_voxels: int = Field(10, ge=1, description="regions measured with fewer voxels are flagged small")
    min_coverage: float = Field(0.9, ge=0, le=1, description="regions with less of their atlas volume inside "
                                "the chi mask and field of view are flagged partial")
