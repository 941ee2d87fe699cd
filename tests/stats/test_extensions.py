"""The optional regional sections run together in the group level's order."""

import importlib.util
from pathlib import Path

import numpy as np
import pandas as pd

from qsmiron.stats.extensions import run_regional_extensions
from qsmiron.stats.study import study_from_dict


def test_harmonise_then_longitudinal_and_normative_write_their_tables(tmp_path):
    spec = importlib.util.spec_from_file_location("longitudinal_cases", Path(__file__).with_name("test_longitudinal.py"))
    cases = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cases)
    regions, participants, sessions = cases._cohort(n_per_group=10, seed=3)
    participants["site"] = np.where(np.arange(len(participants)) % 2 == 0, "A", "B")
    study = study_from_dict({"groups": {"compare": ["MOH", "CM"]}, "covariates": ["age"],
                             "harmonise": {"batch": "site"}, "longitudinal": {"time": "months"},
                             "normative": {"reference_group": "CM", "covariates": ["age"]}})
    result = run_regional_extensions(regions, participants, study, tmp_path, sessions=sessions)
    assert {p.name for p in result.files.values()} == {"regions_harmonised.tsv", "harmonise_site_effects.tsv",
                                                       "longitudinal.tsv", "normative.tsv"}
    harmonised = pd.read_csv(tmp_path / "regions_harmonised.tsv", sep="\t")
    assert list(harmonised.columns) == list(regions.columns)
    assert not np.allclose(harmonised["mean_ppm"], regions["mean_ppm"])
    # the longitudinal models ran on the harmonised values
    assert result.longitudinal is not None and len(result.longitudinal.table) == 2 * 5
    normative = pd.read_csv(tmp_path / "normative.tsv", sep="\t")
    assert set(normative["session"]) == {"ses-1", "ses-2", "ses-3"}
    assert set(result.methods) == {"harmonisation", "longitudinal", "normative"}
    assert "not population norms" in result.methods["normative"]
