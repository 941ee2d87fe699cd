"""QC figures of a reconstruction (chi with its mask; total and local field) and of a cohort's
QC measures (strip plots).

The maps are drawn with nilearn in the scanner's world coordinates (mm), neurological
convention, at ``qsmiron.roi.qc.QC_DPI``. Chi is always shown at the fixed window
``CHI_WINDOW_PPM`` so that subjects compare by eye; the fields, whose range depends on the
shim and the head, at a symmetric window on the 99th percentile of their magnitude inside the
mask. ``write_recon_qc_figures`` is what a cohort's ``qc`` step runs.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np

from qsmiron.io.derivatives import QcFigurePaths
from qsmiron.roi.qc import CHI_WINDOW_PPM, labels_centre_mm, new_figure, nifti, ortho_panel, save_png

FIELD_PERCENTILE = 99.0
"""The field windows reach this percentile of the field's magnitude inside the mask."""


def symmetric_window(values: np.ndarray, mask: np.ndarray, percentile: float = FIELD_PERCENTILE) -> float:
    """The ``percentile`` of ``|values|`` inside ``mask`` (1 when the mask is empty or the map flat)."""
    inside = np.abs(np.asarray(values, dtype=float)[np.asarray(mask, bool)])
    inside = inside[np.isfinite(inside)]
    top = float(np.percentile(inside, percentile)) if inside.size else 0.0
    return top if top > 0 else 1.0


def chimap_png(chi_ppm: np.ndarray, mask: np.ndarray, affine: np.ndarray, out_png: str | os.PathLike, *,
               title: str, window_ppm: tuple[float, float] = CHI_WINDOW_PPM) -> None:
    """Chi (ppm) in three planes at the fixed ``window_ppm``, the mask outlined in cyan, colour bar."""
    fig = new_figure(10.0, 4.0)
    display = ortho_panel(fig, [0.0, 0.0, 1.0, 0.92], nifti(np.nan_to_num(chi_ppm), affine), title=title,
                          cut_coords=labels_centre_mm(mask, affine), vmin=window_ppm[0], vmax=window_ppm[1])
    display.add_contours(nifti(np.asarray(mask, bool).astype(np.float32), affine), levels=[0.5], colors=["cyan"],
                         linewidths=0.8)
    save_png(fig, out_png)


def fields_png(total_hz: np.ndarray, local_ppm: np.ndarray, mask: np.ndarray, affine: np.ndarray,
               out_png: str | os.PathLike, *, title: str) -> tuple[float, float]:
    """Total field (Hz, top) and local field (ppm, bottom), three planes each, symmetric windows.

    Returns the two windows' half-widths (Hz, ppm).
    """
    mask = np.asarray(mask, bool)
    total_top = symmetric_window(total_hz, mask)
    local_top = symmetric_window(local_ppm, mask)
    fig = new_figure(10.0, 7.6)
    cut = labels_centre_mm(mask, affine)
    masked_total = np.where(mask, np.nan_to_num(total_hz), 0.0)
    ortho_panel(fig, [0.0, 0.5, 1.0, 0.46], nifti(masked_total, affine), cmap="RdBu_r", cut_coords=cut,
                title=f"{title}: total field (Hz, +/-{total_top:.3g})", vmin=-total_top, vmax=total_top)
    ortho_panel(fig, [0.0, 0.0, 1.0, 0.46], nifti(np.where(mask, np.nan_to_num(local_ppm), 0.0), affine),
                cmap="RdBu_r", cut_coords=cut, title=f"{title}: local field (ppm, +/-{local_top:.2g})",
                vmin=-local_top, vmax=local_top)
    save_png(fig, out_png)
    return total_top, local_top


def write_recon_qc_figures(maps: dict[str, str | os.PathLike], paths: QcFigurePaths, label: str) -> dict[str, Path]:
    """Draw a reconstruction's QC figures from its files; role -> path of the figures written.

    Parameters
    ----------
    maps : dict
        ``chimap``, ``mask``, ``fieldmap`` (total, Hz) and ``localfield`` (ppm) paths
        (``qsmiron.io.derivatives.ReconPaths.maps``); the fields figure is skipped without them.
    paths : QcFigurePaths
    label : str
        ``sub-X[_ses-Y]``, in the titles.
    """
    from qsmiron.io.nifti import load_nifti

    chi = load_nifti(maps["chimap"], with_sidecar=False)
    chi_ppm = chi.data
    mask = (load_nifti(maps["mask"], with_sidecar=False).data > 0.5) if maps.get("mask") else None
    mask = np.isfinite(chi_ppm) & (chi_ppm != 0) if mask is None else mask
    chimap_png(chi_ppm, mask, chi.affine, paths.qc_chimap,
               title=f"{label}: chi (ppm, {CHI_WINDOW_PPM[0]:g}..{CHI_WINDOW_PPM[1]:g}); cyan: mask")
    written = {"qc_chimap": paths.qc_chimap}
    if maps.get("fieldmap") and maps.get("localfield"):
        total = load_nifti(maps["fieldmap"], with_sidecar=False).data
        local = load_nifti(maps["localfield"], with_sidecar=False).data
        fields_png(total, local, mask, chi.affine, paths.qc_fields, title=label)
        written["qc_fields"] = paths.qc_fields
    return written


def strip_plot_png(names: Sequence[str], values: Sequence[Sequence[float | None]],
                   flags: Sequence[Sequence[bool]], labels: Sequence[str], *, units: Sequence[str]) -> bytes:
    """One strip per measure: a dot per subject, flagged subjects as orange diamonds, labelled.

    Parameters
    ----------
    names : the measures (one panel each).
    values : per measure, the value of every subject (None: not available, not drawn).
    flags : per measure, whether each subject is flagged.
    labels : the subjects, in the order of ``values``.
    units : per measure, its unit (the panel's x label).

    Returns
    -------
    bytes
        The PNG, at ``QC_DPI``.
    """
    import io

    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    from qsmiron.roi.qc import QC_DPI

    fig = Figure(figsize=(8.0, 0.9 * len(names) + 0.5), facecolor="white")
    axes = fig.subplots(len(names), 1, squeeze=False)[:, 0]
    rng = np.random.default_rng(0)
    for ax, name, unit, column, flagged_column in zip(axes, names, units, values, flags):
        keep = np.array([i for i, v in enumerate(column) if v is not None and np.isfinite(v)], dtype=int)
        x = np.array([column[i] for i in keep], float)
        y = rng.uniform(-0.25, 0.25, x.size)
        flagged = np.array([bool(flagged_column[i]) for i in keep], bool)
        if x.size == 0:
            ax.text(0.5, 0.5, "not recorded", transform=ax.transAxes, ha="center", va="center", fontsize=8,
                    color="0.4")
            ax.set_xticks([])
        ax.scatter(x[~flagged], y[~flagged], s=18, color="#0072B2", alpha=0.8)
        ax.scatter(x[flagged], y[flagged], s=42, color="#D55E00", marker="D")
        for xi, yi, index in zip(x[flagged], y[flagged], keep[flagged]):
            ax.annotate(labels[index], (xi, yi), xytext=(4, 3), textcoords="offset points", fontsize=8,
                        color="#D55E00")
        ax.set_yticks([])
        ax.set_ylim(-0.6, 0.6)
        ax.set_title(f"{name} ({unit})", fontsize=9, loc="left", pad=2)
        ax.tick_params(labelsize=8)
        for side in ("left", "right", "top"):
            ax.spines[side].set_visible(False)
    fig.tight_layout(h_pad=0.8)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=QC_DPI)
    return buffer.getvalue()
