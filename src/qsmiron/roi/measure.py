"""Per-region statistics of a map (susceptibility, R2*, chi+, chi-) in native space.

Values are never interpolated: the atlas labels were brought to the subject's grid, and each
region's statistics come from the voxels it covers inside the map's valid mask.

Besides the mean and the median, each region gets an interior-weighted median
(``interior_median``): the weighted median of its voxels, each weighted by the square of the
share of its 3 x 3 x 3 neighbourhood inside the measured region (``interior_weights``). A voxel
deep inside counts 1, one on a flat face 0.44, one on an edge 0.20 and one on a corner 0.09. The
voxels at a warped label's edge are the ones that share partial volume with the surroundings
and take in misregistered tissue; voxel erosion removes them, but at 2 mm it empties the small
nuclei (VeP, STN, SNr), while the weights leave every voxel in and so work at any resolution.
Why it is the value analysed by default: ``qsmiron.stats.regions.analysed_statistic``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import ndimage

FLAG_COLUMNS = ("flag_empty", "flag_small", "flag_partial_coverage")
SUMMARY_COLUMNS = ("mean", "median", "interior_median")
"""The summaries of a region's voxels; a reference region's offset applies to each."""
COLUMNS = ("region", "hemisphere", "label", "mean", "median", "interior_median", "sd", "n_voxels", "volume_mm3",
           "coverage") + FLAG_COLUMNS
"""Columns of one measure's table; the unit is the map's (``qsmiron.records.regions.MEASURE_UNITS``)."""


def _grown_by_a_voxel(box: tuple[slice, ...]) -> tuple[slice, ...]:
    """A bounding box (``ndimage.find_objects``) one voxel larger on each side (slicing clips
    the far end to the image)."""
    return tuple(slice(max(s.start - 1, 0), s.stop + 1) for s in box)


def erode_labels(labels: np.ndarray, iterations: int) -> np.ndarray:
    """Each label eroded by ``iterations`` voxels (6-connected) on its own; 0 elsewhere."""
    labels = np.asarray(labels)
    if iterations <= 0:
        return labels.copy()
    out = np.zeros_like(labels)
    structure = ndimage.generate_binary_structure(3, 1)
    for index, box in enumerate(ndimage.find_objects(labels), start=1):
        if box is None:
            continue
        padded = _grown_by_a_voxel(box)
        region = labels[padded] == index
        eroded = ndimage.binary_erosion(region, structure=structure, iterations=iterations)
        out[padded][eroded] = index
    return out


def interior_weights(region: np.ndarray) -> np.ndarray:
    """The weight of each voxel of ``region`` (bool, 3D), in the order of ``values[region]``: the
    square of the share of its 3 x 3 x 3 neighbourhood (itself included) inside ``region``."""
    region = np.asarray(region, dtype=bool)
    found = ndimage.find_objects(region.astype(np.int8))
    if not found or found[0] is None:
        return np.zeros(0, np.float64)
    box = _grown_by_a_voxel(found[0])
    part = region[box]
    share = ndimage.uniform_filter(part.astype(np.float64), size=3, mode="constant", cval=0.0)
    # C order within the box is the order of the region's voxels in the whole image.
    return np.square(share[part])


def _region_in_box(labels: np.ndarray, boxes: list, index: int, mask: np.ndarray):
    """(box, region within it) of label ``index`` inside ``mask``: the label's bounding box grown
    by a voxel (room for the interior weights' neighbourhood); an empty region for a label absent."""
    found = boxes[index - 1] if 0 < index <= len(boxes) else None
    if found is None:
        return (slice(0, 0),) * labels.ndim, np.zeros((0,) * labels.ndim, bool)
    box = _grown_by_a_voxel(found)
    return box, (labels[box] == index) & mask[box]


def weighted_median(values: np.ndarray, weights: np.ndarray) -> float:
    """The smallest value at which the cumulative weight reaches half the total (the weighted
    median of the inverted empirical distribution; numpy's ``quantile(..., weights=w,
    method="inverted_cdf")`` at 0.5). NaN for no values or no weight."""
    values = np.asarray(values, dtype=np.float64).ravel()
    weights = np.asarray(weights, dtype=np.float64).ravel()
    if values.size == 0 or not weights.sum() > 0:
        return float("nan")
    order = np.argsort(values, kind="stable")
    cumulative = np.cumsum(weights[order])
    return float(values[order][np.searchsorted(cumulative, 0.5 * cumulative[-1])])


def measure_regions(values: np.ndarray, mask: np.ndarray, labels: np.ndarray, voxel_size_mm, table: pd.DataFrame,
                    *, erode_voxels: int = 0, min_voxels: int = 10, min_coverage: float = 0.9,
                    fov_fraction: dict | None = None) -> pd.DataFrame:
    """One row per atlas label: mean, median, interior-weighted median, SD (the map's unit), voxel
    count and volume, with flags.

    Parameters
    ----------
    values : ndarray, shape (X, Y, Z)
        The map (chi in ppm, R2* in s^-1, ...).
    mask : ndarray of bool, shape (X, Y, Z)
        Where the map is valid (the reconstruction mask; for R2*, its valid-fit mask); NaN
        values are left out too.
    labels : ndarray of int, shape (X, Y, Z)
        Atlas labels on the subject grid.
    voxel_size_mm : tuple of 3 floats
    table : DataFrame
        ``index``, ``region``, ``hemisphere`` of each label (an ``Atlas.labels``).
    erode_voxels : int
        Erode each region before measuring; a region that erosion would empty is measured
        uneroded and flagged small.
    min_voxels : int
        Fewer measured voxels -> ``flag_small``.
    min_coverage : float
        ``coverage`` = fraction of the region inside the field of view (``fov_fraction``, from
        the template side) times the fraction of its subject voxels inside ``mask``; below
        this -> ``flag_partial_coverage``.
    fov_fraction : dict, optional
        Label index -> fraction of the atlas region that maps inside the subject's field of
        view; 1 when not given.

    Returns
    -------
    DataFrame with columns ``COLUMNS``. An empty region is a row with ``n_voxels`` 0, n/a
    statistics and ``flag_empty`` true, never a silent NaN.
    """
    chi = np.asarray(values, dtype=np.float64)
    mask = np.asarray(mask, dtype=bool) & np.isfinite(chi)
    labels = np.asarray(labels).astype(np.int64)
    voxel_mm3 = float(np.prod(voxel_size_mm))
    eroded = erode_labels(labels, erode_voxels) if erode_voxels else labels
    max_label = int(max(labels.max(initial=0), table["index"].max()))
    total = np.bincount(labels.ravel(), minlength=max_label + 1)
    inside = np.bincount(labels[mask].ravel(), minlength=max_label + 1)
    # One pass finds every label's box; each region is then cut from its box, not the image.
    label_boxes = ndimage.find_objects(labels)
    eroded_boxes = ndimage.find_objects(eroded) if erode_voxels else label_boxes
    rows = []
    for _, entry in table.iterrows():
        index = int(entry["index"])
        fov = 1.0 if fov_fraction is None else float(fov_fraction.get(index, 1.0))
        in_mask = (total[index] and inside[index] / total[index]) or 0.0
        coverage = fov * in_mask
        box, region = _region_in_box(eroded, eroded_boxes, index, mask)
        small_by_erosion = False
        if erode_voxels and not region.any():
            box, region = _region_in_box(labels, label_boxes, index, mask)
            small_by_erosion = region.any()
        sample = chi[box][region]
        n = int(sample.size)
        row = {"region": entry["region"], "hemisphere": entry["hemisphere"], "label": index,
               "mean": float(sample.mean()) if n else np.nan,
               "median": float(np.median(sample)) if n else np.nan,
               "interior_median": weighted_median(sample, interior_weights(region)) if n else np.nan,
               "sd": float(sample.std(ddof=1)) if n > 1 else np.nan,
               "n_voxels": n, "volume_mm3": n * voxel_mm3, "coverage": float(coverage),
               "flag_empty": n == 0, "flag_small": bool(0 < n < min_voxels or small_by_erosion),
               "flag_partial_coverage": bool(n > 0 and coverage < min_coverage)}
        rows.append(row)
    return pd.DataFrame(rows, columns=list(COLUMNS))


TABLE_COLUMNS = ("region", "hemisphere", "measure", "reference", "unit", "mean", "median", "interior_median",
                 "sd", "n_voxels",
                 "volume_mm3", "label", "coverage") + FLAG_COLUMNS
"""Columns of a subject's regional table: one tidy long form, one row per region, hemisphere,
measure and (for chi) reference. ``reference`` is missing (``n/a``) for the absolute measures."""


def long_table(measured: dict[str, pd.DataFrame], units: dict[str, str], offsets: dict[str, float]) -> pd.DataFrame:
    """One table of every measure: chi once per reference, the other measures once.

    Parameters
    ----------
    measured : dict measure -> DataFrame
        ``measure_regions`` of each map (``chi`` first).
    units : dict measure -> unit
    offsets : dict reference -> offset (ppm)
        The mean of the chi map over each reference region: chi under reference R is the
        measured value minus R's offset (each of ``SUMMARY_COLUMNS``; SD and counts do not change).

    Returns
    -------
    DataFrame with columns ``TABLE_COLUMNS``.
    """
    parts = []
    for measure, table in measured.items():
        references = offsets if measure == "chi" else {None: 0.0}
        for reference, offset in references.items():
            part = table.copy()
            part[list(SUMMARY_COLUMNS)] = part[list(SUMMARY_COLUMNS)] - offset
            part.insert(2, "measure", measure)
            part.insert(3, "reference", reference)
            part.insert(4, "unit", units[measure])
            parts.append(part)
    return pd.concat(parts, ignore_index=True)[list(TABLE_COLUMNS)]
