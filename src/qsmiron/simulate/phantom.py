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
import warnings
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


def _ellipsoid_into(target: np.ndarray, value, affine, centre, semi_axes, where=None) -> None:
    """Set ``target`` to ``value`` inside an ellipsoid (MNI mm), touching only its bounding box.

    ``where``, if given, is a function of the box's slices returning a boolean array that
    further restricts the voxels set.
    """
    res = affine[0, 0]
    origin = affine[:3, 3]
    box = []
    axes = []
    for a in range(3):
        first = int(np.floor((centre[a] - semi_axes[a] - origin[a]) / res))
        last = int(np.ceil((centre[a] + semi_axes[a] - origin[a]) / res)) + 1
        first, last = max(first, 0), min(last, target.shape[a])
        if first >= last:
            return
        box.append(slice(first, last))
        coord = origin[a] + res * np.arange(first, last, dtype=np.float32)
        axes.append(((coord - centre[a]) / semi_axes[a]) ** 2)
    inside = (axes[0][:, None, None] + axes[1][None, :, None] + axes[2][None, None, :]) <= 1.0
    if where is not None:
        inside &= where(tuple(box))
    target[tuple(box)][inside] = value


def _resample_to_grid(image, shape, affine, order):
    """An axis-aligned image on the phantom grid (copy when the grids share voxel centres)."""
    data = np.asarray(image.dataobj, dtype=np.float32)
    matrix = np.linalg.inv(image.affine) @ affine
    linear = matrix[:3, :3]
    if not np.allclose(linear, np.diag(np.diag(linear))):
        raise ValueError("the template must be stored axis-aligned")
    scale, shift = np.diag(linear), matrix[:3, 3]
    if np.allclose(scale, 1.0) and np.allclose(shift, np.round(shift), atol=1e-4):
        out = np.zeros(shape, np.float32)
        src, dst = [], []
        for a in range(3):
            s = int(round(shift[a]))
            first, last = max(0, -s), min(shape[a], data.shape[a] - s)
            dst.append(slice(first, last))
            src.append(slice(first + s, last + s))
        out[tuple(dst)] = data[tuple(src)]
        return out
    with warnings.catch_warnings():  # the 1-D matrix (zoom and shift) path is the fast one
        warnings.simplefilter("ignore", UserWarning)
        return ndimage.affine_transform(data, scale, shift, output_shape=shape, order=order,
                                        mode="constant", cval=0.0, prefilter=False)


def _largest_component(mask: np.ndarray) -> np.ndarray:
    labels, n = ndimage.label(mask)
    if n <= 1:
        return mask
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    return labels == int(np.argmax(sizes))


def _bounding_box(mask: np.ndarray, margin: int) -> tuple[slice, ...]:
    index = np.argwhere(mask)
    lo = np.maximum(index.min(axis=0) - margin, 0)
    hi = np.minimum(index.max(axis=0) + margin + 1, mask.shape)
    return tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))


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

    # Brain work happens in the brain's bounding box (plus room for the skull) to stay fast.
    margin = int(np.ceil((SKIN_MM + 2.0) / res))
    box = _bounding_box(template > 0, margin)
    t_box, c_box = template[box], cit[box]
    brain_box = t_box > 1e-3 * float(t_box.max())
    brain_box = _largest_component(ndimage.binary_fill_holes(brain_box)) | (c_box > 0)
    thresholds = threshold_multiotsu(t_box[brain_box], classes=3)

    codes = np.zeros(shape, np.uint8)
    code_box = codes[box]
    code_box[brain_box] = CODE_GM
    code_box[brain_box & (t_box < thresholds[0])] = CODE_CSF
    code_box[brain_box & (t_box >= thresholds[1])] = CODE_WM
    brain = np.zeros(shape, bool)
    brain[box] = brain_box

    regions: dict[int, tuple[str, str | None]] = {CODE_CSF: ("CSF", None), CODE_GM: ("GM", None),
                                                   CODE_WM: ("WM", None)}

    def grey_or_white(sub):
        values = codes[sub]
        return ((values == CODE_GM) | (values == CODE_WM)) & (cit[sub] == 0)

    for (centre, axes), codes_by_side, name in ((_THALAMUS, CODE_THAL, "Thal"),
                                                 (_DENTATE, CODE_DN, "DN")):
        for side, sign in (("L", -1.0), ("R", 1.0)):
            _ellipsoid_into(codes, codes_by_side[side], affine,
                            (sign * centre[0], centre[1], centre[2]), axes, where=grey_or_white)
            regions[codes_by_side[side]] = (name, side)

    cit168_index = {}
    lookup = {}
    for row in cit168_label_table().itertuples():
        code = CIT168_CODE_OFFSET[row.hemisphere] + (row.index % 100)
        lookup[row.index] = code
        regions[code] = (row.region, row.hemisphere)
        cit168_index[code] = row.index
    table = np.zeros(int(c_box.max()) + 1, np.uint8)
    for index, code in lookup.items():
        if index < table.size:
            table[index] = code
    labelled = c_box > 0
    code_box[labelled] = table[c_box[labelled]]

    # The head around the brain, by distance from the brain surface.
    distance = np.full(shape, np.inf, np.float32)
    distance[box] = ndimage.distance_transform_edt(~brain_box, sampling=res)
    head = (distance <= SKIN_MM).astype(np.float32)
    centre, axes = _FACE
    _ellipsoid_into(head, 1.0, affine, centre, axes)
    (nx, ny), (ax, ay), top = _NECK
    xs = lo[0] + res * np.arange(shape[0])
    ys = lo[1] + res * np.arange(shape[1])
    disc = ((xs[:, None] - nx) / ax) ** 2 + ((ys[None, :] - ny) / ay) ** 2 <= 1.0
    head[:, :, : int(np.floor((top - lo[2]) / res)) + 1][disc] = 1.0
    head = ndimage.gaussian_filter(head, sigma=3.0 / res, truncate=2.5) > 0.5
    head |= distance <= SKULL_OUTER_MM

    outside_brain = ~brain
    codes[outside_brain & head] = CODE_SOFT
    codes[outside_brain & (distance <= SKULL_OUTER_MM)] = CODE_SKULL
    codes[outside_brain & (distance <= MENINGES_MM)] = CODE_MENINGES

    def in_bone_or_soft_tissue(sub):
        return head[sub] & (distance[sub] >= 3.0)

    for parts in _CAVITIES.values():
        for centre, axes in parts:
            _ellipsoid_into(codes, CODE_CAVITY, affine, centre, axes, where=in_bone_or_soft_tissue)
    del distance, head

    occupied = _bounding_box(codes != CODE_AIR, 0)
    head_bounds = np.array([[s.start for s in occupied], [s.stop - 1 for s in occupied]],
                           dtype=float) * res + lo
    brain_bounds = _bounding_box(brain, 0)
    brain_centre = np.array([(s.start + s.stop - 1) / 2.0 for s in brain_bounds]) * res + lo
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
