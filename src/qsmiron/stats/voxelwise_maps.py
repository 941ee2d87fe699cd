"""Template-space chi maps for voxel-wise statistics: finding, checking, masking, loading.

Maps are ``sub-<label>[_ses-<label>]_space-<space>_Chimap.nii.gz`` under
``DERIVATIVES_DIR/sub-*/[ses-*/]anat/``, on the template's grid. A voxel without data in a map
(NaN, or exactly 0, which is what a resampling writes outside the subject's field of view) is
missing for that subject; the analysis keeps the voxels every analysed map covers.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
from scipy import ndimage

from qsmiron.errors import InputError
from qsmiron.io.derivatives import parse_template_map_name, sidecar_of, template_map_path
from qsmiron.io.participants import normalise_session_id

SUBCORTICAL_DILATION_MM = 2.0


@dataclass
class Grid:
    """The template grid every map must be on."""

    shape: tuple[int, int, int]
    affine: np.ndarray
    space: str

    def describe(self) -> str:
        zooms = np.linalg.norm(self.affine[:3, :3], axis=0)
        return (f"{self.space} grid {'x'.join(map(str, self.shape))} at "
                f"{'x'.join(f'{z:g}' for z in zooms)} mm")


def find_template_maps(derivatives_dir: str | os.PathLike, space: str) -> pd.DataFrame:
    """Every template-space Chimap under ``derivatives_dir``.

    Returns
    -------
    DataFrame
        Columns ``participant_id``, ``session`` (None without sessions), ``space``, ``path``;
        maps in other spaces are listed too (the caller says why they are not used).
    """
    root = Path(derivatives_dir)
    if not root.is_dir():
        raise InputError("derivatives folder not found", root)
    rows = []
    for pattern in ("sub-*/anat/*_Chimap.nii*", "sub-*/ses-*/anat/*_Chimap.nii*"):
        for path in sorted(root.glob(pattern)):
            parsed = parse_template_map_name(path.name)
            folders = path.relative_to(root).parts[:-2]          # sub-X[, ses-Y]
            if parsed is None or parsed[0] != folders[0] or (len(folders) > 1 and parsed[1] != folders[1]):
                continue
            rows.append({"participant_id": parsed[0], "session": parsed[1], "space": parsed[2], "path": path})
    return pd.DataFrame(rows, columns=["participant_id", "session", "space", "path"])


def select_maps(found: pd.DataFrame, participants: list[str], space: str, session: str | None,
                derivatives_dir, participants_tsv, *, missing: str = "error"
                ) -> tuple[dict[str, Path], list[dict]]:
    """One map per participant (at ``session``), or a one-line error naming what is missing.

    Returns
    -------
    maps : dict
        participant_id -> path.
    exclusions : list of dict
        With ``missing="exclude"``: the participants without a map.
    """
    in_space = found[found["space"] == space]
    sessions = sorted({s for s in in_space["session"] if s})
    if session is None and len(sessions) > 1:
        raise InputError(f"holds template-space maps of {len(sessions)} sessions ({', '.join(sessions)}); "
                         "choose one with session = \"<label>\" in the study file or --session",
                         derivatives_dir)
    if session is not None:
        session = normalise_session_id(session)
        in_space = in_space[in_space["session"] == session]
    maps = {row.participant_id: Path(row.path) for row in in_space.itertuples()}
    absent = [pid for pid in participants if pid not in maps]
    if absent and missing == "error":
        other = found[found["participant_id"].isin(absent) & (found["space"] != space)]
        hint = ""
        if not other.empty:
            first = other.iloc[0]
            hint = (f"; {Path(first['path']).name} is in space {first['space']}, not {space}")
        example = f"{absent[0]}/[ses-*/]anat/" + template_map_path(".", f"{absent[0]}[_ses-*]", space).name
        raise InputError(f"{len(absent)} analysed participant(s) have no template-space chi map "
                         f"({_few(absent)}; expected {example} under {derivatives_dir}){hint}",
                         participants_tsv)
    exclusions = [{"participant_id": pid, "analysis": "voxelwise",
                   "reason": f"no space-{space} chi map"} for pid in absent]
    return {pid: maps[pid] for pid in participants if pid in maps}, exclusions


def check_map(path: Path, grid: Grid) -> nib.Nifti1Image:
    """The map, or a one-line error when it is not 3-D on the template grid or its sidecar names another space."""
    try:
        image = nib.load(str(path))
    except Exception as exc:
        raise InputError(f"is not a readable NIfTI image ({type(exc).__name__})", path) from None
    shape = tuple(image.shape)
    if len(shape) == 4 and shape[3] == 1:
        shape = shape[:3]
    if (len(shape) != 3 or shape != tuple(grid.shape)
            or not np.allclose(image.affine, grid.affine, atol=1e-3)):
        zooms = np.linalg.norm(image.affine[:3, :3], axis=0)
        raise InputError(f"is on another grid (shape {'x'.join(map(str, image.shape))}, "
                         f"{'x'.join(f'{z:g}' for z in zooms)} mm, origin "
                         f"{', '.join(f'{v:g}' for v in image.affine[:3, 3])}) than the {grid.describe()}; "
                         "resample it to the template grid", path)
    sidecar = sidecar_of(path)
    if sidecar.exists():
        try:
            meta = json.loads(sidecar.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            meta = {}
        declared = meta.get("SpatialReference") or meta.get("Space") if isinstance(meta, dict) else None
        if isinstance(declared, str) and grid.space.lower() not in declared.lower():
            raise InputError(f"its sidecar says the map is in {declared}, not {grid.space}", path)
    return image


def analysis_mask(choice: str, labels: np.ndarray, template: np.ndarray, grid: Grid,
                  study_dir: Path | None) -> tuple[np.ndarray, str]:
    """The analysis mask on the template grid and a sentence saying what it is."""
    zooms = np.linalg.norm(grid.affine[:3, :3], axis=0)
    if choice == "subcortical":
        radius = np.ceil(SUBCORTICAL_DILATION_MM / zooms).astype(int)
        offsets = np.indices(2 * radius + 1).reshape(3, -1).T - radius
        ball = np.zeros(tuple(2 * radius + 1), bool)
        inside = np.sum((offsets * zooms) ** 2, axis=1) <= SUBCORTICAL_DILATION_MM ** 2 + 1e-9
        ball[tuple((offsets[inside] + radius).T)] = True
        # dilated inside the regions' bounding box (plus the ball's reach), not the whole grid
        box = mask_box(labels > 0, int(radius.max()) + 1)
        mask = np.zeros(labels.shape, bool)
        mask[box] = ndimage.binary_dilation(labels[box] > 0, ball)
        return mask, (f"the union of the atlas regions dilated by {SUBCORTICAL_DILATION_MM:g} mm "
                      f"({int(mask.sum())} voxels)")
    if choice == "brain":
        mask = np.nan_to_num(template) > 0
        return mask, f"the template brain ({int(mask.sum())} voxels)"
    path = Path(choice)
    if not path.is_absolute() and study_dir is not None:
        path = study_dir / path
    if not path.exists():
        raise InputError("voxelwise.mask is neither 'subcortical', 'brain' nor an existing file", path)
    image = check_map(path, grid)
    mask = np.asanyarray(image.dataobj).reshape(grid.shape) > 0
    if not mask.any():
        raise InputError("the voxel-wise mask is empty", path)
    return mask, f"{path.name} ({int(mask.sum())} voxels)"


def mask_box(mask: np.ndarray, margin: int) -> tuple[slice, slice, slice]:
    """The bounding box of ``mask`` plus ``margin`` voxels, clipped to the grid."""
    nonzero = np.argwhere(mask)
    lower = np.maximum(nonzero.min(axis=0) - margin, 0)
    upper = np.minimum(nonzero.max(axis=0) + margin + 1, np.asarray(mask.shape))
    return tuple(slice(int(a), int(b)) for a, b in zip(lower, upper))


def load_masked(paths: list[Path], grid: Grid, mask: np.ndarray, *, fwhm_mm: float = 0.0) -> np.ndarray:
    """Each map's values in ``mask`` (NaN where the map has no data), after optional smoothing.

    Smoothing is a normalised convolution inside each map's valid voxels (a Gaussian of
    ``fwhm_mm``; weights renormalised), so that voxels without data do not pull values to 0.
    Only the mask's bounding box (plus the kernel's reach) is read and kept.

    Returns
    -------
    ndarray, shape (n_maps, n_mask_voxels), float64
    """
    zooms = np.linalg.norm(grid.affine[:3, :3], axis=0)
    sigma = fwhm_mm / np.sqrt(8 * np.log(2)) / zooms if fwhm_mm > 0 else np.zeros(3)
    box = mask_box(mask, int(np.ceil(4 * sigma.max())) + 1 if fwhm_mm > 0 else 0)
    inner = mask[box]
    out = np.empty((len(paths), int(inner.sum())))
    for i, path in enumerate(paths):
        image = check_map(path, grid)
        data = np.asarray(image.dataobj[box + ((0,) if len(image.shape) == 4 else ())], dtype=np.float64)
        valid = np.isfinite(data) & (data != 0)
        data = np.where(valid, data, 0.0)
        if fwhm_mm > 0:
            weight = ndimage.gaussian_filter(valid.astype(np.float64), sigma, mode="constant")
            smooth = ndimage.gaussian_filter(data, sigma, mode="constant")
            data = np.divide(smooth, weight, out=np.zeros_like(smooth), where=weight > 1e-6)
        out[i] = np.where(valid, data, np.nan)[inner]
    return out


def atlas_on_grid(atlas, grid: Grid) -> np.ndarray:
    """The atlas labels on the template grid (nearest neighbour when the atlas has its own grid)."""
    labels = atlas.label_array()
    if labels.shape == tuple(grid.shape) and np.allclose(atlas.image.affine, grid.affine, atol=1e-3):
        return labels
    from nilearn.image import resample_img

    resampled = resample_img(atlas.image, target_affine=grid.affine, target_shape=grid.shape,
                             interpolation="nearest", force_resample=True, copy_header=True)
    return np.rint(np.asanyarray(resampled.dataobj)).astype(np.int32)


def _few(items: list[str], limit: int = 5) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")
