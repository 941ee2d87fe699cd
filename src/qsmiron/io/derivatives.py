"""Every output path qsmiron writes, built here and nowhere else.

Each writer asks this module for a typed set of paths (``ReconPaths``, ``RegionsPaths``,
``CohortPaths``, ``StudyPaths``, ``DemoPaths``), writes them and returns that object, so a
later step reads the paths it was given instead of rebuilding a name.

A run's derivative dataset (``OUT_DIR/qsmiron``) follows BIDS derivatives: a subject's images
under ``sub-X[/ses-Y]/anat/`` with ``space-``/``desc-``/``atlas-`` entities and BIDS suffixes
(``Chimap``, ``R2starmap``, ``mask``, ``dseg`` with its ``.tsv`` label table), transforms
named ``from-MEGRE_to-<template>_mode-image_xfm`` as fMRIPrep does, QC images under
``sub-X/figures/``; the files BIDS has no name for (regional tables, records, the two field
maps, transforms, logs, status tables, ``group/``) are listed in its ``.bidsignore``
(``BIDSIGNORE``). Its top files and image metadata: ``qsmiron.io.derivative_dataset``.

Every set of paths has ``files()``: role -> path of the files it names, the roles under
which a cohort's done-marker lists a subject's outputs (``ROLE_*`` below name the ones other
steps look up).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, fields
from pathlib import Path

DERIVATIVE_NAME = "qsmiron"
"""The derivative dataset's folder inside a run's output folder."""

DONE_MARKER = ".qsmiron-done.json"
"""Written last into a subject's folder: its outputs are complete (see ``qsmiron.pipeline.cache``)."""

LOG_FOLDER = "logs"
FIGURES_FOLDER = "figures"
"""A participant's QC images: ``sub-X/figures/`` (fMRIPrep's place), sessions named in the file."""

NATIVE_SPACE = "MEGRE"
"""The ``from-``/``to-`` label of a scan's own grid (its multi-echo GRE) in transform names."""

BIDSIGNORE = (
    "/config.json", "/validation.tsv", "/cohort_status.tsv", "/regions.tsv", "/logs", "/group",
    "/sub-*/figures", "*_regions.tsv", "*_qsm.json", "*_xfm.mat", "*_xfm.nii.gz", "*_fieldmap.nii.gz",
    "*_fieldmap.json", "*_localfield.nii.gz", "*_localfield.json",
)
"""``.bidsignore`` of a run's derivative dataset: the files BIDS has no name for (qsmiron's tables
and records, the total field in Hz and the local field in ppm, which no BIDS suffix describes in
``anat/``, the ANTs transforms, logs and the group analysis). Folders are named without a
trailing slash, which the validator would not match."""

ROLE_REGIONS = "regions"
ROLE_RECON_RECORD = "recon_record"
ROLE_REGIONS_RECORD = "regions_record"
ROLE_TEMPLATE_CHIMAP = "template_chimap"
"""Chi on the template grid (``RegionsPaths.template_chimap``), what voxel-wise statistics read."""
ROLE_TEMPLATE_R2STARMAP = "template_r2starmap"
"""R2* on the template grid (``RegionsPaths.template_r2starmap``), when the subject has an R2* map."""
QC_ROLES = ("qc_chimap", "qc_fields", "qc_atlas", "qc_registration")
"""Marker roles of a subject's QC figures, in the order of its QC page (``qc/`` beside the report)."""


def _roles(paths) -> dict[str, Path]:
    return {field.name: getattr(paths, field.name) for field in fields(paths)
            if isinstance(getattr(paths, field.name), Path)}


def sidecar_of(image: str | os.PathLike) -> Path:
    """The JSON sidecar beside a NIfTI image (``x.nii.gz`` -> ``x.json``)."""
    image = Path(image)
    for suffix in (".nii.gz", ".nii"):
        if image.name.endswith(suffix):
            return image.with_name(image.name[: -len(suffix)] + ".json")
    return image.with_suffix(".json")


def bids_uri(path: str | os.PathLike, datasets: dict[str, str | os.PathLike]) -> str:
    """A file as a BIDS URI: ``bids:<name>:<path inside that dataset>`` for the first of
    ``datasets`` (name -> root; ``""`` is the derivative dataset itself, ``bids::...``) holding
    it; a file in none of them keeps only its name (never an absolute path)."""
    path = Path(path).resolve()
    for name, root in datasets.items():
        try:
            return f"bids:{name}:{path.relative_to(Path(root).resolve()).as_posix()}"
        except ValueError:
            continue
    return path.name


