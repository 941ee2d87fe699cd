"""A study over several measures: each analysed on its own, FDR within analysis x measure."""

import numpy as np
import pandas as pd
import pytest

from qsmiron.errors import InputError
from qsmiron.stats.analysis import run_study
from qsmiron.stats.measures import for_measure
from qsmiron.stats.multiple import fdr_bh
from qsmiron.stats.study import study_from_dict
from qsmiron.stats.write import write_results

NO_OUTCOMES = {"relapse": {"outcome": None}}


def _tidy(regions: pd.DataFrame, participants: pd.DataFrame, seed: int = 5) -> pd.DataFrame:
    """The simulated chi (whole brain) plus: chi under the CSF (a per-subject offset), R2* with
    a planted group difference in Pu (MOH higher), and chi+ without any effect."""
    rng = np.random.default_rng(seed)
    chi = regions.rename(columns={"mean_ppm": "mean"}).assign(measure="chi", reference="whole_brain")
    offset = dict(zip(participants.participant_id, rng.normal(-0.01, 0.004, len(participants))))
    csf = chi.assign(reference="csf", mean=chi["mean"] - chi["participant_id"].map(offset))
    moh = chi["participant_id"].map(dict(zip(participants.participant_id, participants.group == "MOH")))
    r2star = chi.assign(measure="r2star", reference=None,
                        mean=25.0 + rng.normal(0, 2.0, len(chi)) + np.where((chi["region"] == "Pu") & moh, 2.0, 0.0))
    para = chi.assign(measure="chi_para", reference=None, mean=0.05 + rng.normal(0, 0.01, len(chi)))
    return pd.concat([chi, csf, r2star, para], ignore_index=True)


def test_every_measure_is_analysed_with_its_own_fdr_family_and_the_planted_effect_found(cohort, tmp_path):
    regions, participants = cohort(n_a=60, n_b=50, d=-0.8, seed=2, regions=("VeP", "Pu"), outcomes=False)
    results = run_study(_tidy(regions, participants), participants, study_from_dict(NO_OUTCOMES))
    gc = results.group_comparison
    assert list(gc.columns[:4]) == ["measure", "unit", "region", "hemisphere"]
    assert list(dict.fromkeys(gc["measure"])) == ["chi", "r2star", "chi_para"]  # the table's order
    assert dict(zip(gc["measure"], gc["unit"])) == {"chi": "ppm", "r2star": "s^-1", "chi_para": "ppm"}
    assert results.settings.measures == ["chi", "r2star", "chi_para"] and results.settings.reference == "whole_brain"
    for measure, rows in gc.groupby("measure"):  # FDR within each measure's family
        assert np.allclose(rows["p_fdr"], fdr_bh(rows["p"].to_numpy(float)), equal_nan=True), measure
    r2star = gc[(gc["measure"] == "r2star") & (gc["region"] == "Pu")]
    assert (r2star["p_fdr"] < 0.05).all() and (r2star["mean_a"] > r2star["mean_b"]).all()
    assert (gc.loc[gc["measure"] == "chi_para", "p_fdr"] >= 0.05).all()
    vep = gc[(gc["measure"] == "chi") & (gc["region"] == "VeP")]
    assert (vep["p_fdr"] < 0.05).all()
    assert "(within each measure)" in results.settings.methods.multiple_comparisons
    associations = results.associations
    assert set(associations["measure"]) == {"chi", "r2star", "chi_para"}
    # The report's view of chi alone is the single-measure form.
    chi = for_measure(results)
    assert "measure" not in chi.group_comparison.columns and len(chi.group_comparison) == 4
    write_results(results, tmp_path)
    assert set(pd.read_csv(tmp_path / "group_comparison.tsv", sep="\t")["measure"]) == {"chi", "r2star", "chi_para"}


