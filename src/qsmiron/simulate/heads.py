"""A varied family of simulated heads with known truth, for choosing reconstruction defaults.

Background field removal is sensitive to what lies at and beyond the brain mask's edge, so
the family varies exactly that (issue 9): cortex and sulcal CSF at the mask edge with
varied grey/white contrast and texture, the CSF gap to the skull (1-4 mm), the skull's
thickness and susceptibility (-1 to -2.4 ppm), the size, position and clearance of the air
cavities (sinuses, mastoids, ear canals), oblique slices (0-25 degrees), slice thickness
(1-2.5 mm) and brain-mask errors (the mask dilated into CSF and skull or eroded by 1-2 mm).

How a head is made (independent of ``simulate.subject``'s signal path):

1. **Anatomy** from the MNI152NLin2009cAsym template and the CIT168 nuclei
   (``simulate.phantom.build_head_phantom``: grey/white/CSF classes of the template, nuclei
   from the atlas). Around the brain, this module lays its own CSF gap, skull and soft
   tissue by distance from the brain surface and places its own air cavities, scaled,
   shifted and kept ``cavity_clearance_mm`` from the brain, all per head.
2. **Susceptibility** (ppm, relative to water): grey matter +0.01..0.02, white matter
   -0.02..-0.03 with smooth random texture, CSF 0, nuclei at their literature values
   (``SimulationSettings().regions``), skull as given, air +9.41; with ``veins``, the deep
   cerebral veins' blood (``simulate.veins``).
3. **Field** by the FFT dipole model over the whole head (``qsmiron.recon.dipole.
   forward_field``, checked against qsm-forward's ``generate_field`` in the tests), shimmed
   to second order over the brain, on one of two grids (``HeadSpec.field_frame``):

   - "slab": the 1 mm grid of the tilted slab, B0 oblique in its axes, as a simulator that
     works in the image's voxel axes does. With binary air and bone edges the tilted
     discrete kernel rings: the background it gives is not harmonic in the brain. One air
     sphere (10 mm, 6 mm from the brain, B0 25 degrees off the grid) leaves 2.5 ppb RMS
     there (11 % of its field) and adds 36 % of the local field's norm to LBV's and iSMV's
     error; with B0 along a grid axis, or for the analytic field, almost nothing.
   - "scanner": a 1 mm grid aligned with the scanner (B0 along z), the field then
     interpolated onto the slab by cubic B-splines: the continuous, harmonic background a
     scanner samples (``simulate.head_field`` says why not linearly).

   The family is evaluated both ways (``benchmarks/bench_bgremove.py --frame``): "slab"
   reproduces the issue's independent heads (iSMV 84 % local-field NRMSE on h03 here),
   "scanner" is what real data look like, and a default must hold on both.
4. **Signal** with qsm-forward's model (github.com/astewartau/qsm-forward): on the 1 mm grid
   ``M0 exp(-TE R2*) exp(i (2 pi gamma B0 field TE + phi0))`` with the spoiled-GRE T1
   weighting in M0 and qsm-forward's quadratic phase offset ``phi0``; cropped in k-space to
   the slice thickness (the acquisition's resolution, so thick slices carry the intravoxel
   dephasing of real data); complex Gaussian noise of SD = peak |signal| / SNR per echo.
   The tests check ``gre_signal``, ``crop_kspace``, ``add_complex_noise`` and
   ``quadratic_phase_offset`` against qsm-forward's own functions.

Truth on the scan grid: susceptibility (the 1 mm map cropped in k-space like the signal,
referenced to its mean over the true brain), the true brain mask, the local field (field of
the referenced susceptibility inside the brain), the total field and the CIT168 labels.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field, replace

import numpy as np
from scipy import ndimage

from qsmiron.simulate.head_field import FINE_VOXEL_MM, field_in_scanner_frame, field_in_slab_frame
from qsmiron.simulate.phantom import (AIR_CHI_PPM, CODE_AIR, CODE_CAVITY, CODE_CSF, CODE_GM,
                                      CODE_MENINGES, CODE_SKULL, CODE_SOFT, CODE_WM,
                                      build_head_phantom, mr_property_tables)
from qsmiron.simulate.settings import SimulationSettings
from qsmiron.simulate.signal_model import (add_complex_noise, crop_kspace, gre_signal,
                                           quadratic_phase_offset)
from qsmiron.simulate.subject import (local_field_in_mask, make_pose, phantom_transform, resample,
                                      shim_harmonics)
from qsmiron.simulate.veins import VEIN_CHI_PPM, VEIN_R2STAR_3T_PER_S, vein_fraction

HEADS_REVISION = 2
"""Changes when the same ``HeadSpec`` gives different arrays (2: the scanner frame's field is
interpolated by cubic B-splines, no longer linearly), so cached heads can be recognised."""

ECHO_TIMES_S = (0.004, 0.010, 0.016, 0.022, 0.028)
FIELD_STRENGTH_T = 3.0
PEAK_SNR = 120.0

R2STAR_RELATIVE_TO_3T = ((1.5, 0.78), (3.0, 1.0), (7.0, 1.98))
"""Brain R2* at a field strength relative to 3 T (field T, ratio), interpolated linearly: grey
and white matter's T2* of 84 / 66 / 33 ms and 66 / 53 / 26 ms at 1.5, 3 and 7 T (Peters AM et
al. Magn Reson Imaging 2007;25:748-753, doi:10.1016/j.mri.2007.02.014) give ratios of 0.78-0.80
and 1.98-2.04; the phantom's R2* values are those of 3 T."""