# ----------------------------------------------------------------------------- one subject
@dataclass(frozen=True)
class ReconPaths:
    """The outputs of one reconstruction (``qsmiron recon``, or a cohort's recon step).

    The iron-specific maps (R2*, T2*, S0, the R2* valid-fit mask, the paramagnetic and
    diamagnetic susceptibility) are written only when made: ``recon_paths`` names them all,
    and the writer returns the paths with the ones it did not write set to None. Each of them
    has a JSON sidecar (units, method, parameters), in every layout.
    """

    chimap: Path
    mask: Path
    fieldmap: Path
    localfield: Path
    record: Path
    with_sidecars: bool = False
    """A cohort also writes a BIDS JSON sidecar beside each of the four susceptibility maps."""
    r2starmap: Path | None = None
    """R2*, s^-1 (NaN where the fit is not valid, 0 outside the brain mask)."""
    t2starmap: Path | None = None
    """T2* = 1 / R2*, s."""
    s0map: Path | None = None
    """Signal at TE = 0, magnitude units."""
    r2star_mask: Path | None = None
    """Where R2* is valid."""
    chimap_paramagnetic: Path | None = None
    """chi+ (``desc-paramagnetic_Chimap``), ppm, a non-negative magnitude."""
    chimap_diamagnetic: Path | None = None
    """chi- (``desc-diamagnetic_Chimap``), ppm, a non-negative magnitude."""

    def maps(self) -> dict[str, Path]:
        """Role -> path of the four susceptibility-chain images."""
        return {"chimap": self.chimap, "mask": self.mask, "fieldmap": self.fieldmap, "localfield": self.localfield}

    def iron_maps(self) -> dict[str, Path]:
        """Role -> path of the iron-specific images named (``IRON_ROLES``, the ones not None)."""
        return {role: getattr(self, role) for role in IRON_ROLES if getattr(self, role) is not None}

    def files(self) -> dict[str, Path]:
        out = {**self.maps(), **self.iron_maps(), ROLE_RECON_RECORD: self.record}
        sidecars = {**(self.maps() if self.with_sidecars else {}), **self.iron_maps()}
        out.update({f"{role}_json": sidecar_of(path) for role, path in sidecars.items()})
        return out


IRON_ROLES = ("r2starmap", "t2starmap", "s0map", "r2star_mask", "chimap_paramagnetic", "chimap_diamagnetic")
"""Roles of the iron-specific maps of a reconstruction (fields of ``ReconPaths``)."""

LEGACY_RECON_KEYS = {"Chimap": "chimap", "mask": "mask", "fieldmap": "fieldmap", "localfield": "localfield",
                     "recon_json": "record", "R2starmap": "r2starmap", "T2starmap": "t2starmap", "S0map": "s0map",
                     "r2star_mask": "r2star_mask", "paramagnetic_Chimap": "chimap_paramagnetic",
                     "diamagnetic_Chimap": "chimap_diamagnetic"}
"""The keys ``reconstruct_files(names=...)`` accepts, and the role each names."""


