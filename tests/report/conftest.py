"""A small realistic study for the report tests, built by hand (no qsmiron.stats code).

Twenty-four participants (12 MOH, 12 CM), four CIT168 regions per hemisphere, a planted lower
ventral-pallidum susceptibility in MOH, a negative VeP-SDS association within MOH, and
relapse data within MOH. The result tables have the columns of the stats contract; their
numbers are computed here with scipy / scikit-learn / lifelines so that they are plausible,
but the report tests only check how the report shows them.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from sklearn.metrics import roc_curve

from qsmiron.config import QsmironConfig
from qsmiron.records.acquisition import Acquisition
from qsmiron.records.base import StepInfo
from qsmiron.records.cohort import PipelineSummary, Provenance, ScanRecords, SubjectProblem
from qsmiron.records.recon import ReconRecord
from qsmiron.records.regions import RegionsRecord
from qsmiron.records.study import AnalysisSettings, Exclusion
from qsmiron.stats.methods_text import STATISTICS_METHODS
from qsmiron.stats.results import StudyResults

REGIONS = ("Pu", "Ca", "GPe", "VeP")
BASE_PPM = {"Pu": 0.06, "Ca": 0.06, "GPe": 0.14, "VeP": 0.08}


def _bh(p):
    p = np.asarray(p, float)
    order = np.argsort(p)
    ranked = p[order] * len(p) / np.arange(1, len(p) + 1)
    adjusted = np.minimum.accumulate(ranked[::-1])[::-1]
    out = np.empty_like(p)
    out[order] = np.minimum(adjusted, 1)
    return out


def make_cohort(seed: int = 3, n_per_group: int = 12) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    n = 2 * n_per_group
    ids = [f"sub-{i:02d}" for i in range(1, n + 1)]
    group = np.array(["MOH"] * n_per_group + ["CM"] * n_per_group)
    age = rng.normal(42, 9, n).round(0)
    sex = rng.choice(["F", "M"], n, p=[0.75, 0.25])
    sds = np.where(group == "MOH", rng.integers(3, 12, n), rng.integers(0, 6, n)).astype(float)
    relapse = np.where(group == "MOH", rng.integers(0, 2, n), np.nan)
    followup = np.full(n, 12.0)
    time = np.where(relapse == 1, rng.uniform(1, 11, n).round(1), np.where(group == "MOH", 12.0, np.nan))
    counts = np.where(group == "MOH", rng.poisson(1.0, n) + (relapse == 1), np.nan)
    participants = pd.DataFrame({
        "participant_id": ids, "group": group, "age": age, "sex": sex, "sds": sds,
        "hit6": rng.normal(65, 5, n).round(0), "relapse": relapse, "time_to_relapse": time,
        "relapse_count": counts, "followup_months": followup})
    rows = []
    for i, pid in enumerate(ids):
        for region in REGIONS:
            for hemisphere in ("L", "R"):
                value = BASE_PPM[region] + rng.normal(0, 0.015)
                if region == "VeP" and group[i] == "MOH":
                    value -= 0.03 + 0.003 * (sds[i] - 7)
                rows.append({"participant_id": pid, "region": region, "hemisphere": hemisphere,
                             "mean_ppm": value, "median_ppm": value, "n_voxels": 150})
    return pd.DataFrame(rows), participants


def make_results(regions: pd.DataFrame, participants: pd.DataFrame) -> StudyResults:
    merged = regions.merge(participants, on="participant_id")
    gc_rows, assoc_rows, rel_rows = [], [], []
    roc_curves, km_curves = {}, {}
    from lifelines import KaplanMeierFitter

    for (region, hemisphere), frame in merged.groupby(["region", "hemisphere"], sort=False):
        a = frame.loc[frame["group"] == "MOH", "mean_ppm"].to_numpy()
        b = frame.loc[frame["group"] == "CM", "mean_ppm"].to_numpy()
        t = stats.ttest_ind(a, b)
        pooled = np.sqrt(((a.size - 1) * a.var(ddof=1) + (b.size - 1) * b.var(ddof=1)) / (a.size + b.size - 2))
        gc_rows.append({"region": region, "hemisphere": hemisphere, "group_a": "MOH", "group_b": "CM",
                        "n_a": a.size, "n_b": b.size, "mean_a": a.mean(), "sd_a": a.std(ddof=1),
                        "mean_b": b.mean(), "sd_b": b.std(ddof=1), "adj_mean_a": a.mean() + 1e-4,
                        "adj_mean_b": b.mean() - 1e-4, "F": t.statistic ** 2, "p": t.pvalue,
                        "p_fdr": np.nan, "partial_eta2": t.statistic ** 2 / (t.statistic ** 2 + a.size + b.size - 2),
                        "cohen_d": (a.mean() - b.mean()) / pooled,
                        "mwu_p": stats.mannwhitneyu(a, b).pvalue, "note": ""})
        moh = frame[frame["group"] == "MOH"]
        for variable in ("sds", "hit6"):
            r, p = stats.spearmanr(moh["mean_ppm"], moh[variable])
            assoc_rows.append({"region": region, "hemisphere": hemisphere, "group": "MOH", "variable": variable,
                               "method": "spearman", "n": len(moh), "r": r, "p": p, "p_fdr": np.nan, "note": ""})
        y = moh["relapse"].astype(int).to_numpy()
        chi = moh["mean_ppm"].to_numpy()
        fpr, tpr, thr = roc_curve(y, -chi, drop_intermediate=False)
        roc_curves[(region, hemisphere)] = pd.DataFrame({"fpr": fpr, "tpr": tpr, "threshold_ppm": -thr})
        auc = float(np.trapezoid(tpr, fpr))
        best = int(np.argmax(tpr - fpr))
        p_rel = stats.mannwhitneyu(chi[y == 1], chi[y == 0]).pvalue
        rel_rows.append({"region": region, "hemisphere": hemisphere, "n": len(moh), "n_events": int(y.sum()),
                         "odds_ratio": 0.6, "or_ci_low": 0.3, "or_ci_high": 1.2, "p": p_rel, "p_fdr": np.nan,
                         "auc": auc, "auc_ci_low": max(auc - 0.2, 0), "auc_ci_high": min(auc + 0.2, 1),
                         "youden_threshold_ppm": -thr[best] if np.isfinite(thr[best]) else np.nan,
                         "sensitivity": tpr[best], "specificity": 1 - fpr[best], "roc_direction": "lower",
                         "hr": 0.7, "hr_ci_low": 0.4, "hr_ci_high": 1.1, "hr_p": p_rel * 1.1,
                         "hr_p_fdr": np.nan, "hr_n": len(moh), "hr_events": int(y.sum()),
                         "km_logrank_p": p_rel, "note": ""})
        frames = []
        median = np.median(chi)
        for name, part in (("low", moh[chi <= median]), ("high", moh[chi > median])):
            kmf = KaplanMeierFitter().fit(part["time_to_relapse"], part["relapse"])
            ci = kmf.confidence_interval_survival_function_
            frames.append(pd.DataFrame({"group": name, "time": kmf.survival_function_.index.to_numpy(),
                                        "survival": kmf.survival_function_.iloc[:, 0].to_numpy(),
                                        "ci_low": ci.iloc[:, 0].to_numpy(), "ci_high": ci.iloc[:, 1].to_numpy()}))
        km_curves[(region, hemisphere)] = pd.concat(frames, ignore_index=True)
    group_comparison = pd.DataFrame(gc_rows)
    group_comparison["p_fdr"] = _bh(group_comparison["p"])
    associations = pd.DataFrame(assoc_rows)
    associations["p_fdr"] = _bh(associations["p"])
    relapse = pd.DataFrame(rel_rows)
    relapse["p_fdr"] = _bh(relapse["p"])
    relapse["hr_p_fdr"] = _bh(relapse["hr_p"])
    counts = pd.DataFrame({"region": relapse["region"], "hemisphere": relapse["hemisphere"], "n": relapse["n"],
                           "model": "poisson", "rate_ratio": 0.8, "rr_ci_low": 0.6, "rr_ci_high": 1.05,
                           "p": relapse["p"], "p_fdr": relapse["p_fdr"], "overdispersion_p": 0.4,
                           "alpha": np.nan, "note": ""})
    table1 = pd.DataFrame([
        {"variable": "n", "kind": "count", "group_a": "MOH", "group_b": "CM", "n_a": 12, "n_b": 12,
         "missing_a": 0, "missing_b": 0, "summary_a": "12", "summary_b": "12", "test": "", "statistic": np.nan,
         "p": np.nan, "note": ""},
        {"variable": "age", "kind": "continuous", "group_a": "MOH", "group_b": "CM", "n_a": 12, "n_b": 11,
         "missing_a": 0, "missing_b": 1, "summary_a": "41.2 \u00b1 8.1", "summary_b": "43.0 \u00b1 9.9",
         "test": "Welch t", "statistic": -0.49, "p": 0.63, "note": ""},
        {"variable": "sex", "kind": "categorical", "group_a": "MOH", "group_b": "CM", "n_a": 12, "n_b": 12,
         "missing_a": 0, "missing_b": 0, "summary_a": "F 9 / M 3", "summary_b": "F 8 / M 4",
         "test": "Fisher", "statistic": np.nan, "p": 1.0, "note": ""},
    ])
    settings = AnalysisSettings(
        covariates=["age", "sex"], regions=list(REGIONS), alpha=0.05, min_group_size=3,
        groups={"column": "group", "compare": ["MOH", "CM"]},
        associations={"group": "MOH", "variables": ["sds", "hit6"], "method": "spearman",
                      "covariates": ["age", "sex"]},
        relapse={"group": "MOH", "outcome": "relapse", "time": "time_to_relapse", "event": "relapse",
                 "count": "relapse_count", "exposure": "followup_months", "covariates": ["age", "sex"],
                 "roc_direction": "auto"},
        methods=STATISTICS_METHODS,
        n_participants={"regions_table": 24, "participants_table": 24, "both": 24, "per_group": {"MOH": 12, "CM": 12}})
    return StudyResults(
        settings=settings, table1=table1, group_comparison=group_comparison, associations=associations,
        relapse=relapse, relapse_counts=counts, roc_curves=roc_curves, km_curves=km_curves,
        exclusions=[Exclusion(participant_id="sub-17", analysis="group_comparison", reason="missing age")],
        warnings=["group CM has 11 participant(s) with age"],
        versions={"statsmodels": "0.15.0", "lifelines": "0.30.3"})


def _recon_record(i: int) -> ReconRecord:
    steps = [
        StepInfo(step="phase", method="rescale", parameters={"scaling": "auto"}, seconds=0.1,
                 notes={"detected_scaling": "levels", "levels": 4096}),
        StepInfo(step="mask", method="magnitude", parameters={"opening_mm": 2.0}, seconds=1.0,
                 notes={"n_voxels": 100000}),
        StepInfo(step="unwrap", method="romeo", parameters={"phase_offset": "mcpc3ds"}, seconds=3.0),
        StepInfo(step="echo_fit", method="weighted_least_squares", parameters={"offset": "smooth"}, seconds=0.5),
        StepInfo(step="mask_refinement", method="phase_quality", parameters={"noise_factor": 3.0}, seconds=0.2),
        StepInfo(step="background", method="vsharp", parameters={"radii_mm": [12.0, 2.0], "threshold": 0.05},
                 seconds=4.0),
        StepInfo(step="inversion", method="tv", parameters={"alpha": "auto", "max_iter": 250},
                 seconds=9.0, notes={"alpha": [2.0e-4, 3.1e-4, 2.6e-4][i % 3], "iterations": 120 + i,
                                     "n_voxels": 99000}),
        StepInfo(step="reference", method="mean", seconds=0.01, notes={"offset_ppm": 0.001}),
    ]
    acquisition = Acquisition(
        field_strength_t=3.0, field_strength_source="sidecar", echo_times_s=[0.004, 0.008, 0.012, 0.016, 0.020],
        echo_times_source="sidecar", n_echoes=5, matrix=[192, 224, 160], voxel_size_mm=[1.0, 1.0, 1.0],
        b0_direction_voxel=[0.0, 0.0, 1.0], oblique_angle_deg=8.5 if i else 0.0, manufacturer="Siemens",
        manufacturers_model_name="Prisma", repetition_time_s=0.028, flip_angle_deg=15.0,
        parallel_reduction_factor_in_plane=2.0, partial_fourier=1.0, receive_coil="HeadNeck_64")
    return ReconRecord(
        qsmiron_version="0.1.0", created="2025-01-01T00:00:00",
        inputs={"magnitude": [f"sub-{i:02d}_mag.nii.gz"], "phase": [f"sub-{i:02d}_phase.nii.gz"]},
        acquisition=acquisition, steps=steps, outputs={"chimap": "Chimap.nii.gz"},
        mask_description="brain", seconds=17.8,
        warnings=["echo spacing 4.0 ms: last echo 20.0 ms shorter than the T2* of deep grey matter"] if i == 0 else [],
        config=QsmironConfig(), versions={"qsmiron": "0.1.0", "numpy": "2.3.5", "scipy": "1.15.3"})


def _regions_record(i: int) -> RegionsRecord:
    config = QsmironConfig.model_validate({"registration": {"resolution_mm": 2.0, "syn_iterations": [60, 40, 20],
                                                            "syn_shrink_factors": [4, 2, 1],
                                                            "syn_smoothing_vox": [2.0, 1.0, 0.0]}})
    return RegionsRecord(
        qsmiron_version="0.1.0",
        inputs={"chi": "chi.nii.gz", "magnitude": "mag.nii.gz", "matrix": [192, 224, 160],
                "voxel_size_mm": [1.0, 1.0, 1.0]},
        atlas={"name": "cit168", "space": "MNI152NLin2009cAsym", "source": "CIT168", "n_labels": 32,
               "hemisphere_sources": ["name"]},
        registration={"tool": "ANTs", "method": "ants_syn", "transforms": ["rigid", "affine", "SyN"],
                      "metric": "Mattes mutual information", "domain": "atlas",
                      "subject_image": "first echo of the magnitude, N4 bias-corrected, brain only",
                      "subject_mask": "support of the chi map", "reused_transforms": False, "fingerprint": "x",
                      "label_interpolation": "genericLabel",
                      "quality": {"nmi": 1.2, "brain_dice": 0.91 + 0.01 * i, "residual_shift_mm": 0.5 + 0.1 * i,
                                  "max_residual_shift_mm": 1.4,
                                  "min_brain_dice": 0.85, "outlier": False}},
        measurement={"space": "subject (native, chi not interpolated)", "mask": "non-zero finite chi",
                     "erode_voxels": 0, "min_voxels": 10, "min_coverage": 0.9, "flagged": {}},
        steps=[StepInfo(step="registration", method="ants_syn", seconds=30.0)], outputs={},
        config=config, versions={"antspyx": "0.5.4"})


def make_provenance(n_scans: int = 3) -> Provenance:
    scans = [ScanRecords(participant_id=f"sub-{i:02d}", recon=_recon_record(i), regions=_regions_record(i))
             for i in range(n_scans)]
    pipeline = PipelineSummary(n_subjects=25, failed=[SubjectProblem(
        participant_id="sub-25", step="registration", reason="brain Dice 0.62 below 0.85")])
    return Provenance(scans=scans, pipeline=pipeline)


@pytest.fixture(scope="session")
def cohort():
    return make_cohort()


@pytest.fixture(scope="session")
def study_results(cohort):
    return make_results(*cohort)


@pytest.fixture(scope="session")
def provenance():
    return make_provenance()


def tiny_png(path):
    from matplotlib.figure import Figure

    figure = Figure(figsize=(1, 1))
    figure.subplots().imshow(np.eye(4))
    figure.savefig(path, dpi=20)
    return path


@pytest.fixture(scope="session")
def qc_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("qc")
    tiny_png(folder / "sub-01_qc_atlas.png")
    (folder / "overlay.svg").write_text('<svg xmlns="http://www.w3.org/2000/svg" width="4" height="4">'
                                        '<rect width="4" height="4"/></svg>')
    (folder / "notes.txt").write_text("not an image")
    return folder


@pytest.fixture(scope="session")
def report(cohort, study_results, provenance, qc_dir, tmp_path_factory):
    """The full report of the hand-built study, rendered once: (path, text)."""
    from qsmiron.report.html import write_report

    regions, participants = cohort
    out = tmp_path_factory.mktemp("report") / "out" / "report.html"
    path = write_report(study_results, out, regions=regions, participants=participants, provenance=provenance,
                        qc_images=[("QSM sub-01", qc_dir / "sub-01_qc_atlas.png"),
                                   qc_dir / "overlay.svg",
                                   ("gone", qc_dir / "missing.png"),
                                   ("text", qc_dir / "notes.txt")])
    return path, path.read_text(encoding="utf-8")


@pytest.fixture(scope="session")
def study_report(cohort, provenance, tmp_path_factory):
    """The report of the real statistics (chi and R2*, primary regions) with every optional
    section: (path, text, results)."""
    from full_study import full_report

    regions, participants = cohort
    return full_report(regions, participants, tmp_path_factory.mktemp("study_report"), provenance)
