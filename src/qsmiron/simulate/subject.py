"""One simulated scan: a head placed in the scanner, its field, and the multi-echo signal.

Steps for one subject (all arrays indexed along the scan's voxel axes):

1. **Head position.** The phantom (MNI mm) is placed in scanner coordinates by a rigid
   transform ``world = R_h mni + t_h``: a random rotation of a few degrees about each axis and
   a translation of a few mm. With oblique slices the slab is tilted by ``R_s`` and the head
   with it (an operator aligning the slab to a pitched head), so B0, the scanner's z axis, is
   oblique in voxel axes: ``b0_voxel = R_s^T z``, exactly what
   ``qsmiron.io.nifti.b0_direction_voxel`` reads back from the affine
   ``[R_s diag(voxel_size) | origin]``.
2. **Resampling.** The subject's susceptibility map (per-code values) is smoothed by a
   Gaussian that stands for the voxel's point spread (FWHM about the voxel size) and sampled
   with trilinear interpolation onto an extended grid with the scan's axes that holds the
   whole head and neck, so air-tissue interfaces outside the field of view still act. The
   magnitude properties are sampled onto the scan grid; labels by nearest neighbour.
3. **Field.** ``qsmiron.recon.dipole.forward_field`` of the susceptibility relative to air
   (air = 0, so the zero padding is air) with B0 in voxel axes. A scanner shim removes the
   least-squares spherical harmonics up to ``shim_order`` over the brain.
4. **Signal.** ``S0 exp(-R2* TE) exp(i (2 pi f TE + phi0))`` with the T1-weighted proton
   density ``S0``, a smooth echo-independent offset ``phi0`` and complex Gaussian noise; the
   magnitude is stored as integers, the phase as vendor integers ``-L .. L-1`` for
   ``[-pi, pi)``. Phase convention: a positive (paramagnetic) field gives a positive phase.

Truth: the susceptibility map on the scan grid referenced to its mean over the brain mask
(the whole-brain reference qsmiron uses), the brain mask, the local field (ppm) of the
referenced susceptibility inside the mask (what background removal aims at), the total field
(Hz) after shimming, and the CIT168 labels on the scan grid.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from qsmiron import GYROMAGNETIC_RATIO_HZ_PER_T
from qsmiron.io.nifti import b0_direction_voxel, box_through_affine
from qsmiron.recon.dipole import forward_field
from qsmiron.simulate.phantom import AIR_CHI_PPM, HeadPhantom, mr_property_tables
from qsmiron.simulate.settings import SimulationSettings

PSF_SIGMA_PER_VOXEL = 0.42
"""Gaussian sigma per voxel edge for the voxel's point spread (FWHM = 0.99 voxel)."""

FIELD_PAD_FACTOR = 0.5
"""Padding of the extended grid for the total field. The grid already holds air around the
head; against a 2x padding the periodic copies add a smooth field (about 0.2 ppm, harmonic in
the brain) of which 3 ppb SD (14 ppb at most) survive the second-order shim: pure background,
removed by any background-field removal. The true local field is computed without it."""


def rotation_matrix(angles_deg) -> np.ndarray:
    """``Rz @ Ry @ Rx`` for rotations (degrees) about x (pitch), y (roll) and z (yaw)."""
    ax, ay, az = np.deg2rad(np.asarray(angles_deg, dtype=float))
    cx, sx, cy, sy, cz, sz = np.cos(ax), np.sin(ax), np.cos(ay), np.sin(ay), np.cos(az), np.sin(az)
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return rz @ ry @ rx


