"""Participants of a simulated cohort: demographics, clinical scores and regional iron.

Model (values from ``shared/docs/study-model.md``):

- Groups: MOH (chronic migraine with medication overuse) and CM (chronic migraine without),
  in the configured proportion, randomly ordered. Age normal (42 +- 9, clipped to the
  configured range), 80 % women.
- Susceptibility of region r, hemisphere h, subject i (ppm, relative to water)::

      chi = mu_r + slope_r (age_i - ref_age) + delta_r [i in MOH]
            + sd_r(age_i) (sqrt(1 - f_h) u_ri + sqrt(f_h) v_rhi)
      u_ri = sqrt(f_s) g_i + sqrt(1 - f_s) e_ri           (nuclei; GM and WM: u_ri = e_ri)
      sd_r(age) = sd_r max(0.5, 1 + growth (age - ref_age))

  with ``g`` a general iron factor shared by the nuclei (variance share ``f_s``), ``v`` a
  hemisphere-specific part (share ``f_h``), and the planted group shift
  ``delta_r = d_r sd_r``.
- Planted associations, within MOH, act through the association region's own component
  ``e`` (not the shared factor, so no other region inherits them): the latent SDS and the
  latent relapse propensity correlate with ``e`` so that the hemisphere-level correlation of
  susceptibility with SDS is ``sds_r`` (before rounding to integers) and its point-biserial
  correlation with relapse is ``relapse_r``. LDQ follows the latent SDS (r 0.6), so it
  inherits a weaker association (about 0.6 x sds_r); no other variable depends on iron.
- Clinical variables in their published ranges: disease duration (gamma, 13 +- 10 years,
  below age - 12), headache days per month 15-30 (MOH 25 +- 4.5, CM 22 +- 4.5), HIT-6 36-78
  (65 +- 5), MIDAS 0-270 (109 +- 57, following headache days), VAS 0-10 (8 +- 1.4), SDS 0-15
  (MOH 5.6, CM 2.7), LDQ 0-30 (MOH 12, CM 6).
- Follow-up after withdrawal (MOH only; n/a for CM): 12-24 months; relapse in
  ``relapse_rate`` of patients; ``time_to_relapse`` is the month of relapse, or the follow-up
  length when censored (use it with ``relapse`` as the event); ``relapse_count`` episodes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from qsmiron.simulate.settings import CIT168_REGIONS, EXTRA_REGIONS, SimulationSettings

NUCLEI = (*CIT168_REGIONS, *EXTRA_REGIONS)

PARTICIPANT_COLUMNS = ("participant_id", "group", "age", "sex", "disease_duration",
                       "headache_days", "hit6", "midas", "vas", "sds", "ldq", "relapse",
                       "relapse_count", "followup_months", "time_to_relapse")

PARTICIPANTS_JSON = {
    "participant_id": {"Description": "Participant label"},
    "group": {"Description": "Patient group",
              "Levels": {"MOH": "chronic migraine with medication overuse",
                         "CM": "chronic migraine without medication overuse"}},
    "age": {"Description": "Age at the scan", "Units": "years"},
    "sex": {"Description": "Sex", "Levels": {"F": "female", "M": "male"}},
    "disease_duration": {"Description": "Years since migraine onset", "Units": "years"},
    "headache_days": {"Description": "Headache days per month at baseline", "Units": "days/month"},
    "hit6": {"Description": "Headache Impact Test (HIT-6), 36-78"},
    "midas": {"Description": "Migraine Disability Assessment (MIDAS), 0-270"},
    "vas": {"Description": "Pain intensity, visual analogue scale 0-10"},
    "sds": {"Description": "Severity of Dependence Scale, 0-15"},
    "ldq": {"Description": "Leeds Dependence Questionnaire, 0-30"},
    "relapse": {"Description": "Relapse after withdrawal during follow-up (MOH only)",
                "Levels": {"0": "no relapse", "1": "relapse"}},
    "relapse_count": {"Description": "Relapse episodes during follow-up (MOH only)"},
    "followup_months": {"Description": "Length of follow-up after withdrawal (MOH only)",
                        "Units": "months"},
    "time_to_relapse": {"Description": "Months from withdrawal to relapse, or to the end of "
                                       "follow-up when there was none (censored; event = relapse)",
                        "Units": "months"},
}


@dataclass
class CohortSample:
    """The drawn cohort: participants table and each subject's regional susceptibility.

    Attributes
    ----------
    participants : DataFrame
        One row per subject, columns ``PARTICIPANT_COLUMNS`` (NaN for n/a).
    region_chi : DataFrame
        Long form: participant_id, region, hemisphere ("L"/"R", or "" for CSF/GM/WM),
        chi_ppm relative to water (before the whole-brain reference).
    latent : dict
        The latent variables and the correlations used, for the truth files.
    """

    participants: pd.DataFrame
    region_chi: pd.DataFrame
    latent: dict

    def chi_by_subject(self, participant_id: str) -> dict:
        """(region, hemisphere or None) -> ppm for one subject, as the phantom expects."""
        rows = self.region_chi[self.region_chi["participant_id"] == participant_id]
        values = {}
        for row in rows.itertuples():
            values[(row.region, row.hemisphere or None)] = float(row.chi_ppm)
        return values


def subject_labels(n_subjects: int) -> list[str]:
    width = max(2, len(str(n_subjects)))
    return [f"sub-{i:0{width}d}" for i in range(1, n_subjects + 1)]


def _truncated_normal(rng, mean, sd, low, high, size):
    a, b = (low - mean) / sd, (high - mean) / sd
    return stats.truncnorm.rvs(a, b, loc=mean, scale=sd, size=size, random_state=rng)


def _latent_r(target: float, *factors: float) -> float:
    value = target
    for factor in factors:
        value /= factor
    return float(np.clip(value, -0.95, 0.95))


def _regional_chi(ids, moh, age, general, own, hemi, settings: SimulationSettings) -> pd.DataFrame:
    """Each participant's regional susceptibility from the drawn components (no new draws)."""
    f_s = settings.shared_iron_variance_fraction
    f_h = settings.hemisphere_variance_fraction
    group_d = settings.effective_group_d()
    rows = []
    for name, value in settings.regions.items():
        if name in NUCLEI:
            u = np.sqrt(f_s) * general + np.sqrt(1.0 - f_s) * own[name]
        else:
            u = own[name]
        sd = value.sd_ppm * np.maximum(0.5, 1.0 + settings.sd_growth_per_year
                                       * (age - settings.reference_age))
        base = (value.chi_ppm + value.age_slope_ppb_per_year * 1e-3 * (age - settings.reference_age)
                + group_d.get(name, 0.0) * value.sd_ppm * moh)
        if name in NUCLEI:
            for k, side in enumerate(("L", "R")):
                chi = base + sd * (np.sqrt(1.0 - f_h) * u + np.sqrt(f_h) * hemi[name][k])
                rows += [{"participant_id": i, "region": name, "hemisphere": side,
                          "chi_ppm": float(c)} for i, c in zip(ids, chi)]
        else:
            chi = base + sd * u
            rows += [{"participant_id": i, "region": name, "hemisphere": "", "chi_ppm": float(c)}
                     for i, c in zip(ids, chi)]
    return pd.DataFrame(rows)


