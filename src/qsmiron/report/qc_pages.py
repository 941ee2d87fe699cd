"""The cohort's QSM quality control: a page per scan and the cohort QC table of the report.

Each scan's page (self-contained HTML beside the report, ``qsmiron.io.derivatives.qc_page_link``)
shows chi at a fixed ppm window with the mask, the total and local field, the atlas regions
on chi with a legend and the registration as template edges over the warped subject, with
its QC measures. The report's QC section shows the cohort: strip plots of every measure (one
dot per scan, flagged scans marked and labelled) and a table linking every page.

The measures come from the typed records (``ReconRecord``: the inversion's iterations,
convergence and final residual; ``RegionsRecord``: the registration's residual shift, NMI
and brain Dice, the head check's core correlation, the sign check's iron-rich nuclei) and from
the mask file (volume). A measure is flagged when its robust z
(median-centred, scaled by 1.4826 MAD over the cohort) exceeds ``OUTLIER_Z`` in magnitude,
and a scan also when its own record flags it: an inversion that did not converge, a
registration outlier, a scan that is not head-like, a map not plausible for brain
(``qsmiron.recon.plausibility``: streaking).
"""

from __future__ import annotations

import base64
import functools
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from qsmiron.io.derivatives import QC_ROLES, StudyPaths, qc_page_link
from qsmiron.records.cohort import Provenance, ScanRecords
from qsmiron.records.qc import OUTLIER_Z, QcMeasure, ScanQc
from qsmiron.records.recon import ReconRecord
from qsmiron.recon.plausibility import MAX_IMPLAUSIBLE_FRACTION
from qsmiron.roi.sign import NEGATE_SETTING

TEMPLATE_DIR = Path(__file__).parent / "templates"


@dataclass(frozen=True)
class MeasureSpec:
    """A QC measure: its key, title, unit, decimals, and whether it is flagged by robust z
    (the inversion's iterations and residual are not: a solver stops at a level or a cap, so
    their spread is not a scan's quality; its own ``converged`` flag is what counts)."""

    key: str
    title: str
    unit: str
    digits: int
    robust_flag: bool = True


QC_MEASURES = (
    MeasureSpec("inversion_iterations", "inversion iterations", "iterations", 0, robust_flag=False),
    MeasureSpec("inversion_residual", "inversion final residual", "method's own unit", 4, robust_flag=False),
    MeasureSpec("mask_volume_ml", "mask volume", "mL", 0),
    MeasureSpec("residual_shift_mm", "registration residual shift", "mm, block matching", 2, robust_flag=False),
    MeasureSpec("nmi", "registration NMI", "1 = independent, 2 = identical", 3),
    MeasureSpec("brain_dice", "brain Dice", "template vs warped subject", 3),
    MeasureSpec("core_correlation", "head check: core |r|", "magnitude vs template", 3),
    # Flagged only at or below zero (the sign check): nuclei that hold more or less iron than the
    # cohort's are biology, not a scan's quality.
    MeasureSpec("iron_nuclei_ppm", "iron-rich nuclei (GPe, GPi, SNr, RN)", "ppm, whole-brain reference", 3,
                robust_flag=False),
)
"""The QC measures of every scan, in the order of the strip plots and the table."""

MIN_RELATIVE_SCALE = 0.01
"""The robust z's scale is at least this fraction of the cohort median: in a cohort as alike as
a simulated one (mask volumes within 0.5 %), a MAD-scaled z would flag differences no reader
would act on."""

RESIDUAL_NOTES = ("bregman_residual_rms_ppm", "residual_rms_ppm", "relative_change", "last_relative_change")
"""Inversion notes read as the final residual, first found (a list: its last value)."""

