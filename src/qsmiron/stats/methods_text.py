"""The statistics methods text: the one description of what the statistics run.

The study results carry it (``AnalysisSettings.methods``), the report's methods paragraph
and its table captions read it from there. Each sentence says what the code in this package
does (see the module docstrings of ``group``, ``associations``, ``relapse``, ``multiple`` and
``table1`` for the definitions); a change of method is a change of this text.

The optional study sections (harmonisation, longitudinal and normative models, voxel-wise
inference) have their text from the functions at the end, filled with the resolved settings;
each section's record (``qsmiron.records.extensions``) carries it as ``methods``.
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


# ------------------------------------------------------------------- the optional sections
def harmonisation_methods(batch: str, empirical_bayes: bool, preserved: list[str], implementation: str) -> str:
    """``[harmonise]``: ComBat as :mod:`qsmiron.stats.harmonise` runs it (``preserved``: group column first)."""
    kept = ", ".join([f"group ({preserved[0]})", *preserved[1:]])
    return (f"Regional values were harmonised across levels of '{batch}' with ComBat "
            f"({'empirical Bayes' if empirical_bayes else 'no empirical Bayes'}, parametric priors; "
            f"{implementation}), preserving {kept}; each session separately. Site effects are the F test of "
            "site in OLS mean_ppm ~ site + group + covariates, before and after.")


def longitudinal_methods(time: str, group_a: str, group_b: str) -> str:
    """``[longitudinal]``: the mixed model of :mod:`qsmiron.stats.longitudinal`."""
    return (f"Per region and hemisphere, a linear mixed model mean_ppm ~ group + {time} + group:{time} + covariates "
            "with a random intercept per participant, fitted by REML (statsmodels MixedLM; standard errors from "
            f"(X'V^-1X)^-1 as lme4's); group coded 1 for {group_a} and 0 for {group_b}, so group:time is the "
            f"difference in slope per unit of {time}, {group_a} minus {group_b}. Wald z p-values; "
            "Benjamini-Hochberg FDR over regions for each term.")


def normative_methods(reference: str, n_reference: str, covariates: list[str], outlier_z: float) -> str:
    """``[normative]``: the reference model of :mod:`qsmiron.stats.normative` (``n_reference`` in words)."""
    return (f"z-scores are relative to this study's own {reference} group (n = {n_reference}), from OLS of each "
            f"region's mean_ppm on {', '.join(covariates) or 'an intercept'} in that group: the predictive t "
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
