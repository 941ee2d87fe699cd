"""Agreement of the regional models with their references, printed as figures.

- ComBat (``qsmiron.stats.harmonise``) against neuroCombat called directly and against
  neuroHarmonize (when installed), on a simulated 3-site cohort of 200 participants x 32
  regions: the largest difference relative to the largest value (target <= 1e-6).
- The mixed-model wrapper (``qsmiron.stats.longitudinal.fit_random_intercept``) against lme4:
  sleepstudy (lme4's published ``lmer(Reaction ~ Days + (1 | Subject))`` results) and the
  lme4 fits statsmodels ships with its tests; the largest relative difference of estimates
  and standard errors (target <= 1e-4), beside statsmodels' own standard errors.
- Normative z-scores: the share of |z| > 2.5 among new participants drawn from the reference
  distribution, for reference groups of 8, 15 and 40 (nominal 1.24 %), with our predictive
  z and with a naive z that ignores the prediction error of the reference fit.

    .venv/bin/python benchmarks/bench_models.py
"""

from __future__ import annotations

import contextlib
import io
import sys
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "stats"))


def combat_agreement() -> None:
    from test_harmonise import STUDY, _multisite, _reference_matrix
    from neuroCombat import neuroCombat

    from qsmiron.stats.harmonise import harmonise_regions

    regions, participants = _multisite(n=200, seed=11)
    result = harmonise_regions(regions, participants, STUDY)
    wide, table = _reference_matrix(regions, participants)
    ours = result.regions.pivot(index="participant_id", columns=["region", "hemisphere"],
                                values="mean_ppm").loc[wide.index, wide.columns].to_numpy()
    covars = table[["site", "group", "age", "sex"]].reset_index(drop=True)
    with contextlib.redirect_stdout(io.StringIO()):
        reference = neuroCombat(wide.to_numpy(float).T, covars, "site", categorical_cols=["group", "sex"],
                                continuous_cols=["age"])["data"].T
    print(f"ComBat vs neuroCombat: max |diff| / max |value| = "
          f"{np.max(np.abs(ours - reference)) / np.max(np.abs(reference)):.1e} (target <= 1e-6)")
    try:
        from neuroHarmonize import harmonizationLearn
    except ImportError:
        print("neuroHarmonize not installed: skipped")
        return
    numeric = pd.DataFrame({"SITE": table["site"].to_numpy(), "moh": (table["group"] == "MOH").to_numpy(float),
                            "age": table["age"].to_numpy(float), "male": (table["sex"] == "M").to_numpy(float)})
    with contextlib.redirect_stdout(io.StringIO()):
        _, second = harmonizationLearn(wide.to_numpy(float), numeric)
    print(f"ComBat vs neuroHarmonize: max |diff| / max |value| = "
          f"{np.max(np.abs(ours - second)) / np.max(np.abs(second)):.1e}")
    effects = result.site_effects.drop_duplicates(["region", "hemisphere"])
    print(f"site F test p across {len(effects)} regions: median before {effects['p_before'].median():.1e}, "
          f"median after {effects['p_after'].median():.2f}")


def lme4_agreement() -> None:
    import statsmodels.api as sm
    from importlib.util import find_spec

    from qsmiron.stats.longitudinal import fit_random_intercept

    data = pd.read_csv(ROOT / "tests" / "stats" / "data" / "sleepstudy.csv")
    exog = pd.DataFrame({"intercept": 1.0, "Days": data["Days"]})
    fit = fit_random_intercept(data["Reaction"], exog, data["Subject"])
    published = {"estimate": [251.405104848485, 10.467285959595], "se": [9.7467163, 0.8042214]}
    print("sleepstudy vs lme4: max relative difference estimates "
          f"{np.max(np.abs(fit['estimate'] / published['estimate'] - 1)):.1e}, SEs "
          f"{np.max(np.abs(fit['se'] / published['se'] - 1)):.1e} (target <= 1e-4)")
    spec = find_spec("statsmodels.regression.tests.results.lme_r_results")
    if spec is None:
        return
    from statsmodels.regression.tests.results import lme_r_results as reference

    for dataset in (2, 3, 4, 5):
        frame = pd.read_csv(Path(spec.origin).parent / f"lme{dataset:02d}.csv")
        x = frame[[c for c in frame.columns if c.startswith("exog_fe")]]
        fit = fit_random_intercept(frame["endog"], x, frame["groups"])
        coef = getattr(reference, f"coef_reml_drf_{dataset}")
        se = np.sqrt(np.diag(getattr(reference, f"vcov_reml_drf_{dataset}")))
        plain = sm.MixedLM(frame["endog"].to_numpy(), x.to_numpy(float), groups=frame["groups"]).fit(reml=True)
        print(f"statsmodels lme{dataset:02d} vs lme4: estimates {np.max(np.abs(fit['estimate'] / coef - 1)):.1e}, "
              f"SEs {np.max(np.abs(fit['se'] / se - 1)):.1e} (statsmodels' own bse_fe: "
              f"{np.max(np.abs(plain.bse_fe / se - 1)):.1e})")


def normative_calibration() -> None:
    from test_normative import STUDY, _cohort

    from qsmiron.stats.normative import normative_scores

    for n_ref in (8, 15, 40):
        regions, participants = _cohort(n_ref=n_ref, n_patients=20, n_regions=500, seed=n_ref)
        table = normative_scores(regions, participants, STUDY).table
        new = table[~table["in_reference"]]
        # naive: residual over the reference fit's residual SD, read as a normal z
        merged = regions.merge(participants.frame, on="participant_id")
        naive = []
        for _, frame in merged.groupby("region"):
            x = np.column_stack([np.ones(len(frame)), frame["age"], (frame["sex"] == "M").astype(float)])
            reference = (frame["group"] == "HC").to_numpy()
            beta, *_ = np.linalg.lstsq(x[reference], frame["mean_ppm"].to_numpy()[reference], rcond=None)
            residual = frame["mean_ppm"].to_numpy() - x @ beta
            sd = np.sqrt(np.sum(residual[reference] ** 2) / (reference.sum() - 3))
            naive += list(residual[~reference] / sd)
        print(f"reference n = {n_ref}: |z| > 2.5 in {100 * np.mean(np.abs(new['z']) > 2.5):.2f} % of {len(new)} new "
              f"participants with the predictive z, {100 * np.mean(np.abs(np.asarray(naive)) > 2.5):.2f} % with a "
              "naive residual / SD z (nominal 1.24 %)")


if __name__ == "__main__":
    combat_agreement()
    lme4_agreement()
    normative_calibration()
