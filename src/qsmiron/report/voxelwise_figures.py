"""The figure of each voxel-wise contrast: t where p_FWE < alpha on the template, with atlas
outlines, mm coordinates and a colour bar (nilearn's ``plot_stat_map``).

The statistics (:mod:`qsmiron.stats.voxelwise`) write the maps and the record; the command line
and the group level then call :func:`add_contrast_figures`, so data flow from the statistics to
the report and never back."""

from __future__ import annotations

import os
from pathlib import Path

import nibabel as nib
import numpy as np


def contrast_figure(t_map: np.ndarray, logp_map: np.ndarray, affine: np.ndarray, template_img, labels: np.ndarray,
                    out_png: str | os.PathLike, *, title: str, alpha: float = 0.05,
                    peak_mm: tuple[float, float, float] | None = None) -> Path:
    """Write ``out_png``: orthogonal slices through the peak, and a glass brain below them.

    Voxels with p_FWE < ``alpha`` show their t; when there are none, the unthresholded t of
    the analysed voxels is shown and the title says so. Atlas regions are outlined in white
    on the slices; the glass brain shows every shown voxel at once (its maximum projection).
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
    figure = Figure(figsize=(7.0, 5.4), dpi=150)
    stat_img = nib.Nifti1Image(shown.astype(np.float32), affine)
    limit = float(np.max(np.abs(shown))) or 1.0
    display = plotting.plot_stat_map(stat_img, bg_img=template_img, cut_coords=peak_mm, display_mode="ortho",
                                     threshold=1e-6, vmax=limit, colorbar=True, annotate=True, draw_cross=True,
                                     cmap="cold_hot", symmetric_cbar=True, title=heading, figure=figure,
                                     axes=(0.0, 0.5, 1.0, 0.5), black_bg=False, dim=0)
    plotting.plot_glass_brain(stat_img, threshold=1e-6, vmax=limit, colorbar=True, plot_abs=False, cmap="cold_hot",
                              symmetric_cbar=True, display_mode="lzr", figure=figure, axes=(0.0, 0.0, 1.0, 0.48),
                              title="glass brain (maximum projection)", annotate=True)
    present = np.unique(labels[labels > 0])
    outline_levels = [0.5] + [value + 0.5 for value in present[:-1]] if present.size else []
    if outline_levels:
        display.add_contours(nib.Nifti1Image(labels.astype(np.float32), affine), levels=outline_levels,
                             colors="white", linewidths=0.4)
    out_png = Path(out_png)
    with atomic_path(out_png) as tmp:
        figure.savefig(tmp, format="png", dpi=150)
    return out_png


def add_contrast_figures(results, out_dir: str | os.PathLike, *, atlas: str = "cit168",
                         atlas_labels: str | os.PathLike | None = None,
                         template: str | os.PathLike | None = None) -> list[Path]:
    """Draw each analysed contrast's figure beside its maps and name it in the written results.

    Parameters
    ----------
    results : VoxelwiseResults
        From :func:`qsmiron.stats.voxelwise.run_voxelwise`, already written to ``out_dir``;
        its record (``contrast.figure``, ``files``), its contrasts table and ``voxelwise.json``
        and ``voxelwise_contrasts.tsv`` are updated with the figures.
    out_dir : path
        The folder ``run_voxelwise`` wrote to (the maps are read from there).
    atlas, atlas_labels, template : optional
        As given to ``run_voxelwise`` (atlas outlines and the background template).

    Returns
    -------
    list of Path
        The figures written.
    """
    from qsmiron.atlas.load import load_atlas, load_template
    from qsmiron.io.atomic import write_json_atomic, write_tsv_atomic
    from qsmiron.io.derivatives import voxelwise_paths
    from qsmiron.stats.voxelwise_maps import Grid, atlas_on_grid

    record = results.record
    paths = voxelwise_paths(out_dir)
    atlas_obj = load_atlas(atlas, atlas_labels, template)
    template_img = load_template(atlas_obj.template_path if template is None else template)
    grid = Grid(tuple(template_img.shape[:3]), np.asarray(template_img.affine), atlas_obj.space)
    labels = atlas_on_grid(atlas_obj, grid)
    written = []
    for contrast in record.contrasts:
        if contrast.note or not contrast.t_map or not contrast.logp_map:
            continue
        t_map = np.asanyarray(nib.load(paths.record.parent / contrast.t_map).dataobj)
        logp_map = np.asanyarray(nib.load(paths.record.parent / contrast.logp_map).dataobj)
        peak = next(((c.peak_x_mm, c.peak_y_mm, c.peak_z_mm) for c in record.clusters
                     if c.contrast == contrast.contrast), None)
        figure = contrast_figure(t_map, logp_map, grid.affine, template_img, labels, paths.figure(contrast.key),
                                 title=contrast.contrast, alpha=record.settings.alpha, peak_mm=peak)
        contrast.figure = figure.name
        record.files[f"figure:{contrast.key}"] = figure.name
        written.append(figure)
    if written:
        figures = {c.contrast: c.figure for c in record.contrasts}
        results.contrasts["figure"] = results.contrasts["contrast"].map(figures)
        write_tsv_atomic(paths.contrasts, results.contrasts)
        write_json_atomic(paths.record, record.to_json())
    return written
