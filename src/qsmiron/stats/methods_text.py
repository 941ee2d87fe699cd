"""The statistics methods text: the one description of what the statistics run.

The study results carry it (``AnalysisSettings.methods``), the report's methods paragraph
and its table captions read it from there. Each sentence says what the code in this package
does (see the module docstrings of ``group``, ``associations``, ``relapse``, ``roc``,
``survival``, ``multiple``, ``power`` and ``table1`` for the definitions), with the
thresholds of the study analysed (:func:`statistics_methods`); a change of method is a
change of this text.

The optional study sections (harmonisation, longitudinal and normative models, voxel-wise
inference) have their text from the functions at the end, filled with the resolved settings;
each section's record (``qsmiron.records.extensions``) carries it as ``methods``.
"""

from __future__ import annotations

from qsmiron.records.study import StatisticsMethods
from qsmiron.stats.multiple import families_statement
from qsmiron.stats.power import ALPHA, POWER
from qsmiron.stats.regions import QUALITY_FLAGS
from qsmiron.stats.study import RelapseSettings, Study

GROUP_COMPARISON = (
    "ANCOVA by ordinary least squares (value ~ group + covariates; F and p of the group term from "
    "type-II sums of squares, identical to type III without interactions); adjusted means predicted at "
    "the covariate means with categorical covariates weighted by their observed proportions; adjusted "
    "mean difference (the group coefficient) in ppb with its t-based 95 % CI; partial eta squared = "
    "SS_group / (SS_group + SS_residual); Cohen's d from the raw group means and pooled SD with a 95 % CI "
    "from the noncentral t distribution; two-sided Mann-Whitney U test as the non-parametric check")
ASSOCIATIONS = (
    "partial correlation controlling the covariates: Spearman = Pearson partial correlation of the "
    "ranks of all variables; p from t with n - 2 - k degrees of freedom (k covariate columns); 95 % CI "
    "by Fisher's z (Bonett-Wright standard error for Spearman)")
COUNTS = (
    "Poisson regression of counts (rate ratio per SD, Wald 95 % CI), negative binomial (NB2) when the "
    "Cameron-Trivedi test shows overdispersion (p < 0.05)")
MISSING_VALUES = "listwise deletion per analysis, every excluded participant reported"
TABLE1 = (
    "mean \u00b1 SD and Welch t-test when Shapiro-Wilk p >= 0.05 in both groups, otherwise median [IQR] "
    "and Mann-Whitney U; categorical: chi-square (Yates for 2 x 2), Fisher's exact test for 2 x 2 "
    "tables with an expected count below 5")
MINIMAL_DETECTABLE_EFFECTS = (
    f"minimal detectable effect of each row's sample at two-sided alpha {ALPHA:g} and {POWER * 100:.0f} % power "
    "(design sensitivity, not post-hoc power): Cohen's d of the group comparison (noncentral t with "
    "the ANCOVA's residual degrees of freedom, covariates assumed to explain no variance), partial r "
    "of the associations (Fisher's z), odds ratio per SD of the logistic regression (Hsieh et al. "
    "1998)")


def logistic_text(relapse: RelapseSettings) -> str:
    """The logistic model: which likelihood, when, and what is not estimated."""
    epv = ("events per variable (the smaller of events and non-events per model parameter, "
           "intercept not counted)")
    if relapse.logistic == "firth":
        choice = "by Firth's penalised likelihood (as set in the study)"
    elif relapse.logistic == "ml":
        choice = ("by maximum likelihood (as set in the study; no odds ratio when the outcome is "
                  "separated)")
    else:
        choice = (f"by Firth's penalised likelihood when the {epv} are below "
                  f"{relapse.firth_below_epv:g} or the outcome is separated (Konis' linear "
                  "programme), by maximum likelihood otherwise")
    return (f"logistic regression of the outcome on chi (odds ratio per 1 SD of chi in the analysed "
            f"sample; firthmodels) {choice}, with profile-likelihood 95 % CI and likelihood-ratio p; no "
            f"odds ratio with fewer than {relapse.min_events} events or non-events or fewer than "
            f"{relapse.min_epv:g} events per variable")


def roc_text(relapse: RelapseSettings, seed: int, min_group_size: int) -> str:
    """ROC analysis: AUC, its optimism correction and the cross-validated cut-off."""
    direction = ("the direction giving AUC >= 0.5" if relapse.roc_direction == "auto"
                 else f"{relapse.roc_direction} chi predicting the outcome, as set in the study")
    correction = (f"Harrell's bootstrap optimism-corrected AUC ({relapse.bootstrap} bootstrap samples "
                  "drawn within events and non-events, correcting the choice of direction)"
                  if relapse.roc_direction == "auto" else
                  "the AUC needs no optimism correction (nothing is fitted with the direction given)")
    return (f"ROC AUC of chi alone ({direction}) with DeLong 95 % CI when there are at least "
            f"{min_group_size} events and non-events; {correction}; Youden cut-off "
            "chosen on all participants, its sensitivity and specificity estimated by "
            f"{relapse.cv_repeats} times repeated stratified {relapse.cv_folds}-fold cross-validation of "
            f"the whole cut-off choice (random draws seeded with {seed}); with fewer than "
            f"{relapse.min_events} events or non-events only the AUC, as a description")


