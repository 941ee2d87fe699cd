"""The figure of one voxel-wise contrast: t where p_FWE < alpha on the template, with atlas
outlines, mm coordinates and a colour bar (nilearn's ``plot_stat_map``)."""

from __future__ import annotations

import os
from pathlib import Path

import nibabel as nib
import numpy as np


def contrast_figure(t_map: np.ndarray, logp_map: np.ndarray, affine: np.ndarray, template_img, labels: np.ndarray,
                    out_png: str | os.PathLike, *, title: str, alpha: float = 0.05,
                    peak_mm: tuple[float, float, float] | None = None) -> Path:
    """Write ``out_png``: orthogonal slices through the peak.

    Voxels with p_FWE < ``alpha`` show their t; when there are none, the unthresholded t of
    the analysed voxels is shown and the title says so. Atlas regions are outlined in white.
    """
    from matplotlib.figure import Figure
    from nilearn import plotting

    from qsmiron.io.atomic import atomic_path

    significant = logp_map > -np.log10(alpha)
    shown = np.where(significant, t_map, 0.0) if significant.any() else t_map
    if peak_mm is None:
        peak = np.unravel_index(int(np.argmax(np.abs(shown))), shown.shape)
        peak_mm = tuple(float(v) for v in affine[:3, :3] @ np.asarray(peak) + affine[:3, 3])
    heading = (f"{title}: t where p_FWE < {alpha:g}" if significant.any()
               else f"{title}: no voxel with p_FWE < {alpha:g} (unthresholded t shown)")
    figure = Figure(figsize=(9, 3.4), dpi=100)
    stat_img = nib.Nifti1Image(shown.astype(np.float32), affine)
    limit = float(np.max(np.abs(shown))) or 1.0
    display = plotting.plot_stat_map(stat_img, bg_img=template_img, cut_coords=peak_mm, display_mode="ortho",
                                     threshold=1e-6, vmax=limit, colorbar=True, annotate=True, draw_cross=True,
                                     cmap="cold_hot", symmetric_cbar=True, title=heading, figure=figure,
                                     black_bg=False, dim=0)
    present = np.unique(labels[labels > 0])
    outline_levels = [0.5] + [value + 0.5 for value in present[:-1]] if present.size else []
    if outline_levels:
        display.add_contours(nib.Nifti1Image(labels.astype(np.float32), affine), levels=outline_levels,
                             colors="white", linewidths=0.4)
    out_png = Path(out_png)
    with atomic_path(out_png) as tmp:
        figure.savefig(tmp, format="png", dpi=100)
    return out_png
