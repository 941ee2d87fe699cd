"""Realistic simulated cohorts with known truth, for the demo and for validation."""
