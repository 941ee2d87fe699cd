"""Parameters of the per-region measurement and of the reference regions."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, create_model

from qsmiron.methods import keyword_parameters
from qsmiron.recon.reference import ventricle_csf_mask
from qsmiron.settings_base import Settings

CSF_INPUTS = ("r2star_per_s", "magnitude")
"""Keyword arguments of ``ventricle_csf_mask`` filled from the subject's images (not settings)."""


def _csf_settings() -> type[Settings]:
    """The CSF cleaning's parameters, from the signature of ``ventricle_csf_mask``."""
    fields = {p.name: (p.annotation, Field(p.default)) for p in keyword_parameters(ventricle_csf_mask, CSF_INPUTS)}
    return create_model("CsfReferenceSettings", __base__=Settings, __module__=__name__,
                        __doc__="How the lateral-ventricle CSF is cleaned in subject space.", **fields)


CsfReferenceSettings = _csf_settings()


class RoiSettings(Settings):
    """Which atlas, how regions are measured, and the reference regions of chi."""

    atlas: str = "cit168"
    erode_voxels: int = Field(0, ge=0, le=5, description="erode each region by this many voxels "
                              "(6-connected) before measuring, to keep edge voxels out. 0 (default) measures "
                              "the whole warped region: its mean includes partial-volume and misregistered "
                              "edge voxels (the median resists them, the interior-weighted median weighs them less). 1 "
                              "removes them, but a voxel-wide rim "
                              "is most of a small nucleus at clinical resolution (VeP, HN, MN, STH at 1.5 mm "
                              "are flagged small); see benchmarks/bench_roi.py for both")
    min_voxels: int = Field(10, ge=1, description="regions measured with fewer voxels are flagged small")
    min_coverage: float = Field(0.9, ge=0, le=1, description="regions with less of their atlas volume inside "
                                "the chi mask and field of view are flagged partial")
    references: tuple[Literal["whole_brain", "csf"], ...] = Field(
        ("whole_brain", "csf"), description="reference regions chi is given under, besides a user's mask: "
        "whole_brain (the mean over the brain mask, the consensus reference) and csf (the lateral "
        "ventricles: the template's ventricle prior warped by the subject's registration and cleaned "
        "with R2* and the magnitude)")
    reference_mask: str | None = Field(None, description="a reference region in template space "
                                       "(MNI152NLin2009cAsym), warped to every subject by its registration; "
                                       "chi is then also given relative to its mean (reference 'mask')")
    csf: CsfReferenceSettings = Field(default_factory=CsfReferenceSettings,  # type: ignore[valid-type]
                                      description="how the ventricle CSF is cleaned")