FIGURES = {
    "qc_chimap": ("Susceptibility and mask",
                  "Susceptibility (chi, ppm) in sagittal, coronal and axial planes at the fixed window -0.15 to "
                  "+0.15 ppm, the same for every subject; the QSM mask outlined in cyan. Scanner coordinates (mm)."),
    "qc_fields": ("Total and local field",
                  "Top: total field after unwrapping and echo fitting (Hz). Bottom: local (tissue) field after "
                  "background removal (ppm). Inside the mask, symmetric windows at the 99th percentile of the "
                  "field's magnitude (values in the titles). Scanner coordinates (mm)."),
    "qc_atlas": ("Atlas regions on susceptibility",
                 "The atlas regions warped to the subject, outlined on chi (fixed window -0.15 to +0.15 ppm), one "
                 "colour per region (both hemispheres alike, legend at the right). Scanner coordinates (mm)."),
    "qc_registration": ("Registration",
                        "The subject's magnitude warped to the template (grey, windowed on its quartiles -/+ 1.5 "
                        "IQR so that the tissue contrast does not saturate) with the template's edges in red: its "
                        "brain outline and two intensity contours (ventricles, white matter). Template "
                        "coordinates (mm)."),
}
"""Role -> (title, caption) of each figure of a scan's page."""


def robust_z(values: list[float | None], min_relative_scale: float = 0.0) -> list[float | None]:
    """``(x - median) / max(1.4826 MAD, min_relative_scale |median|)`` of each value (None stays
    None; a zero scale gives 0 at the median and +/-inf elsewhere: with no spread at all, any
    departure stands out)."""
    known = np.array([v for v in values if v is not None and np.isfinite(v)], float)
    if known.size < 3:
        return [None if v is None else 0.0 for v in values]
    median = float(np.median(known))
    scale = max(1.4826 * float(np.median(np.abs(known - median))), min_relative_scale * abs(median))
    out = []
    for value in values:
        if value is None or not np.isfinite(value):
            out.append(None)
        elif scale > 0:
            out.append(float((value - median) / scale))
        else:
            out.append(0.0 if value == median else float(np.copysign(np.inf, value - median)))
    return out


def _inversion(recon: ReconRecord | None) -> tuple[str | None, float | None, bool | None, float | None]:
    """Method, iterations, converged and final residual of the recon record's inversion step."""
    step = recon.step("inversion") if recon is not None else None
    if step is None:
        return None, None, None, None
    notes = step.notes
    iterations = notes.get("iterations")
    residual = next((notes[key] for key in RESIDUAL_NOTES if notes.get(key) is not None), None)
    if isinstance(residual, list):
        residual = residual[-1] if residual else None
    converged = notes.get("converged")
    return (step.method, None if iterations is None else float(iterations),
            None if converged is None else bool(converged), None if residual is None else float(residual))


def _plausibility(recon: ReconRecord | None) -> dict | None:
    """The reference step's plausibility notes (``qsmiron.recon.plausibility``), when recorded."""
    step = recon.step("reference") if recon is not None else None
    notes = step.notes.get("plausibility") if step is not None else None
    return notes if isinstance(notes, dict) and "share_beyond_limit" in notes else None


def _readout(recon: ReconRecord | None) -> str | None:
    """The readout check's finding in words (None in records made before the check)."""
    info = recon.readout if recon is not None else None
    if info is None:
        return None
    if info.polarity == "bipolar":
        return f"bipolar: even-echo phase up to {info.largest_rad:.2f} rad, corrected"
    if info.polarity == "monopolar":
        return f"monopolar: odd/even phase at most {info.largest_rad:.4f} rad"
    return f"not checked ({info.reason or 'no reason recorded'})"


def _mask_volume_ml(path: str | None) -> float | None:
    if not path or not Path(path).exists():
        return None
    stat = os.stat(path)
    return _mask_volume_of_file(os.fspath(path), stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=4096)
def _mask_volume_of_file(path: str, mtime_ns: int, size: int) -> float:
    """Read once per file version: the QC pages, the report's QC section and its methods text
    each build the cohort's QC, and a cohort of a thousand scans has a thousand masks."""
    import nibabel as nib

    image = nib.load(path)
    voxel_ml = float(np.prod(image.header.get_zooms()[:3])) / 1000.0
    return float((np.asanyarray(image.dataobj) > 0.5).sum() * voxel_ml)


