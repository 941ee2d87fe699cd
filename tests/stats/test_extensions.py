"""The optional regional sections run together in the group level's order, and their records."""

import importlib.util
from pathlib import Path

import numpy as np
import pandas as pd

from qsmiron.io.derivatives import extension_paths
from qsmiron.records.study import AnalysisSettings
from qsmiron.stats.extensions import run_regional_extensions
from qsmiron.stats.study import study_from_dict


def _longitudinal_cases():
    spec = importlib.util.spec_from_file_location("longitudinal_cases", Path(__file__).with_name("test_longitudinal.py"))
    cases = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cases)
    return cases


def test_harmonise_then_longitudinal_and_normative_write_their_tables_and_records(tmp_path):
    regions, participants, sessions = _longitudinal_cases()._cohort(n_per_group=10, seed=3)
    participants.frame["site"] = np.where(np.arange(len(participants.frame)) % 2 == 0, "A", "B")
    study = study_from_dict({"groups": {"compare": ["MOH", "CM"]}, "covariates": ["age"],
                             "harmonise": {"batch": "site"}, "longitudinal": {"time": "months"},
                             "normative": {"reference_group": "CM", "covariates": ["age"]}})
    result = run_regional_extensions(regions, participants, study, extension_paths(tmp_path), sessions=sessions)
    assert {p.name for p in result.files.values()} == {"regions_harmonised.tsv", "harmonise_site_effects.tsv",
                                                       "longitudinal.tsv", "normative.tsv"}
    harmonised = pd.read_csv(tmp_path / "regions_harmonised.tsv", sep="\t")
    assert list(harmonised.columns) == list(regions.columns)
    assert not np.allclose(harmonised["mean"], regions["mean"])
    assert result.regions_source == str(tmp_path / "regions_harmonised.tsv")
    # the longitudinal models ran on the harmonised values
    longitudinal = pd.read_csv(tmp_path / "longitudinal.tsv", sep="\t")
    assert len(result.longitudinal.terms) == len(longitudinal) == 2 * 5
    assert [row.region for row in result.longitudinal.interactions] == ["VeP", "Pu"]
    normative = pd.read_csv(tmp_path / "normative.tsv", sep="\t")
    assert set(normative["session"]) == {"ses-1", "ses-2", "ses-3"}
    assert [item.session for item in result.normative.sessions] == ["ses-1", "ses-2", "ses-3"]
    assert sum(item.n_outliers for item in result.normative.sessions) == int(normative["outlier"].sum())
    assert "not population norms" in result.normative.methods and "CM group (n = 10)" in result.normative.methods
    # 20 participants in each of 3 sessions, two sites
    assert result.harmonisation.n_harmonised == 60 and result.harmonisation.sessions == ["ses-1", "ses-2", "ses-3"]
    assert len(result.harmonisation.site_effects) == 3 * 2 * 2
    assert result.harmonisation.files == {"regions_harmonised": "regions_harmonised.tsv",
                                          "site_effects": "harmonise_site_effects.tsv"}


def test_attach_puts_one_sessions_rows_and_relative_files_into_a_sessions_results(tmp_path):
    from qsmiron.stats.analysis import run_study

    regions, participants, sessions = _longitudinal_cases()._cohort(n_per_group=6, seed=4)
    participants.frame["site"] = np.where(np.arange(len(participants.frame)) % 2 == 0, "A", "B")
    study = study_from_dict({"groups": {"compare": ["MOH", "CM"]}, "covariates": ["age"],
                             "harmonise": {"batch": "site"}, "normative": {"reference_group": "CM",
                                                                           "covariates": ["age"]}})
    result = run_regional_extensions(regions, participants, study, extension_paths(tmp_path), sessions=sessions)
    at_two = study.model_copy(update={"session": "ses-2"})
    results = run_study(result.regions, participants, at_two)
    result.attach(results, "ses-2", tmp_path / "ses-2")
    assert {row.session for row in results.harmonisation.site_effects} == {"ses-2"}
    assert results.harmonisation.files["regions_harmonised"] == "../regions_harmonised.tsv"
    assert [item.session for item in results.normative.sessions] == ["ses-2"]
    assert all(item.session == "ses-2" for item in results.normative.outliers)
    assert results.longitudinal is None
    # the record of the whole (unfiltered) run is unchanged
    assert {row.session for row in result.harmonisation.site_effects} == {"ses-1", "ses-2", "ses-3"}
    assert isinstance(results.settings, AnalysisSettings)