ACQUISITIONS: dict[str, dict] = {
    "1.5T": {"field_strength_t": 1.5, "echo_times_s": (0.006, 0.014, 0.022, 0.030, 0.038), "peak_snr": 60.0},
    "7T": {"field_strength_t": 7.0, "echo_times_s": (0.003, 0.0075, 0.012, 0.0165, 0.021), "peak_snr": 200.0},
    "3echo": {"echo_times_s": (0.005, 0.015, 0.025)},
    "2echo": {"echo_times_s": (0.005, 0.020)},
    "snr40": {"peak_snr": 40.0},
}
"""Acquisitions unlike the family's 3 T, 5 echoes of 4-28 ms at SNR 120 (``variant(spec,
**ACQUISITIONS[name])``): a 1.5 T clinical protocol (longer echoes, half the SNR), 7 T
(shorter echoes, R2* doubled, more SNR), the 3- and 2-echo protocols of clinical and vendor
defaults, and a noisy scan (SNR 40)."""

# (centre_mm, semi_axes_mm) in MNI mm of the air cavities of this family (x < 0 is left);
# scaled by ``cavity_scale`` about their centres and moved by ``cavity_shift_mm``.
CAVITIES = (
    ((0.0, 74.0, 4.0), (13.0, 7.0, 11.0)),        # frontal sinus
    ((0.0, 14.0, -36.0), (11.0, 12.0, 9.0)),      # sphenoid sinus
    ((0.0, 52.0, -50.0), (9.0, 24.0, 16.0)),      # nasal cavity
    ((-27.0, 44.0, -55.0), (12.0, 15.0, 14.0)),   # maxillary sinuses
    ((27.0, 44.0, -55.0), (12.0, 15.0, 14.0)),
    ((-54.0, -28.0, -38.0), (9.0, 11.0, 9.0)),    # mastoid air cells
    ((54.0, -28.0, -38.0), (9.0, 11.0, 9.0)),
    ((-68.0, -19.0, -42.0), (14.0, 4.5, 4.5)),    # ear canals
    ((68.0, -19.0, -42.0), (14.0, 4.5, 4.5)),
)

EDGE_FLAT_MM = 4.0
"""Depth of the brain's outer layer made uniform in heads without edge contrast."""


