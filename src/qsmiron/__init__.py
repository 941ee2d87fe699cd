"""qsmiron: quantitative susceptibility mapping for clinical brain-iron studies.

From multi-echo gradient-echo magnitude and phase to regional susceptibility, cohort
statistics and a report, with every step a plain Python function.
"""

__version__ = "0.1.0"

CODE_URL: str | None = None
"""Where qsmiron's source code is published (``GeneratedBy.CodeURL`` of its derivative
datasets); None until the repository has a public address, and then CodeURL is left out."""

GYROMAGNETIC_RATIO_HZ_PER_T = 42.577478518e6
"""gamma / (2 pi) of the proton, Hz/T (CODATA 2018)."""


def ppm_per_hz(field_strength_t: float) -> float:
    """The factor from a field in Hz to a relative field in ppm of B0."""
    return 1e6 / (GYROMAGNETIC_RATIO_HZ_PER_T * float(field_strength_t))
