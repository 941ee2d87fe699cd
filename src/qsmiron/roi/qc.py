"""Quality control of registration and regions: figures and a similarity score per subject.

``atlas_overlay_png`` draws the atlas outlines on the chi map at the basal ganglia and the
midbrain; ``registration_png`` draws template edges over the subject warped to the template;
``registration_metrics`` scores the alignment (normalised mutual information inside the
template brain, Dice of the brain masks) and flags an outlier against thresholds.
Figures are shown in RAS orientation (neurological: the subject's left on the left), whatever
the storage order of the input.
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


def _canonical(data: np.ndarray, affine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Reorder axes and flips so that array axes run R->... as RAS+ (no resampling)."""
    import nibabel as nib

    data = np.asarray(data)
    if data.dtype.kind in "iub":
        data = data.astype(np.int32)
    image = nib.as_closest_canonical(nib.Nifti1Image(data, np.asarray(affine, float)))
    return np.asanyarray(image.dataobj), image.affine


def _savefig(fig, out_png) -> None:
    from qsmiron.io.atomic import write_bytes_atomic

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight", facecolor="black")
    write_bytes_atomic(out_png, buffer.getvalue())


def _figure(n_panels: int, title: str):
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4.0 * n_panels, 4.6), facecolor="black")
    axes = [fig.add_subplot(1, n_panels, i + 1) for i in range(n_panels)]
    fig.suptitle(title, color="white", fontsize=11)
    for ax in axes:
        ax.set_axis_off()
    return fig, axes


def _show(ax, image, aspect, *, vmin, vmax, cmap="gray"):
    ax.imshow(np.rot90(image), cmap=cmap, vmin=vmin, vmax=vmax, aspect=aspect, interpolation="nearest")


def _outline(ax, labels2d, aspect):
    from skimage.segmentation import find_boundaries

    edges = find_boundaries(labels2d, mode="inner")
    overlay = np.zeros(labels2d.shape + (4,))
    colours = _label_colours(labels2d[edges])
    overlay[edges] = colours
    ax.imshow(np.rot90(overlay), aspect=aspect, interpolation="nearest")


def _label_colours(values: np.ndarray) -> np.ndarray:
    from matplotlib import colormaps

    cmap = colormaps["tab20"]
    rgba = cmap((values % 20) / 19.0)
    rgba[:, 3] = 1.0
    return rgba


def atlas_overlay_png(chi_ppm: np.ndarray, labels: np.ndarray, affine: np.ndarray, out_png: str | os.PathLike, *,
                      title: str = "", window_ppm: tuple[float, float] = (-0.1, 0.2)) -> None:
    """Atlas outlines on the chi map: axial slices through the pallidum and the midbrain, a coronal slice.

    The slices are chosen where the labels are: the axial slice holding most of the
    striatum/pallidum labels, the axial slice holding most of the deepest labels (midbrain),
    and the coronal slice through the labels' centre.
    """
    chi, canon_affine = _canonical(np.asarray(chi_ppm, dtype=float), np.asarray(affine, float))
    lab, _ = _canonical(np.asarray(labels), np.asarray(affine, float))
    vox = np.linalg.norm(canon_affine[:3, :3], axis=0)
    fig, axes = _figure(3, title or "atlas on chi (ppm); left on the left")
    if lab.any():
        per_slice = (lab > 0).sum(axis=(0, 1))
        upper = int(np.argmax(per_slice))
        z_indices = np.nonzero(per_slice)[0]
        lower = int(z_indices[0] + (z_indices[-1] - z_indices[0]) // 5)
        coronal = int(round(ndimage.center_of_mass(lab > 0)[1]))
    else:
        upper = lower = chi.shape[2] // 2
        coronal = chi.shape[1] // 2
    panels = [(chi[:, :, upper], lab[:, :, upper], vox[1] / vox[0], f"axial z={upper}"),
              (chi[:, :, lower], lab[:, :, lower], vox[1] / vox[0], f"axial z={lower}"),
              (chi[:, coronal, :], lab[:, coronal, :], vox[2] / vox[0], f"coronal y={coronal}")]
    for ax, (image, lab2d, aspect, label) in zip(axes, panels):
        _show(ax, image, aspect, vmin=window_ppm[0], vmax=window_ppm[1])
        _outline(ax, lab2d, aspect)
        ax.set_title(label, color="white", fontsize=9)
        ax.text(0.02, 0.5, "L", color="yellow", transform=ax.transAxes, fontsize=11)
        ax.text(0.95, 0.5, "R", color="yellow", transform=ax.transAxes, fontsize=11)
    _savefig(fig, out_png)


def registration_png(template: np.ndarray, warped_subject: np.ndarray, affine: np.ndarray, out_png: str | os.PathLike,
                     *, title: str = "") -> None:
    """Template edges (red) over the subject warped to the template, three orthogonal slices."""
    from skimage.feature import canny

    tmpl, canon_affine = _canonical(np.asarray(template, dtype=float), np.asarray(affine, float))
    warped, _ = _canonical(np.asarray(warped_subject, dtype=float), np.asarray(affine, float))
    vox = np.linalg.norm(canon_affine[:3, :3], axis=0)
    inside = tmpl > 0
    centre = [int(round(c)) for c in ndimage.center_of_mass(inside)] if inside.any() else \
        [n // 2 for n in tmpl.shape]
    top = float(np.percentile(warped[warped > 0], 99)) if np.any(warped > 0) else 1.0
    fig, axes = _figure(3, title or "subject warped to template; red: template edges")
    cuts = [(np.s_[:, :, centre[2]], vox[1] / vox[0], "axial"),
            (np.s_[:, centre[1], :], vox[2] / vox[0], "coronal"),
            (np.s_[centre[0], :, :], vox[2] / vox[1], "sagittal")]
    for ax, (cut, aspect, label) in zip(axes, cuts):
        _show(ax, warped[cut], aspect, vmin=0, vmax=top)
        t2d = tmpl[cut]
        scale = float(t2d.max()) or 1.0
        edges = canny(t2d / scale, sigma=1.5)
        overlay = np.zeros(edges.shape + (4,))
        overlay[edges] = (1.0, 0.2, 0.2, 0.9)
        ax.imshow(np.rot90(overlay), aspect=aspect, interpolation="nearest")
        ax.set_title(label, color="white", fontsize=9)
    _savefig(fig, out_png)