@dataclass(frozen=True)
class HeadSpec:
    """What varies between the heads of the family (lengths in mm, susceptibility in ppm).

    ``oblique_deg`` tilts the slab (and the head with it) about x and y; ``voxel_size_mm``
    must divide ``fov_mm``; ``mask_error_mm`` > 0 dilates the brain mask given to the
    reconstruction by that distance, < 0 erodes it. ``edge_contrast=False`` makes the outer
    ``EDGE_FLAT_MM`` of the brain and the CSF around it uniform (the brain's mean);
    ``background=False`` replaces skull, air and soft tissue by CSF (no background field).
    ``background_psf_mm`` > 0 smooths the susceptibility outside the brain by a Gaussian of
    that sigma before the field is computed (a partial-volume edge: it removes most of the
    "slab" artefact). ``field_frame`` is "slab" or "scanner" (see the module docstring).
    ``region_chi_ppm`` gives named brain regions their own susceptibility, as
    ``((region, hemisphere or None, ppm), ...)`` in the phantom's names (``("VeP", "L", 0.07)``,
    ``("GM", None, 0.014)``): one subject of a cohort. The rest keep the values above and the
    literature's (``SimulationSettings().regions``). ``field_strength_t``, ``echo_times_s`` and
    ``peak_snr`` set the acquisition (``ACQUISITIONS``); the tissue's R2* follows the field
    strength (``R2STAR_RELATIVE_TO_3T``). ``veins=True`` adds the deep cerebral veins of
    ``simulate.veins`` (blood's susceptibility and R2*).
    """

    name: str
    oblique_deg: tuple[float, float] = (0.0, 0.0)
    head_rotation_deg: tuple[float, float, float] = (0.0, 0.0, 0.0)
    voxel_size_mm: tuple[float, float, float] = (1.0, 1.0, 1.2)
    fov_mm: tuple[float, float, float] = (192.0, 224.0, 180.0)
    fov_offset_mm: tuple[float, float, float] = (0.0, 0.0, 0.0)
    gm_ppm: float = 0.015
    wm_ppm: float = -0.025
    csf_ppm: float = 0.0
    texture_ppm: float = 0.004
    csf_gap_mm: float = 2.5
    skull_mm: float = 6.0
    skull_ppm: float = -1.5
    cavity_scale: float = 1.0
    cavity_shift_mm: tuple[float, float, float] = (0.0, 0.0, 0.0)
    cavity_clearance_mm: float = 3.0
    mask_error_mm: float = 0.0
    edge_contrast: bool = True
    background: bool = True
    background_psf_mm: float = 0.0
    field_frame: str = "slab"
    veins: bool = False
    region_chi_ppm: tuple[tuple[str, str | None, float], ...] = ()
    field_strength_t: float = FIELD_STRENGTH_T
    echo_times_s: tuple[float, ...] = ECHO_TIMES_S
    peak_snr: float = PEAK_SNR
    seed: int = 0


FAMILY: tuple[HeadSpec, ...] = (
    HeadSpec("h01_axial_1mm", voxel_size_mm=(1.0, 1.0, 1.0), seed=1),
    HeadSpec("h02_obl10_dil1", oblique_deg=(10.0, 2.0), csf_gap_mm=3.0, skull_ppm=-2.0,
             cavity_scale=1.2, mask_error_mm=1.0, seed=2),
    HeadSpec("h03_obl25_ero1", oblique_deg=(-25.0, 4.0), csf_gap_mm=1.5, skull_ppm=-1.0,
             cavity_scale=0.8, cavity_shift_mm=(0.0, -4.0, 3.0), mask_error_mm=-1.0, seed=3),
    HeadSpec("h04_obl15_2p5mm_dil2", oblique_deg=(15.0, -3.0), voxel_size_mm=(1.0, 1.0, 2.5),
             skull_mm=7.0, skull_ppm=-1.8, mask_error_mm=2.0, seed=4),
    HeadSpec("h05_obl20_2mm_ero2", oblique_deg=(-20.0, 0.0), voxel_size_mm=(1.0, 1.0, 2.0),
             gm_ppm=0.012, wm_ppm=-0.022, mask_error_mm=-2.0, seed=5),
    HeadSpec("h06_obl5_bigsinus", oblique_deg=(5.0, 0.0), voxel_size_mm=(1.0, 1.0, 1.5),
             cavity_scale=1.4, cavity_clearance_mm=1.5, skull_ppm=-2.2, seed=6),
    HeadSpec("h07_axial_strong_dil1", gm_ppm=0.02, wm_ppm=-0.03, texture_ppm=0.006,
             head_rotation_deg=(4.0, -3.0, 2.0), mask_error_mm=1.0, seed=7),
    HeadSpec("h08_obl25_weak_ero1", oblique_deg=(25.0, -6.0), gm_ppm=0.01, wm_ppm=-0.02,
             texture_ppm=0.002, csf_gap_mm=3.5, mask_error_mm=-1.0, seed=8),
    HeadSpec("h09_obl12_thinskull_dil2", oblique_deg=(12.0, 3.0), voxel_size_mm=(1.0, 1.0, 1.0),
             csf_gap_mm=1.0, skull_mm=4.0, skull_ppm=-2.4, mask_error_mm=2.0, seed=9),
    HeadSpec("h10_obl18_2mm_sinusnear", oblique_deg=(-18.0, -4.0), voxel_size_mm=(1.0, 1.0, 2.0),
             cavity_scale=1.15, cavity_shift_mm=(3.0, -6.0, 5.0), cavity_clearance_mm=2.0, seed=10),
    HeadSpec("h11_obl8_texture_ero2", oblique_deg=(8.0, 5.0), texture_ppm=0.008, csf_gap_mm=4.0,
             skull_ppm=-1.2, cavity_scale=0.7, mask_error_mm=-2.0, seed=11),
    HeadSpec("h12_obl22_1p5mm_dil1", oblique_deg=(22.0, 0.0), voxel_size_mm=(1.0, 1.0, 1.5),
             head_rotation_deg=(-3.0, 2.0, -4.0), gm_ppm=0.018, wm_ppm=-0.028, skull_mm=5.0,
             skull_ppm=-1.7, mask_error_mm=1.0, seed=12),
)
"""Twelve heads spanning the issue's ranges (see the module docstring)."""