def recon_paths(out_dir: str | os.PathLike, label: str | None = None, *,
                names: dict[str, str] | None = None) -> ReconPaths:
    """Where a reconstruction writes.

    Parameters
    ----------
    out_dir : path
    label : str, optional
        ``sub-X[_ses-Y]``: BIDS-derivative names with sidecars (a cohort):
        ``<label>_Chimap.nii.gz``, ``<label>_desc-qsm_mask.nii.gz``,
        ``<label>_desc-total_fieldmap.nii.gz`` (Hz), ``<label>_localfield.nii.gz``
        (ppm: not a BIDS ``fieldmap``, which is in Hz),
        ``<label>_desc-recon_qsm.json``, ``<label>_R2starmap.nii.gz``,
        ``<label>_T2starmap.nii.gz``, ``<label>_S0map.nii.gz``,
        ``<label>_desc-r2star_mask.nii.gz``, ``<label>_desc-paramagnetic_Chimap.nii.gz``,
        ``<label>_desc-diamagnetic_Chimap.nii.gz``. Without it the plain names of
        ``qsmiron recon``: the same without ``<label>_`` (``Chimap.nii.gz``, ``mask.nii.gz``,
        ``fieldmap.nii.gz``, ``localfield.nii.gz``, ``recon.json``, ``R2starmap.nii.gz``, ...).
    names : dict, optional
        File names by key (``LEGACY_RECON_KEYS``: ``Chimap``, ``mask``, ``fieldmap``,
        ``localfield``, ``recon_json``, ``R2starmap``, ...) replacing the defaults; distinct
        plain file names.
    """
    out_dir = Path(out_dir)
    iron = {"r2starmap": "R2starmap.nii.gz", "t2starmap": "T2starmap.nii.gz", "s0map": "S0map.nii.gz",
            "r2star_mask": "desc-r2star_mask.nii.gz", "chimap_paramagnetic": "desc-paramagnetic_Chimap.nii.gz",
            "chimap_diamagnetic": "desc-diamagnetic_Chimap.nii.gz"}
    if label is None:
        chosen = {"chimap": "Chimap.nii.gz", "mask": "mask.nii.gz", "fieldmap": "fieldmap.nii.gz",
                  "localfield": "localfield.nii.gz", "record": "recon.json", **iron}
    else:
        chosen = {"chimap": f"{label}_Chimap.nii.gz", "mask": f"{label}_desc-qsm_mask.nii.gz",
                  "fieldmap": f"{label}_desc-total_fieldmap.nii.gz",
                  "localfield": f"{label}_localfield.nii.gz", "record": f"{label}_desc-recon_qsm.json",
                  **{role: f"{label}_{name}" for role, name in iron.items()}}
    if names:
        unknown = set(names) - set(LEGACY_RECON_KEYS)
        if unknown:
            raise ValueError(f"unknown output name keys {sorted(unknown)}; use {sorted(LEGACY_RECON_KEYS)}")
        chosen.update({LEGACY_RECON_KEYS[key]: str(value) for key, value in names.items()})
    values = list(chosen.values())
    if len(set(values)) != len(values) or any(Path(v).name != v for v in values):
        raise ValueError(f"output names must be distinct plain file names, got {chosen}")
    return ReconPaths(**{role: out_dir / name for role, name in chosen.items()}, with_sidecars=label is not None)


@dataclass(frozen=True)
class TransformPaths:
    """Saved subject <-> template transforms (ANTs files), named after an output stem."""

    affine: Path
    warp: Path
    inverse_warp: Path

    def files(self) -> dict[str, Path]:
        return {"transform_affine": self.affine, "transform_warp": self.warp,
                "transform_inverse_warp": self.inverse_warp}


def transform_paths(stem: str | os.PathLike, space: str) -> TransformPaths:
    """``<stem>_from-MEGRE_to-<space>_mode-image_xfm.mat`` (rigid + affine), the SyN warp
    ``<stem>_from-MEGRE_to-<space>_mode-image_xfm.nii.gz`` and its inverse
    ``<stem>_from-<space>_to-MEGRE_mode-image_xfm.nii.gz`` (fMRIPrep's names, the template named)."""
    stem = str(stem)
    forward = f"{stem}_from-{NATIVE_SPACE}_to-{space}_mode-image_xfm"
    return TransformPaths(affine=Path(forward + ".mat"), warp=Path(forward + ".nii.gz"),
                          inverse_warp=Path(f"{stem}_from-{space}_to-{NATIVE_SPACE}_mode-image_xfm.nii.gz"))


@dataclass(frozen=True)
class RegionsPaths:
    """The outputs of one regional measurement."""

    regions: Path
    """The table (``OUT.tsv``)."""
    regions_record: Path
    """The ``RegionsRecord``."""
    qc_atlas: Path
    qc_registration: Path
    labels: Path
    """The atlas labels on the subject's grid (a BIDS ``dseg`` image)."""
    labels_table: Path
    """Index and name of each label (the ``dseg`` image's ``.tsv``)."""
    template_chimap: Path
    """Chi resampled to the template grid (with ``registration.warp_chi_to_template``), for
    voxel-wise statistics; its JSON sidecar is ``sidecar_of(template_chimap)``."""
    template_r2starmap: Path
    """R2* resampled to the template grid in the same way, when the subject has an R2* map."""
    transforms: TransformPaths

    @property
    def stem(self) -> Path:
        """The table without ``.tsv``: the name QC figure titles and messages use."""
        return table_stem(self.regions)

    def files(self) -> dict[str, Path]:
        return {**_roles(self), **self.transforms.files()}


