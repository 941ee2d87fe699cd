"""The statistics methods text: the one description of what the statistics run.

The study results carry it (``AnalysisSettings.methods``), the report's methods paragraph
and its table captions read it from there. Each sentence says what the code in this package
does (see the module docstrings of ``group``, ``associations``, ``relapse``, ``multiple`` and
``table1`` for the definitions); a change of method is a change of this text.
"""

from __future__ import annotations

from qsmiron.records.study import StatisticsMethods

STATISTICS_METHODS = StatisticsMethods(
    group_comparison=(
        "ANCOVA by ordinary least squares (mean_ppm ~ group + covariates; F and p of the group term from "
        "type-II sums of squares, identical to type III without interactions); adjusted means predicted at "
        "the covariate means with categorical covariates weighted by their observed proportions; partial "
        "eta squared = SS_group / (SS_group + SS_residual); Cohen's d from the raw group means and pooled "
        "SD; two-sided Mann-Whitney U test as the non-parametric check"),
    group_comparison_fdr="over all region-hemisphere rows",
    associations=(
        "partial correlation controlling the covariates: Spearman = Pearson partial correlation of the "
        "ranks of all variables; p from t with n - 2 - k degrees of freedom (k covariate columns)"),
    associations_fdr="over all region x variable rows (of the one group analysed)",
    relapse=(
        "logistic regression (odds ratio per 1 SD of chi in the analysed sample, Wald 95 % CI and p); ROC "
        "AUC of chi alone with DeLong 95 % CI and the Youden cut-off (direction as set in the study, or "
        "the one giving AUC >= 0.5 when 'auto'); Cox proportional hazards (hazard ratio per SD, Efron "
        "ties) and Kaplan-Meier curves split at the median chi with a log-rank test when time-to-event "
        "data exist; Poisson regression of counts, negative binomial (NB2) when the Cameron-Trivedi test "
        "shows overdispersion (p < 0.05)"),
    relapse_fdr="over regions, separately for the logistic, the Cox and the count model",
    missing_values="listwise deletion per analysis, every excluded participant reported",
    table1=(
        "mean \u00b1 SD and Welch t-test when Shapiro-Wilk p >= 0.05 in both groups, otherwise median [IQR] "
        "and Mann-Whitney U; categorical: chi-square (Yates for 2 x 2), Fisher's exact test for 2 x 2 "
        "tables with an expected count below 5"),
)
"""What the statistics of this qsmiron version run."""