def scan_label(scan: ScanRecords) -> str:
    return scan.participant_id + (f"_{scan.session}" if scan.session else "")


def _registration_flags(quality) -> dict[str, bool]:
    """The registration measures beyond their own thresholds (the NMI's in records written
    before the residual shift replaced it)."""
    def beyond(value, limit, above: bool) -> bool:
        return value is not None and limit is not None and (value > limit if above else value < limit)

    return {"residual_shift_mm": beyond(quality.residual_shift_mm, quality.max_residual_shift_mm, True),
            "brain_dice": beyond(quality.brain_dice, quality.min_brain_dice, False),
            "nmi": beyond(quality.nmi, quality.min_nmi, False)}


def _scan_qc(scan: ScanRecords) -> tuple[ScanQc, list[str]]:
    """The scan's raw measures and figures, and the reasons its own records flag it."""
    method, iterations, converged, residual = _inversion(scan.recon)
    quality = scan.regions.registration.quality if scan.regions is not None else None
    values = {"inversion_iterations": iterations, "inversion_residual": residual,
              "mask_volume_ml": _mask_volume_ml(scan.outputs.get("mask")),
              "residual_shift_mm": quality.residual_shift_mm if quality else None,
              "nmi": quality.nmi if quality else None, "brain_dice": quality.brain_dice if quality else None,
              "core_correlation": quality.core_correlation if quality else None,
              "iron_nuclei_ppm": None}
    own = {key: False for key in values}
    reasons = []
    if converged is False:
        reasons.append(f"inversion ({method}) did not converge in {iterations:.0f} iterations")
        own["inversion_iterations"] = True
    if quality is not None and quality.outlier:
        reasons.extend(f"registration: {reason}" for reason in quality.outlier_reasons)
        own.update(_registration_flags(quality))
    if quality is not None and quality.head_like is False:
        reasons.append("head check failed (core correlation below the threshold)")
        own["core_correlation"] = True
    plausibility = _plausibility(scan.recon)
    if plausibility is not None and plausibility["share_beyond_limit"] > MAX_IMPLAUSIBLE_FRACTION:
        reasons.append(f"susceptibility not plausible for brain: {100 * plausibility['share_beyond_limit']:.2f} % "
                       f"of the mask beyond +-{plausibility['limit_ppm']:g} ppm (streaking?)")
    sign = scan.regions.sign_check if scan.regions is not None else None
    if sign is not None and sign.checked:
        values["iron_nuclei_ppm"] = sign.mean_ppm
        if sign.reversed:
            own["iron_nuclei_ppm"] = True
            reasons.append(f"iron-rich nuclei read {sign.mean_ppm:+.3f} ppm against the whole brain "
                           f"(phase stored with the opposite sign? setting {NEGATE_SETTING})")
    label = scan_label(scan)
    figures = {role: scan.outputs[role] for role in QC_ROLES if scan.outputs.get(role)}
    qc = ScanQc(participant_id=scan.participant_id, session=scan.session, label=label, inversion_method=method,
                inversion_converged=converged, readout=_readout(scan.recon), figures=figures,
                page=qc_page_link(label),
                measures={key: QcMeasure(key=key, value=value, flagged=own[key]) for key, value in values.items()})
    return qc, reasons


def cohort_qc(provenance: Provenance | None) -> list[ScanQc]:
    """Every scan's QC measures, robust z and flags (the scans with a recon or regions record)."""
    if provenance is None:
        return []
    scans = [scan for scan in provenance.scans if scan.recon is not None or scan.regions is not None]
    built = [_scan_qc(scan) for scan in scans]
    for spec in QC_MEASURES:
        z = robust_z([qc.measures[spec.key].value for qc, _ in built], MIN_RELATIVE_SCALE)
        for (qc, reasons), score in zip(built, z):
            measure = qc.measures[spec.key]
            measure.robust_z = score
            if spec.robust_flag and score is not None and abs(score) > OUTLIER_Z:
                measure.flagged = True
                reasons.append(f"{spec.title} {format_value(measure.value, spec.digits)} ({spec.unit}) stands out: "
                               f"robust z {score:+.1f}")
    for qc, reasons in built:
        qc.reasons = reasons
    return [qc for qc, _ in built]


