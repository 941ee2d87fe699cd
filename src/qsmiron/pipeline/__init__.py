"""Wiring of the layers: the commands of one subject (single), a cohort (cohort, steps, cache,
runners), the group level (group), the BIDS-App (bids_app) and the demo."""
