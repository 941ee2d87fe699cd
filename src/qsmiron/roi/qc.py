"""Quality control of registration and regions: figures and a similarity score per subject.

``atlas_overlay_png`` draws the atlas outlines, one colour per region with a legend, on the chi
map at the fixed window ``CHI_WINDOW_PPM`` through the atlas regions; ``registration_png``
draws the template's edges over the subject warped to the template, the subject windowed on
robust percentiles of its brain so that it never saturates; ``registration_metrics`` scores
the alignment (normalised mutual information inside the template brain, Dice of the brain
masks) and flags an outlier against thresholds.

Figures are drawn with nilearn at ``QC_DPI`` in world coordinates (mm, the image's own space:
the scanner's for a subject, the template's for the registration), neurological convention
(left on the left), whatever the storage order of the input; every figure has a colour bar.
"""

from __future__ import annotations

import io
import os

import numpy as np
from scipy import ndimage


def normalised_mutual_information(a: np.ndarray, b: np.ndarray, *, bins: int = 32) -> float:
    """Studholme's NMI ``(H(A) + H(B)) / H(A, B)``: 1 for independent images, 2 for identical."""
    a = np.asarray(a, dtype=float).ravel()
    b = np.asarray(b, dtype=float).ravel()
    if a.size == 0:
        return float("nan")
    joint, _, _ = np.histogram2d(a, b, bins=bins)
    joint = joint / joint.sum()
    pa, pb = joint.sum(axis=1), joint.sum(axis=0)

    def entropy(p):
        p = p[p > 0]
        return float(-(p * np.log(p)).sum())

    h_joint = entropy(joint.ravel())
    return float((entropy(pa) + entropy(pb)) / h_joint) if h_joint > 0 else float("nan")


def dice(a: np.ndarray, b: np.ndarray) -> float:
    a = np.asarray(a, dtype=bool)
    b = np.asarray(b, dtype=bool)
    total = a.sum() + b.sum()
    return float(2 * (a & b).sum() / total) if total else float("nan")


def registration_metrics(template: np.ndarray, warped_subject: np.ndarray, *, min_nmi: float = 1.05,
                         min_brain_dice: float = 0.85) -> dict:
    """Similarity of the subject warped to the template, on the template grid.

    Parameters
    ----------
    template : ndarray
        The brain-extracted template (zero outside the brain).
    warped_subject : ndarray
        The subject's brain-only magnitude resampled onto the same grid.

    Returns
    -------
    dict with ``nmi`` (inside the template brain), ``brain_dice`` (template brain vs warped
    subject brain), the thresholds and ``outlier`` (bool) with ``outlier_reasons``.
    """
    template = np.asarray(template, dtype=float)
    warped = np.asarray(warped_subject, dtype=float)
    brain = template > 0
    subject_brain = warped > 0
    nmi = normalised_mutual_information(template[brain], warped[brain])
    brain_dice = dice(brain, subject_brain)
    reasons = []
    if not np.isfinite(nmi) or nmi < min_nmi:
        reasons.append(f"normalised mutual information {nmi:.3f} < {min_nmi}")
    if not np.isfinite(brain_dice) or brain_dice < min_brain_dice:
        reasons.append(f"brain overlap (Dice) {brain_dice:.3f} < {min_brain_dice}")
    return {"nmi": nmi, "brain_dice": brain_dice, "min_nmi": min_nmi, "min_brain_dice": min_brain_dice,
            "outlier": bool(reasons), "outlier_reasons": reasons}


def core_similarity(template: np.ndarray, warped_subject: np.ndarray, spacing_mm, *,
                    erosion_mm: float = 10.0, bins: int = 32) -> dict:
    """Similarity of the subject to the template in the brain's core (the brain eroded by ``erosion_mm``).

    Away from the brain's outline, which any blob deformed onto the template shares, a head
    has the contrast of ventricles, deep grey matter and white matter; a phantom or a spine
    does not. Returns ``core_nmi`` (Studholme's NMI, 1 for independent images),
    ``core_correlation`` (absolute Pearson correlation: T1-like or T2*-like contrast alike) and
    ``core_voxels``.
    """
    template = np.asarray(template, dtype=float)
    warped = np.asarray(warped_subject, dtype=float)
    brain = template > 0
    radius = np.maximum(np.round(erosion_mm / np.asarray(spacing_mm, float)).astype(int), 1)
    structure = np.ones(tuple(2 * r + 1 for r in radius), bool)
    grid = np.ogrid[tuple(slice(-r, r + 1) for r in radius)]
    structure &= sum((g * s / erosion_mm) ** 2 for g, s in zip(grid, spacing_mm)) <= 1.0
    core = ndimage.binary_erosion(brain, structure=structure) & (warped > 0)
    if core.sum() < 100:
        return {"core_nmi": float("nan"), "core_correlation": float("nan"), "core_voxels": int(core.sum())}
    a, b = template[core], warped[core]
    correlation = float(abs(np.corrcoef(a, b)[0, 1])) if a.std() > 0 and b.std() > 0 else 0.0
    return {"core_nmi": normalised_mutual_information(a, b, bins=bins), "core_correlation": correlation,
            "core_voxels": int(core.sum())}