def format_value(value: float | None, digits: int) -> str:
    if value is None or not np.isfinite(value):
        return "n/a"
    return f"{value:.{digits}f}" if digits else f"{value:.0f}"


def _data_uri(path: str) -> str | None:
    try:
        data = Path(path).read_bytes()
    except OSError:
        return None
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def _environment():
    import jinja2

    return jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATE_DIR)), autoescape=True,
                              undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)


def _rows(scans: list[ScanQc]) -> list[dict]:
    """The table rows: per scan, each measure's text and whether it is flagged."""
    return [{"scan": qc, "cells": [(format_value(qc.measures[spec.key].value, spec.digits),
                                    qc.measures[spec.key].flagged) for spec in QC_MEASURES]}
            for qc in scans]


def _page(qc: ScanQc, scans: list[ScanQc], report_link: str) -> str:
    known = {spec.key: [s.measures[spec.key].value for s in scans if s.measures[spec.key].value is not None]
             for spec in QC_MEASURES}
    medians = {key: float(np.median(values)) if values else None for key, values in known.items()}
    measures = [{"spec": spec, "value": format_value(qc.measures[spec.key].value, spec.digits),
                 "median": format_value(medians[spec.key], spec.digits),
                 "z": qc.measures[spec.key].robust_z, "flagged": qc.measures[spec.key].flagged}
                for spec in QC_MEASURES]
    figures = [{"role": role, "title": FIGURES[role][0], "caption": FIGURES[role][1],
                "uri": _data_uri(qc.figures[role]) if role in qc.figures else None,
                "path": qc.figures.get(role)} for role in QC_ROLES]
    return _environment().get_template("qc_subject.html.j2").render(
        qc=qc, measures=measures, figures=figures, report_link=report_link, outlier_z=OUTLIER_Z,
        n_scans=len(scans))


def write_qc_pages(provenance: Provenance | None, paths: StudyPaths) -> list[ScanQc]:
    """Write every scan's QC page (``paths.qc_page``) and return the scans' QC."""
    from qsmiron.io.atomic import write_text_atomic

    scans = cohort_qc(provenance)
    for qc in scans:
        page = paths.qc_page(qc.label)
        link = Path(os.path.relpath(paths.report, page.parent)).as_posix()
        write_text_atomic(page, _page(qc, scans, link))
    return scans


def qc_section_html(provenance: Provenance | None):
    """The report's cohort QC section (strip plots, table linking every scan's page), as markup;
    empty markup when no scan has records."""
    import markupsafe

    from qsmiron.report.qc_figures import strip_plot_png

    scans = cohort_qc(provenance)
    if not scans:
        return markupsafe.Markup("")
    png = strip_plot_png([spec.title for spec in QC_MEASURES],
                         [[qc.measures[spec.key].value for qc in scans] for spec in QC_MEASURES],
                         [[qc.measures[spec.key].flagged for qc in scans] for spec in QC_MEASURES],
                         [qc.label for qc in scans], units=[spec.unit for spec in QC_MEASURES])
    not_converged = [qc.label for qc in scans if qc.inversion_converged is False]
    return markupsafe.Markup(_environment().get_template("qc_cohort.html.j2").render(
        scans=scans, rows=_rows(scans), specs=QC_MEASURES, outlier_z=OUTLIER_Z, not_converged=not_converged,
        strip_uri="data:image/png;base64," + base64.b64encode(png).decode("ascii"),
        flagged=[qc for qc in scans if qc.flagged]))