def survival_text(relapse: RelapseSettings, min_group_size: int) -> str:
    """Cox model, Kaplan-Meier curves and the numbers at risk."""
    times = ("at " + ", ".join(f"{t:g}" for t in relapse.km_times) if relapse.km_times
             else "at round times from 0 to the longest follow-up")
    return ("Cox proportional hazards (hazard ratio per SD, Efron ties, Wald 95 % CI) when there are at "
            f"least {relapse.min_events} events and {relapse.min_epv:g} events per parameter; "
            f"Kaplan-Meier curves split at the median chi (at least {min_group_size} events) with a "
            f"log-rank test and the numbers at risk, cumulative events and censorings {times}")


def fdr_texts(study: Study) -> dict[str, str]:
    """Which rows each false discovery rate runs over, and how the families were formed."""
    if study.primary_regions:
        within = "within the primary and within the exploratory family of"
        tables = {"group_comparison_fdr": f"{within} the region-hemisphere rows",
                  "associations_fdr": f"{within} the region x variable rows (of the one group analysed)",
                  "relapse_fdr": (f"{within} the regions, separately for the logistic, the Cox and the "
                                  "count model")}
    else:
        tables = {"group_comparison_fdr": "over all region-hemisphere rows",
                  "associations_fdr": "over all region x variable rows (of the one group analysed)",
                  "relapse_fdr": "over regions, separately for the logistic, the Cox and the count model"}
    families = families_statement(study.primary_regions, study.associations.primary_variables)
    return {**tables, "fdr_families": families}


def regional_value_text(statistic: str | None) -> str:
    """What a participant's regional value is (``Study.statistic``; None: not yet resolved)."""
    if statistic is None:
        return ("each participant's regional value (value) is, for susceptibility, the interior-weighted median "
                "of the region's voxels when the regions table has it, else their median, else their mean; for "
                "the other measures their median, else their mean")
    if statistic == "interior_median":
        return ("each participant's regional value (value) is the interior-weighted median of the region's "
                "voxels: each voxel weighs the square of the share of its 3 x 3 x 3 neighbourhood inside the "
                "region, so that the edge voxels a warped label shares with its surroundings (partial volume, "
                "misregistration) count less")
    if statistic == "median":
        return ("each participant's regional value (value) is the median of the region's voxels, which "
                "resists the edge voxels a warped label shares with its surroundings")
    return "each participant's regional value (value) is the mean of the region's voxels"


EXCLUDED_BEFORE_ANALYSIS = "were excluded before analysis"


def quality_exclusion_text(flags: list[str], n_values: int | None = None, n_participants: int | None = None) -> str:
    """The QC rule of ``Study.exclude_flagged`` (empty without one), with the values it left out of the
    analysed participants' analysed regions when counted."""
    if not flags:
        return ""
    named = [f"{flag} ({QUALITY_FLAGS[flag]})" for flag in QUALITY_FLAGS if flag in flags]
    counted = ""
    if n_values is not None:
        counted = (" (no value was flagged)" if not n_values else
                   f" ({n_values} value{'s' if n_values != 1 else ''} of {n_participants} "
                   f"participant{'s' if n_participants != 1 else ''})")
    others = [flag for flag in QUALITY_FLAGS if flag not in flags]
    rest = f"; values flagged only {' or '.join(others)} were analysed as measured" if others else ""
    return (f"regional values flagged by qsmiron roi as {' or '.join(named)} {EXCLUDED_BEFORE_ANALYSIS}{counted}, "
            f"by the rule set in the study file (exclude_flagged), each listed among the exclusions{rest}")


def quality_exclusion_of_measures(texts: dict[str, str]) -> str:
    """The rule's text for a study of several measures (measure -> its :func:`quality_exclusion_text`):
    once, counted "in each measure", when every measure's is the same; else each measure's."""
    distinct = set(texts.values())
    if len(distinct) > 1:
        return "; ".join(f"for {measure}, {text}" for measure, text in texts.items())
    text = distinct.pop() if distinct else ""
    if len(texts) < 2 or f"{EXCLUDED_BEFORE_ANALYSIS} (" not in text:
        return text
    return text.replace(f"{EXCLUDED_BEFORE_ANALYSIS} (", f"{EXCLUDED_BEFORE_ANALYSIS} (in each measure, ", 1)