@dataclass
class SubjectPose:
    """Where a head sits in the scanner and how the scan grid is laid over it.

    Attributes
    ----------
    head_rotation_deg : ndarray (3,)
        Random head rotation about x, y, z (on top of the oblique tilt), degrees.
    translation_mm : ndarray (3,)
        Position of the brain centre in scanner coordinates (isocentre = 0), mm.
    oblique_deg : ndarray (2,)
        Slab tilt about x and y (zero for axial slices), degrees.
    fov_offset_mm : ndarray (3,)
        Offset of the field-of-view centre from the brain centre along the voxel axes, mm.
    mni_to_world : ndarray (4, 4)
        MNI152NLin2009cAsym mm -> scanner mm (RAS+): ``world = mni_to_world @ [mni, 1]``.
    affine : ndarray (4, 4)
        Scan voxel -> scanner mm (the NIfTI affine).
    shape : tuple of 3 ints
    """

    head_rotation_deg: np.ndarray
    translation_mm: np.ndarray
    oblique_deg: np.ndarray
    fov_offset_mm: np.ndarray
    mni_to_world: np.ndarray
    affine: np.ndarray
    shape: tuple

    @property
    def b0_direction_voxel(self) -> np.ndarray:
        return b0_direction_voxel(self.affine)

    @property
    def oblique_angle_deg(self) -> float:
        """Angle between B0 and the voxel z axis, degrees."""
        return float(np.degrees(np.arccos(np.clip(abs(self.b0_direction_voxel[2]), 0.0, 1.0))))

    def as_dict(self) -> dict:
        world_to_mni = np.linalg.inv(self.mni_to_world)
        return {
            "head_rotation_deg": self.head_rotation_deg.tolist(),
            "translation_mm": self.translation_mm.tolist(),
            "oblique_deg": self.oblique_deg.tolist(),
            "oblique_angle_deg": self.oblique_angle_deg,
            "fov_offset_mm": self.fov_offset_mm.tolist(),
            "mni_to_world": self.mni_to_world.tolist(),
            "world_to_mni": world_to_mni.tolist(),
            "mni_to_voxel": (np.linalg.inv(self.affine) @ self.mni_to_world).tolist(),
            "affine": self.affine.tolist(),
            "shape": list(self.shape),
            "b0_direction_voxel": self.b0_direction_voxel.tolist(),
        }


def sample_pose(rng: np.random.Generator, settings: SimulationSettings,
                phantom: HeadPhantom) -> SubjectPose:
    """Draw a head position and scan grid (always the same number of random draws)."""
    rotation = rng.uniform(-1.0, 1.0, 3) * settings.max_rotation_deg
    translation = rng.uniform(-1.0, 1.0, 3) * settings.max_translation_mm
    fov_offset = rng.uniform(-1.0, 1.0, 3) * 3.0
    is_oblique = rng.random() < settings.oblique_probability
    tilt = rng.uniform(settings.oblique_min_deg, settings.oblique_max_deg) * rng.choice([-1.0, 1.0])
    roll = rng.uniform(-0.25, 0.25) * tilt
    oblique = np.array([tilt, roll]) if is_oblique else np.zeros(2)
    return make_pose(phantom, settings, head_rotation_deg=rotation, translation_mm=translation,
                     fov_offset_mm=fov_offset, oblique_deg=oblique)


def make_pose(phantom: HeadPhantom, settings: SimulationSettings, *,
              head_rotation_deg=(0.0, 0.0, 0.0), translation_mm=(0.0, 0.0, 0.0),
              fov_offset_mm=(0.0, 0.0, 0.0), oblique_deg=(0.0, 0.0)) -> SubjectPose:
    """The pose for given parameters: the head is rotated by ``R_s @ R(head_rotation)``.

    ``R_s`` is the slab tilt (``oblique_deg`` about x and y); the brain centre lands at
    ``translation_mm`` in scanner coordinates and the field-of-view centre at that point plus
    ``R_s @ fov_offset_mm``.
    """
    rotation = np.asarray(head_rotation_deg, float)
    translation = np.asarray(translation_mm, float)
    fov_offset = np.asarray(fov_offset_mm, float)
    oblique = np.asarray(oblique_deg, float)
    slab = rotation_matrix([oblique[0], oblique[1], 0.0])
    head = slab @ rotation_matrix(rotation)
    mni_to_world = np.eye(4)
    mni_to_world[:3, :3] = head
    mni_to_world[:3, 3] = translation - head @ phantom.brain_centre_mm

    shape = settings.matrix
    voxel = np.asarray(settings.voxel_size_mm, float)
    affine = np.eye(4)
    affine[:3, :3] = slab @ np.diag(voxel)
    centre = translation + slab @ fov_offset
    affine[:3, 3] = centre - affine[:3, :3] @ ((np.asarray(shape) - 1) / 2.0)
    return SubjectPose(head_rotation_deg=rotation, translation_mm=translation,
                       oblique_deg=oblique, fov_offset_mm=fov_offset, mni_to_world=mni_to_world,
                       affine=affine, shape=tuple(int(n) for n in shape))


@dataclass
class ScanContext:
    """What every subject of a cohort shares: the phantom and its smoothed property maps."""

    phantom: HeadPhantom
    settings: SimulationSettings
    s0_map: np.ndarray
    r2star_map: np.ndarray
    psf_sigma_vox: float
    brain_codes: np.ndarray  # bool per code: part of the brain
    cit168_by_code: np.ndarray  # int16 per code: CIT168 index or 0


