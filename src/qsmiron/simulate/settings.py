"""Parameters of a simulated cohort: acquisition, head position, tissue values, planted effects.

Defaults follow the QSM consensus recommendations for the acquisition (first echo short, last
echo near the T2* of deep grey matter, about 35 ms at 3 T) and the literature values of
``shared/docs/study-model.md`` for tissue susceptibility, its age slope, its between-subject
spread, and the clinical variables. The voxel size of 1.5 mm is a compromise for the demo:
about three times fewer voxels than a 1 mm scan (so a cohort runs in minutes) while the
ventral pallidum (about 140 mm^3 per hemisphere) still covers about 40 voxels.
"""

from __future__ import annotations

import math
from typing import Literal

from pydantic import Field, field_validator, model_validator

from qsmiron.settings_base import Settings

CIT168_REGIONS = ("Pu", "Ca", "NAC", "EXA", "GPe", "GPi", "SNc_PBP_VTA", "RN", "SNr", "VeP",
                  "HN", "HTH", "MN", "STH")
"""CIT168 region names as the atlas lookup spells them (hemisphere suffix dropped)."""

EXTRA_REGIONS = ("Thal", "DN")
"""Nuclei not in CIT168, added as ellipsoids in MNI space (thalamus, dentate nucleus)."""

BRAIN_TISSUES = ("CSF", "GM", "WM")


class RegionValue(Settings):
    """Susceptibility of one brain tissue or nucleus in healthy adults at 3 T.

    Attributes
    ----------
    chi_ppm : float
        Population mean at the reference age, ppm, relative to the whole brain (about CSF).
    sd_ppm : float
        Between-subject standard deviation at the reference age, ppm.
    age_slope_ppb_per_year : float
        Linear change with age, ppb per year.
    """

    chi_ppm: float
    sd_ppm: float = Field(0.0, ge=0.0)
    age_slope_ppb_per_year: float = 0.0


def _literature_regions() -> dict[str, RegionValue]:
    """Values of study-model.md; CIT168 subdivisions share the value of the parent nucleus.

    Not in the table and set by analogy (documented approximations): GPe and GPi both take the
    globus pallidus value; substantia nigra is split into a pars reticulata (SNr, more iron,
    0.14) and the SNc/PBP/VTA complex (0.10) around the table's 0.13; the subthalamic nucleus
    (STH, iron-rich) 0.10; habenula (HN) and mammillary nucleus (MN) 0.03; hypothalamus (HTH)
    and extended amygdala (EXA) grey-matter-like 0.01; ventral pallidum 0.075 (middle of the
    table's 0.05-0.10) with the pallidal age slope 0.3 ppb/year (the table says unknown); the
    thalamus gets no linear age slope (it rises to about 40 years, then falls).
    """
    v = RegionValue
    return {
        "CSF": v(chi_ppm=0.0, sd_ppm=0.0),
        "GM": v(chi_ppm=0.015, sd_ppm=0.004),
        "WM": v(chi_ppm=-0.025, sd_ppm=0.005),
        "Pu": v(chi_ppm=0.06, sd_ppm=0.02, age_slope_ppb_per_year=0.9),
        "Ca": v(chi_ppm=0.06, sd_ppm=0.015, age_slope_ppb_per_year=0.4),
        "NAC": v(chi_ppm=0.02, sd_ppm=0.015, age_slope_ppb_per_year=0.1),
        "EXA": v(chi_ppm=0.01, sd_ppm=0.01),
        "GPe": v(chi_ppm=0.14, sd_ppm=0.025, age_slope_ppb_per_year=0.3),
        "GPi": v(chi_ppm=0.14, sd_ppm=0.025, age_slope_ppb_per_year=0.3),
        "SNc_PBP_VTA": v(chi_ppm=0.10, sd_ppm=0.03, age_slope_ppb_per_year=0.7),
        "RN": v(chi_ppm=0.10, sd_ppm=0.03, age_slope_ppb_per_year=0.8),
        "SNr": v(chi_ppm=0.14, sd_ppm=0.03, age_slope_ppb_per_year=0.7),
        "VeP": v(chi_ppm=0.075, sd_ppm=0.02, age_slope_ppb_per_year=0.3),
        "HN": v(chi_ppm=0.03, sd_ppm=0.015),
        "HTH": v(chi_ppm=0.01, sd_ppm=0.01),
        "MN": v(chi_ppm=0.03, sd_ppm=0.015),
        "STH": v(chi_ppm=0.10, sd_ppm=0.03, age_slope_ppb_per_year=0.5),
        "Thal": v(chi_ppm=0.005, sd_ppm=0.01),
        "DN": v(chi_ppm=0.10, sd_ppm=0.03, age_slope_ppb_per_year=0.7),
    }


