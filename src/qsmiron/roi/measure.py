"""Per-region statistics of a map (susceptibility, R2*, chi+, chi-) in native space.

Values are never interpolated: the atlas labels were brought to the subject's grid, and each
region's statistics come from the voxels it covers inside the map's valid mask.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import ndimage

FLAG_COLUMNS = ("flag_empty", "flag_small", "flag_partial_coverage")
COLUMNS = ("region", "hemisphere", "label", "mean", "median", "sd", "n_voxels", "volume_mm3",
           "coverage") + FLAG_COLUMNS
"""Columns of one measure's table; the unit is the map's (``qsmiron.records.regions.MEASURE_UNITS``)."""


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
        padded = tuple(slice(max(s.start - 1, 0), s.stop + 1) for s in box)
        region = labels[padded] == index
        eroded = ndimage.binary_erosion(region, structure=structure, iterations=iterations)
        out[padded][eroded] = index
    return out


def measure_regions(values: np.ndarray, mask: np.ndarray, labels: np.ndarray, voxel_size_mm, table: pd.DataFrame,
                    *, erode_voxels: int = 0, min_voxels: int = 10, min_coverage: float = 0.9,
                    fov_fraction: dict | None = None) -> pd.DataFrame:
    """One row per atlas label: mean, median, SD (the map's unit), voxel count and volume, with flags.

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
    rows = []
    for _, entry in table.iterrows():
        index = int(entry["index"])
        fov = 1.0 if fov_fraction is None else float(fov_fraction.get(index, 1.0))
        in_mask = (total[index] and inside[index] / total[index]) or 0.0
        coverage = fov * in_mask
        region = (eroded == index) & mask
        small_by_erosion = False
        if erode_voxels and not region.any():
            region = (labels == index) & mask
            small_by_erosion = region.any()
        sample = chi[region]
        n = int(sample.size)
        row = {"region": entry["region"], "hemisphere": entry["hemisphere"], "label": index,
               "mean": float(sample.mean()) if n else np.nan,
               "median": float(np.median(sample)) if n else np.nan,
               "sd": float(sample.std(ddof=1)) if n > 1 else np.nan,
               "n_voxels": n, "volume_mm3": n * voxel_mm3, "coverage": float(coverage),
               "flag_empty": n == 0, "flag_small": bool(0 < n < min_voxels or small_by_erosion),
               "flag_partial_coverage": bool(n > 0 and coverage < min_coverage)}
        rows.append(row)
    return pd.DataFrame(rows, columns=list(COLUMNS))


TABLE_COLUMNS = ("region", "hemisphere", "measure", "reference", "unit", "mean", "median", "sd", "n_voxels",
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
        measured value minus R's offset (mean and median; SD and counts do not change).

    Returns
    -------
    DataFrame with columns ``TABLE_COLUMNS``.
    """
    parts = []
    for measure, table in measured.items():
        references = offsets if measure == "chi" else {None: 0.0}
        for reference, offset in references.items():
            part = table.copy()
            part[["mean", "median"]] = part[["mean", "median"]] - offset
            part.insert(2, "measure", measure)
            part.insert(3, "reference", reference)
            part.insert(4, "unit", units[measure])
            parts.append(part)
    return pd.concat(parts, ignore_index=True)[list(TABLE_COLUMNS)]