def psf_sigma_phantom_voxels(settings: SimulationSettings, phantom: HeadPhantom) -> float:
    """Gaussian sigma (phantom voxels) turning the phantom's resolution into the scan's."""
    voxel = float(np.mean(settings.voxel_size_mm))
    res = phantom.resolution_mm
    return PSF_SIGMA_PER_VOXEL * float(np.sqrt(max(voxel * voxel - res * res, 0.0))) / res


def _smooth(volume: np.ndarray, sigma: float) -> np.ndarray:
    if sigma < 0.2:
        return volume
    return ndimage.gaussian_filter(volume, sigma=sigma, truncate=3.0)


def make_context(phantom: HeadPhantom, settings: SimulationSettings) -> ScanContext:
    s0_table, r2s_table = mr_property_tables(phantom, settings)
    sigma = psf_sigma_phantom_voxels(settings, phantom)
    s0_map = _smooth(s0_table[phantom.codes], sigma)
    r2s_map = _smooth(r2s_table[phantom.codes], sigma)
    brain_codes = np.zeros(256, bool)
    for code in phantom.regions:
        brain_codes[code] = True
    cit = np.zeros(256, np.int16)
    for code, index in phantom.cit168_index.items():
        cit[code] = index
    return ScanContext(phantom=phantom, settings=settings, s0_map=s0_map, r2star_map=r2s_map,
                       psf_sigma_vox=sigma, brain_codes=brain_codes, cit168_by_code=cit)


@dataclass
class SubjectScan:
    """A simulated multi-echo scan and its truth, on the scan grid.

    Attributes
    ----------
    magnitude, phase : list of ndarray (int16), one per echo
        Stored values (phase: vendor integers -L..L-1 for [-pi, pi)).
    affine : ndarray (4, 4)
    chi_ppm : ndarray float32
        True susceptibility referenced to its brain mean, zero outside the mask.
    mask : ndarray bool
        True brain mask.
    local_field_ppm : ndarray float32
        Field of ``chi_ppm`` (the sources inside the mask), ppm of B0, zero outside the mask.
    total_field_hz : ndarray float32
        Field after shimming (what the phase encodes apart from the offset), Hz.
    labels : ndarray int16
        CIT168 label indices on the scan grid (nearest neighbour).
    brain_mean_ppm : float
        The mean subtracted as reference (relative to water).
    r2star_per_s : ndarray float32 or None
        True R2* on the scan grid (the decay the magnitude was made with), s^-1.
    info : dict
        Noise level, shim coefficients, grid sizes, seconds per step.
    """

    magnitude: list
    phase: list
    affine: np.ndarray
    chi_ppm: np.ndarray
    mask: np.ndarray
    local_field_ppm: np.ndarray
    total_field_hz: np.ndarray
    labels: np.ndarray
    brain_mean_ppm: float
    info: dict = field(default_factory=dict)
    r2star_per_s: np.ndarray | None = None


def phantom_transform(phantom: HeadPhantom, pose: SubjectPose, grid_affine: np.ndarray):
    """Matrix and offset taking grid voxel indices to phantom voxel indices."""
    full = np.linalg.inv(phantom.affine) @ np.linalg.inv(pose.mni_to_world) @ grid_affine
    return full[:3, :3], full[:3, 3]


def resample(volume, matrix, offset, shape, *, order, cval=0.0, dtype=np.float32):
    return ndimage.affine_transform(volume, matrix, offset, output_shape=tuple(shape), order=order,
                                    mode="constant", cval=cval, prefilter=False,
                                    output=dtype)


def extended_grid(phantom: HeadPhantom, pose: SubjectPose, margin: int = 3):
    """Index range (along the scan's axes) holding the whole head and the field of view.

    Returns
    -------
    start : ndarray of int (3,)
        Index of the extended grid's first voxel in scan voxel indices (<= 0).
    shape : tuple of 3 ints
    """
    first, last = box_through_affine(*phantom.head_bounds_mm, np.linalg.inv(pose.affine) @ pose.mni_to_world)
    start = np.minimum(np.floor(first).astype(int) - margin, 0)
    stop = np.maximum(np.ceil(last).astype(int) + margin, np.asarray(pose.shape) - 1)
    return start, tuple(int(n) for n in stop - start + 1)


def harmonic_basis(points_mm: np.ndarray, order: int) -> np.ndarray:
    """Solid spherical harmonics up to ``order`` (<= 2) at points (N, 3), as columns."""
    x, y, z = (points_mm / 100.0).T
    columns = [np.ones_like(x)]
    if order >= 1:
        columns += [x, y, z]
    if order >= 2:
        columns += [x * y, x * z, y * z, x * x - y * y, 2 * z * z - x * x - y * y]
    return np.stack(columns, axis=1)


