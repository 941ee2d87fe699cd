"""The derivative dataset's own files, and the metadata BIDS asks of its images.

A run's derivative dataset (``OUT_DIR/qsmiron``, paths in ``qsmiron.io.derivatives``) has at
its top ``dataset_description.json`` (:func:`derivative_description`), a ``README``
(:func:`readme_text`) and ``.bidsignore``, written together by :func:`write_dataset_files`.
Its images on a scan's own grid (the reconstruction's maps and masks, the atlas labels brought
to that grid) name the raw image they are aligned with in ``SpatialReference``: the first
echo's magnitude the reconstruction read, as a ``bids:raw:`` URI (BIDS derivatives, "Spatial
references": a file without a ``space`` entity names its reference).

``Authors`` comes only from the user's settings (``pipeline.authors``): the validator hints
(``TOO_FEW_AUTHORS``) whenever the key holds fewer than two names, the key left out included,
and qsmiron does not guess people. With two or more names set, the official validator
(``bids-validator-deno``) finds no error and no warning in a run's dataset.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from qsmiron.io.atomic import write_json_atomic, write_text_atomic
from qsmiron.io.bids import read_dataset_description
from qsmiron.io.derivatives import BIDSIGNORE, NATIVE_SPACE, CohortPaths

BIDS_VERSION = "1.10.0"


def raw_link(bids_dir: Path, root: Path) -> str:
    """The raw dataset's path relative to the derivative dataset's ``root`` (``DatasetLinks.raw``)."""
    return Path(os.path.relpath(Path(bids_dir).resolve(), Path(root).resolve())).as_posix()


def derivative_description(bids_dir: Path, root: Path, *, authors: Sequence[str] = ()) -> dict[str, Any]:
    """The derivative dataset's ``dataset_description.json``: the raw dataset linked by its path
    relative to ``root`` (``bids:raw:...`` in the sidecars), no absolute path; ``Authors`` as
    given (left out when none are)."""
    from qsmiron import CODE_URL, __version__

    raw = raw_link(bids_dir, root)
    source = {"URL": raw}
    doi = (read_dataset_description(bids_dir) or {}).get("DatasetDOI")
    if isinstance(doi, str) and doi.strip():
        source["DOI"] = doi
    generated_by = {"Name": "qsmiron", "Version": __version__,
                    "Description": "multi-echo GRE to QSM (Chimap, ppm), ANTs normalisation to MNI152NLin2009cAsym, "
                                   "atlas regions, cohort statistics and report"}
    if CODE_URL:
        generated_by["CodeURL"] = CODE_URL
    description: dict[str, Any] = {
        "Name": "qsmiron: quantitative susceptibility maps and regional susceptibility",
        "BIDSVersion": BIDS_VERSION,
        "DatasetType": "derivative",
    }
    if authors:
        description["Authors"] = list(authors)
    description.update({"GeneratedBy": [generated_by], "SourceDatasets": [source], "DatasetLinks": {"raw": raw}})
    return description


@dataclass(frozen=True)
class RunSummary:
    """What the README says of the settings a run's derivatives were made with."""

    version: str
    raw: str
    """The raw dataset's path relative to the derivative dataset (``DatasetLinks.raw``)."""
    recon_methods: tuple[tuple[str, str, str], ...]
    """(stage, method name, what the method is) of every reconstruction stage, in order."""
    registration: str
    """The registration in words (transforms, template)."""
    atlas: str
    """The ``atlas-<label>`` label."""
    template: str
    label_interpolation: str
    template_maps: bool
    """Chi (and R2*) also written on the template grid."""
    r2star: bool
    """R2* mapping asked for (it is made from three echoes or more)."""
    chi_separation: bool


