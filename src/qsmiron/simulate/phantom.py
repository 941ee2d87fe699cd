"""A head in MNI space, built offline from the MNI152NLin2009cAsym brain template and CIT168.

The phantom is a map of integer tissue codes on a regular grid in MNI152NLin2009cAsym
millimetres, large enough to hold a whole head with its neck:

- **Brain** (the template's brain-extracted voxels): CSF, grey and white matter from three
  intensity classes of the T1w template (multi-level Otsu thresholds); the CIT168 nuclei
  (Pauli 2018) from its deterministic label map, each hemisphere its own code; two nuclei
  that CIT168 lacks, approximated by ellipsoids at their MNI positions and drawn only over
  grey or white matter: the thalamus (centre +-11, -18, 7 mm; semi-axes 7, 13, 8 mm) and the
  dentate nucleus (centre +-15, -57, -35 mm; semi-axes 6, 9, 6 mm).
- **Head around the brain**, by the distance from the brain surface: 0-2.5 mm CSF and
  meninges, 2.5-8.5 mm skull, then soft tissue (scalp, muscle, fat) out to the skin at about
  13 mm, joined with a face (ellipsoid below the frontal lobes) and a neck (elliptic cylinder
  down to the bottom of the grid), smoothed so the skin is a smooth surface.
- **Air** outside the head and in cavities placed where they are in a head: frontal sinus,
  sphenoid sinus, nasal cavity, maxillary sinuses, mastoid air cells, ear canals and the
  pharynx. Cavities are kept at least 3 mm from the brain (they sit in bone).

Susceptibility is relative to water (brain values are whole-brain referenced, which is close
to water/CSF): air is +9.41 ppm (air +0.36 ppm minus water -9.05 ppm, SI volume
susceptibility), skull -1.5 ppm (cortical bone about -2.1 ppm mixed with marrow), soft tissue
0 ppm. The air-tissue difference of about 9.4 ppm is what makes the background field.

MR properties per code (for the magnitude): proton density, T1 at 3 T and R2*. R2* of the
iron-rich nuclei follows their population susceptibility (R2* = 18 s^-1 + 200 s^-1/ppm x
(chi - chi_GM)), a common empirical link at 3 T; it is the same for every subject.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import nibabel as nib
import numpy as np
import pandas as pd
from scipy import ndimage

from qsmiron.atlas.builtin import cit168_paths, template_brain_path
from qsmiron.simulate.settings import CIT168_REGIONS

AIR_CHI_PPM = 9.41
"""Susceptibility of air relative to water, ppm (SI volume susceptibility)."""

SKULL_CHI_PPM = -1.5
SOFT_TISSUE_CHI_PPM = 0.0

CODE_AIR = 0
CODE_CSF = 1
CODE_GM = 2
CODE_WM = 3
CODE_MENINGES = 4
CODE_SKULL = 5
CODE_SOFT = 6
CODE_CAVITY = 7
CODE_THAL = {"L": 8, "R": 9}
CODE_DN = {"L": 10, "R": 11}
CIT168_CODE_OFFSET = {"L": 20, "R": 40}
"""Phantom code of a CIT168 label: left index i (1-16) -> 20 + i, right 100 + i -> 40 + i."""

GRID_MIN_MM = (-100.0, -140.0, -170.0)
GRID_MAX_MM = (100.0, 112.0, 106.0)
"""The phantom grid in MNI millimetres: the template's brain plus room for skull, face, neck."""

_THALAMUS = ((11.0, -18.0, 7.0), (7.0, 13.0, 8.0))
_DENTATE = ((15.0, -57.0, -35.0), (6.0, 9.0, 6.0))