def table_stem(out_tsv: str | os.PathLike) -> Path:
    """``OUT.tsv`` -> ``OUT``: the stem every other output of the measurement takes."""
    out_tsv = Path(out_tsv)
    name = out_tsv.name
    for suffix in (".tsv", ".csv", ".txt"):
        if name.endswith(suffix):
            return out_tsv.with_name(name[: -len(suffix)])
    return out_tsv


def regions_paths(out_tsv: str | os.PathLike, *, atlas: str, space: str, label: str | None = None,
                  figures_dir: str | os.PathLike | None = None) -> RegionsPaths:
    """Where ``qsmiron roi -o OUT.tsv`` (or a cohort's roi step) writes, for an atlas of that
    name in that template space.

    Without ``label`` every output takes the table's stem: ``OUT.json`` (the record),
    ``OUT_dseg.nii.gz`` and ``OUT_dseg.tsv``, ``OUT_qc_atlas.png``, ``OUT_qc_registration.png``,
    ``OUT_space-<space>_Chimap.nii.gz`` and the transforms ``OUT_from-MEGRE_to-<space>_...``.
    With ``label`` (``sub-X[_ses-Y]``, a cohort's subject) the names are BIDS derivatives beside
    the table: ``<label>_atlas-<atlas>_desc-regions_qsm.json``, ``<label>_atlas-<atlas>_dseg.nii.gz``
    and ``.tsv``, ``<label>_space-<space>_Chimap.nii.gz`` (:func:`template_map_path`, where
    ``qsmiron voxelwise`` finds it), ``<label>_from-MEGRE_to-<space>_mode-image_xfm.mat`` ...,
    and the QC images ``<label>_atlas-<atlas>_desc-regions_qc.png`` and
    ``<label>_space-<space>_desc-registration_qc.png`` in ``figures_dir`` (default: beside the
    table).
    """
    stem = table_stem(out_tsv)
    if label is None:
        return RegionsPaths(regions=Path(out_tsv), regions_record=stem.with_name(stem.name + ".json"),
                            qc_atlas=stem.with_name(stem.name + "_qc_atlas.png"),
                            qc_registration=stem.with_name(stem.name + "_qc_registration.png"),
                            labels=stem.with_name(stem.name + "_dseg.nii.gz"),
                            labels_table=stem.with_name(stem.name + "_dseg.tsv"),
                            template_chimap=stem.with_name(f"{stem.name}_space-{space}{TEMPLATE_MAP_SUFFIX}"),
                            template_r2starmap=stem.with_name(f"{stem.name}_space-{space}_R2starmap.nii.gz"),
                            transforms=transform_paths(stem, space))
    folder = stem.parent
    figures = folder if figures_dir is None else Path(figures_dir)
    entity = f"atlas-{atlas_label(atlas)}"
    return RegionsPaths(regions=Path(out_tsv), regions_record=folder / f"{label}_{entity}_desc-regions_qsm.json",
                        qc_atlas=figures / f"{label}_{entity}_desc-regions_qc.png",
                        qc_registration=figures / f"{label}_space-{space}_desc-registration_qc.png",
                        labels=folder / f"{label}_{entity}_dseg.nii.gz",
                        labels_table=folder / f"{label}_{entity}_dseg.tsv",
                        template_chimap=template_map_path(folder, label, space),
                        template_r2starmap=folder / f"{label}_space-{space}_R2starmap.nii.gz",
                        transforms=transform_paths(folder / label, space))


TEMPLATE_MAP_SUFFIX = "_Chimap.nii.gz"
TEMPLATE_MAP_PATTERN = re.compile(
    r"^(?P<sub>sub-[A-Za-z0-9]+)(?:_(?P<ses>ses-[A-Za-z0-9]+))?(?:_[A-Za-z0-9]+-[A-Za-z0-9]+)*?"
    r"_space-(?P<space>[A-Za-z0-9]+)(?:_[A-Za-z0-9]+-[A-Za-z0-9]+)*_Chimap\.nii(?:\.gz)?$")
"""A template-space chi map's file name (other BIDS entities allowed between and after)."""