CHI_WINDOW_PPM = (-0.15, 0.15)
"""The chi window of every QC figure, the same for every subject, so that maps compare by eye."""

QC_DPI = 150
"""Resolution of the QC figures (dots per inch)."""


def robust_window(values: np.ndarray, low: float = 1.0, high: float = 99.5) -> tuple[float, float]:
    """The ``low``..``high`` percentiles of the finite non-zero ``values`` ((0, 1) when there are none)."""
    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values) & (values != 0)]
    if values.size == 0:
        return 0.0, 1.0
    vmin, vmax = (float(v) for v in np.percentile(values, [low, high]))
    return (vmin, vmax) if vmax > vmin else (vmin, vmin + 1.0)


def tukey_window(values: np.ndarray) -> tuple[float, float]:
    """Tukey's fences of the finite non-zero ``values`` (quartiles -/+ 1.5 IQR, within their range):
    the window of a magnitude whose tissue bunches near its top, as a brain-extracted GRE
    magnitude does, so that grey and white matter stay apart instead of going white together."""
    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values) & (values != 0)]
    if values.size == 0:
        return 0.0, 1.0
    q1, q3 = (float(v) for v in np.percentile(values, [25, 75]))
    low, high = max(q1 - 1.5 * (q3 - q1), float(values.min())), min(q3 + 1.5 * (q3 - q1), float(values.max()))
    return (low, high) if high > low else robust_window(values)


def new_figure(width_in: float, height_in: float):
    """A matplotlib figure on the Agg canvas (no display, no global pyplot state)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    return Figure(figsize=(width_in, height_in), facecolor="black")


def save_png(fig, out_png: str | os.PathLike) -> None:
    """Write the figure as a PNG at ``QC_DPI``, atomically."""
    from qsmiron.io.atomic import write_bytes_atomic

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=QC_DPI, facecolor=fig.get_facecolor())
    write_bytes_atomic(out_png, buffer.getvalue())


def nifti(data: np.ndarray, affine: np.ndarray, dtype=np.float32):
    """An in-memory NIfTI image for nilearn's plotting."""
    import nibabel as nib

    return nib.Nifti1Image(np.asarray(data, dtype=dtype), np.asarray(affine, float))


def labels_centre_mm(labels: np.ndarray, affine: np.ndarray) -> tuple[float, float, float] | None:
    """World coordinates (mm) of the centre of the labelled voxels (None without labels)."""
    inside = np.asarray(labels) > 0
    if not inside.any():
        return None
    centre = np.append(ndimage.center_of_mass(inside), 1.0)
    return tuple(float(v) for v in (np.asarray(affine, float) @ centre)[:3])


def ortho_panel(fig, rect, image, *, title: str, cut_coords=None, vmin: float, vmax: float, cmap: str = "gray",
                colorbar: bool = True):
    """nilearn's three planes (sagittal, coronal, axial) of ``image`` in ``rect`` of ``fig``; the display."""
    from nilearn import plotting

    return plotting.plot_img(image, display_mode="ortho", cut_coords=cut_coords, figure=fig, axes=rect,
                             cmap=cmap, vmin=vmin, vmax=vmax, colorbar=colorbar, black_bg=True,
                             draw_cross=False, annotate=True, title=title, resampling_interpolation="nearest")


def _atlas_cut_mm(labels: np.ndarray, affine: np.ndarray) -> tuple[float, float, float] | None:
    """Planes through the labels' centre, the sagittal one through the left hemisphere's labels
    (the midline between them crosses few regions)."""
    centre = labels_centre_mm(labels, affine)
    if centre is None:
        return None
    x_mm = nib_world_x(np.asarray(labels).shape, affine)
    left = (np.asarray(labels) > 0) & (x_mm < centre[0])
    return (float(x_mm[left].mean()) if left.any() else centre[0], centre[1], centre[2])


def nib_world_x(shape, affine: np.ndarray) -> np.ndarray:
    """World x (mm; RAS: larger is right) of every voxel of a grid."""
    affine = np.asarray(affine, float)
    i, j, k = np.indices(shape, sparse=True)
    return affine[0, 0] * i + affine[0, 1] * j + affine[0, 2] * k + affine[0, 3]


def region_colours(names: list[str]) -> dict[str, tuple]:
    """One distinct colour per region name (tab20, in the order given)."""
    from matplotlib import colormaps

    cmap = colormaps["tab20"]
    return {name: cmap(index % 20) for index, name in enumerate(names)}