@dataclass
class SimulatedHead:
    """A simulated multi-echo scan and its truth on the scan grid.

    Attributes
    ----------
    spec : HeadSpec
    magnitude : ndarray, float32, (X, Y, Z, E)
    phase_rad : ndarray, float32, (X, Y, Z, E), wrapped to [-pi, pi)
    echo_times_s : tuple of float
    field_strength_t : float
    affine : ndarray (4, 4)
        Scan voxel -> scanner mm (B0 along scanner z).
    voxel_size_mm : tuple of 3 floats
    b0_direction : ndarray (3,)
        B0 in voxel axes.
    chi_ppm : ndarray, float32
        True susceptibility minus its mean over ``brain``, zero outside ``brain``.
    brain : ndarray of bool
        True brain mask.
    mask : ndarray of bool
        The mask given to the reconstruction (``brain`` with the spec's mask error).
    local_field_ppm : ndarray, float32
        Field of ``chi_ppm`` (sources inside ``brain``), zero outside ``brain``.
    total_field_ppm : ndarray, float32
        Shimmed total field, ppm of B0 (what the phase encodes apart from the offset).
    labels : ndarray, int16
        CIT168 label index per voxel (0 outside the nuclei).
    """

    spec: HeadSpec
    magnitude: np.ndarray
    phase_rad: np.ndarray
    echo_times_s: tuple[float, ...]
    field_strength_t: float
    affine: np.ndarray
    voxel_size_mm: tuple[float, float, float]
    b0_direction: np.ndarray
    chi_ppm: np.ndarray
    brain: np.ndarray
    mask: np.ndarray
    local_field_ppm: np.ndarray
    total_field_ppm: np.ndarray
    labels: np.ndarray
    info: dict = field(default_factory=dict)


# --- anatomy and susceptibility on the MNI grid --------------------------------------------

def _ball(radius_mm: float, voxel_size_mm) -> np.ndarray:
    half = [int(np.floor(radius_mm / v + 1e-9)) for v in voxel_size_mm]
    axes = [np.arange(-h, h + 1) * v for h, v in zip(half, voxel_size_mm)]
    x, y, z = np.meshgrid(*axes, indexing="ij", sparse=True)
    return (x * x + y * y + z * z) <= radius_mm ** 2 + 1e-9


def perturb_mask(mask: np.ndarray, error_mm: float, voxel_size_mm) -> np.ndarray:
    """The mask dilated (``error_mm`` > 0) or eroded (< 0) by a ball of ``|error_mm|`` mm."""
    if error_mm == 0:
        return mask.copy()
    ball = _ball(abs(error_mm), voxel_size_mm)
    if error_mm > 0:
        return ndimage.binary_dilation(mask, ball)
    return ndimage.binary_erosion(mask, ball)


@functools.lru_cache(maxsize=1)
def _anatomy():
    """The MNI phantom, a box around its brain and the distance (mm) from the brain surface."""
    phantom = build_head_phantom(1.0)
    index = np.argwhere(phantom.brain)
    margin = 16
    lo = np.maximum(index.min(axis=0) - margin, 0)
    hi = np.minimum(index.max(axis=0) + margin + 1, phantom.brain.shape)
    box = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))
    distance = ndimage.distance_transform_edt(~phantom.brain[box]).astype(np.float32)
    inner = ndimage.distance_transform_edt(phantom.brain[box]).astype(np.float32)
    return phantom, box, distance, inner