def template_map_path(subject_dir: str | os.PathLike, label: str, space: str) -> Path:
    """A subject's chi map on the template grid: ``sub-<label>[_ses-<label>]_space-<space>_Chimap.nii.gz``."""
    return Path(subject_dir) / f"{label}_space-{space}{TEMPLATE_MAP_SUFFIX}"


def parse_template_map_name(name: str) -> tuple[str, str | None, str] | None:
    """(participant, session or None, space) of a template-space chi map's file name; None otherwise."""
    match = TEMPLATE_MAP_PATTERN.match(name)
    return None if match is None else (match["sub"], match["ses"], match["space"])


def atlas_label(atlas: str | os.PathLike) -> str:
    """A BIDS label for the atlas: the built-in name, or the label file's stem, alphanumeric."""
    name = Path(atlas).name
    for suffix in (".nii.gz", ".nii"):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
    return "".join(ch for ch in name if ch.isalnum()) or "custom"


@dataclass(frozen=True)
class QcFigurePaths:
    """The ``qc`` step's figures: chi at a fixed window with the mask; total (Hz) and local (ppm) field."""
    qc_chimap: Path
    qc_fields: Path


def qc_figure_paths(figures_dir: str | os.PathLike, label: str) -> QcFigurePaths:
    """``<label>_desc-chimap_qc.png`` and ``<label>_desc-fields_qc.png`` in ``figures_dir`` (``sub-X/figures``)."""
    return QcFigurePaths(*(Path(figures_dir) / f"{label}_desc-{name}_qc.png" for name in ("chimap", "fields")))


def qc_page_link(label: str) -> str:
    """A scan's QC page relative to the report that links it: ``qc/<label>_qc.html``."""
    return f"qc/{label}_qc.html"


# ------------------------------------------------------------------------------ a cohort
@dataclass(frozen=True)
class CohortPaths:
    """The top of a run's derivative dataset (``OUT_DIR/qsmiron``)."""

    root: Path
    dataset_description: Path
    readme: Path
    config: Path
    validation: Path
    status: Path
    regions: Path
    logs: Path
    group: Path
    bidsignore: Path

    def subject_dir(self, relative_dir: str | os.PathLike) -> Path:
        """``root/sub-X[/ses-Y]/anat``: where a subject's derivatives go."""
        return self.root / relative_dir / "anat"

    def figures_dir(self, relative_dir: str | os.PathLike) -> Path:
        """``root/sub-X/figures``: a participant's QC images, every session's (fMRIPrep's layout)."""
        return self.root / Path(relative_dir).parts[0] / FIGURES_FOLDER

    def participant_dir(self, relative_dir: str | os.PathLike) -> Path:
        """``root/sub-X``: everything of one participant (a done-marker lists files under it)."""
        return self.root / Path(relative_dir).parts[0]

    def subject_log(self, label: str) -> Path:
        return self.logs / f"{label}.log"

    def done_marker(self, relative_dir: str | os.PathLike) -> Path:
        return self.subject_dir(relative_dir) / DONE_MARKER

    def atlas_description(self, atlas: str | os.PathLike) -> Path:
        """``root/atlas-<label>_description.json``: what the ``atlas-<label>`` entity names."""
        return self.root / f"atlas-{atlas_label(atlas)}_description.json"

    @staticmethod
    def regions_table(subject_dir: str | os.PathLike, label: str, atlas: str | os.PathLike) -> Path:
        """A subject's regional table: ``<label>_atlas-<atlas>_regions.tsv``."""
        return Path(subject_dir) / f"{label}_atlas-{atlas_label(atlas)}_regions.tsv"


def cohort_paths(root: str | os.PathLike) -> CohortPaths:
    """The paths of a derivative dataset whose top folder is ``root`` (``OUT_DIR/qsmiron``)."""
    root = Path(root)
    return CohortPaths(root=root, dataset_description=root / "dataset_description.json", readme=root / "README",
                       config=root / "config.json", validation=root / "validation.tsv",
                       status=root / "cohort_status.tsv", regions=root / "regions.tsv",
                       logs=root / LOG_FOLDER, group=root / "group", bidsignore=root / ".bidsignore")


