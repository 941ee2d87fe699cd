"""Realistic simulated cohorts with known truth, for the demo and for validation.

- ``settings``: ``SimulationSettings`` (acquisition, head position, tissue values, effects).
- ``phantom``: a head in MNI152NLin2009cAsym space from the template and CIT168 labels.
- ``clinical``: participants, clinical variables and regional iron with planted effects.
- ``subject``: one scan: head position, field by the dipole model, multi-echo signal.
- ``cohort``: ``simulate_cohort`` writes the BIDS dataset and ``derivatives/truth``.
- ``ellipsoid_head``: a small analytic head for the reconstruction's tests and benchmarks.
"""

from qsmiron.simulate.settings import SimulationSettings

__all__ = ["SimulationSettings", "simulate_cohort"]


def simulate_cohort(*args, **kwargs):
    """See ``qsmiron.simulate.cohort.simulate_cohort``."""
    from qsmiron.simulate.cohort import simulate_cohort as run

    return run(*args, **kwargs)