def statistics_methods(study: Study, excluded: tuple[int, int] | None = None) -> StatisticsMethods:
    """What the statistics run for ``study`` (resolved or not: the thresholds are its settings);
    ``excluded``: the values and participants the QC rule left out (:mod:`qsmiron.stats.qc_exclusion`)."""
    relapse = study.relapse
    return StatisticsMethods(
        regional_value=regional_value_text(study.statistic), group_comparison=GROUP_COMPARISON,
        quality_exclusion=quality_exclusion_text(list(study.exclude_flagged), *(excluded or (None, None))),
        associations=ASSOCIATIONS,
        relapse="; ".join((logistic_text(relapse), roc_text(relapse, study.seed, study.min_group_size),
                           survival_text(relapse, study.min_group_size), COUNTS)),
        missing_values=MISSING_VALUES, table1=TABLE1,
        minimal_detectable_effects=MINIMAL_DETECTABLE_EFFECTS, **fdr_texts(study))


STATISTICS_METHODS = statistics_methods(Study())
"""What the statistics of this qsmiron version run with the default settings (no primary
regions declared)."""


# ------------------------------------------------------------------- the optional sections
def harmonisation_methods(batch: str, empirical_bayes: bool, preserved: list[str], implementation: str, *,
                          n_partial: int = 0) -> str:
    """``[harmonise]``: ComBat as :mod:`qsmiron.stats.harmonise` runs it (``preserved``: group column first;
    ``n_partial``: participant-sessions harmonised with the complete cases' estimates)."""
    kept = ", ".join([f"group ({preserved[0]})", *preserved[1:]])
    partial = (f" ComBat's parameters were estimated from the participants with every regional value; the "
               f"{n_partial} participant-session(s) missing some values had the values they have harmonised "
               "with those estimates (their own covariate effects kept)." if n_partial else "")
    return (f"Regional values were harmonised across levels of '{batch}' with ComBat "
            f"({'empirical Bayes' if empirical_bayes else 'no empirical Bayes'}, parametric priors; "
            f"{implementation}), preserving {kept}; each session separately.{partial} Site effects are the F "
            "test of site in OLS value ~ site + group + covariates among the participants with every "
            "value, before and after.")


def longitudinal_methods(time: str, group_a: str, group_b: str) -> str:
    """``[longitudinal]``: the mixed model of :mod:`qsmiron.stats.longitudinal`."""
    return (f"Per region and hemisphere, a linear mixed model value ~ group + {time} + group:{time} + covariates "
            "with a random intercept per participant, fitted by REML (statsmodels MixedLM; standard errors from "
            f"(X'V^-1X)^-1 as lme4's); group coded 1 for {group_a} and 0 for {group_b}, so group:time is the "
            f"difference in slope per unit of {time}, {group_a} minus {group_b}. Wald z p-values; "
            "Benjamini-Hochberg FDR over regions for each term.")


def normative_methods(reference: str, n_reference: str, covariates: list[str], outlier_z: float) -> str:
    """``[normative]``: the reference model of :mod:`qsmiron.stats.normative` (``n_reference`` in words)."""
    return (f"z-scores are relative to this study's own {reference} group (n = {n_reference}), from OLS of each "
            f"region's value on {', '.join(covariates) or 'an intercept'} in that group: the predictive t "
            "(residual over the prediction standard error) turned into z by its tail probability; they are not "
            f"population norms. Reference-group members are scored leave-one-out; |z| > {outlier_z:g} is flagged.")


def voxelwise_methods(settings, mask_text: str, association_method: str) -> str:
    """``[voxelwise]``: the GLM and permutation inference of :mod:`qsmiron.stats.voxelwise`."""
    smoothing = (f"maps smoothed with a {settings.smoothing_fwhm_mm:g} mm FWHM Gaussian inside each "
                 "map's valid voxels (normalised convolution)" if settings.smoothing_fwhm_mm else "no smoothing")
    return (f"Voxel-wise GLM at each voxel of {mask_text} on the template grid ({smoothing}): chi ~ tested "
            "regressor + covariates + intercept. Two-sided permutation inference with "
            f"{settings.n_permutations} permutations (seed {settings.seed}) as nilearn's permuted_ols "
            "(the data and the tested regressor residualised on the covariates; the rows of the regressor "
            "and of the covariates shuffled together), threshold-free cluster enhancement (E = 0.5, H = 2, "
            "100 steps, face connectivity) and family-wise error control by the maximum |TFCE| over the "
            f"mask. Clusters: face-connected voxels of one sign with p_FWE < {settings.alpha:g}, labelled "
            "with the atlas region holding most of their voxels. The group contrast is group_a minus "
            "group_b; voxel-wise associations are linear (partial regression slopes), whereas the regional "
            f"associations are {association_method} partial correlations.")