def axis_aligned_labels(labels: np.ndarray, affine: np.ndarray, *, margin: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """The labelled box of ``labels`` (plus ``margin`` voxels), resampled once (nearest
    neighbour) onto an axis-aligned grid, and that grid's affine.

    nilearn resamples every oblique image it draws; drawing each region's outline from the
    whole oblique label image cost 0.75 s per region (11 of the 14 s of a family subject's QC at
    1 x 1 x 1.2 mm, 20 degrees). One resampling of the small box serves every outline.
    """
    from nilearn.image import reorder_img

    labels = np.asarray(labels)
    affine = np.asarray(affine, float)
    if not (labels > 0).any():
        return labels, affine
    hits = np.argwhere(labels > 0)
    low = np.maximum(hits.min(0) - margin, 0)
    high = np.minimum(hits.max(0) + margin + 1, labels.shape)
    box = labels[low[0]:high[0], low[1]:high[1], low[2]:high[2]]
    shifted = affine.copy()
    shifted[:3, 3] = affine[:3, :3] @ low + affine[:3, 3]
    aligned = reorder_img(nifti(box, shifted, dtype=np.int32), resample="nearest", copy_header=False)
    return np.asarray(aligned.dataobj), aligned.affine


def atlas_overlay_png(chi_ppm: np.ndarray, labels: np.ndarray, affine: np.ndarray, out_png: str | os.PathLike, *,
                      title: str = "", region_names: dict[int, str] | None = None,
                      window_ppm: tuple[float, float] = CHI_WINDOW_PPM) -> list[str]:
    """Atlas outlines on chi (ppm, fixed window), one colour per region, with a legend of the regions;
    returns the legend's regions.

    The three planes cross at the centre of the labelled voxels (world mm). ``region_names``
    maps a label to its region (both hemispheres share a region's colour); without it each
    label is its own entry.
    """
    from matplotlib.lines import Line2D

    labels = np.rint(np.asarray(labels)).astype(np.int32)
    names = region_names or {int(v): f"label {v}" for v in np.unique(labels) if v > 0}
    present = [int(v) for v in np.unique(labels) if v > 0 and int(v) in names]
    colours = region_colours(list(dict.fromkeys(names[v] for v in present)))
    fig = new_figure(11.0, 4.4)
    display = ortho_panel(fig, [0.0, 0.0, 0.78, 0.92], nifti(np.nan_to_num(chi_ppm), affine),
                          title=title or "atlas outlines on chi (ppm)", cut_coords=_atlas_cut_mm(labels, affine),
                          vmin=window_ppm[0], vmax=window_ppm[1])
    aligned, aligned_affine = axis_aligned_labels(labels, affine)
    for name, colour in colours.items():
        region = np.isin(aligned, [value for value in present if names[value] == name])
        if not region.any():  # a region of a voxel or two can vanish in the resampling
            continue
        display.add_contours(nifti(region.astype(np.float32), aligned_affine), levels=[0.5], colors=[colour],
                             linewidths=1.0)
    handles = [Line2D([0], [0], color=colour, lw=3, label=name) for name, colour in colours.items()]
    if handles:
        fig.legend(handles=handles, loc="center left", bbox_to_anchor=(0.79, 0.5), frameon=False, fontsize=8,
                   labelcolor="white", title="regions", title_fontsize=9, ncol=1 if len(handles) <= 18 else 2)
        fig.legends[0].get_title().set_color("white")
    save_png(fig, out_png)
    return list(colours)


def registration_png(template: np.ndarray, warped_subject: np.ndarray, affine: np.ndarray, out_png: str | os.PathLike,
                     *, title: str = "") -> None:
    """Template edges (red) over the subject warped to the template, three planes, template mm.

    The edges are contours of the template: its brain outline and two intensity levels inside
    it (``TEMPLATE_EDGE_PERCENTILES``: ventricles and deep grey matter against white matter).
    The subject is windowed on Tukey's fences of its non-zero voxels (``tukey_window``), so that
    neither the dark rim of the brain nor bright vessels squeeze the tissue contrast.
    """
    warped = np.nan_to_num(np.asarray(warped_subject, dtype=float))
    template = np.nan_to_num(np.asarray(template, dtype=float))
    vmin, vmax = tukey_window(warped)
    fig = new_figure(10.0, 4.0)
    brain = template > 0
    display = ortho_panel(fig, [0.0, 0.0, 1.0, 0.92], nifti(warped, affine),
                          title=title or "subject warped to the template; red: template edges",
                          cut_coords=labels_centre_mm(brain, affine), vmin=vmin, vmax=vmax)
    display.add_contours(nifti(brain.astype(np.float32), affine), levels=[0.5], colors=["red"], linewidths=0.9)
    if brain.any():
        levels = sorted({float(v) for v in np.percentile(template[brain], TEMPLATE_EDGE_PERCENTILES)})
        display.add_contours(nifti(template, affine), levels=levels, colors=["red"] * len(levels), linewidths=0.7)
    save_png(fig, out_png)


TEMPLATE_EDGE_PERCENTILES = (15.0, 55.0)
"""Template intensity levels (percentiles inside its brain) drawn as edges: in a T1-weighted
template, CSF and the ventricles below the first, white matter above the second."""
