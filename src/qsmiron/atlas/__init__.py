"""Templates and atlases: where they come from and what their labels mean."""

from qsmiron.atlas.load import Atlas, load_atlas, load_template, read_label_table, split_hemisphere

__all__ = ["Atlas", "load_atlas", "load_template", "read_label_table", "split_hemisphere"]
