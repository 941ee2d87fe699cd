"""Cohort statistics: group comparison, associations, relapse models, multiple comparisons."""
