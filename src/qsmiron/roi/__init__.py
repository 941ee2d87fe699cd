"""Per-region susceptibility: from a chi map and labels to a tidy table."""
