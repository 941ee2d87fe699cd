"""The study settings in plain words, for the report's appendix.

One row per decision a reader needs to reproduce the analysis, worded for a clinical reader
(no configuration keys); the study file (TOML) holds the same values under their keys.
"""

from __future__ import annotations

from typing import Mapping

from qsmiron.records.study import AnalysisSettings
from qsmiron.report.names import MEASURE_NAMES, region_name, variable_name

REFERENCE_WORDS = {"whole_brain": "the whole brain", "csf": "the CSF of the lateral ventricles",
                   "mask": "a user-supplied mask"}
LOGISTIC_WORDS = {"auto": "Firth's penalised likelihood when events per variable are below {epv:g} or the "
                          "outcome is separated, maximum likelihood otherwise",
                  "firth": "Firth's penalised likelihood", "ml": "maximum likelihood"}


def _list(items, empty: str = "none") -> str:
    items = [str(i) for i in items or []]
    return ", ".join(items) if items else empty


def settings_rows(settings: AnalysisSettings, units: Mapping | None = None) -> list[tuple[str, str]]:
    """(what, value) rows of the resolved study."""
    units = units or {}
    rows = [("Groups compared", f"{settings.group_a} vs {settings.group_b} (participants-table column "
                                f"'{settings.groups.column}')"),
            ("Covariates of every model", _list(variable_name(c, units, with_unit=False) for c in settings.covariates)),
            ("Regions analysed", _list(region_name(r) for r in settings.regions)),
            ("Primary regions (confirmatory family)", _list((region_name(r) for r in settings.primary_regions),
                                                            "none declared: every result is exploratory")),
            ("Measures", _list(MEASURE_NAMES.get(m, m) for m in (settings.measures or ["chi"]))),
            ("Susceptibility reference", REFERENCE_WORDS.get(settings.reference, settings.reference))]
    if settings.session:
        rows.append(("Session analysed", str(settings.session)))
    rows.append(("Significance level", f"FDR-adjusted p < {settings.alpha:g}"))
    rows.append(("Smallest group analysed", f"{settings.min_group_size} participants"))
    assoc = settings.associations
    if assoc.variables:
        where = "all participants" if assoc.group == "all" else f"group {assoc.group}"
        covariates = settings.covariates if assoc.covariates is None else assoc.covariates
        rows.append(("Associations", f"{assoc.method.capitalize()} correlation with "
                                     f"{_list(variable_name(v, units) for v in assoc.variables)}, within {where}, "
                                     f"controlling {_list(covariates)}"))
        if assoc.primary_variables:
            rows.append(("Primary clinical variables", _list(variable_name(v, units) for v in assoc.primary_variables)))
    relapse = settings.relapse
    if relapse.outcome or relapse.time or relapse.count:
        parts = []
        if relapse.outcome:
            parts.append(f"outcome {variable_name(relapse.outcome, units, with_unit=False)}")
        if relapse.time:
            parts.append(f"time to event {variable_name(relapse.time, units)}")
        if relapse.count:
            parts.append(f"count {variable_name(relapse.count, units, with_unit=False)}")
        where = "all participants" if relapse.group == "all" else f"group {relapse.group}"
        rows.append(("Relapse", f"{'; '.join(parts)}; within {where}"))
        rows.append(("Logistic model", LOGISTIC_WORDS[relapse.logistic].format(epv=relapse.firth_below_epv)
                     + f"; no model with fewer than {relapse.min_events} events or non-events or fewer than "
                       f"{relapse.min_epv:g} events per variable"))
        rows.append(("ROC cut-off", f"Youden cut-off; sensitivity and specificity by {relapse.cv_repeats} times "
                                    f"repeated {relapse.cv_folds}-fold cross-validation; AUC optimism-corrected with "
                                    f"{relapse.bootstrap} bootstrap samples"))
    rows.append(("Random seed (bootstrap, cross-validation)", str(settings.seed)))
    rows.extend(_section_rows(settings))
    rows.append(("Study file", settings.study_file or "none: defaults decided from the data"))
    rows.append(("Participants table", settings.participants_table or "not recorded"))
    rows.append(("Regions table", settings.regions_table or "not recorded"))
    return rows


def _section_rows(settings: AnalysisSettings) -> list[tuple[str, str]]:
    rows = []
    if settings.harmonise is not None:
        h = settings.harmonise
        rows.append(("Harmonisation", f"ComBat across '{h.batch}'"
                     + (" with empirical Bayes" if h.empirical_bayes else " without empirical Bayes")))
    if settings.longitudinal is not None:
        rows.append(("Longitudinal model", f"linear mixed model over sessions, time from '{settings.longitudinal.time}'"))
    if settings.normative is not None:
        n = settings.normative
        rows.append(("Normative scores", f"relative to the study's own {n.reference_group} group, adjusted for "
                                         f"{_list(n.covariates)}; |z| > {n.outlier_z:g} flagged"))
    if settings.voxelwise is not None:
        v = settings.voxelwise
        rows.append(("Voxel-wise analysis", f"mask {v.mask}, {v.n_permutations} permutations (seed {v.seed}), "
                                            f"smoothing {v.smoothing_fwhm_mm:g} mm FWHM, FWE level {v.alpha:g}"))
    return rows
