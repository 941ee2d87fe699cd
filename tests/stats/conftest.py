"""A small simulated migraine cohort with known planted effects (study-model.md values)."""

import numpy as np
import pandas as pd
import pytest

from qsmiron.io.participants import ParticipantsTable

# region: (mean ppm, between-subject SD ppm) from ../shared/docs/study-model.md
REGION_VALUES = {"Pu": (0.06, 0.02), "VeP": (0.07, 0.02), "GPe": (0.14, 0.025),
                 "Ca": (0.06, 0.015)}


DATA_DICTIONARY = {
    "age": {"Description": "Age at the scan", "Units": "years"},
    "sds": {"LongName": "Severity of Dependence Scale", "Description": "0-15"},
    "time_to_relapse": {"Description": "Months to relapse or censoring", "Units": "months"},
    "followup_months": {"Units": "months"},
}
"""What participants.json says about the simulated columns (see :func:`described`)."""

OUTCOME_COLUMNS = ["relapse", "time_to_relapse", "relapse_event", "relapse_count",
                   "followup_months"]


def simulate_study(n_a=100, n_b=80, *, d=-0.8, r=-0.4, relapse_log_or=-1.0, seed=0,
                   effect_region="VeP", groups=("MOH", "CM"), regions=tuple(REGION_VALUES),
                   outcomes=True):
    """Regions (long) and participants tables with planted effects in ``effect_region``.

    - group difference: group_a shifted by ``d`` between-subject SDs (both hemispheres);
    - association: within group_a, SDS = 5.6 + 2.5 (r z + sqrt(1 - r^2) e) with z the
      standardised left ``effect_region`` chi, so corr(chi_L, SDS) = r in expectation;
    - relapse (group_a): logit P = -0.6 + relapse_log_or z; hazard 0.05 exp(relapse_log_or z)
      per month, censored at 12 months; counts NB2 with mean exp(0.3 + 0.4 relapse_log_or z).
    Other regions, disease_duration and hit6 carry no effect. ``outcomes=False`` leaves the
    relapse columns out (no outcome models run by default then).
    """
    rng = np.random.default_rng(seed)
    n = n_a + n_b
    group = np.array([groups[0]] * n_a + [groups[1]] * n_b)
    age = rng.normal(42, 9, n)
    sex = np.where(rng.random(n) < 0.25, "M", "F")
    ids = [f"sub-{i:03d}" for i in range(1, n + 1)]
    rows, chi = [], {}
    for region in regions:
        mean, sd = REGION_VALUES[region]
        shared = rng.normal(size=n)
        for hemisphere in ("L", "R"):
            z = 0.9 * shared + np.sqrt(1 - 0.81) * rng.normal(size=n)
            values = mean + 0.0004 * (age - 42) + sd * z
            if region == effect_region:
                values = values + np.where(group == groups[0], d * sd, 0.0)
            chi[(region, hemisphere)] = values
            rows += [{"participant_id": pid, "region": region, "hemisphere": hemisphere,
                      "mean_ppm": value, "n_voxels": 100} for pid, value in zip(ids, values)]
    a = group == groups[0]
    x = chi[(effect_region, "L")][a]
    z = (x - x.mean()) / x.std()
    participants = pd.DataFrame({
        "participant_id": ids, "group": group, "age": age.round(1), "sex": sex,
        "disease_duration": np.abs(rng.normal(13, 8, n)).round(1),
        "hit6": rng.normal(65, 5, n).round(0)})

    def in_a(values):
        full = np.full(n, np.nan)
        full[a] = values
        return full

    participants["sds"] = in_a(5.6 + 2.5 * (r * z + np.sqrt(1 - r * r) * rng.normal(size=a.sum())))
    participants["relapse"] = in_a(
        (rng.random(a.sum()) < 1 / (1 + np.exp(0.6 - relapse_log_or * z))).astype(float))
    time = rng.exponential(1 / (0.05 * np.exp(relapse_log_or * z)))
    participants["time_to_relapse"] = in_a(np.minimum(time, 12.0))
    participants["relapse_event"] = in_a((time < 12.0).astype(float))
    mu = np.exp(0.3 + 0.4 * relapse_log_or * z)
    participants["relapse_count"] = in_a(rng.negative_binomial(2, 2 / (2 + mu)).astype(float))
    participants["followup_months"] = in_a(np.full(a.sum(), 12.0))
    if not outcomes:
        participants = participants.drop(columns=OUTCOME_COLUMNS)
    return pd.DataFrame(rows), participants


def _described(participants: pd.DataFrame) -> ParticipantsTable:
    return ParticipantsTable(participants, source="participants.tsv", data_dictionary=DATA_DICTIONARY)


@pytest.fixture(scope="session")
def cohort():
    """The simulator itself, so tests choose sizes, effects and seeds."""
    return simulate_study


@pytest.fixture(scope="session")
def described():
    """Simulated participants -> a ``ParticipantsTable`` with their participants.json (as
    ``read_participants`` gives it); a bare DataFrame has no data dictionary."""
    return _described
