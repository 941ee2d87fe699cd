"""Optional sections of a study file: voxel-wise inference, harmonisation, longitudinal and
normative models. A section absent from the file is ``None`` on the study, and its analysis
does not run::

    [voxelwise]
    mask = "subcortical"          # or "brain", or a mask NIfTI on the template grid
    n_permutations = 5000
    smoothing_fwhm_mm = 0
    seed = 0

    [harmonise]
    method = "combat"
    batch = "site"                # column of participants.tsv (or of the sessions table)

    [longitudinal]
    time = "months"               # column of sessions.tsv: time of each session

    [normative]
    reference_group = "HC"        # a label of the group column
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator

from qsmiron.settings_base import Settings


def _text(value: Any) -> Any:
    """Labels written as numbers in TOML (``reference_group = 1``) are kept as text."""
    from qsmiron.stats.study import label_text

    return None if value is None else label_text(value)


class VoxelwiseSettings(Settings):
    """GLM with permutation inference (TFCE, FWE) on template-space chi maps."""

    mask: str = Field("subcortical", description="'subcortical' (the CIT168 regions dilated by 2 mm), "
                                                 "'brain' (the template brain) or the path of a mask NIfTI "
                                                 "on the template grid (relative to the study file)")
    n_permutations: int = Field(5000, ge=1, le=1_000_000)
    smoothing_fwhm_mm: float = Field(
        0.0, ge=0, le=20, description="Gaussian smoothing of each map inside its valid voxels before the "
                                      "GLM; 0 keeps the nuclei's edges: 3 mm found no more planted effects "
                                      "and only widened the clusters (benchmarks/bench_voxelwise.py)")
    seed: int = Field(0, ge=0, description="seed of the permutations")
    alpha: float = Field(0.05, gt=0, lt=1, description="FWE level at which voxels form reported clusters")


class HarmoniseSettings(Settings):
    """ComBat harmonisation of the regional values across sites or scanners."""

    method: Literal["combat"] = "combat"
    batch: str = Field("site", description="column naming each participant's site or scanner")
    empirical_bayes: bool = Field(True, description="pool the site effects across regions (ComBat's EB)")


class LongitudinalSettings(Settings):
    """Linear mixed model per region over the sessions."""

    time: str = Field(description="column of the sessions table holding each session's time")
    covariates: list[str] | None = Field(default=None, description="default: the study covariates")


class NormativeSettings(Settings):
    """Each participant's regional values as z-scores against the study's reference group."""

    reference_group: str
    covariates: list[str] = Field(default_factory=lambda: ["age", "sex"],
                                  description="what the reference model adjusts for")
    outlier_z: float = Field(2.5, gt=0, description="|z| beyond which a value is flagged")

    @field_validator("reference_group", mode="before")
    @classmethod
    def _group_as_text(cls, value: Any) -> Any:
        return _text(value)
