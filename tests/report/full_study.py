"""A study analysed by the real statistics, with chi and R2*, declared primary regions and every
optional section's record, for the tests of what the report shows (answers, other measures,
sections, downloads) and for the browser checks.

The optional sections' records are built by hand (their numbers are not under test here, only
how the report shows them); the voxel-wise figure is a small PNG written beside the report, as
``qsmiron voxelwise`` writes it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from qsmiron.records.extensions import (HarmonisationRecord, LongitudinalRecord, LongitudinalTerm, NormativeOutlier,
                                        NormativeRecord, NormativeSession, SiteEffect, VoxelwiseCluster,
                                        VoxelwiseContrast, VoxelwiseRecord)
from qsmiron.records.regions import AtlasInfo
from qsmiron.stats.study_sections import VoxelwiseSettings

STUDY = {"covariates": ["age", "sex"], "primary_regions": ["VeP", "Pu"],
         "groups": {"column": "group", "compare": ["MOH", "CM"]},
         "associations": {"group": "MOH", "variables": ["sds", "hit6"], "primary_variables": ["sds"]},
         "relapse": {"group": "MOH", "outcome": "relapse", "time": "time_to_relapse", "count": "relapse_count",
                     "bootstrap": 40, "cv_repeats": 3}}


def with_r2star(regions: pd.DataFrame, seed: int = 5) -> pd.DataFrame:
    """The chi table (``mean_ppm``) in today's long form with an R2* row per chi row."""
    rng = np.random.default_rng(seed)
    chi = regions.rename(columns={"mean_ppm": "mean"})[["participant_id", "region", "hemisphere", "mean"]]
    chi = chi.assign(measure="chi", reference="whole_brain", unit="ppm")
    r2star = chi.assign(measure="r2star", reference="n/a", unit="s^-1",
                        mean=18.0 + 150.0 * chi["mean"] + rng.normal(0, 1.0, len(chi)))
    return pd.concat([chi, r2star], ignore_index=True)


def section_records(folder: Path) -> dict:
    """Hand-built records of ``[harmonise]``, ``[longitudinal]``, ``[normative]`` and ``[voxelwise]``."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(3, 1))
    figure.subplots().imshow(np.eye(8))
    figure.savefig(folder / "voxelwise_group.png", dpi=40)
    effects = [SiteEffect(region="VeP", hemisphere=h, site=site, n=12, mean_before=0.05 + 0.01 * (site == "B"),
                          sd_before=0.01, mean_after=0.055, sd_after=0.01, F_before=9.1,
                          p_before=0.006, F_after=0.02, p_after=0.89) for h in "LR" for site in "AB"]
    harmonisation = HarmonisationRecord(method="combat", batch="site", empirical_bayes=True, preserved=["group", "age"],
                                        implementation="neuroCombat 0.2.12", n_harmonised=24,
                                        methods="ComBat harmonisation text.", site_effects=effects)
    terms = [LongitudinalTerm(region="VeP", hemisphere=h, term=term, estimate=0.0004, se=0.0001, p=0.001,
                              p_fdr=0.004, n=48, n_participants=24) for h in "LR" for term in ("time", "group:time")]
    longitudinal = LongitudinalRecord(time="months", group_column="group", group_a="MOH", group_b="CM",
                                      covariates=["age"], sessions=["ses-1", "ses-2"],
                                      methods="Mixed model text.", terms=terms)
    normative = NormativeRecord(reference_group="CM", group_column="group", covariates=["age"], terms=["age"],
                                outlier_z=2.5, methods="Normative text.",
                                sessions=[NormativeSession(n_reference=12, n_scored=24, n_outliers=1)],
                                outliers=[NormativeOutlier(participant_id="sub-03", group="MOH", region="VeP",
                                                           hemisphere="L", chi_ppm=0.01, expected_ppm=0.08,
                                                           z=-3.1, in_reference=False)])
    atlas = AtlasInfo(name="cit168", space="MNI152NLin2009cAsym", source="built-in", n_labels=28,
                      hemisphere_sources=["name"])
    voxelwise = VoxelwiseRecord(
        qsmiron_version="test", settings=VoxelwiseSettings(n_permutations=99), mask="subcortical mask (1000 voxels)",
        n_voxels=1000, space="MNI152NLin2009cAsym", grid="1 mm", group_column="group", groups=["MOH", "CM"],
        covariates=["age"], association_group="MOH", association_variables=["sds"], atlas=atlas,
        derivatives_dir="derivatives", methods="Voxel-wise text.",
        contrasts=[VoxelwiseContrast(contrast="MOH vs CM", key="group-MOHvsCM", kind="group", sample="all", n=24,
                                     n_voxels=1000, max_abs_t=5.2, min_p_fwe=0.01, n_clusters=1,
                                     figure="voxelwise_group.png")],
        clusters=[VoxelwiseCluster(contrast="MOH vs CM", cluster_id=1, n_voxels=40, peak_x_mm=-12.0, peak_y_mm=4.0,
                                   peak_z_mm=-8.0, peak_t=-5.2, p_fwe=0.01, label="VeP_LH")])
    return {"harmonisation": harmonisation, "longitudinal": longitudinal, "normative": normative,
            "voxelwise": voxelwise}


def full_report(regions: pd.DataFrame, participants: pd.DataFrame, folder: Path, provenance=None):
    """(path, text, results) of the report of the real statistics with every section."""
    import dataclasses

    from qsmiron.report.html import write_report
    from qsmiron.stats.analysis import run_study
    from qsmiron.stats.study import study_from_dict

    folder.mkdir(parents=True, exist_ok=True)
    results = run_study(with_r2star(regions), participants, study_from_dict(STUDY))
    results = dataclasses.replace(results, **section_records(folder))
    path = write_report(results, folder / "report.html", regions=regions, participants=participants,
                        provenance=provenance)
    return path, path.read_text(encoding="utf-8"), results