# (centre_mm, semi_axes_mm) of the air cavities; x < 0 is left (RAS+), a "+-" x means both sides.
_CAVITIES = {
    "frontal_sinus": [((0.0, 78.0, 0.0), (14.0, 6.0, 10.0))],
    "sphenoid_sinus": [((0.0, 12.0, -42.0), (12.0, 12.0, 10.0))],
    "nasal_cavity": [((0.0, 55.0, -52.0), (9.0, 25.0, 18.0))],
    "maxillary_sinus": [((-26.0, 45.0, -58.0), (12.0, 16.0, 14.0)),
                        ((26.0, 45.0, -58.0), (12.0, 16.0, 14.0))],
    "mastoid": [((-56.0, -30.0, -42.0), (8.0, 10.0, 9.0)), ((56.0, -30.0, -42.0), (8.0, 10.0, 9.0))],
    "ear_canal": [((-70.0, -20.0, -45.0), (14.0, 4.0, 4.0)), ((70.0, -20.0, -45.0), (14.0, 4.0, 4.0))],
    "pharynx": [((0.0, 0.0, -115.0), (9.0, 8.0, 55.0))],
}
_FACE = ((0.0, 40.0, -60.0), (60.0, 58.0, 58.0))
_NECK = ((0.0, -25.0), (52.0, 56.0), -40.0)  # centre (x, y), semi-axes, top z (mm)

MENINGES_MM = 2.5
SKULL_OUTER_MM = 8.5
SKIN_MM = 13.0

R2STAR_GM = 18.0
R2STAR_PER_PPM = 200.0


@dataclass(frozen=True, eq=False)
class HeadPhantom:
    """Tissue codes of a head on a grid in MNI space.

    Attributes
    ----------
    codes : ndarray of uint8, shape (X, Y, Z)
        Tissue code per voxel (see the ``CODE_*`` constants and ``regions``).
    brain : ndarray of bool
        The template's brain (the region whose mean is the susceptibility reference).
    affine : ndarray (4, 4)
        Phantom voxel -> MNI152NLin2009cAsym mm.
    regions : dict code -> (region, hemisphere or None)
        The brain codes: "CSF", "GM", "WM", CIT168 names, "Thal", "DN".
    cit168_index : dict code -> int
        The CIT168 label index (1-16 left, 101-116 right) of each CIT168 code.
    head_bounds_mm : ndarray (2, 3)
        MNI bounding box of everything that is not outside air.
    brain_centre_mm : ndarray (3,)
        Centre of the brain's bounding box, MNI mm.
    """

    codes: np.ndarray
    brain: np.ndarray
    affine: np.ndarray
    regions: dict
    cit168_index: dict
    head_bounds_mm: np.ndarray
    brain_centre_mm: np.ndarray

    @property
    def resolution_mm(self) -> float:
        return float(self.affine[0, 0])

    def lookup_table(self, values: dict[int, float], default: float = 0.0) -> np.ndarray:
        """A 256-entry float32 table code -> value (``default`` for codes not given)."""
        table = np.full(256, default, dtype=np.float32)
        for code, value in values.items():
            table[int(code)] = value
        return table

    def chi_table(self, region_chi_ppm: dict[tuple[str, str | None], float]) -> np.ndarray:
        """Susceptibility (ppm, relative to water) per code for one subject.

        Parameters
        ----------
        region_chi_ppm : dict (region, hemisphere) -> ppm
            Brain tissues ("CSF", "GM", "WM") under hemisphere None, nuclei under "L"/"R".
        """
        values = {CODE_AIR: AIR_CHI_PPM, CODE_CAVITY: AIR_CHI_PPM, CODE_SKULL: SKULL_CHI_PPM,
                  CODE_SOFT: SOFT_TISSUE_CHI_PPM, CODE_MENINGES: region_chi_ppm[("CSF", None)]}
        for code, key in self.regions.items():
            values[code] = region_chi_ppm[key]
        return self.lookup_table(values)


def cit168_label_table() -> pd.DataFrame:
    """The CIT168 lookup as index, name, region, hemisphere (L/R)."""
    _, lookup = cit168_paths()
    table = pd.read_csv(lookup)
    table.columns = [c.strip() for c in table.columns]
    rows = []
    for index, name in zip(table.iloc[:, 0], table.iloc[:, 1]):
        name = str(name).strip()
        region, _, side = name.rpartition("_")
        hemisphere = {"LH": "L", "RH": "R"}.get(side)
        if hemisphere is None or region not in CIT168_REGIONS:
            continue
        rows.append({"index": int(index), "name": name, "region": region, "hemisphere": hemisphere})
    return pd.DataFrame(rows)


