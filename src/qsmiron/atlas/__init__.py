"""Templates and atlases: where they come from and what their labels mean."""
