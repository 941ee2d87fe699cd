"""Voxel-wise inference on template-space chi maps: the study's group comparison and
associations as GLMs with permutation inference, TFCE and family-wise error control.

``run_voxelwise`` is ``qsmiron voxelwise DERIVATIVES_DIR PARTICIPANTS_TSV --study STUDY -o OUT``.
It writes into ``OUT``:

- ``voxelwise_clusters.tsv``: contrast, cluster_id, n_voxels, peak_x_mm, peak_y_mm,
  peak_z_mm, peak_t, p_fwe, label (the atlas region holding most of the cluster's voxels);
  one row per cluster of face-connected voxels of one sign with p_FWE < ``alpha``;
- ``voxelwise_contrasts.tsv``: one row per contrast (sample, n, maximum |t|, minimum p_FWE,
  number of clusters, the files below, and a note when it could not be run);
- ``voxelwise_<key>_stat-t.nii.gz``, ``voxelwise_<key>_stat-logpfwe.nii.gz``: t and
  -log10 p_FWE (TFCE) on the template grid, 0 outside the analysed voxels;
- ``voxelwise_<key>.png``: slices through the peak with atlas outlines, mm coordinates and
  a colour bar; ``voxelwise_mask.nii.gz``: the voxels analysed;
- ``voxelwise.json``: the ``qsmiron.records.VoxelwiseRecord`` (settings, methods text, both
  tables as records, exclusions, warnings, timings, versions, every file by role).

Names come from ``qsmiron.io.derivatives.voxelwise_paths``.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import ndimage

from qsmiron.errors import InputError
from qsmiron.io.derivatives import VoxelwisePaths, voxelwise_paths
from qsmiron.io.participants import ParticipantsTable, SessionsTable
from qsmiron.records.extensions import VoxelwiseCluster, VoxelwiseContrast, VoxelwiseRecord
from qsmiron.records.regions import AtlasInfo
from qsmiron.stats._design import complete_cases, covariate_design
from qsmiron.stats.methods_text import voxelwise_methods
from qsmiron.stats.permutation import neighbour_graph, permuted_glm_tfce
from qsmiron.stats.results import exclusion_records
from qsmiron.stats.study import ALL, Study, group_labels, load_study, resolve_study
from qsmiron.stats.study_sections import VoxelwiseSettings
from qsmiron.stats.voxelwise_maps import (Grid, analysis_mask, atlas_on_grid, find_template_maps, load_masked,
                                          mask_box, select_maps)
from qsmiron.stats.write import plain_values

CLUSTER_COLUMNS = ["contrast", "cluster_id", "n_voxels", "peak_x_mm", "peak_y_mm", "peak_z_mm", "peak_t",
                   "p_fwe", "label"]
CONTRAST_COLUMNS = ["contrast", "key", "kind", "sample", "n", "n_a", "n_b", "covariates", "n_voxels",
                    "max_abs_t", "min_p_fwe", "n_clusters", "t_map", "logp_map", "figure", "note"]
OUTSIDE_ATLAS = "outside atlas regions"


@dataclass
class Contrast:
    """One tested regressor: who is in it and the design."""

    name: str
    key: str
    kind: str                      # "group" or "association"
    sample: str
    participants: list[str]
    regressor: np.ndarray
    confounds: np.ndarray
    covariates: list[str]
    n_a: int | None = None
    n_b: int | None = None
    note: str = ""


@dataclass
class VoxelwiseResults:
    """What ``run_voxelwise`` computed and wrote: the two tables and the record (``voxelwise.json``)."""

    clusters: pd.DataFrame
    contrasts: pd.DataFrame
    record: VoxelwiseRecord


def run_voxelwise(derivatives_dir: str | os.PathLike, participants: ParticipantsTable | str | os.PathLike,
                  out_dir: str | os.PathLike, *, study_path: str | os.PathLike | None = None,
                  study: Study | None = None, session: str | None = None, sessions: SessionsTable | None = None,
                  atlas: str = "cit168", atlas_labels: str | os.PathLike | None = None,
                  template: str | os.PathLike | None = None, missing_maps: str = "error",
                  regions: pd.DataFrame | None = None) -> VoxelwiseResults:
    """Voxel-wise group comparison and associations of the study (see the module docstring).

    Parameters
    ----------
    derivatives_dir : path
        Holds ``sub-*/[ses-*/]anat/sub-*_space-<space>_Chimap.nii.gz``.
    participants : ParticipantsTable or path
        The participants table (``participants.tsv``, or as read).
    out_dir : path
    study_path, study : optional
        The study file (or an already loaded ``Study``); its ``[voxelwise]`` section (defaults
        when absent), groups, covariates and associations define the contrasts.
    session : str, optional
        The session analysed when the maps have several (default: the study's ``session``).
    sessions : SessionsTable, optional
        Per-session participant values (:func:`qsmiron.io.participants.read_sessions`).
    atlas, atlas_labels, template : optional
        Atlas for the mask and cluster labels, template defining the grid (default: CIT168 on
        MNI152NLin2009cAsym, 1 mm).
    missing_maps : {"error", "exclude"}
        An analysed participant without a map is an error (the command line), or is left out
        and listed in the record's ``exclusions`` (a pipeline in which one subject failed).
    regions : DataFrame, optional
        The cohort's regions table, whose ``flag_registration`` the study's ``exclude_flagged``
        rule reads (default: ``derivatives_dir/regions.tsv`` when the rule needs it).

    The figures of the contrasts are drawn by the report's code afterwards
    (:func:`qsmiron.report.voxelwise_figures.add_contrast_figures`, called by the command line
    and the group level): the statistics never import the report.

    Raises
    ------
    InputError
        One line naming the file: a map on another grid or in another space, participants
        without maps, an unknown mask, study settings that do not fit the data.
    """
    from qsmiron.atlas.load import load_atlas, load_template
    from qsmiron.io.participants import participants_at_session, read_participants

    started, cpu_started = time.perf_counter(), time.process_time()
    study = study if study is not None else load_study(study_path)
    settings = study.voxelwise or VoxelwiseSettings()
    session = session or study.session
    if not isinstance(participants, ParticipantsTable):
        participants = read_participants(participants)
    participants = participants_at_session(participants, sessions, session)
    # Regions are not analysed voxel-wise: the study's regions and primary_regions (checked against a
    # regions table that is not here) would refuse the study file that qsmiron stats analyses.
    plain = study.model_copy(deep=True)
    plain.regions, plain.primary_regions = [], []
    plain._source = study.source
    resolved = resolve_study(plain, participants.frame, [], source=participants.source)
    table = participants.frame.set_index("participant_id")

    atlas_obj = load_atlas(atlas, atlas_labels, template)
    template_img = load_template(atlas_obj.template_path if template is None else template)
    grid = Grid(tuple(template_img.shape[:3]), np.asarray(template_img.affine), atlas_obj.space)
    left_out, excluded, rule_warnings = _quality_rule(derivatives_dir, study, session, regions)
    table = table.loc[[pid for pid in table.index if pid not in set(left_out)]]
    contrasts, more = build_contrasts(table, resolved)
    excluded += more
    needed = list(dict.fromkeys(pid for c in contrasts if not c.note for pid in c.participants))
    maps, missing = select_maps(find_template_maps(derivatives_dir, grid.space), needed, grid.space, session,
                                derivatives_dir, participants.source, missing=missing_maps)
    if missing:
        excluded += missing
        without = {item["participant_id"] for item in missing}
        contrasts, _ = build_contrasts(table.loc[[p for p in table.index if p not in without]], resolved)
    labels = atlas_on_grid(atlas_obj, grid)
    study_dir = Path(study.source).parent if study.source else None
    mask, mask_text = analysis_mask(settings.mask, labels, np.asanyarray(template_img.dataobj), grid, study_dir)
    loaded = [pid for pid in maps if any(pid in c.participants for c in contrasts if not c.note)]
    if not loaded:
        raise InputError("no contrast of the study can be analysed voxel-wise (see the notes: "
                         + "; ".join(f"{c.name}: {c.note}" for c in contrasts) + ")", participants.source)
    values = load_masked([maps[pid] for pid in loaded], grid, mask, fwhm_mm=settings.smoothing_fwhm_mm)
    keep, warnings = _usable_voxels(values, mask_text)
    analysed = np.zeros(grid.shape, bool)
    analysed[mask] = keep

    paths = voxelwise_paths(out_dir)
    paths.record.parent.mkdir(parents=True, exist_ok=True)
    clusters, summary = _analyse_contrasts(contrasts, loaded, values[:, keep], analysed, labels, atlas_obj, grid,
                                           settings, paths)
    from qsmiron import __version__

    record = VoxelwiseRecord(
        qsmiron_version=__version__, settings=settings, session=session, mask=mask_text,
        n_voxels=int(analysed.sum()), space=grid.space, grid=grid.describe(), group_column=resolved.groups.column,
        groups=list(resolved.groups.compare), covariates=list(resolved.covariates),
        association_group=resolved.associations.group, association_variables=list(resolved.associations.variables),
        atlas=AtlasInfo(**atlas_obj.describe()), study_file=study.source, derivatives_dir=os.fspath(derivatives_dir),
        participants_table=participants.source,
        methods=voxelwise_methods(settings, mask_text, resolved.associations.method),
        contrasts=[VoxelwiseContrast(**plain_values(row)) for row in summary],
        clusters=[VoxelwiseCluster(**plain_values(row)) for row in clusters],
        exclusions=exclusion_records(excluded),
        warnings=rule_warnings + warnings + [f"{row['contrast']}: {row['note']}" for row in summary if row["note"]],
        versions=_versions())
    results = VoxelwiseResults(clusters=pd.DataFrame(clusters, columns=CLUSTER_COLUMNS),
                               contrasts=_contrast_table(summary), record=record)
    record.seconds, record.cpu_seconds = time.perf_counter() - started, time.process_time() - cpu_started
    write_voxelwise(results, paths, analysed, grid)
    return results


def _quality_rule(derivatives_dir, study: Study, session: str | None,
                  regions: pd.DataFrame | None) -> tuple[list[str], list[dict], list[str]]:
    """The study's ``exclude_flagged`` rule on maps: a participant whose registration ``qsmiron roi``
    flagged (in ``regions``, else the cohort's ``regions.tsv`` beside the maps) is left out when
    the rule names ``flag_registration``; the other flags concern single regions, not a whole map."""
    from qsmiron.stats.qc_exclusion import REGISTRATION_FLAG, voxelwise_exclusions
    from qsmiron.stats.regions import read_regions

    path = Path(derivatives_dir) / "regions.tsv"
    if regions is None and REGISTRATION_FLAG in study.exclude_flagged and path.is_file():
        regions = read_regions(path)
    return voxelwise_exclusions(regions, study.exclude_flagged, session, str(path))


def build_contrasts(table: pd.DataFrame, study: Study) -> tuple[list[Contrast], list[dict]]:
    """The group comparison and one association per clinical variable, as designs.

    ``table`` is the participants table indexed by participant_id; ``study`` is resolved.
    A contrast that cannot be run (too few participants, a constant variable) carries a note.
    """
    labels = group_labels(table[study.groups.column])
    group_a, group_b = study.groups.compare
    minimum = study.min_group_size
    contrasts, exclusions = [], []
    compared = table[labels.isin([group_a, group_b]).to_numpy()]
    kept = complete_cases(compared, list(study.covariates), "voxelwise group")
    exclusions += kept.exclusions
    in_a = (labels.loc[kept.frame.index] == group_a).to_numpy()
    contrast = _design(f"{group_a} - {group_b}", f"group-{_alnum(group_a)}vs{_alnum(group_b)}", "group",
                       f"{group_a} vs {group_b}", kept.frame, in_a.astype(float), study.covariates)
    contrast.n_a, contrast.n_b = int(in_a.sum()), int((~in_a).sum())
    if min(contrast.n_a, contrast.n_b) < minimum:
        contrast.note = (f"too few participants with data ({group_a}: {contrast.n_a}, {group_b}: "
                         f"{contrast.n_b}; at least {minimum} per group needed)")
    contrasts.append(contrast)

    settings = study.associations
    sample = table if settings.group == ALL else table[(labels == settings.group).to_numpy()]
    for variable in settings.variables:
        covariates = [c for c in settings.covariates if c != variable]
        kept = complete_cases(sample, [variable, *covariates], f"voxelwise {variable}")
        exclusions += kept.exclusions
        contrast = _design(f"{variable} ({settings.group})", f"assoc-{_alnum(variable)}-{_alnum(settings.group)}",
                           "association", settings.group, kept.frame,
                           kept.frame[variable].to_numpy(float), covariates)
        if len(kept.frame) < minimum and not contrast.note:
            contrast.note = f"only {len(kept.frame)} participants with data (at least {minimum} needed)"
        contrasts.append(contrast)
    return contrasts, exclusions


# ---------------------------------------------------------------------------------------


def _design(name, key, kind, sample, frame, regressor, covariates) -> Contrast:
    design = covariate_design(frame, list(covariates))
    confounds = design.matrix.to_numpy(float)
    contrast = Contrast(name=name, key=key, kind=kind, sample=sample, participants=[str(i) for i in frame.index],
                        regressor=np.asarray(regressor, float), confounds=confounds,
                        covariates=list(design.matrix.columns))
    full = np.column_stack([np.ones(len(frame)), confounds, contrast.regressor])
    if len(frame) and np.linalg.matrix_rank(full) < full.shape[1]:
        contrast.note = "the tested regressor is constant or collinear with the covariates in this sample"
    elif len(frame) - full.shape[1] < 1:
        contrast.note = f"{len(frame)} participants leave no degrees of freedom"
    return contrast


def _usable_voxels(values: np.ndarray, mask_text: str) -> tuple[np.ndarray, list[str]]:
    """Voxels every map covers and that vary across maps, and a warning for the others."""
    covered = np.all(np.isfinite(values), axis=0)
    spread = np.zeros(values.shape[1])
    spread[covered] = np.ptp(values[:, covered], axis=0)
    keep = covered & (spread > 0)
    warnings = []
    if (~covered).any():
        warnings.append(f"{int((~covered).sum())} of the {values.shape[1]} mask voxels lack data in at least one "
                        "map (outside its field of view or brain mask) and were left out")
    if (covered & ~(spread > 0)).any():
        warnings.append(f"{int((covered & ~(spread > 0)).sum())} voxels hold the same value in every map "
                        "and were left out")
    if not keep.any():
        raise InputError(f"no voxel of {mask_text} has data in every analysed map")
    return keep, warnings


def _analyse_contrasts(contrasts, loaded, values, analysed, labels, atlas_obj, grid, settings,
                       paths: VoxelwisePaths) -> tuple[list[dict], list[dict]]:
    """Each contrast's permutations, maps and clusters: (cluster rows, contrast rows)."""
    from qsmiron.io.nifti import save_nifti

    box = mask_box(analysed, 1)
    inner = analysed[box]
    graph = neighbour_graph(inner)
    row_of = {pid: i for i, pid in enumerate(loaded)}
    names = _label_names(atlas_obj)
    cluster_rows, summary = [], []
    for contrast in contrasts:
        row = {"contrast": contrast.name, "key": contrast.key, "kind": contrast.kind, "sample": contrast.sample,
               "n": len(contrast.participants), "n_a": contrast.n_a, "n_b": contrast.n_b,
               "covariates": list(contrast.covariates), "n_voxels": int(analysed.sum()), "note": contrast.note}
        summary.append(row)
        if contrast.note:
            continue
        rows = [row_of[pid] for pid in contrast.participants]
        result = permuted_glm_tfce(contrast.regressor, values[rows], contrast.confounds, graph,
                                   n_permutations=settings.n_permutations, seed=settings.seed)
        t_map, logp_map = np.zeros(grid.shape, np.float32), np.zeros(grid.shape, np.float32)
        t_map[analysed], logp_map[analysed] = result.t, result.logp_fwe
        t_path, logp_path = paths.t_map(contrast.key), paths.logp_map(contrast.key)
        save_nifti(t_path, t_map, grid.affine, sidecar={"Contrast": contrast.name, "Statistic": "t",
                                                       "Space": grid.space})
        save_nifti(logp_path, logp_map, grid.affine, sidecar={
            "Contrast": contrast.name, "Statistic": "-log10 p, FWE-corrected by max |TFCE| over permutations",
            "Space": grid.space, "NPermutations": result.n_permutations})
        found = cluster_table(contrast.name, t_map[box], logp_map[box], inner, labels[box], names,
                              _box_affine(grid.affine, box), settings.alpha)
        cluster_rows += found
        row.update(max_abs_t=float(np.max(np.abs(result.t))), min_p_fwe=float(10 ** -result.logp_fwe.max()),
                   n_clusters=len(found), t_map=t_path.name, logp_map=logp_path.name)
    return cluster_rows, summary


def _contrast_table(rows: list[dict]) -> pd.DataFrame:
    """``voxelwise_contrasts.tsv``: the contrast rows, covariates as one text cell."""
    frame = pd.DataFrame(rows).reindex(columns=CONTRAST_COLUMNS)
    frame["covariates"] = frame["covariates"].map(lambda names: ", ".join(names))
    return frame


def cluster_table(contrast: str, t: np.ndarray, logp: np.ndarray, analysed: np.ndarray, labels: np.ndarray,
                  names: dict[int, str], affine: np.ndarray, alpha: float) -> list[dict[str, Any]]:
    """Clusters of face-connected voxels of one sign with p_FWE < ``alpha``, most significant first."""
    significant = analysed & (logp > -np.log10(alpha))
    rows = []
    for sign in (1, -1):
        components, count = ndimage.label(significant & (sign * t > 0))
        for index in range(1, count + 1):
            voxels = np.argwhere(components == index)
            values = t[tuple(voxels.T)]
            peak = voxels[int(np.argmax(np.abs(values)))]
            x, y, z = affine[:3, :3] @ peak + affine[:3, 3]
            # the label holding most of the cluster's voxels, background (0) included
            label = names.get(int(np.bincount(labels[tuple(voxels.T)].astype(np.int64)).argmax()), OUTSIDE_ATLAS)
            rows.append({"contrast": contrast, "n_voxels": len(voxels), "peak_x_mm": float(x),
                         "peak_y_mm": float(y), "peak_z_mm": float(z), "peak_t": float(t[tuple(peak)]),
                         "p_fwe": float(10 ** -logp[tuple(voxels.T)].max()), "label": label})
    rows.sort(key=lambda r: (r["p_fwe"], -r["n_voxels"]))
    for number, row in enumerate(rows, start=1):
        row["cluster_id"] = number
    return rows


def write_voxelwise(results: VoxelwiseResults, paths: VoxelwisePaths, analysed: np.ndarray, grid: Grid) -> None:
    """The tables, the mask and ``voxelwise.json`` (written last); the record's ``files`` lists every file."""
    from qsmiron.io.atomic import write_json_atomic, write_tsv_atomic
    from qsmiron.io.nifti import save_nifti

    write_tsv_atomic(paths.clusters, results.clusters)
    write_tsv_atomic(paths.contrasts, results.contrasts)
    save_nifti(paths.mask, analysed, grid.affine, dtype=np.uint8)
    files = {role: path.name for role, path in paths.files().items()}
    for contrast in results.record.contrasts:
        files.update({f"{role}:{contrast.key}": name for role, name in
                      (("t_map", contrast.t_map), ("logp_map", contrast.logp_map), ("figure", contrast.figure))
                      if name})
    results.record.files = files
    write_json_atomic(paths.record, results.record.to_json())


def _versions() -> dict[str, str | None]:
    from importlib.metadata import version

    from qsmiron.versions import software_versions

    return {**software_versions(), "nilearn": version("nilearn")}


def _label_names(atlas_obj) -> dict[int, str]:
    table = atlas_obj.labels
    return {int(index): f"{region} {side}"
            for index, region, side in zip(table["index"], table["region"], table["hemisphere"])}


def _box_affine(affine: np.ndarray, box) -> np.ndarray:
    shifted = np.array(affine, dtype=float)
    shifted[:3, 3] = affine[:3, :3] @ np.array([s.start for s in box]) + affine[:3, 3]
    return shifted


def _alnum(text: Any) -> str:
    return "".join(ch for ch in str(text) if ch.isalnum()) or "x"