def test_the_study_file_chooses_the_measures_and_the_reference_of_chi(cohort):
    regions, participants = cohort(n_a=30, n_b=30, seed=3, regions=("VeP",), outcomes=False)
    tidy = _tidy(regions, participants)
    whole = run_study(tidy, participants, study_from_dict({**NO_OUTCOMES, "measures": ["chi"]}))
    csf = run_study(tidy, participants, study_from_dict({**NO_OUTCOMES, "measures": ["chi"], "reference": "csf"}))
    assert set(whole.group_comparison["measure"]) == {"chi"} and csf.settings.reference == "csf"
    # Under the CSF the values moved by each subject's offset (mean -0.01 ppm): the means follow.
    shift = csf.group_comparison["mean_a"].to_numpy() - whole.group_comparison["mean_a"].to_numpy()
    assert np.all((shift > 0.005) & (shift < 0.015))
    only = run_study(tidy, participants, study_from_dict({**NO_OUTCOMES, "measures": ["r2star"]}))
    assert set(only.group_comparison["measure"]) == {"r2star"} and only.settings.measures == ["r2star"]


def test_a_measure_or_reference_the_table_lacks_is_named(cohort):
    regions, participants = cohort(n_a=10, n_b=10, seed=4, regions=("VeP",), outcomes=False)
    with pytest.raises(InputError, match=r"measures 'chi_dia' are not in the regions table \(measures present: "
                                         r"chi, r2star, chi_para\)"):
        run_study(_tidy(regions, participants), participants, study_from_dict({"measures": ["chi_dia"]}))
    with pytest.raises(InputError, match=r"reference 'mask' is not in the regions table"):
        run_study(_tidy(regions, participants), participants, study_from_dict({"reference": "mask"}))
    with pytest.raises(InputError, match="measures"):
        study_from_dict({"measures": ["qsm"]})


def test_a_table_of_the_earlier_form_is_analysed_as_chi(cohort):
    regions, participants = cohort(n_a=20, n_b=20, seed=6, regions=("VeP",), outcomes=False)
    results = run_study(regions, participants, study_from_dict(NO_OUTCOMES))
    assert set(results.group_comparison["measure"]) == {"chi"} and results.settings.measures == ["chi"]


def test_each_measure_analyses_its_own_default_summary_and_the_record_names_each(cohort):
    regions, participants = cohort(n_a=30, n_b=30, d=-0.8, seed=3, regions=("VeP", "Pu"), outcomes=False)
    table = _tidy(regions, participants)
    # The chi rows get an interior-weighted median 0.01 ppm above their mean, R2* a median 1 s^-1 above its.
    table["median"] = table["mean"] + np.where(table["measure"] == "r2star", 1.0, 0.0)
    table["interior_median"] = table["mean"] + 0.01
    results = run_study(table, participants, study_from_dict({**NO_OUTCOMES, "measures": ["chi", "r2star"]}))
    assert results.settings.statistic_by_measure == {"chi": "interior_median", "r2star": "median"}
    gc = results.group_comparison
    chi = gc[(gc["measure"] == "chi") & (gc["region"] == "Pu") & (gc["hemisphere"] == "L")].iloc[0]
    raw = table[(table["measure"] == "chi") & (table["reference"] == "whole_brain") & (table["region"] == "Pu")
                & (table["hemisphere"] == "L")].merge(participants, on="participant_id")
    assert chi["mean_a"] == pytest.approx(raw.loc[raw["group"] == chi["group_a"], "mean"].mean() + 0.01, abs=1e-12)
    r2 = gc[(gc["measure"] == "r2star") & (gc["region"] == "Pu") & (gc["hemisphere"] == "L")].iloc[0]
    raw2 = table[(table["measure"] == "r2star") & (table["region"] == "Pu") & (table["hemisphere"] == "L")]
    raw2 = raw2.merge(participants, on="participant_id")
    assert r2["mean_a"] == pytest.approx(raw2.loc[raw2["group"] == r2["group_a"], "mean"].mean() + 1.0, abs=1e-9)
    text = results.settings.methods.regional_value
    assert text.startswith("for chi, each participant's regional value (value) is the interior-weighted median")
    assert "; for r2star, each participant's regional value (value) is the median" in text