def sample_cohort(n_subjects: int, rng: np.random.Generator,
                  settings: SimulationSettings) -> CohortSample:
    """Draw the participants and their regional susceptibility."""
    n = int(n_subjects)
    ids = subject_labels(n)
    n_moh = int(np.floor(n * settings.moh_fraction + 0.5))
    groups = np.array(["MOH"] * n_moh + ["CM"] * (n - n_moh))[rng.permutation(n)]
    moh = groups == "MOH"
    age = np.rint(np.clip(rng.normal(settings.age_mean, settings.age_sd, n),
                          settings.age_min, settings.age_max))
    sex = np.where(rng.random(n) < settings.female_fraction, "F", "M")

    # Regional susceptibility.
    f_s = settings.shared_iron_variance_fraction
    f_h = settings.hemisphere_variance_fraction
    general = rng.standard_normal(n)
    own = {name: rng.standard_normal(n) for name in settings.regions}
    hemi = {name: rng.standard_normal((2, n)) for name in settings.regions}
    region_chi = _regional_chi(ids, moh, age, general, own, hemi, settings)

    # Latent clinical drivers. The association acts through the region's own component.
    driver = own[settings.association_region]
    own_share = np.sqrt(1.0 - f_s) if settings.association_region in NUCLEI else 1.0
    hemi_share = np.sqrt(1.0 - f_h) if settings.association_region in NUCLEI else 1.0
    relapse_rate = settings.relapse_rate
    threshold = float(stats.norm.ppf(1.0 - relapse_rate))
    biserial = float(stats.norm.pdf(threshold) / np.sqrt(relapse_rate * (1.0 - relapse_rate)))
    r_sds = _latent_r(settings.effective_sds_r(), own_share, hemi_share)
    r_relapse = _latent_r(settings.effective_relapse_r(), own_share, hemi_share, biserial)

    noise = rng.standard_normal((8, n))
    sds_latent = np.where(moh, r_sds * driver + np.sqrt(1.0 - r_sds ** 2) * noise[0], noise[0])
    sds = np.clip(np.rint(np.where(moh, 5.6 + 2.6 * sds_latent, 2.7 + 2.0 * sds_latent)), 0, 15)
    ldq_latent = 0.6 * sds_latent + 0.8 * noise[1]
    ldq = np.clip(np.rint(np.where(moh, 12.0 + 5.0 * ldq_latent, 6.0 + 4.0 * ldq_latent)), 0, 30)

    headache_days = np.rint(np.where(
        moh, _truncated_normal(rng, 25.0, 4.5, 15.0, 30.0, n),
        _truncated_normal(rng, 22.0, 4.5, 15.0, 30.0, n)))
    days_z = (headache_days - 23.5) / 4.5
    hit6 = np.clip(np.rint(65.0 + 5.0 * (0.3 * days_z + np.sqrt(1 - 0.09) * noise[2])), 36, 78)
    midas = np.clip(np.rint(109.0 + 57.0 * (0.4 * days_z + np.sqrt(1 - 0.16) * noise[3])), 0, 270)
    vas = np.clip(np.round(8.0 + 1.4 * noise[4], 1), 0.0, 10.0)
    shape, scale = (13.0 / 10.0) ** 2, 10.0 ** 2 / 13.0
    duration = np.round(np.clip(rng.gamma(shape, scale, n), 0.5, np.maximum(age - 12.0, 0.5)), 1)

    relapse_latent = r_relapse * driver + np.sqrt(1.0 - r_relapse ** 2) * noise[5]
    followup = 12.0 + rng.integers(0, 13, n)
    relapse = (relapse_latent > threshold).astype(float)
    fraction = rng.beta(1.3, 2.5, n)
    time_to_relapse = np.where(relapse == 1, np.maximum(1.0, np.round(followup * fraction, 1)),
                               followup)
    excess = np.maximum(relapse_latent - threshold, 0.0)
    relapse_count = np.where(relapse == 1, 1 + rng.poisson(0.5 + 0.8 * excess), 0).astype(float)
    for column in (relapse, relapse_count, followup, time_to_relapse):
        column[~moh] = np.nan

    participants = pd.DataFrame({
        "participant_id": ids, "group": groups, "age": age.astype(int), "sex": sex,
        "disease_duration": duration, "headache_days": headache_days.astype(int),
        "hit6": hit6.astype(int), "midas": midas.astype(int), "vas": vas,
        "sds": sds.astype(int), "ldq": ldq.astype(int),
        "relapse": pd.array(np.where(moh, relapse, np.nan), dtype="Int64"),
        "relapse_count": pd.array(relapse_count, dtype="Int64"),
        "followup_months": pd.array(followup, dtype="Int64"),
        "time_to_relapse": time_to_relapse,
    }, columns=list(PARTICIPANT_COLUMNS))
    latent = {
        "association_region": settings.association_region,
        "latent_r_sds": r_sds, "latent_r_relapse": r_relapse,
        "relapse_threshold_z": threshold, "biserial_factor": biserial,
        "own_component_share": float(own_share), "hemisphere_share": float(hemi_share),
    }
    return CohortSample(participants=participants, region_chi=region_chi, latent=latent)
