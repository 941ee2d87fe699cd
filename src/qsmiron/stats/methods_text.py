"""The statistics methods text: the one description of what the statistics run.

The study results carry it (``AnalysisSettings.methods``), the report's methods paragraph
and its table captions read it from there. Each sentence says what the code in this package
does (see the module docstrings of ``group``, ``associations``, ``relapse``, ``roc``,
``survival``, ``multiple``, ``power`` and ``table1`` for the definitions), with the
thresholds of the study analysed (:func:`statistics_methods`); a change of method is a
change of this text.
"""

from __future__ import annotations

from qsmiron.records.study import StatisticsMethods
from qsmiron.stats.multiple import families_statement
from qsmiron.stats.power import ALPHA, POWER
from qsmiron.stats.study import RelapseSettings, Study

GROUP_COMPARISON = (
    "ANCOVA by ordinary least squares (mean_ppm ~ group + covariates; F and p of the group term from "
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


def statistics_methods(study: Study) -> StatisticsMethods:
    """What the statistics run for ``study`` (resolved or not: the thresholds are its settings)."""
    relapse = study.relapse
    return StatisticsMethods(
        group_comparison=GROUP_COMPARISON, associations=ASSOCIATIONS,
        relapse="; ".join((logistic_text(relapse), roc_text(relapse, study.seed, study.min_group_size),
                           survival_text(relapse, study.min_group_size), COUNTS)),
        missing_values=MISSING_VALUES, table1=TABLE1,
        minimal_detectable_effects=MINIMAL_DETECTABLE_EFFECTS, **fdr_texts(study))


STATISTICS_METHODS = statistics_methods(Study())
"""What the statistics of this qsmiron version run with the default settings (no primary
regions declared)."""