def _cavity_mask(phantom, spec: HeadSpec) -> np.ndarray:
    res = phantom.resolution_mm
    origin = phantom.affine[:3, 3]
    axes = [origin[a] + res * np.arange(n, dtype=np.float32) for a, n in enumerate(phantom.codes.shape)]
    air = np.zeros(phantom.codes.shape, bool)
    for centre, semi in CAVITIES:
        c = np.asarray(centre) + np.asarray(spec.cavity_shift_mm)
        s = np.asarray(semi) * spec.cavity_scale
        sl = []
        for a in range(3):
            first = max(int(np.floor((c[a] - s[a] - origin[a]) / res)), 0)
            last = min(int(np.ceil((c[a] + s[a] - origin[a]) / res)) + 1, air.shape[a])
            sl.append(slice(first, last))
        if any(x.start >= x.stop for x in sl):
            continue
        terms = [((axes[a][sl[a]] - c[a]) / s[a]) ** 2 for a in range(3)]
        inside = terms[0][:, None, None] + terms[1][None, :, None] + terms[2][None, None, :] <= 1.0
        air[tuple(sl)] |= inside
    return air


@functools.lru_cache(maxsize=1)
def _vein_fraction() -> np.ndarray:
    """The deep veins' blood fraction on the phantom's MNI grid (the same for every head)."""
    phantom = _anatomy()[0]
    return vein_fraction(phantom.codes.shape, phantom.affine)


def susceptibility_mni(spec: HeadSpec) -> tuple[np.ndarray, np.ndarray]:
    """Susceptibility (ppm, relative to water) and tissue codes of the head on the MNI grid."""
    phantom, box, distance, inner = _anatomy()
    settings = SimulationSettings()
    codes = phantom.codes.copy()
    head = codes != CODE_AIR
    brain = phantom.brain
    sub = codes[box]
    outside = ~brain[box] & head[box]
    sub[outside] = CODE_SOFT
    sub[outside & (distance <= spec.csf_gap_mm + spec.skull_mm)] = CODE_SKULL
    sub[outside & (distance <= spec.csf_gap_mm)] = CODE_MENINGES
    far = ~brain & head
    far[box] = False
    codes[far] = CODE_SOFT  # the phantom's own cavities give way to this family's
    clearance = np.zeros(codes.shape, bool)
    clearance[box] = distance < spec.cavity_clearance_mm
    codes[_cavity_mask(phantom, spec) & head & ~brain & ~clearance] = CODE_CAVITY

    table = np.zeros(256, np.float32)
    table[CODE_AIR] = table[CODE_CAVITY] = AIR_CHI_PPM
    table[CODE_SKULL] = spec.skull_ppm
    table[CODE_MENINGES] = table[CODE_CSF] = spec.csf_ppm
    given = {(name, side): float(ppm) for name, side, ppm in spec.region_chi_ppm}
    unknown = sorted(set(given) - set(phantom.regions.values()), key=str)
    if unknown:
        raise ValueError(f"region_chi_ppm names regions the phantom does not have: {unknown}")
    for code, (name, side) in phantom.regions.items():
        table[code] = {"GM": spec.gm_ppm, "WM": spec.wm_ppm, "CSF": spec.csf_ppm}.get(
            name, settings.regions[name].chi_ppm if name in settings.regions else 0.0)
        table[code] = given.get((name, side), table[code])
    chi = table[codes]
    rng = np.random.default_rng(spec.seed)
    if spec.texture_ppm > 0:
        noise = ndimage.gaussian_filter(rng.standard_normal(chi[box].shape, np.float32), 3.0)
        noise *= np.float32(spec.texture_ppm / noise.std())
        tissue = (codes[box] == CODE_GM) | (codes[box] == CODE_WM)
        chi[box][tissue] += noise[tissue]
    if not spec.edge_contrast:
        mean = np.float32(chi[brain].mean(dtype=np.float64))
        flat = np.zeros(codes.shape, bool)
        flat[box] = (brain[box] & (inner <= EDGE_FLAT_MM)) | (codes[box] == CODE_MENINGES)
        chi[flat] = mean
    if spec.veins:
        blood = _vein_fraction()
        chi += blood * (np.float32(VEIN_CHI_PPM) - chi) * (codes != CODE_AIR)
    if spec.background_psf_mm > 0:
        outside = np.where(brain, np.float32(spec.csf_ppm), chi)
        outside = ndimage.gaussian_filter(outside, spec.background_psf_mm / phantom.resolution_mm)
        chi = np.where(brain, chi, outside).astype(np.float32)
    if not spec.background:
        chi[~brain] = spec.csf_ppm
        codes[~brain & (codes != CODE_MENINGES)] = CODE_SOFT
    return chi, codes