def _grid_coordinates(shape, affine):
    """Open-grid MNI coordinates (x, y, z) of the phantom voxels (axis-aligned affine)."""
    return [affine[a, 3] + affine[a, a] * np.arange(shape[a], dtype=np.float32).reshape(
        [-1 if b == a else 1 for b in range(3)]) for a in range(3)]


def _ellipsoid(coords, centre, semi_axes) -> np.ndarray:
    x, y, z = coords
    return (((x - centre[0]) / semi_axes[0]) ** 2 + ((y - centre[1]) / semi_axes[1]) ** 2
            + ((z - centre[2]) / semi_axes[2]) ** 2) <= 1.0


def _resample_to_grid(image, shape, affine, order):
    data = np.asarray(image.dataobj, dtype=np.float32)
    matrix = np.linalg.inv(image.affine) @ affine
    return ndimage.affine_transform(data, matrix[:3, :3], matrix[:3, 3], output_shape=shape,
                                    order=order, mode="constant", cval=0.0, prefilter=False)


def _largest_component(mask: np.ndarray) -> np.ndarray:
    labels, n = ndimage.label(mask)
    if n <= 1:
        return mask
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    return labels == int(np.argmax(sizes))


@functools.lru_cache(maxsize=2)
def build_head_phantom(resolution_mm: float = 1.0) -> HeadPhantom:
    """Build (once per process and resolution) the head phantom in MNI space.

    Parameters
    ----------
    resolution_mm : float
        Grid spacing; 1 mm keeps the template and CIT168 labels exactly.

    Returns
    -------
    HeadPhantom
    """
    from skimage.filters import threshold_multiotsu

    res = float(resolution_mm)
    lo = np.asarray(GRID_MIN_MM)
    shape = tuple(int(np.floor((hi - l) / res)) + 1 for l, hi in zip(lo, GRID_MAX_MM))
    affine = np.diag([res, res, res, 1.0])
    affine[:3, 3] = lo
    label_path, _ = cit168_paths()
    template = _resample_to_grid(nib.load(str(template_brain_path())), shape, affine, order=1)
    cit = _resample_to_grid(nib.load(str(label_path)), shape, affine, order=0).astype(np.int16)

    brain = template > 1e-3 * float(template.max())
    brain = _largest_component(ndimage.binary_fill_holes(brain))
    brain |= cit > 0
    thresholds = threshold_multiotsu(template[brain], classes=3)

    codes = np.zeros(shape, np.uint8)
    codes[brain] = CODE_GM
    codes[brain & (template < thresholds[0])] = CODE_CSF
    codes[brain & (template >= thresholds[1])] = CODE_WM

    regions: dict[int, tuple[str, str | None]] = {CODE_CSF: ("CSF", None), CODE_GM: ("GM", None),
                                                   CODE_WM: ("WM", None)}
    coords = _grid_coordinates(shape, affine)
    for (centre, axes), codes_by_side, name in ((_THALAMUS, CODE_THAL, "Thal"),
                                                 (_DENTATE, CODE_DN, "DN")):
        for side, sign in (("L", -1.0), ("R", 1.0)):
            inside = _ellipsoid(coords, (sign * centre[0], centre[1], centre[2]), axes)
            inside &= (codes == CODE_GM) | (codes == CODE_WM)
            codes[inside & (cit == 0)] = codes_by_side[side]
            regions[codes_by_side[side]] = (name, side)

    cit168_index = {}
    for row in cit168_label_table().itertuples():
        offset = CIT168_CODE_OFFSET[row.hemisphere]
        code = offset + (row.index % 100)
        codes[cit == row.index] = code
        regions[code] = (row.region, row.hemisphere)
        cit168_index[code] = row.index

    # The head around the brain, by distance from the brain surface.
    distance = ndimage.distance_transform_edt(~brain, sampling=res).astype(np.float32)
    head = (distance <= SKIN_MM).astype(np.float32)
    centre, axes = _FACE
    head[_ellipsoid(coords, centre, axes)] = 1.0
    (nx, ny), (ax, ay), top = _NECK
    x, y, z = coords
    neck = (((x - nx) / ax) ** 2 + ((y - ny) / ay) ** 2 <= 1.0) & (z <= top)
    head[neck] = 1.0
    head = ndimage.gaussian_filter(head, sigma=3.0 / res, truncate=2.5) > 0.5
    head |= distance <= SKULL_OUTER_MM

    outside_brain = ~brain
    codes[outside_brain & head] = CODE_SOFT
    codes[outside_brain & (distance <= SKULL_OUTER_MM)] = CODE_SKULL
    codes[outside_brain & (distance <= MENINGES_MM)] = CODE_MENINGES
    cavities = np.zeros(shape, bool)
    for parts in _CAVITIES.values():
        for centre, axes in parts:
            cavities |= _ellipsoid(coords, centre, axes)
    codes[cavities & head & (distance >= 3.0)] = CODE_CAVITY
    del distance, cavities

    occupied = np.argwhere(codes != CODE_AIR)
    bounds_vox = np.stack([occupied.min(axis=0), occupied.max(axis=0)]).astype(float)
    head_bounds = bounds_vox * res + lo
    brain_vox = np.argwhere(brain)
    brain_centre = (brain_vox.min(axis=0) + brain_vox.max(axis=0)) / 2.0 * res + lo
    for array in (codes, brain):
        array.setflags(write=False)
    return HeadPhantom(codes=codes, brain=brain, affine=affine, regions=regions,
                       cit168_index=cit168_index, head_bounds_mm=head_bounds,
                       brain_centre_mm=brain_centre)