def readme_text(run: RunSummary) -> str:
    """The derivative dataset's ``README`` (Markdown): what the files are and the settings that made them."""
    methods = "".join(f"- {stage}: `{name}`, {label}\n" for stage, name, label in run.recon_methods)
    optional = ""
    if run.r2star:
        optional += ("- `X_R2starmap.nii.gz` (s^-1), `X_T2starmap.nii.gz` (s), `X_S0map.nii.gz`, "
                     "`X_desc-r2star_mask.nii.gz` (the brain mask where the R2* fit is valid): from three "
                     "echoes or more\n")
    if run.chi_separation:
        optional += ("- `X_desc-paramagnetic_Chimap.nii.gz`, `X_desc-diamagnetic_Chimap.nii.gz`: "
                     "chi-separation (ppm, non-negative magnitudes)\n")
    if run.template_maps:
        r2star = f" and `X_space-{run.template}_R2starmap.nii.gz`" if run.r2star else ""
        optional += (f"- `X_space-{run.template}_Chimap.nii.gz`{r2star}: the maps resampled to the "
                     f"{run.template} template grid, for voxel-wise statistics\n")
    return (
        "# qsmiron derivatives\n\n"
        f"Quantitative susceptibility mapping (QSM) derivatives of the BIDS dataset at `{run.raw}` "
        f"(`DatasetLinks.raw`), made by `qsmiron run` (qsmiron {run.version}). Every setting of the "
        "run is in `config.json`; `qsmiron run BIDS_DIR OUT_DIR --config config.json` repeats it.\n\n"
        "## Methods in these settings\n\n"
        f"{methods}"
        f"- registration: {run.registration}; atlas `{run.atlas}` labels brought to each scan's grid by the "
        f"inverse transforms ({run.label_interpolation} interpolation)\n\n"
        "## Files\n\n"
        "Per scan, in `sub-<label>/[ses-<label>/]anat/` (X = `sub-<label>[_ses-<label>]`), every image "
        "with a JSON sidecar (units, method, `Sources`; `SpatialReference`, the raw magnitude the maps are "
        "aligned with, for the images on the scan's own grid):\n\n"
        "- `X_Chimap.nii.gz`: magnetic susceptibility (ppm) relative to the mean over the mask; "
        "`X_desc-qsm_mask.nii.gz`: where it and the local field are valid\n"
        f"{optional}"
        f"- `X_atlas-{run.atlas}_dseg.nii.gz` and `.tsv`: the atlas labels warped from {run.template} to "
        "the scan's grid, and their names\n"
        f"- `X_atlas-{run.atlas}_regions.tsv`: regional values; `X_desc-recon_qsm.json` and "
        f"`X_atlas-{run.atlas}_desc-regions_qsm.json`: the records of every step and parameter; "
        "`X_desc-total_fieldmap.nii.gz` (Hz), `X_localfield.nii.gz` (ppm) and the ANTs transforms "
        f"`X_from-{NATIVE_SPACE}_to-{run.template}_mode-image_xfm.*` (with SyN also "
        f"`X_from-{run.template}_to-{NATIVE_SPACE}_mode-image_xfm.nii.gz`)\n"
        "- `sub-<label>/figures/`: quality-control images\n\n"
        "At the top: `regions.tsv` (every scan's regional values), `cohort_status.tsv` (who succeeded, who "
        "failed and why), `validation.tsv` (problems found in the input), `logs/` and `group/` (statistics "
        "and the report). `.bidsignore` lists the files BIDS has no name for.\n")


def write_dataset_files(paths: CohortPaths, bids_dir: Path, *, authors: Sequence[str], readme: str) -> None:
    """``dataset_description.json``, ``README`` and ``.bidsignore`` (``BIDSIGNORE``), each atomically."""
    write_json_atomic(paths.dataset_description, derivative_description(bids_dir, paths.root, authors=authors))
    _write_if_changed(paths.readme, readme)
    _write_if_changed(paths.bidsignore, "".join(f"{pattern}\n" for pattern in BIDSIGNORE))


def _write_if_changed(path: Path, text: str) -> None:
    if not path.exists() or path.read_text(encoding="utf-8") != text:
        write_text_atomic(path, text)


def labels_sidecar(*, atlas: str, template: str, transforms: Sequence[str], interpolation: str,
                   spatial_reference: str | None, sources: Sequence[str]) -> dict[str, Any]:
    """The JSON sidecar of a scan's atlas labels (``<label>_atlas-<atlas>_dseg.nii.gz``, and by
    inheritance its ``.tsv``): labels defined on the template, warped to the scan's own grid.

    Parameters
    ----------
    atlas : str
        The ``atlas-<label>`` label (its ``atlas-<label>_description.json`` names the atlas).
    template : str
        The template space the atlas is defined in.
    transforms : sequence of str
        The registration's transforms, subject to template, in order (``rigid``, ``affine``, ``SyN``).
    interpolation : str
        How the labels were resampled (ANTs ``genericLabel`` or ``nearestNeighbor``).
    spatial_reference : str or None
        The raw image the scan's grid is that of (a BIDS URI); None leaves the key out.
    sources : sequence of str
        The files the labels were made from (the inverse transforms, the map whose grid they take).
    """
    sidecar: dict[str, Any] = {
        "Description": (f"atlas-{atlas} labels (the atlas is defined on the {template} template) warped from "
                        f"{template} to this scan's own grid with the inverse of the subject-to-template "
                        f"registration ({' + '.join(transforms)}), {interpolation} interpolation; the names of "
                        "the labels are in the .tsv of the same name"),
        "Sources": list(sources),
    }
    if spatial_reference is not None:
        sidecar["SpatialReference"] = spatial_reference
    return sidecar