# --- the scan --------------------------------------------------------------------------------

SLAB_MARGIN_MM = 12.0
"""At least this much extra 1 mm grid on each side along axes acquired coarser than 1 mm: the
k-space crop is periodic, so without it the brain cut by the field of view at one face
would ring into the other (a scanner oversamples the slab for the same reason)."""


def _grids(phantom, spec: HeadSpec):
    """Pose of the 1 mm slab-frame grid, the scan grid's affine and shape, and the crops.

    Returns the pose of the 1 mm grid (field of view plus the slab margin), the scan
    affine, the scan shape, the k-space crop shape and the slice of the cropped volume
    that is the scan.
    """
    fov = np.asarray(spec.fov_mm, float)
    target = np.asarray(spec.voxel_size_mm, float)
    ratio = target / FINE_VOXEL_MM
    target_shape = np.rint(fov / target).astype(int)
    if not np.allclose(target_shape * target, fov, atol=1e-6):
        raise ValueError(f"voxel size {spec.voxel_size_mm} must divide the field of view {spec.fov_mm}")
    margin = np.zeros(3, int)
    for axis in np.flatnonzero(ratio > 1):
        margin[axis] = int(np.ceil(SLAB_MARGIN_MM / target[axis]))
        while abs(margin[axis] * ratio[axis] - round(margin[axis] * ratio[axis])) > 1e-6:
            margin[axis] += 1  # a whole number of 1 mm voxels
    fine_margin = np.rint(margin * ratio).astype(int)
    settings = SimulationSettings(voxel_size_mm=(FINE_VOXEL_MM,) * 3,
                                  fov_mm=tuple(fov + 2 * fine_margin * FINE_VOXEL_MM))
    pose = make_pose(phantom, settings, head_rotation_deg=spec.head_rotation_deg,
                     fov_offset_mm=spec.fov_offset_mm, oblique_deg=spec.oblique_deg)
    # Sample j of a k-space crop from n to m sits at fine index j * n / m.
    to_fine = np.diag([*ratio, 1.0])
    to_fine[:3, 3] = fine_margin
    affine = pose.affine @ to_fine
    crop_shape = tuple(int(n) for n in target_shape + 2 * margin)
    scan = tuple(slice(int(m), int(m + n)) for m, n in zip(margin, target_shape))
    return pose, settings, affine, tuple(int(n) for n in target_shape), crop_shape, scan, ratio