def shim_harmonics(field_ppm: np.ndarray, mask: np.ndarray, affine: np.ndarray, order: int):
    """Remove the least-squares harmonic fit over the mask (in place); return coefficients."""
    index = np.argwhere(mask)[::2]
    world = index @ affine[:3, :3].T + affine[:3, 3]
    centre = world.mean(axis=0)
    coef, *_ = np.linalg.lstsq(harmonic_basis(world - centre, order),
                               field_ppm[tuple(index.T)].astype(np.float64), rcond=None)
    grids = np.meshgrid(*[np.arange(n, dtype=np.float32) for n in field_ppm.shape], indexing="ij",
                        sparse=True)
    world_axes = [affine[a, 0] * grids[0] + affine[a, 1] * grids[1] + affine[a, 2] * grids[2]
                  + (affine[a, 3] - centre[a]) for a in range(3)]
    x, y, z = (w / 100.0 for w in world_axes)
    terms = [1.0 + 0 * x]
    if order >= 1:
        terms += [x, y, z]
    if order >= 2:
        terms += [x * y, x * z, y * z, x * x - y * y, 2 * z * z - x * x - y * y]
    for c, term in zip(coef, terms):
        field_ppm -= np.float32(c) * term.astype(np.float32)
    return coef


def smooth_phase_offset(shape, rng: np.random.Generator, peak_to_peak_rad: float) -> np.ndarray:
    """Echo-independent receive phase: a random constant plus a random quadratic in space."""
    constant = rng.uniform(-np.pi, np.pi)
    linear = rng.normal(size=3)
    quadratic = rng.normal(size=6) * 0.5
    u = np.meshgrid(*[np.linspace(-1.0, 1.0, n, dtype=np.float32) for n in shape], indexing="ij",
                    sparse=True)
    pairs = [(0, 0), (1, 1), (2, 2), (0, 1), (0, 2), (1, 2)]
    smooth = sum(np.float32(linear[a]) * u[a] for a in range(3))
    smooth = smooth + sum(np.float32(q) * u[a] * u[b] for q, (a, b) in zip(quadratic, pairs))
    smooth = np.broadcast_to(smooth, shape).astype(np.float32)
    span = float(smooth.max() - smooth.min())
    if span > 0:
        smooth *= np.float32(peak_to_peak_rad / span)
    return smooth + np.float32(constant)


def phase_to_vendor_integers(phase_rad: np.ndarray, levels: int) -> np.ndarray:
    """Wrap to [-pi, pi) and store as integers -levels .. levels-1 (int16)."""
    values = np.rint(np.mod(phase_rad + np.pi, 2.0 * np.pi) * (levels / np.pi)) - levels
    values[values >= levels] -= 2 * levels
    return values.astype(np.int16)


def scan_properties(context: ScanContext, pose: SubjectPose):
    """The brain mask, CIT168 labels, S0 and R2* (s^-1) of the phantom on the scan grid.

    Labels by nearest neighbour, S0 and R2* (already smoothed by the voxel's point spread)
    by trilinear interpolation; this is what ``simulate_scan`` builds the magnitude from.
    """
    matrix, offset = phantom_transform(context.phantom, pose, pose.affine)
    codes = resample(context.phantom.codes, matrix, offset, pose.shape, order=0, dtype=np.uint8)
    mask = context.brain_codes[codes]
    labels = context.cit168_by_code[codes]
    s0 = resample(context.s0_map, matrix, offset, pose.shape, order=1)
    r2s = resample(context.r2star_map, matrix, offset, pose.shape, order=1)
    return mask, labels, s0, r2s


def code_table_on_scan(context: ScanContext, pose: SubjectPose, table: np.ndarray) -> np.ndarray:
    """A per-code property (a 256-entry table) as the scan sees it, float32 on the scan grid.

    Smoothed by the voxel's point spread on the phantom grid, then sampled trilinearly, as
    the simulator does for S0 and R2*; for maps the simulator does not make (chi+, chi-, R2).
    """
    volume = _smooth(np.asarray(table, dtype=np.float32)[context.phantom.codes], context.psf_sigma_vox)
    matrix, offset = phantom_transform(context.phantom, pose, pose.affine)
    return resample(volume, matrix, offset, pose.shape, order=1)