# ------------------------------------------------------------------------------- a study
@dataclass(frozen=True)
class StudyPaths:
    """The outputs of one study analysis (``qsmiron stats``, a run's group level)."""

    group_comparison: Path
    associations: Path
    relapse: Path
    table1: Path
    relapse_counts: Path
    roc_curves: Path
    km_curves: Path
    km_at_risk: Path
    results: Path
    report: Path
    sessions: Path
    """With several sessions analysed separately: the table of the session analyses."""

    def qc_page(self, label: str) -> Path:  # the QC page of scan sub-X[_ses-Y], under the report's folder
        return self.report.parent / qc_page_link(label)

    def session(self, session: str) -> "StudyPaths":
        """The paths of one session's analysis (``<out_dir>/ses-<label>/``)."""
        return study_paths(self.results.parent / session)

    def files(self) -> dict[str, Path]:
        return _roles(self)


def study_paths(out_dir: str | os.PathLike) -> StudyPaths:
    """Where a study analysis into ``out_dir`` writes."""
    out_dir = Path(out_dir)
    names = {"group_comparison": "group_comparison.tsv", "associations": "associations.tsv",
             "relapse": "relapse.tsv", "table1": "table1.tsv", "relapse_counts": "relapse_counts.tsv",
             "roc_curves": "roc_curves.tsv", "km_curves": "km_curves.tsv",
             "km_at_risk": "km_at_risk.tsv", "results": "results.json",
             "report": "report.html", "sessions": "sessions.tsv"}
    return StudyPaths(**{role: out_dir / name for role, name in names.items()})


@dataclass(frozen=True)
class ExtensionPaths:
    """The tables of a study's optional regional sections (``[harmonise]``, ``[longitudinal]``,
    ``[normative]``), written once per group analysis beside its ``results.json`` (the top folder
    when each session is analysed separately)."""

    regions_harmonised: Path
    site_effects: Path
    longitudinal: Path
    normative: Path

    def files(self) -> dict[str, Path]:
        return _roles(self)


def extension_paths(out_dir: str | os.PathLike) -> ExtensionPaths:
    out_dir = Path(out_dir)
    return ExtensionPaths(regions_harmonised=out_dir / "regions_harmonised.tsv",
                          site_effects=out_dir / "harmonise_site_effects.tsv",
                          longitudinal=out_dir / "longitudinal.tsv", normative=out_dir / "normative.tsv")


@dataclass(frozen=True)
class VoxelwisePaths:
    """The outputs of one voxel-wise analysis (``qsmiron voxelwise``, or a group level's
    ``[voxelwise]`` section, beside that analysis's ``results.json``)."""

    clusters: Path
    contrasts: Path
    mask: Path
    record: Path
    """``voxelwise.json`` (``qsmiron.records.VoxelwiseRecord``), written last."""

    def t_map(self, contrast_key: str) -> Path:
        return self.record.parent / f"voxelwise_{contrast_key}_stat-t.nii.gz"

    def logp_map(self, contrast_key: str) -> Path:
        """-log10 p_FWE of the contrast."""
        return self.record.parent / f"voxelwise_{contrast_key}_stat-logpfwe.nii.gz"

    def figure(self, contrast_key: str) -> Path:
        return self.record.parent / f"voxelwise_{contrast_key}.png"

    def files(self) -> dict[str, Path]:
        return _roles(self)


def voxelwise_paths(out_dir: str | os.PathLike) -> VoxelwisePaths:
    out_dir = Path(out_dir)
    return VoxelwisePaths(clusters=out_dir / "voxelwise_clusters.tsv", contrasts=out_dir / "voxelwise_contrasts.tsv",
                          mask=out_dir / "voxelwise_mask.nii.gz", record=out_dir / "voxelwise.json")


# -------------------------------------------------------------------------------- the demo
@dataclass(frozen=True)
class DemoPaths:
    """The demo's folder: the simulated dataset, the run's derivatives and the settings used."""

    bids: Path
    out_dir: Path
    demo_config: Path
    processing_config: Path
    study: Path
    truth_effects: Path
    truth_regions: Path


def demo_paths(out_dir: str | os.PathLike) -> DemoPaths:
    out_dir = Path(out_dir)
    return DemoPaths(bids=out_dir / "bids", out_dir=out_dir, demo_config=out_dir / "demo_config.json",
                     processing_config=out_dir / "qsmiron_config.json", study=out_dir / "study.toml",
                     truth_effects=out_dir / "truth_effects.tsv", truth_regions=out_dir / "truth_regions.tsv")
