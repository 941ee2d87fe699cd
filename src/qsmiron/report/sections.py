"""The report's sections of the study file's optional analyses: harmonisation, longitudinal
models, normative scores and voxel-wise inference (``qsmiron.records.extensions``).

Each is shown when its record is in the results: ComBat's site effects before and after, the
group-by-time slope differences of the mixed models, the participants beyond the normative
|z| limit (with the reminder that the reference is the study's own group), and the voxel-wise
contrasts, clusters and figures (read from the files the record names, relative to the
folder of ``results.json``, which is the report's folder).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from qsmiron.records.extensions import HarmonisationRecord, LongitudinalRecord, NormativeRecord, VoxelwiseRecord
from qsmiron.report.formatting import format_count, format_number, format_p, format_ppm
from qsmiron.report.names import MEASURE_SYMBOLS, region_label, unit_text
from qsmiron.report.tables import Row, Table, fold_constant_columns, with_download


@dataclass
class ImageFigure:
    """A figure read from a file the analysis wrote (a voxel-wise contrast)."""

    id: str
    title: str
    caption: str
    data_uri: str | None
    alt: str
    problem: str | None = None
    width_in: float = 7.0


@dataclass
class ExtraSection:
    id: str
    title: str
    intro: list[str]
    tables: list[Table] = field(default_factory=list)
    figures: list[ImageFigure] = field(default_factory=list)


def harmonisation_section(record: HarmonisationRecord) -> ExtraSection:
    frame = pd.DataFrame([e.model_dump() for e in record.site_effects])
    rows = []
    keys = ["session", "measure", "reference", "region", "hemisphere"]
    if not frame.empty:
        for (session, measure, _, region, hemisphere), part in frame.groupby(keys, sort=False, dropna=False):
            first = part.iloc[0]
            number = format_ppm if first.unit == "ppm" else (lambda v: format_number(v, 2))
            before = "; ".join(f"{r.site}: {number(r.mean_before)}" for r in part.itertuples())
            after = "; ".join(f"{r.site}: {number(r.mean_after)}" for r in part.itertuples())
            rows.append(Row([region_label(region, hemisphere), f"{MEASURE_SYMBOLS.get(measure, measure)} ({unit_text(first.unit)})",
                             "" if pd.isna(session) else str(session), before, format_number(first.F_before, 2),
                             format_p(first.p_before), after, format_number(first.F_after, 2),
                             format_p(first.p_after)]))
    table = Table("harmonisation-table", ["region", "measure", "session", "site means before", "F before",
                                          "p before", "site means after", "F after", "p after"], rows,
                  f"Site effect per region and measure: F test of '{record.batch}' in OLS value ~ site + group + "
                  "covariates, before and after ComBat. A site effect that remains after harmonisation shows as a "
                  "small p after.", "No site effects were computed.", 4, {3, 6})
    fold_constant_columns(table, ["session", "measure"])
    with_download(table, frame, "harmonise_site_effects.tsv")
    tests = frame.drop_duplicates(keys) if not frame.empty else frame
    n_before = int((tests["p_before"] < 0.05).sum()) if not frame.empty else 0
    n_after = int((tests["p_after"] < 0.05).sum()) if not frame.empty else 0
    intro = [record.methods,
             f"{record.n_harmonised} participant-sessions harmonised with {record.implementation}; region-measure "
             f"pairs with a site effect at p < 0.05: {n_before} of {len(tests)} before, {n_after} after."]
    return ExtraSection("harmonisation", "Harmonisation across sites", intro, [table])


def longitudinal_section(record: LongitudinalRecord) -> ExtraSection:
    rows, records = [], []
    for term in record.interactions:
        records.append(term.model_dump())
        scale = 1000.0
        estimate = None if term.estimate is None else term.estimate * scale
        se = None if term.se is None else term.se * scale
        rows.append(Row([region_label(term.region, term.hemisphere), format_number(estimate, 2),
                         format_number(se, 2), format_p(term.p), format_p(term.p_fdr), format_count(term.n),
                         format_count(term.n_participants), term.note],
                        significant=term.p_fdr is not None and term.p_fdr < 0.05))
    table = Table("longitudinal-table", ["region", f"slope difference (ppb per unit of {record.time})", "SE (ppb)",
                                         "p", "p FDR", "observations", "participants", "note"], rows,
                  f"Group-by-time interaction of each region's mixed model: the change of susceptibility per unit "
                  f"of '{record.time}', {record.group_a} minus {record.group_b}. Every term is in longitudinal.tsv.",
                  "No mixed model could be fitted.", 1, {7})
    fold_constant_columns(table, ["observations", "participants", "note"])
    with_download(table, pd.DataFrame([t.model_dump() for t in record.terms]), "longitudinal.tsv")
    return ExtraSection("longitudinal", "Change over sessions", [record.methods], [table])


def normative_section(record: NormativeRecord) -> ExtraSection:
    counts = "; ".join(f"{s.session or 'all'}: {s.n_scored} scored against {s.n_reference} reference participants, "
                       f"{s.n_outliers} value(s) beyond |z| {record.outlier_z:g}" for s in record.sessions)
    rows = [Row([o.participant_id, o.session or "", o.group or "", region_label(o.region, o.hemisphere),
                 format_ppm(o.chi_ppm), format_ppm(o.expected_ppm), format_number(o.z, 2),
                 "yes" if o.in_reference else "no"], significant=True)
            for o in sorted(record.outliers, key=lambda o: -abs(o.z))]
    table = Table("normative-table", ["participant", "session", "group", "region", "value (ppm)", "expected (ppm)",
                                      "z", "in reference"], rows,
                  f"Values beyond |z| > {record.outlier_z:g} (flagged), largest |z| first.",
                  f"No value lies beyond |z| > {record.outlier_z:g}.", 4, {7})
    fold_constant_columns(table, ["session"])
    with_download(table, pd.DataFrame([o.model_dump() for o in record.outliers]), "normative_outliers.tsv")
    intro = [f"The reference is this study's own {record.reference_group} group, not a population norm.",
             record.methods, counts]
    return ExtraSection("normative", "Normative scores", [t for t in intro if t], [table])


def voxelwise_section(record: VoxelwiseRecord, folder: str | os.PathLike | None) -> ExtraSection:
    from qsmiron.report.images import image_data_uri

    contrasts = [Row([c.contrast, c.sample, format_count(c.n), format_count(c.n_voxels),
                      format_number(c.max_abs_t, 2), format_p(c.min_p_fwe), format_count(c.n_clusters), c.note],
                     significant=c.min_p_fwe is not None and c.min_p_fwe < record.settings.alpha)
                 for c in record.contrasts]
    contrast_table = Table("voxelwise-contrasts-table", ["contrast", "sample", "n", "voxels", "max |t|",
                                                         "min p FWE", "clusters", "note"], contrasts,
                           "Each tested contrast (TFCE, FWE by the maximum statistic over permutations).",
                           "No contrast was analysed.", 2, {7})
    contrast_table.caption += " Marked *: a voxel with p FWE < " + f"{record.settings.alpha:g}."
    with_download(contrast_table, pd.DataFrame([c.model_dump() for c in record.contrasts]), "voxelwise_contrasts.tsv")
    clusters = [Row([c.contrast, str(c.cluster_id), format_count(c.n_voxels),
                     f"{c.peak_x_mm:.0f}, {c.peak_y_mm:.0f}, {c.peak_z_mm:.0f}", format_number(c.peak_t, 2),
                     format_p(c.p_fwe), c.label], significant=True) for c in record.clusters]
    cluster_table = Table("voxelwise-clusters-table", ["contrast", "cluster", "voxels", "peak x, y, z (mm)",
                                                       "peak t", "p FWE", "atlas region"], clusters,
                          f"Clusters of face-connected voxels with p FWE < {record.settings.alpha:g}, "
                          f"coordinates in {record.space}.", "No cluster reached p FWE < "
                          f"{record.settings.alpha:g}.", 2, {6})
    with_download(cluster_table, pd.DataFrame([c.model_dump() for c in record.clusters]), "voxelwise_clusters.tsv")
    figures = []
    for contrast in record.contrasts:
        if not contrast.figure:
            continue
        path = Path(folder or ".") / contrast.figure
        caption = (f"{contrast.contrast}: t where p FWE < {record.settings.alpha:g} (else the unthresholded t, as "
                   "the title says) on the template through the peak, atlas regions outlined, coordinates in mm; below, the "
                   "glass brain (maximum projection of the same map).")
        try:
            uri, problem = image_data_uri(path), None
        except (OSError, ValueError) as error:
            uri, problem = None, f"{error.__class__.__name__}: {path}"
        figures.append(ImageFigure(f"fig-voxelwise-{contrast.key}", contrast.contrast, caption, uri,
                                   f"Slices of the voxel-wise t map of {contrast.contrast}", problem))
    intro = [f"{record.mask}; {record.n_voxels} voxels analysed.", record.methods]
    return ExtraSection("voxelwise", "Voxel-wise analysis", intro, [contrast_table, cluster_table], figures)


def extra_sections(results, folder: str | os.PathLike | None = None) -> list[ExtraSection]:
    """The optional sections present in ``results``, in page order."""
    out = []
    if results.harmonisation is not None:
        out.append(harmonisation_section(results.harmonisation))
    if results.longitudinal is not None:
        out.append(longitudinal_section(results.longitudinal))
    if results.normative is not None:
        out.append(normative_section(results.normative))
    if results.voxelwise is not None:
        out.append(voxelwise_section(results.voxelwise, folder))
    return out