class SimulationSettings(Settings):
    """Everything that shapes a simulated cohort; the seed is given separately.

    Acquisition
    -----------
    voxel_size_mm : 3 floats
        Voxel edge lengths of the simulated scan (1.5 mm default, see the module docstring).
    fov_mm : 3 floats
        Field of view along the voxel axes (x: left-right, y: posterior-anterior, z:
        inferior-superior before obliquity). 180 x 216 x 180 mm covers the brain for head
        rotations of a few degrees.
    field_strength_t : float
    echo_times_s : increasing floats
        Monopolar echoes, 4 to 36 ms in steps of 8 ms: first echo short, last near the T2*
        of deep grey matter (consensus).
    repetition_time_s, flip_angle_deg : float
        Used for the T1 weighting of the magnitude (spoiled GRE steady state).
    snr : float
        Mean first-echo magnitude in the brain divided by the noise SD of each of the real
        and imaginary channels.
    phase_offset_rad : float
        Peak-to-peak amplitude of the smooth, echo-independent phase offset (receive coil
        phase) across the field of view, plus a uniformly random constant.
    shim_order : 0, 1 or 2
        Spherical-harmonic order of the simulated scanner shim fitted over the brain and
        removed from the field (scanners shim to second order).
    phase_levels : int
        Vendor integer phase: values -phase_levels .. phase_levels - 1 cover [-pi, pi).
    magnitude_brain_level : float
        Stored integer magnitude of the mean first-echo brain signal.
    phantom_resolution_mm : float
        Grid spacing of the MNI head phantom. 1 mm keeps the template and atlas exactly;
        coarser grids (2 mm) build and resample faster for coarse scans (tests).

    Head position
    -------------
    max_rotation_deg, max_translation_mm : float
        Uniform random head rotation about each axis and translation along each axis.
    oblique_probability : float
        Chance that a subject is scanned with oblique slices; the slices are then tilted by
        ``oblique_min_deg``..``oblique_max_deg`` about the left-right axis (plus up to a
        quarter of that about the anterior-posterior axis) and the head is tilted with them,
        as when an operator aligns the slab to a pitched head: B0 is then oblique in voxel axes.

    Cohort
    ------
    moh_fraction : float
        Share of the MOH group (chronic migraine with medication overuse); the others are CM
        (chronic migraine without overuse).
    with_effects : bool
        False gives a null cohort: no group difference and no association is planted.
    group_effect_d : dict region -> Cohen's d
        MOH minus CM, in units of the region's between-subject SD (both hemispheres).
    association_region : str
        The region whose susceptibility drives the planted associations.
    sds_r, relapse_r : float
        Planted correlation, within MOH, of that region's susceptibility with the Severity of
        Dependence Scale and with relapse (point-biserial). Values are the targets at the
        hemisphere level before the rounding of SDS to integers.
    relapse_rate : float
        Share of MOH patients relapsing during follow-up.
    age_mean, age_sd, age_min, age_max, female_fraction : cohort demographics.
    reference_age : float
        Age at which the region values apply; age slopes act around it.
    sd_growth_per_year : float
        Relative growth of the between-subject SD per year of age (variance grows with age).
    hemisphere_variance_fraction : float
        Part of a region's between-subject variance that differs between hemispheres.
    shared_iron_variance_fraction : float
        Part of the subject-level variance shared by all nuclei (a general iron factor).
    regions : dict name -> RegionValue
        Tissue and nucleus susceptibility (CSF, GM, WM, the CIT168 regions, Thal, DN).
    """

    voxel_size_mm: tuple[float, float, float] = (1.5, 1.5, 1.5)
    fov_mm: tuple[float, float, float] = (180.0, 216.0, 180.0)
    field_strength_t: float = Field(3.0, gt=0.0, le=21.0)
    echo_times_s: tuple[float, ...] = (0.004, 0.012, 0.020, 0.028, 0.036)
    repetition_time_s: float = Field(0.042, gt=0.0)
    flip_angle_deg: float = Field(15.0, gt=0.0, lt=90.0)
    snr: float = Field(40.0, gt=0.0)
    phase_offset_rad: float = Field(math.pi, ge=0.0)
    shim_order: Literal[0, 1, 2] = 2
    phase_levels: int = Field(4096, ge=64)
    magnitude_brain_level: float = Field(1000.0, gt=0.0)
    phantom_resolution_mm: float = Field(1.0, ge=0.5, le=3.0)

    max_rotation_deg: float = Field(5.0, ge=0.0, le=30.0)
    max_translation_mm: float = Field(5.0, ge=0.0, le=30.0)
    oblique_probability: float = Field(0.3, ge=0.0, le=1.0)
    oblique_min_deg: float = Field(8.0, ge=0.0, le=45.0)
    oblique_max_deg: float = Field(20.0, ge=0.0, le=45.0)

    moh_fraction: float = Field(0.5, gt=0.0, lt=1.0)
    with_effects: bool = True
    group_effect_d: dict[str, float] = Field(default_factory=lambda: {"VeP": -0.7, "Pu": -0.7})
    association_region: str = "VeP"
    sds_r: float = Field(-0.35, gt=-0.95, lt=0.95)
    relapse_r: float = Field(-0.35, gt=-0.75, lt=0.75)
    relapse_rate: float = Field(0.38, gt=0.0, lt=1.0)
    age_mean: float = 42.0
    age_sd: float = Field(9.0, ge=0.0)
    age_min: float = 18.0
    age_max: float = 70.0
    female_fraction: float = Field(0.8, ge=0.0, le=1.0)
    reference_age: float = 42.0
    sd_growth_per_year: float = Field(0.01, ge=0.0, le=0.05)
    hemisphere_variance_fraction: float = Field(0.1, ge=0.0, lt=1.0)
    shared_iron_variance_fraction: float = Field(0.3, ge=0.0, lt=1.0)
    regions: dict[str, RegionValue] = Field(default_factory=_literature_regions)

    @field_validator("voxel_size_mm", "fov_mm")
    @classmethod
    def _positive(cls, value):
        if any(not (v > 0 and math.isfinite(v)) for v in value):
            raise ValueError("every entry must be a positive number")
        return value

    @field_validator("echo_times_s")
    @classmethod
    def _echo_times(cls, value):
        if len(value) < 1:
            raise ValueError("at least one echo time is needed")
        if any(not (t > 0) for t in value):
            raise ValueError("echo times are positive, in seconds")
        if any(b <= a for a, b in zip(value, value[1:])):
            raise ValueError("echo times must increase")
        if max(value) > 0.2:
            raise ValueError("echo times are in seconds (all below 0.2 s expected)")
        return value

    @model_validator(mode="after")
    def _consistent(self):
        missing = [name for name in (*BRAIN_TISSUES, *CIT168_REGIONS, *EXTRA_REGIONS)
                   if name not in self.regions]
        if missing:
            raise ValueError(f"regions lacks values for {', '.join(missing)}")
        unknown = [name for name in self.group_effect_d if name not in self.regions]
        if unknown or self.association_region not in self.regions:
            raise ValueError(f"unknown region(s) {', '.join(unknown or [self.association_region])}")
        if self.oblique_min_deg > self.oblique_max_deg:
            raise ValueError("oblique_min_deg must not exceed oblique_max_deg")
        if not self.age_min < self.age_max:
            raise ValueError("age_min must be below age_max")
        if max(self.echo_times_s) >= self.repetition_time_s:
            raise ValueError("the last echo time must be shorter than the repetition time")
        return self

    @property
    def matrix(self) -> tuple[int, int, int]:
        """Voxels per axis: the field of view divided by the voxel size, rounded."""
        return tuple(max(8, int(round(f / v))) for f, v in zip(self.fov_mm, self.voxel_size_mm))

    def effective_group_d(self) -> dict[str, float]:
        return dict(self.group_effect_d) if self.with_effects else {}

    def effective_sds_r(self) -> float:
        return self.sds_r if self.with_effects else 0.0

    def effective_relapse_r(self) -> float:
        return self.relapse_r if self.with_effects else 0.0
