"""Subjects made from the template by a known warp: the ground truth of registration tests.

A subject is defined by where each of its voxels lies in the template's world: a rigid
motion plus a smooth non-linear displacement, ``x_template = R x_subject + t + d(x_subject)``.
Sampling the template (intensity, linear) and the atlas labels (nearest neighbour) at those
points gives a subject image and its true labels on any grid (any orientation, oblique,
anisotropic), so left and right, voxel size and storage order are all exercised through the
same physical mapping. Used by the tests and ``benchmarks/bench_roi.py``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage


def rotation_matrix(degrees_xyz) -> np.ndarray:
    """Rotation about x, then y, then z (degrees), as a 3 x 3 matrix."""
    ax, ay, az = np.deg2rad(np.asarray(degrees_xyz, dtype=float))
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    return rz @ ry @ rx


@dataclass
class KnownWarp:
    """``x_template = rotation @ x + translation_mm + displacement(x)`` (world mm, RAS+).

    The displacement is a sum of smooth sinusoids of wavelength ``wavelength_mm`` with
    amplitude ``amplitude_mm`` per axis: smooth enough to be a plausible anatomical
    difference, large enough that an affine alone does not recover it.
    """

    rotation_deg: tuple = (6.0, -4.0, 5.0)
    translation_mm: tuple = (4.0, -6.0, 3.0)
    amplitude_mm: float = 2.5
    wavelength_mm: float = 90.0
    phases: tuple = (0.3, 1.1, 2.0)

    def __call__(self, points_mm: np.ndarray) -> np.ndarray:
        """Map subject world points, shape (N, 3), to template world points."""
        points = np.asarray(points_mm, dtype=float)
        k = 2 * np.pi / self.wavelength_mm
        x, y, z = points[:, 0], points[:, 1], points[:, 2]
        p0, p1, p2 = self.phases
        displacement = self.amplitude_mm * np.stack([
            np.sin(k * y + p0) * np.cos(k * z + p1),
            np.sin(k * z + p1) * np.cos(k * x + p2),
            np.sin(k * x + p2) * np.cos(k * y + p0),
        ], axis=1)
        rigid = points @ rotation_matrix(self.rotation_deg).T + np.asarray(self.translation_mm, float)
        return rigid + displacement


def grid_affine(voxel_size_mm, shape, *, centre_mm=(0.0, -18.0, 8.0), rotation_deg=(0.0, 0.0, 0.0),
                flip_lps: bool = False) -> np.ndarray:
    """A voxel-to-world affine of a grid of ``shape`` centred on ``centre_mm``.

    ``flip_lps`` stores the first two axes right-to-left and anterior-to-posterior (an LPS
    image); ``rotation_deg`` tilts the grid (oblique slices).
    """
    axes = np.diag(np.asarray(voxel_size_mm, dtype=float))
    if flip_lps:
        axes = np.diag([-1.0, -1.0, 1.0]) @ axes
    linear = rotation_matrix(rotation_deg) @ axes
    centre_vox = (np.asarray(shape, float) - 1) / 2
    affine = np.eye(4)
    affine[:3, :3] = linear
    affine[:3, 3] = np.asarray(centre_mm, float) - linear @ centre_vox
    return affine


def sample_in_subject(image: np.ndarray, image_affine: np.ndarray, warp: KnownWarp, shape, affine,
                      *, order: int) -> np.ndarray:
    """Values of a template-space image at the template points of each subject voxel."""
    ijk = np.indices(tuple(shape), dtype=float).reshape(3, -1).T
    world = ijk @ np.asarray(affine)[:3, :3].T + np.asarray(affine)[:3, 3]
    template_world = warp(world)
    inverse = np.linalg.inv(np.asarray(image_affine, float))
    template_ijk = template_world @ inverse[:3, :3].T + inverse[:3, 3]
    values = ndimage.map_coordinates(image, template_ijk.T, order=order, mode="constant", cval=0.0,
                                     prefilter=False)
    return values.reshape(tuple(shape))


@dataclass
class PhantomSubject:
    """A subject made from the template: magnitude, chi, true labels, all on one grid."""

    magnitude: np.ndarray
    chi_ppm: np.ndarray
    labels: np.ndarray
    mask: np.ndarray
    affine: np.ndarray
    truth_ppm: dict


def make_phantom_subject(template: np.ndarray, template_affine: np.ndarray, atlas_labels: np.ndarray,
                         region_chi_ppm: dict, shape, affine, *, warp: KnownWarp | None = None,
                         seed: int = 0, noise_ppm: float = 0.005) -> PhantomSubject:
    """A subject with known chi per atlas label, seen through a known warp.

    Parameters
    ----------
    template : ndarray
        Template intensities (the brain-extracted T1w) on ``template_affine``.
    atlas_labels : ndarray of int
        Atlas labels on the same grid as ``template``.
    region_chi_ppm : dict
        Label index -> susceptibility (ppm) painted into that label.
    shape, affine
        The subject grid.

    Returns
    -------
    PhantomSubject
        The magnitude has a GRE-like contrast (not the template's): a power law of the T1w
        intensity, darkened where chi is high (T2* decay), a smooth bias field and Rician-like
        noise. Chi is zero outside the brain mask, as a reconstructed map is, with
        grey/white-matter texture outside the painted labels.
    """
    warp = warp or KnownWarp()
    rng = np.random.default_rng(seed)
    intensity = sample_in_subject(template.astype(np.float32), template_affine, warp, shape, affine, order=1)
    labels = sample_in_subject(atlas_labels.astype(np.float32), template_affine, warp, shape, affine,
                               order=0).round().astype(np.int32)
    top = float(np.percentile(intensity[intensity > 0], 99)) if np.any(intensity > 0) else 1.0
    relative = np.clip(intensity / top, 0, 1.2)
    brain = ndimage.binary_fill_holes(relative > 0.05)
    mask = ndimage.binary_erosion(brain, iterations=1)

    # Susceptibility: white matter slightly negative, grey matter slightly positive, then the
    # nuclei painted with their known values.
    chi = np.where(relative > 0.75, -0.02, 0.015).astype(np.float32)
    for index, value in region_chi_ppm.items():
        chi[labels == index] = value
    chi = chi + rng.normal(0, noise_ppm, chi.shape).astype(np.float32)
    chi = np.where(mask, chi, 0.0).astype(np.float32)

    voxel = np.linalg.norm(np.asarray(affine)[:3, :3], axis=0)
    ijk = np.indices(tuple(shape), dtype=float)
    centre = (np.asarray(shape, float) - 1) / 2
    bias = 1.0 + 0.25 * ((ijk[0] - centre[0]) * voxel[0] / 100.0) - 0.2 * ((ijk[2] - centre[2]) * voxel[2] / 100.0)
    # First-echo T2* darkening: R2* rises by about 150 s^-1 per ppm of iron-related chi at 3 T,
    # so at TE1 = 4 ms the signal falls by exp(-0.6 chi_ppm) (a few per cent in the pallidum).
    magnitude = (relative ** 0.6) * np.exp(-0.6 * np.clip(chi, 0, None)) * bias
    # A scalp-like shell outside the brain so the subject is not pre-stripped.
    shell = ndimage.binary_dilation(brain, iterations=3) & ~ndimage.binary_dilation(brain, iterations=1)
    magnitude = np.where(shell, 0.5, magnitude)
    noise = rng.normal(0, 0.02, (2,) + magnitude.shape)
    magnitude = np.sqrt((magnitude + noise[0]) ** 2 + noise[1] ** 2).astype(np.float32)
    truth = {}
    for index, value in region_chi_ppm.items():
        inside = (labels == index) & mask
        truth[int(index)] = float(chi[inside].mean()) if inside.any() else float("nan")
    return PhantomSubject(magnitude=magnitude, chi_ppm=chi, labels=labels, mask=mask,
                          affine=np.asarray(affine, float), truth_ppm=truth)