def population_chi(settings) -> dict[tuple[str, str | None], float]:
    """Population mean susceptibility per (region, hemisphere) at the reference age."""
    values = {}
    for name, value in settings.regions.items():
        values[(name, None)] = value.chi_ppm
        values[(name, "L")] = value.chi_ppm
        values[(name, "R")] = value.chi_ppm
    return values


def mr_property_tables(phantom: HeadPhantom, settings) -> tuple[np.ndarray, np.ndarray]:
    """Per-code tables of the echo-time-zero magnitude (arbitrary units) and R2* (1/s).

    The magnitude is proton density times the spoiled-GRE steady state
    ``sin(a) (1 - E1) / (1 - cos(a) E1)`` with ``E1 = exp(-TR / T1)``.
    """
    # (proton density, T1 s, R2* 1/s) at 3 T
    props = {CODE_AIR: (0.0, 1.0, 0.0), CODE_CAVITY: (0.0, 1.0, 0.0),
             CODE_CSF: (1.0, 4.0, 8.0), CODE_MENINGES: (1.0, 4.0, 8.0),
             CODE_GM: (0.82, 1.35, R2STAR_GM), CODE_WM: (0.70, 0.85, 22.0),
             CODE_SKULL: (0.05, 0.30, 400.0), CODE_SOFT: (0.90, 0.60, 30.0)}
    chi_gm = settings.regions["GM"].chi_ppm
    for code, (name, _) in phantom.regions.items():
        if code in props:
            continue
        if name == "Thal":
            props[code] = (0.78, 1.10, 20.0)
            continue
        chi = settings.regions[name].chi_ppm
        props[code] = (0.80, 1.15, max(R2STAR_GM, R2STAR_GM + R2STAR_PER_PPM * (chi - chi_gm)))
    tr = settings.repetition_time_s
    alpha = np.deg2rad(settings.flip_angle_deg)
    s0, r2s = {}, {}
    for code, (pd_, t1, r2) in props.items():
        e1 = np.exp(-tr / t1)
        s0[code] = pd_ * np.sin(alpha) * (1.0 - e1) / (1.0 - np.cos(alpha) * e1)
        r2s[code] = r2
    return phantom.lookup_table(s0), phantom.lookup_table(r2s)