def simulate_head(spec: HeadSpec, *, workers: int = -1) -> SimulatedHead:
    """Simulate one head of the family (about 30-60 s and 3 GB at the default size)."""
    phantom, *_ = _anatomy()
    chi_mni, codes_mni = susceptibility_mni(spec)
    pose, settings, affine, shape, crop_shape, scan, ratio = _grids(phantom, spec)
    b0 = pose.b0_direction_voxel
    outside_value = AIR_CHI_PPM if spec.background else spec.csf_ppm

    if spec.field_frame == "scanner":
        field_fine = field_in_scanner_frame(phantom, pose, chi_mni, outside_value, workers)
    elif spec.field_frame == "slab":
        field_fine = field_in_slab_frame(phantom, pose, chi_mni, outside_value, workers)
    else:
        raise ValueError(f"field_frame must be 'slab' or 'scanner', got {spec.field_frame!r}")

    matrix, offset = phantom_transform(phantom, pose, pose.affine)
    codes_fine = resample(codes_mni, matrix, offset, pose.shape, order=0, dtype=np.uint8)
    brain_codes = np.zeros(256, bool)
    brain_codes[list(phantom.regions)] = True
    brain_fine = brain_codes[codes_fine]
    shim = shim_harmonics(field_fine, brain_fine, pose.affine, 2)

    # Signal on the 1 mm grid, cropped in k-space to the scan's resolution, plus noise.
    s0_table, r2s_table = mr_property_tables(phantom, settings)
    m0 = s0_table[codes_fine]
    r2s = r2s_table[codes_fine]
    if spec.veins:
        blood = resample(_vein_fraction(), matrix, offset, pose.shape, order=1)
        r2s += blood * (np.float32(VEIN_R2STAR_3T_PER_S) - r2s)
        del blood
    r2s *= np.float32(r2star_relative_to_3t(spec.field_strength_t))
    offset_rad = quadratic_phase_offset(m0, brain_fine)
    rng = np.random.default_rng(1000 + spec.seed)
    magnitude = np.empty((*shape, len(spec.echo_times_s)), np.float32)
    phase = np.empty_like(magnitude)
    for echo, te in enumerate(spec.echo_times_s):
        signal = crop_kspace(gre_signal(field_fine, m0, r2s, te, field_strength_t=spec.field_strength_t,
                                        phase_offset_rad=offset_rad), crop_shape)[scan]
        signal = add_complex_noise(signal, spec.peak_snr, rng)
        magnitude[..., echo] = np.abs(signal)
        phase[..., echo] = np.angle(signal)
    del m0, r2s, offset_rad

    # Truth on the scan grid.
    # The truth is the brain's own susceptibility at the scan's resolution: cropped in k-space
    # like the signal, from a map without skull and air (whose ringing would swamp it).
    tissue_mni = np.where(phantom.brain, chi_mni, np.float32(spec.csf_ppm))
    chi_tissue = resample(tissue_mni, matrix, offset, pose.shape, order=1, cval=spec.csf_ppm)
    del tissue_mni
    chi_scan = crop_kspace(chi_tissue, crop_shape)[scan]
    del chi_tissue
    total = resample(field_fine, np.diag(ratio), np.array([sl.start for sl in scan]) * ratio, shape, order=1)
    del field_fine
    matrix, offset = phantom_transform(phantom, pose, affine)
    codes_scan = resample(codes_mni, matrix, offset, shape, order=0, dtype=np.uint8)
    brain = brain_codes[codes_scan]
    cit = np.zeros(256, np.int16)
    for code, index in phantom.cit168_index.items():
        cit[code] = index
    labels = cit[codes_scan]
    brain_mean = float(chi_scan[brain].mean(dtype=np.float64))
    chi_ref = np.where(brain, chi_scan - np.float32(brain_mean), np.float32(0)).astype(np.float32)
    voxel = tuple(float(v) for v in spec.voxel_size_mm)
    local = local_field_in_mask(chi_ref, brain, voxel, b0, workers=workers)
    mask = perturb_mask(brain, spec.mask_error_mm, voxel)
    info = {"b0_direction": b0.tolist(), "oblique_angle_deg": pose.oblique_angle_deg,
            "brain_mean_ppm": brain_mean, "shim_ppm": [float(c) for c in shim],
            "brain_voxels": int(brain.sum()), "mask_voxels": int(mask.sum())}
    return SimulatedHead(spec=spec, magnitude=magnitude, phase_rad=phase,
                         echo_times_s=tuple(spec.echo_times_s),
                         field_strength_t=spec.field_strength_t, affine=affine, voxel_size_mm=voxel,
                         b0_direction=b0, chi_ppm=chi_ref, brain=brain, mask=mask,
                         local_field_ppm=local, total_field_ppm=total.astype(np.float32),
                         labels=labels, info=info)


def r2star_relative_to_3t(field_strength_t: float) -> float:
    """Brain R2* at ``field_strength_t`` relative to 3 T (``R2STAR_RELATIVE_TO_3T``)."""
    fields, ratios = zip(*R2STAR_RELATIVE_TO_3T)
    if not fields[0] <= field_strength_t <= fields[-1]:
        raise ValueError(f"field strength {field_strength_t} T outside the measured "
                         f"{fields[0]}-{fields[-1]} T")
    return float(np.interp(field_strength_t, fields, ratios))


def variant(spec: HeadSpec, **changes) -> HeadSpec:
    """A copy of ``spec`` with fields changed (and ``name`` suffixed by what changed)."""
    suffix = "_".join(f"{k}={v}" for k, v in changes.items() if k != "name")
    return replace(spec, **{"name": f"{spec.name}[{suffix}]", **changes})
