"""qsmiron: quantitative susceptibility mapping for clinical brain-iron studies.

From multi-echo gradient-echo magnitude and phase to regional susceptibility, cohort
statistics and a report, with every step a plain Python function.
"""

__version__ = "0.1.0"

GYROMAGNETIC_RATIO_HZ_PER_T = 42.577478518e6
"""gamma / (2 pi) of the proton, Hz/T (CODATA 2018)."""
