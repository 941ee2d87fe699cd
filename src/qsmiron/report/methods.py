"""The methods paragraph, written from what was actually run.

Everything here comes from the typed records the pipeline wrote (``ReconRecord`` and
``RegionsRecord`` per scan, the pipeline summary: ``qsmiron.records.Provenance``), from the
resolved study (``AnalysisSettings``, with the statistics methods text) and from the method
declarations (labels and references of the methods that ran); nothing is assumed. Items of
the QSM consensus reporting checklist (Magn Reson Med 2024;91:1834) that the records do not
hold are named as unknown instead of being filled in. Values that differ between scans are
given as ranges (or as the list of values with counts).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np

from qsmiron.methods import Method
from qsmiron.records.base import StepInfo
from qsmiron.records.cohort import Provenance
from qsmiron.records.recon import ReconRecord
from qsmiron.records.regions import RegionsRecord
from qsmiron.records.study import AnalysisSettings
from qsmiron.report.acquisition import acquisition_sentences
from qsmiron.report.describe import (describe_values, is_number, join, plural, sig, summarise_mappings)
from qsmiron.report.iron import chisep_sentences, r2star_sentences, reference_citations, reference_sentences

NOTE_KEYWORDS = ("lambda", "alpha", "weight", "regulari", "iter", "converge", "chosen", "selected",
                 "auto", "radius", "radii", "threshold", "tol", "erode", "kernel", "detected")
"""Notes of a step worth reporting (data-driven parameters such as a chosen regularisation)."""


def _declared(step: str, method: str) -> Method | None:
    """The declaration of a reconstruction method (None for one this version does not declare)."""
    from qsmiron.recon.stages import stage

    try:
        return stage(step).method(method)
    except (KeyError, ValueError):
        return None


def _step_label(step: str) -> str:
    from qsmiron.recon.stages import stage

    try:
        return stage(step).label
    except KeyError:
        return step.replace("_", " ")


def _steps_by_stage(recons: list[ReconRecord]) -> dict[str, list[StepInfo]]:
    from qsmiron.recon.stages import RECON_STAGES

    records: dict[str, list[StepInfo]] = {}
    for recon in recons:
        for step in recon.steps:
            records.setdefault(step.step, []).append(step)
    order = [s.name for s in RECON_STAGES if s.name in records] + [s for s in records if s not in
                                                                  {st.name for st in RECON_STAGES}]
    return {name: records[name] for name in order}


def _step_clause(name: str, steps: list[StepInfo]) -> str:
    methods = Counter(step.method for step in steps)
    labels = {m: (_declared(name, m).label if _declared(name, m) else m) for m in methods}
    if len(methods) == 1:
        method_text = labels[next(iter(methods))]
    else:
        method_text = " or ".join(f"{labels[m]} ({plural(n, 'scan')})" for m, n in methods.most_common())
    parameters = summarise_mappings([step.parameters for step in steps])
    # A note that repeats a parameter's value (a method echoing its settings) is not news.
    news = [{k: v for k, v in step.notes.items() if step.parameters.get(k, object()) != v} for step in steps]
    notes = summarise_mappings(news, varying="varying across scans",
                               keep=lambda key, value: any(word in key.lower() for word in NOTE_KEYWORDS)
                               and (is_number(value) or isinstance(value, (str, bool))))
    clause = f"{_step_label(name)}: {method_text}"
    if parameters:
        clause += " (" + "; ".join(parameters) + ")"
    if notes:
        clause += " [recorded: " + "; ".join(notes) + "]"
    return clause


def method_references(provenance: Provenance) -> list[str]:
    """The publications of the reconstruction, registration and reference methods that ran."""
    return _references(provenance.recon_records, provenance.regions_records)


def _references(recons: list[ReconRecord], regions: list[RegionsRecord]) -> list[str]:
    """The publications of the methods that ran, once each, in the order they ran."""
    from qsmiron.register.normalise import METHOD as REGISTRATION

    methods = [_declared(step.step, step.method) for recon in recons for step in recon.steps]
    if regions:
        methods.append(REGISTRATION)
    found = [reference for m in methods if m is not None for reference in m.references]
    return list(dict.fromkeys(found + reference_citations(regions)))


def processing_sentences(recons: list[ReconRecord]) -> list[str]:
    """Every reconstruction step with its algorithm and parameters, units and the reference."""
    if not recons:
        return ["The reconstruction steps, their algorithms and parameters are unknown "
                "(no reconstruction records were available)."]
    clauses = [_step_clause(name, steps) for name, steps in _steps_by_stage(recons).items()]
    sentences = ["Susceptibility maps were reconstructed in this order: "
                 + "; ".join(f"({i}) {c}" for i, c in enumerate(clauses, 1)) + "."]
    user_masks = sum(1 for r in recons if r.inputs.mask)
    if user_masks:
        sentences.append(f"A user-supplied brain mask was used for {plural(user_masks, 'scan')}.")
    sentences.extend(misfit_sentences(recons) + r2star_sentences(recons) + chisep_sentences(recons))
    sentences.append(f"Susceptibility is given in {describe_values(r.units.chimap for r in recons)}.")
    references = [r.step("reference") for r in recons if r.step("reference") is not None]
    if references:
        labels = describe_values(_declared("reference", s.method).label if _declared("reference", s.method)
                                 else s.method for s in references)
        sentences.append(f"Values are relative, referenced to the {labels}.")
    else:
        sentences.append("The susceptibility reference was not recorded (unknown).")
    return sentences


def misfit_sentences(recons: list[ReconRecord]) -> list[str]:
    """How many voxels kept their place in the mask but lost their field (the echo fit's misfit)."""
    counts, levels, tolerances, factors, aliasing = [], set(), set(), set(), False
    for recon in recons:
        refinement, fit = recon.step("mask_refinement"), recon.step("echo_fit")
        if refinement is None or "misfit_voxels_kept_without_field" not in refinement.notes:
            continue
        counts.append(int(refinement.notes["misfit_voxels_kept_without_field"]))
        if fit is not None and "misfit_p" in fit.parameters:
            levels.add(fit.parameters["misfit_p"])
        if fit is not None and fit.notes.get("misfit_tolerance_hz"):
            tolerances.add(fit.parameters.get("misfit_tolerance_ppm"))
        if fit is not None and "dephasing_factor" in fit.notes:
            factors.add(fit.notes["dephasing_factor"])
        aliasing = aliasing or (fit is not None and "aliasing_period_hz" in fit.notes)
    if not counts:
        return []
    level = f" (false-alarm rate {describe_values(levels)})" if levels else ""
    tolerance = (f" and whose residual implied a field error above {describe_values(tolerances)} ppm"
                 if tolerances else "")
    spread = _voxels_per_scan(counts)
    factor = describe_values(factors, lambda v: f"{float(v):g}")
    decay = (f"; with one residual degree of freedom (two echoes), also voxels whose magnitude decayed "
             f"more than {factor} times as fast as the mask's median (intravoxel dephasing)" if factors else "")
    aliased = ", or that were a whole aliasing period of the echo train off their neighbours" if aliasing else ""
    return [f"Voxels whose multi-echo phase the echo fit could not explain, by a chi-square test of "
            f"its residual{level}{tolerance}{decay}{aliased}, stayed in the mask but carried no field: they "
            f"were given no weight in background field removal and dipole inversion ({spread})."
            ] + left_out_sentences(recons)


def _voxels_per_scan(counts: list[int]) -> str:
    """One scan's count of voxels, or the median and range over the scans."""
    if len(counts) == 1:
        return plural(counts[0], "voxel")
    return f"median {int(np.median(counts))} voxels per scan, range {min(counts)}\u2013{max(counts)}"


def left_out_sentences(recons: list[ReconRecord]) -> list[str]:
    """What a background method that cannot weight did with the voxels without field
    (``qsmiron.recon.fill.prepared_total_field``), when the records say it left some out."""
    excluded, methods = [], []
    for recon in recons:
        background = recon.step("background")
        if background is not None and "excluded_voxels" in background.notes:
            excluded.append(int(background.notes["excluded_voxels"]))
            declared = _declared("background", background.method)
            methods.append(declared.label if declared is not None else background.method)
    if not any(excluded):
        return []
    spread = _voxels_per_scan(excluded)
    return [f"{describe_values(methods)}, which cannot weight voxels, "
            f"filled those enclosed by usable voxels from their neighbours and left those in groups reaching "
            f"the mask's edge out of its mask, and so out of the susceptibility map ({spread})."]


def registration_sentences(regions: list[RegionsRecord]) -> list[str]:
    """Normalisation, atlas, the space where regions were measured, and registration quality."""
    if not regions:
        return ["No regional-measurement records were available, so the registration method, "
                "template, atlas and measurement space are unknown."]
    registration = [r.registration for r in regions]
    space = describe_values(r.atlas.space for r in regions)
    how = describe_values(f"{g.tool} {' + '.join(g.transforms)}" for g in registration)
    sentences = [f"Each subject's magnitude image ({describe_values(g.subject_image for g in registration)}; "
                 f"brain: {describe_values(g.subject_mask for g in registration)}) was "
                 f"registered to the {space} template with {how}, metric {describe_values(g.metric for g in registration)}."]
    parameters = summarise_mappings([r.config.registration.model_dump(mode="json") for r in regions])
    sentences.append("Registration parameters: " + "; ".join(parameters) + ".")
    measurement = [r.measurement for r in regions]
    erode = describe_values((m.erode_voxels for m in measurement), lambda v: str(int(v)), "voxel(s)")
    text = (f"The {describe_values(r.atlas.name for r in regions)} labels were brought into each subject's native "
            f"space ({describe_values(g.label_interpolation for g in registration)} interpolation), and regional "
            f"susceptibility was measured there as the mean, the median and the interior-weighted median over "
            f"each label (each voxel weighted by the square of the share of its 3 x 3 x 3 neighbourhood inside "
            f"the label; voxel values not interpolated)")
    text += ", without label erosion" if erode.startswith("0 ") else f", after eroding each label by {erode}"
    sentences.append(text + ".")
    sentences.extend(reference_sentences(regions))
    quality = [g.quality for g in registration]
    sentences.append(registration_quality_sentence(quality))
    correlation = describe_values((q.core_correlation for q in quality), lambda v: f"{float(v):.2f}")
    if correlation is not None:
        threshold = describe_values(q.head_min_correlation for q in quality)
        sentences.append("Head check: the registered magnitude's absolute correlation with the template 10 mm "
                         f"inside its brain was {correlation} (scans below {threshold} are not measured).")
    return sentences


def statistics_sentences(settings: AnalysisSettings | None, results: Any = None) -> list[str]:
    """Models, covariates, multiple-comparison control, as the resolved study says."""
    if settings is None:
        return ["The statistical settings were not recorded (unknown)."]
    methods, covariates = settings.methods, list(settings.covariates or [])
    sentences = []
    if settings.session:
        others = [s for s in settings.sessions_in_regions_table if s != settings.session]
        text = f"Participants were compared at session {settings.session}"
        if others:
            text += f" (the dataset's other session{'s' if len(others) > 1 else ''}, {join(others)}, analysed separately)"
        if settings.sessions_table:
            text += "; values recorded per session (sessions tables) replaced the participants table's values"
        sentences.append(text + ".")
    if methods.regional_value:
        sentences.append(methods.regional_value[0].upper() + methods.regional_value[1:] + ".")
    if methods.quality_exclusion:
        sentences.append(methods.quality_exclusion[0].upper() + methods.quality_exclusion[1:] + ".")
    sentences.append(
        f"Groups {settings.group_a} and {settings.group_b} (column '{settings.groups.column}') were compared per "
        f"region and hemisphere ({len(settings.regions)} regions), "
        f"{('adjusting for ' + join(covariates)) if covariates else 'without covariates'}: {methods.group_comparison}.")
    sentences.append(f"Table 1: {methods.table1}.")
    assoc = settings.associations
    table = getattr(results, "associations", None)
    ran_associations = bool(assoc.variables) and (table is None or not table.empty)
    if ran_associations:
        a_cov = covariates if assoc.covariates is None else list(assoc.covariates)
        where = "in the pooled sample" if assoc.group == "all" else f"within group {assoc.group}"
        sentences.append(
            f"Associations of regional susceptibility with {join(list(map(str, assoc.variables)))} were tested {where} "
            f"({assoc.method.capitalize()}, {('controlling for ' + join(a_cov)) if a_cov else 'no covariates'}): "
            f"{methods.associations}.")
    relapse = _relapse_sentence(settings, results)
    sentences.extend(relapse)
    fdr = methods.multiple_comparisons_of(associations=ran_associations, relapse=bool(relapse))
    sentences.append(
        f"Multiple comparisons: {fdr}; rows with FDR-adjusted p < "
        f"{sig(float(settings.alpha), 3)} are called significant. Missing values: {methods.missing_values}.")
    return sentences


def _relapse_sentence(settings: AnalysisSettings, results: Any) -> list[str]:
    relapse = settings.relapse
    relapse_table, counts = getattr(results, "relapse", None), getattr(results, "relapse_counts", None)
    ran_relapse = (relapse.outcome or relapse.time) and (relapse_table is None or not relapse_table.empty)
    ran_counts = relapse.count and (counts is None or not counts.empty)
    if not (ran_relapse or ran_counts):
        return []
    r_cov = list(settings.covariates or []) if relapse.covariates is None else list(relapse.covariates)
    where = "in the pooled sample" if relapse.group == "all" else f"within group {relapse.group}"
    columns = [f"outcome '{relapse.outcome}' (0/1)"] if relapse.outcome else []
    if relapse.time:
        columns.append(f"time to event '{relapse.time}' (event '{relapse.event or relapse.outcome}')")
    if relapse.count:
        columns.append(f"count '{relapse.count}'" + (f" with exposure '{relapse.exposure}'" if relapse.exposure else ""))
    return [f"Relapse was modelled {where} per region from {join(columns)}, "
            f"{('with ' + join(r_cov) + ' as covariates') if r_cov else 'without covariates'}: "
            f"{settings.methods.relapse}."]


def registration_quality_sentence(quality) -> str:
    """The registration QC measures and the outlier rule in force (``qsmiron.roi.qc.registration_metrics``)."""
    def values(key, digits, unit=""):
        return describe_values((getattr(q, key) for q in quality), lambda v: f"{float(v):.{digits}f}", unit)

    shift = values("residual_shift_mm", 1, "mm")
    rule = [f"a residual shift above {describe_values(q.max_residual_shift_mm for q in quality)} mm"] if shift else []
    rule.append(f"a brain Dice below {describe_values(q.min_brain_dice for q in quality)}")
    if any(q.min_nmi is not None for q in quality):  # records written before the residual shift
        rule.append(f"a mutual information below {describe_values(q.min_nmi for q in quality)}")
    region = describe_values(q.residual_shift_region or "the template brain" for q in quality)
    measured = (f"residual misalignment by block matching, the median over 27 blocks of {region} of the "
                f"shift that best matches each block: {shift}; " if shift else "")
    return (f"Registration quality: {measured}brain Dice {values('brain_dice', 3)}; normalised mutual information "
            f"{values('nmi', 3)} (recorded, not judged: it depends on the scan's contrast); "
            f"{plural(sum(q.outlier for q in quality), 'scan')} flagged as outlier(s) ({' or '.join(rule)}).")


def qc_page_sentences(provenance: Provenance) -> list[str]:
    """The per-scan QC pages and the cohort's robust-z flags, as ``qsmiron.report.qc_pages`` made them."""
    from qsmiron.records.qc import OUTLIER_Z
    from qsmiron.recon.plausibility import MAX_IMPLAUSIBLE_FRACTION, PLAUSIBLE_LIMIT_PPM
    from qsmiron.report.qc_pages import QC_MEASURES, cohort_qc

    scans = cohort_qc(provenance)
    if not scans:
        return []
    prose = {"core_correlation": "the head check's core correlation"}
    flagged_by = join([prose.get(spec.key, spec.title) for spec in QC_MEASURES if spec.robust_flag])
    flagged = sum(1 for scan in scans if scan.reasons)
    return [f"Each scan had a QC page (susceptibility at a fixed window with the mask, the total and local "
            f"fields, the atlas regions and the registration's template edges); {flagged_by} were flagged when "
            f"their robust z (median-centred, scaled by 1.4826 MAD) exceeded {OUTLIER_Z:g} in magnitude, and a "
            f"scan also when its records flagged it (an inversion that did not converge, a registration "
            f"outlier, a failed head check, more than {100 * MAX_IMPLAUSIBLE_FRACTION:g} % of the mask beyond "
            f"+-{PLAUSIBLE_LIMIT_PPM:g} ppm): {flagged} of "
            f"{plural(len(scans), 'scan')} flagged."]


def qc_sentences(provenance: Provenance, results: Any = None, n_qc_images: int | None = None) -> list[str]:
    """QC images shown, acquisition and reconstruction warnings, who failed or was left out."""
    if n_qc_images:
        sentences = [f"{plural(n_qc_images, 'quality-control image')} (susceptibility maps and atlas/registration "
                     f"overlays) {'is' if n_qc_images == 1 else 'are'} included for visual review; how artefacts "
                     "were judged beyond that is not recorded."]
    else:
        sentences = ["No quality-control images were provided; how artefacts were judged is not recorded (unknown)."]
    sentences.extend(qc_page_sentences(provenance))
    warned = Counter(w for r in provenance.recon_records for w in r.warnings)
    if warned:
        sentences.append("Acquisition and reconstruction warnings: " + "; ".join(
            f"{text} ({plural(n, 'scan')})" for text, n in warned.most_common()) + ".")
    pipeline = provenance.pipeline
    if pipeline is not None:
        text = f"Of {pipeline.n_subjects} subjects, {plural(len(pipeline.failed), 'subject')} failed processing"
        if pipeline.failed:
            text += " (" + "; ".join(f"{f.participant_id}: {f.step}, {f.reason}" for f in pipeline.failed) + ")"
        text += f" and {plural(len(pipeline.excluded), 'subject')} {'was' if len(pipeline.excluded) == 1 else 'were'} excluded"
        if pipeline.excluded:
            text += " (" + "; ".join(f"{e.participant_id}: {e.reason}" if e.reason else e.participant_id
                                     for e in pipeline.excluded) + ")"
        sentences.append(text + ".")
    exclusions = list(getattr(results, "exclusions", None) or [])
    if exclusions:
        counts = Counter((e.analysis, e.reason) for e in exclusions)
        sentences.append("Left out of individual analyses: " + "; ".join(
            f"{plural(n, 'participant')} from {analysis} ({reason})" for (analysis, reason), n in counts.most_common())
            + ".")
    elif results is not None:
        sentences.append("No participant was left out of any statistical analysis.")
    return sentences


def software_sentence(provenance: Provenance, results: Any = None) -> str:
    """Every package version any record lists (several versions joined by /)."""
    versions: dict[str, list[str]] = {}
    sources = [r.versions for r in provenance.recon_records] + [r.versions for r in provenance.regions_records]
    sources.append(getattr(results, "versions", None) or {})
    for source in sources:
        for package, version in source.items():
            if version is not None and str(version) not in versions.setdefault(package, []):
                versions[package].append(str(version))
    versions = {k: v for k, v in versions.items() if v}
    if not versions:
        return "Software versions were not recorded (unknown)."
    order = sorted(versions, key=lambda name: (name != "qsmiron", name.lower()))
    return ("Software: " + ", ".join(f"{name} {' / '.join(versions[name])}" for name in order)
            + " (qsmiron: open source, BSD-3-Clause).")


def methods_paragraph(provenance: Provenance | None, settings: AnalysisSettings | None, *,
                      results: Any = None, n_qc_images: int | None = None, with_references: bool = True) -> str:
    """The methods section of the report, as plain text paragraphs separated by blank lines.

    Parameters
    ----------
    provenance : Provenance or None
        Each scan's records and the pipeline summary.
    settings : AnalysisSettings or None
        The study as analysed (``StudyResults.settings``).
    results : StudyResults, optional
        Used for the statistics versions, which analyses produced rows and the exclusions.
    n_qc_images : int, optional
        How many QC images the report shows.
    with_references : bool
        End the registration paragraph with the methods' references (the report lists them
        separately, numbered, and passes False).

    Returns
    -------
    str
        Paragraphs on acquisition, reconstruction, registration and measurement (with the
        references of the methods that ran), statistics, quality control and software.
        Whatever the records do not hold is called unknown.
    """
    provenance = provenance or Provenance()
    recons, regions = provenance.recon_records, provenance.regions_records
    references = _references(recons, regions)
    paragraphs = [
        acquisition_sentences([r.acquisition for r in recons], [r.readout for r in recons]),
        processing_sentences(recons),
        registration_sentences(regions) + (["References of the methods: " + "; ".join(references) + "."]
                                           if references and with_references else []),
        statistics_sentences(settings, results),
        qc_sentences(provenance, results, n_qc_images) + [software_sentence(provenance, results)],
    ]
    return "\n\n".join(" ".join(sentences) for sentences in paragraphs if sentences)