def simulate_scan(context: ScanContext, chi_table: np.ndarray, pose: SubjectPose,
                  rng: np.random.Generator, *, workers: int = 1) -> SubjectScan:
    """Simulate one subject's multi-echo scan and its truth.

    Parameters
    ----------
    context : ScanContext
        The phantom and shared maps (``make_context``).
    chi_table : ndarray (256,)
        The subject's susceptibility per phantom code, ppm relative to water.
    pose : SubjectPose
    rng : numpy Generator
        For the phase offset and the noise.
    workers : int
        Threads for the FFTs.
    """
    settings = context.settings
    phantom = context.phantom
    seconds = {}
    t0 = time.perf_counter()

    # Susceptibility on the extended grid, relative to air.
    chi_mni = _smooth(chi_table[phantom.codes], context.psf_sigma_vox)
    start, ext_shape = extended_grid(phantom, pose)
    ext_affine = pose.affine @ np.vstack([np.hstack([np.eye(3), start[:, None]]), [0, 0, 0, 1]])
    matrix, offset = phantom_transform(phantom, pose, ext_affine)
    chi_ext = resample(chi_mni, matrix, offset, ext_shape, order=1, cval=AIR_CHI_PPM)
    del chi_mni
    chi_ext -= np.float32(AIR_CHI_PPM)
    fov = tuple(slice(-s, -s + n) for s, n in zip(start, pose.shape))
    seconds["resample_chi"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    voxel = tuple(float(v) for v in settings.voxel_size_mm)
    b0 = pose.b0_direction_voxel
    field_ppm = forward_field(chi_ext, voxel, b0, pad_factor=FIELD_PAD_FACTOR, workers=workers)[fov]
    chi_water = chi_ext[fov] + np.float32(AIR_CHI_PPM)
    del chi_ext
    seconds["total_field"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    mask, labels, s0, r2s = scan_properties(context, pose)
    seconds["resample_properties"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    shim = shim_harmonics(field_ppm, mask, pose.affine, settings.shim_order)
    brain_mean = float(chi_water[mask].mean(dtype=np.float64))
    chi_ref = np.where(mask, chi_water - np.float32(brain_mean), np.float32(0.0)).astype(np.float32)
    del chi_water
    local = local_field_in_mask(chi_ref, mask, voxel, b0, workers=workers)
    hz_per_ppm = GYROMAGNETIC_RATIO_HZ_PER_T * settings.field_strength_t * 1e-6
    field_hz = (field_ppm * np.float32(hz_per_ppm)).astype(np.float32)
    del field_ppm
    seconds["shim_and_local_field"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    phi0 = smooth_phase_offset(pose.shape, rng, settings.phase_offset_rad)
    tes = settings.echo_times_s
    first_echo = s0 * np.exp(-r2s * np.float32(tes[0]))
    signal_level = float(first_echo[mask].mean(dtype=np.float64))
    sigma = signal_level / settings.snr
    scale = settings.magnitude_brain_level / signal_level
    magnitude, phase = [], []
    for te in tes:
        amplitude = s0 * np.exp(-r2s * np.float32(te))
        angle = np.float32(2.0 * np.pi * te) * field_hz + phi0
        real = amplitude * np.cos(angle) + rng.standard_normal(pose.shape, dtype=np.float32) * np.float32(sigma)
        imag = amplitude * np.sin(angle) + rng.standard_normal(pose.shape, dtype=np.float32) * np.float32(sigma)
        magnitude.append(np.clip(np.rint(np.hypot(real, imag) * np.float32(scale)), 0, 32767).astype(np.int16))
        phase.append(phase_to_vendor_integers(np.arctan2(imag, real), settings.phase_levels))
    seconds["signal"] = time.perf_counter() - t0

    info = {"noise_sd": sigma * scale, "signal_first_echo_brain": settings.magnitude_brain_level,
            "shim_coefficients_ppm": [float(c) for c in shim], "shim_order": settings.shim_order,
            "extended_grid_shape": list(ext_shape), "extended_grid_start": start.tolist(),
            "seconds": seconds}
    return SubjectScan(magnitude=magnitude, phase=phase, affine=pose.affine, chi_ppm=chi_ref,
                       mask=mask, local_field_ppm=local, total_field_hz=field_hz, labels=labels,
                       brain_mean_ppm=brain_mean, info=info, r2star_per_s=r2s)


def local_field_in_mask(chi_ppm: np.ndarray, mask: np.ndarray, voxel_size_mm, b0, *, workers: int):
    """Field of the susceptibility inside ``mask``, in the mask (bounding box padded to double)."""
    index = np.argwhere(mask)
    local = np.zeros(mask.shape, np.float32)
    if index.size == 0:
        return local
    box = tuple(slice(int(a), int(b) + 1) for a, b in zip(index.min(axis=0), index.max(axis=0)))
    local[box] = forward_field(chi_ppm[box], voxel_size_mm, b0, pad_factor=1.0, workers=workers)
    local[~mask] = 0.0
    return local
