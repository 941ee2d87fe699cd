"""The methods paragraph's sentences on the iron-specific measures and the reference regions.

Read from the typed records alone: ``ReconRecord.r2star`` (``R2starInfo``),
``ReconRecord.chi_separation`` (``ChiSeparationInfo``), ``RegionsRecord.measures`` and
``RegionsRecord.references`` (``ReferenceRegion``), with the labels and references of the
declared methods (``qsmiron.recon.stages``, ``qsmiron.roi.references.REFERENCE_METHODS``).
Chi-separation without a measured R2 map is called an approximation, with its constants.
"""

from __future__ import annotations

from collections import Counter

from qsmiron.records.recon import ReconRecord
from qsmiron.records.regions import RegionsRecord
from qsmiron.report.describe import describe_values, join, plural, sig

MEASURE_WORDS = {"chi": "susceptibility (ppm)", "r2star": "R2* (s^-1)", "chi_para": "paramagnetic susceptibility "
                 "(chi+, ppm)", "chi_dia": "diamagnetic susceptibility (chi-, ppm)"}


def _skipped(infos, what: str) -> list[str]:
    reasons = Counter(info.skipped for info in infos if info is not None and info.skipped)
    return [f"{what} for {plural(n, 'scan')}: {reason}" for reason, n in reasons.most_common()]


def r2star_sentences(recons: list[ReconRecord]) -> list[str]:
    """How R2* was mapped (method, noise level, valid fits) or why not."""
    infos = [r.r2star for r in recons if r.r2star is not None]
    mapped = [i for i in infos if i.skipped is None]
    sentences = []
    if mapped:
        noise = describe_values(i.noise_estimate for i in mapped)
        share = describe_values((100.0 * i.n_valid / i.n_voxels for i in mapped if i.n_voxels), lambda v: f"{v:.0f}")
        median = describe_values((i.median_r2star_per_s for i in mapped), lambda v: f"{v:.1f}", "s^-1")
        sentences.append(
            f"R2* (s^-1), T2* (s) and S0 were fitted to the multi-echo magnitude in the brain mask "
            f"(see R2* mapping above), using only the echoes above {describe_values(i.floor_factor for i in mapped)} "
            f"times the noise level, which was measured from the {noise}; a fit was valid in {share} % of the "
            f"brain mask (median R2* {median}), and the other voxels were left out of every R2* value.")
    reasons = _skipped(infos, "R2* was not mapped")
    if reasons:
        sentences.append("; ".join(reasons) + ".")
    return sentences


def chisep_sentences(recons: list[ReconRecord]) -> list[str]:
    """The chi-separation's relaxometric constant, R2 source (approximation labelled) and weight."""
    infos = [r.chi_separation for r in recons if r.chi_separation is not None]
    done = [i for i in infos if i.skipped is None]
    sentences = []
    if done:
        sentences.append(
            f"Paramagnetic (chi+) and diamagnetic (chi-) susceptibility were separated from the local field and "
            f"R2' = R2* - R2 with a relaxometric constant Dr of "
            f"{describe_values((i.dr_hz_per_ppm for i in done), lambda v: sig(v, 4), 'Hz/ppm')} "
            f"({describe_values(i.dr_source for i in done)}) and a TV weight from "
            f"{describe_values(i.alpha_source for i in done)}.")
        measured = [i for i in done if not i.approximation]
        approximated = [i for i in done if i.approximation]
        if measured:
            sentences.append(f"R2 was a measured spin-echo R2 map for {plural(len(measured), 'scan')}.")
        if approximated:
            constants = describe_values(
                (f"{i.pseudo_r2_model} with intercept {sig(i.pseudo_r2_intercept_per_s)} s^-1 and slope "
                 f"{sig(i.pseudo_r2_slope)} ({i.pseudo_r2_reference})" for i in approximated))
            sentences.append(
                f"For {plural(len(approximated), 'scan')} no R2 map was available and R2 was approximated from "
                f"R2* as {constants}: their chi+ and chi- maps are an approximation (valid for iron-dominated grey "
                f"matter at 3 T, biased in white matter), not a measurement.")
    reasons = [r for r in _skipped(infos, "chi-separation was not done") if "not asked for" not in r]
    if reasons:
        sentences.append("; ".join(reasons) + ".")
    return sentences


def reference_sentences(regions: list[RegionsRecord]) -> list[str]:
    """The measures of the regional table and every reference region with its size (ml)."""
    from qsmiron.roi.references import reference_method

    sentences = []
    measures = list(dict.fromkeys(m.measure for r in regions for m in r.measures))
    if measures:
        sentences.append("Regional values were measured for " + join([MEASURE_WORDS.get(m, m) for m in measures])
                         + ", each in its own valid mask (R2* in the voxels with a valid fit).")
    records = [ref for r in regions for ref in r.references]
    for name in dict.fromkeys(ref.name for ref in records):
        tried = [ref for ref in records if ref.name == name]
        available = [ref for ref in tried if ref.available]
        declared = reference_method(name)
        label = declared.label if declared is not None else name
        text = f"Susceptibility was also given relative to {label}" if name != "whole_brain" else \
            f"Susceptibility was given relative to {label}"
        if available:
            text += (f" ({describe_values((ref.volume_ml for ref in available), lambda v: f'{v:.1f}', 'ml')}"
                     f"; {plural(len(available), 'scan')})")
        missing = Counter(ref.reason for ref in tried if not ref.available)
        if missing:
            text += "; it could not be made for " + "; ".join(f"{plural(n, 'scan')} ({reason})"
                                                            for reason, n in missing.most_common())
        sentences.append(text + ".")
    return sentences


def reference_citations(regions: list[RegionsRecord]) -> list[str]:
    """The publications of the reference regions used."""
    from qsmiron.roi.references import reference_method

    names = dict.fromkeys(ref.name for r in regions for ref in r.references if ref.available)
    return [m.reference for m in (reference_method(n) for n in names) if m is not None and m.reference]
