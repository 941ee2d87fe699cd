"""What the iron-specific maps of a reconstruction are: R2* (``R2starInfo``) and chi-separation
(``ChiSeparationInfo``), or why they were not made.

Both are built by the reconstruction stages from what the methods returned, carried by the
``ReconRecord`` (``r2star``, ``chi_separation``), written into the maps' sidecars and read by
the methods paragraph. Kept apart from ``qsmiron.records.recon`` so that the stages, which
fill them, do not import the configuration.
"""

from __future__ import annotations

from pydantic import Field

from qsmiron.records.base import Record


class R2starInfo(Record):
    """How the R2*, T2* and S0 maps were made.

    Attributes
    ----------
    method : str
        The declared method (``qsmiron.recon.r2star.METHODS``); ``none`` when no map was made.
    skipped : str or None
        Why there is no map (fewer than 3 echoes, not asked for); None when there is one.
    echo_times_s : list of float
    noise_sigma : float or None
        Noise SD per channel, magnitude units, and ``noise_estimate`` how it was obtained.
    floor_factor : float or None
        Echoes below ``floor_factor x noise_sigma`` were not used.
    n_voxels, n_valid : int
        Voxels fitted (the brain mask) and those with a trustworthy fit (the R2* mask).
    masked : dict
        Reason -> voxels without a fit.
    median_r2star_per_s : float or None
        Median R2* over the valid voxels, s^-1.
    """

    method: str
    skipped: str | None = None
    echo_times_s: list[float] = Field(default_factory=list)
    noise_sigma: float | None = None
    noise_estimate: str | None = None
    floor_factor: float | None = None
    n_voxels: int = 0
    n_valid: int = 0
    masked: dict[str, int] = Field(default_factory=dict)
    median_r2star_per_s: float | None = None


class ChiSeparationInfo(Record):
    """How the paramagnetic and diamagnetic maps were made, and what R2' they rest on.

    Attributes
    ----------
    method : str
        The declared method (``qsmiron.recon.chisep.METHODS``); ``none`` when not made.
    skipped : str or None
        Why there are no maps; None when there are.
    approximation : bool
        True when R2' came from the pseudo-R2 approximation (no measured R2 map): the maps are
        then an approximation and must be labelled so.
    r2_source : str or None
        Where R2 came from, in words.
    r2_map : str or None
        The R2 map file, when one was given.
    pseudo_r2_intercept_per_s, pseudo_r2_slope : float or None
        The approximation's constants (``R2 = intercept + slope x R2*``), its ``pseudo_r2_model``
        and ``pseudo_r2_reference``; None with a measured R2.
    dr_hz_per_ppm : float or None
        Relaxometric constant R2' / |chi| used, and ``dr_source``.
    field_strength_t : float or None
    alpha : float or None
        TV weight (ppm mm) and ``alpha_source``.
    iterations : int or None
    converged : bool or None
    """

    method: str
    skipped: str | None = None
    approximation: bool = False
    r2_source: str | None = None
    r2_map: str | None = None
    pseudo_r2_intercept_per_s: float | None = None
    pseudo_r2_slope: float | None = None
    pseudo_r2_model: str | None = None
    pseudo_r2_reference: str | None = None
    dr_hz_per_ppm: float | None = None
    dr_source: str | None = None
    field_strength_t: float | None = None
    alpha: float | None = None
    alpha_source: str | None = None
    iterations: int | None = None
    converged: bool | None = None
