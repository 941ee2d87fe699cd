"""The methods paragraph, written from what was actually run.

Everything here comes from the provenance the pipeline recorded (``recon.json`` per scan, the
ROI JSON per scan, the pipeline summary) and from the resolved study settings; nothing is
assumed. Items of the QSM consensus reporting checklist (Magn Reson Med 2024;91:1834) that
the records do not hold are named as unknown instead of being filled in. Values that differ
between scans are given as ranges (or as the list of values with counts).
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Any, Callable, Iterable, Mapping, Sequence

from qsmiron.report.formatting import is_missing

STEP_ORDER = ("phase_preparation", "mask", "unwrap", "echo_fit", "background_removal",
              "inversion", "reference")

STEP_LABELS = {
    "phase_preparation": "phase scaling to radians",
    "mask": "brain masking",
    "unwrap": "phase unwrapping",
    "echo_fit": "echo combination (fit of the field over echo time)",
    "background_removal": "background field removal",
    "inversion": "dipole inversion",
    "reference": "susceptibility referencing",
}

METHOD_LABELS = {
    "romeo": "ROMEO (quality-guided region growing)",
    "laplacian": "Laplacian unwrapping",
    "vsharp": "V-SHARP",
    "sharp": "SHARP",
    "resharp": "RESHARP",
    "pdf": "PDF (projection onto dipole fields)",
    "ismv": "iSMV",
    "lbv": "LBV",
    "tv": ("total-variation-regularised inversion by ADMM (Bilgic et al., Magn Reson Med 2014;72:1444; "
           "Milovic et al., Magn Reson Med 2018;80:814), weight chosen per scan by qsmiron's discrepancy "
           "rule on the field's magic-cone inconsistency"),
    "tv_admm": "total-variation-regularised inversion (TV-ADMM)",
    "tkd": "TKD (truncated k-space division; Shmueli et al., Magn Reson Med 2009;62:1510)",
    "tsvd": "TSVD",
    "tikhonov": ("closed-form Tikhonov-regularised inversion (Bilgic et al., J Magn Reson Imaging "
                 "2014;40:181)"),
    "rts": "RTS (rapid two-step; Kames et al., NeuroImage 2018;167:276)",
    "wtv": ("magnitude-weighted total-variation inversion by ADMM (magnitude edge prior as in MEDI, "
            "Liu et al., Magn Reson Med 2011;66:777; solver after Milovic et al., Magn Reson Med "
            "2018;80:814), weight chosen per scan by qsmiron's discrepancy rule on the field's "
            "magic-cone inconsistency"),
    "wtv_bregman": ("magnitude-weighted total-variation inversion with Bregman iterations (Osher et al., "
                    "Multiscale Model Simul 2005;4:460) stopped by qsmiron's discrepancy rule on the "
                    "field's magic-cone inconsistency (magnitude edge prior as in MEDI, Liu et al., Magn "
                    "Reson Med 2011;66:777, when a magnitude was given; ADMM solver after Milovic et al., "
                    "Magn Reson Med 2018;80:814)"),
    # Records written before qsmiron 0.2 call wtv "medi"; it never was Liu's MEDI.
    "medi": ("magnitude-weighted total-variation inversion by ADMM (recorded as 'medi', qsmiron's former "
             "name of wtv; not Liu's MEDI algorithm; magnitude edge prior as in Liu et al., Magn Reson "
             "Med 2011;66:777), weight chosen per scan by qsmiron's discrepancy rule"),
    "ndi": "NDI (nonlinear dipole inversion)",
    "ilsqr": "iLSQR",
    "weighted_least_squares": "weighted least squares",
    "magnitude": "from the magnitude",
    "magnitude+template": ("from the magnitude, restricted to the MNI152NLin2009cAsym brain (Fonov et al., "
                           "NeuroImage 2011;54:313) registered to the magnitude by an affine ANTs "
                           "registration (Avants et al., NeuroImage 2011;54:2033)"),
    "user": "user-supplied mask",
    "mean": "mean over the mask",
    "mask": "mean over a reference mask",
    "integer": "vendor integers rescaled",
    "radians": "already in radians",
}

UNIT_SUFFIXES = {"_mm": "mm", "_s": "s", "_ms": "ms", "_hz": "Hz", "_ppm": "ppm", "_rad": "rad",
                 "_deg": "\u00b0", "_vox": "voxels", "_ml": "mL", "_t": "T"}

NOTE_KEYWORDS = ("lambda", "alpha", "weight", "regulari", "iter", "converge", "chosen", "selected",
                 "auto", "radius", "radii", "threshold", "tol", "erode", "kernel")
"""Notes of a step worth reporting (data-driven parameters such as a chosen regularisation)."""


# --------------------------------------------------------------------------- small helpers
def _as_dict(value: Any) -> dict:
    if value is None:
        return {}
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json")
    return dict(value) if isinstance(value, Mapping) else {}


def _get(mapping: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(mapping, Mapping) or key not in mapping:
            return None
        mapping = mapping[key]
    return mapping


def _present(values: Iterable[Any]) -> list[Any]:
    out = []
    for value in values:
        if value is None or (isinstance(value, str) and not value.strip()):
            continue
        if not isinstance(value, (list, tuple, dict, str)) and is_missing(value):
            continue
        out.append(value)
    return out


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _join(items: Sequence[str], last: str = "and") -> str:
    items = [i for i in items if i]
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + f" {last} " + items[-1]


def _plural(n: int, word: str, plural: str | None = None) -> str:
    return f"{n} {word if n == 1 else (plural or word + 's')}"


def _sig(value: float, digits: int = 4) -> str:
    """A parameter value: up to ``digits`` significant digits, no trailing noise."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if value == 0:
        return "0"
    return f"{value:.{digits}g}"


def describe_values(values: Iterable[Any], fmt: Callable[[Any], str] = str, unit: str = "") -> str | None:
    """One value, a range across scans, or the distinct values with their counts.

    Returns None when no value is present (the caller then says "unknown").
    """
    values = _present(values)
    if not values:
        return None
    suffix = f" {unit}" if unit else ""
    texts = [fmt(v) for v in values]
    counts = Counter(texts)
    if len(counts) == 1:
        return texts[0] + suffix
    if all(_is_number(v) for v in values):
        low, high = min(values), max(values)
        return f"{fmt(low)}\u2013{fmt(high)}{suffix} (varying across scans)"
    return "; ".join(f"{text}{suffix} ({_plural(n, 'scan')})" for text, n in counts.most_common())


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f}"


def _triple(value: Any, fmt: Callable[[float], str]) -> str | None:
    if not isinstance(value, (list, tuple)) or not value:
        return None
    return " \u00d7 ".join(fmt(float(v)) for v in value)


# --------------------------------------------------------------------------- acquisition
def _partial_fourier_text(value: Any) -> str:
    if isinstance(value, bool):
        return "partial Fourier used (factor not recorded)" if value else "no partial Fourier"
    if _is_number(value):
        return "no partial Fourier" if float(value) >= 1 else f"partial Fourier factor {_sig(float(value), 3)}"
    text = str(value).strip()
    return "no partial Fourier" if text.lower() in {"none", "off", "no", "1", "1.0"} else f"partial Fourier {text}"


def _acceleration_text(value: Any) -> str:
    if _is_number(value):
        return "no in-plane parallel imaging" if float(value) <= 1 else f"in-plane parallel imaging factor {_sig(float(value), 3)}"
    return f"parallel imaging {value}"


def _echo_summary(acquisitions: list[dict]) -> tuple[list[str], list[str]]:
    """Sentences about the echoes, and the echo items that are unknown."""
    known, unknown = [], []
    echo_lists = [a.get("echo_times_s") for a in acquisitions]
    echo_lists = [list(map(float, e)) for e in echo_lists if isinstance(e, (list, tuple)) and e]
    counts = [len(e) for e in echo_lists] or _present(a.get("n_echoes") for a in acquisitions)
    n_echoes = describe_values(counts, lambda v: str(int(v)))
    if n_echoes is None:
        unknown.append("number of echoes")
    else:
        known.append(f"{n_echoes} echoes")
    if not echo_lists:
        unknown.append("echo times")
        return known, unknown
    first = describe_values([e[0] for e in echo_lists], _ms, "ms")
    last = describe_values([e[-1] for e in echo_lists], _ms, "ms")
    spacings = [[b - a for a, b in zip(e, e[1:])] for e in echo_lists if len(e) > 1]
    parts = [f"TE1 = {first}"]
    if spacings:
        uniform = [s for s in spacings if max(s) - min(s) <= 1e-5]
        if len(uniform) == len(spacings):
            parts.append(f"\u0394TE = {describe_values([sum(s) / len(s) for s in spacings], _ms, 'ms')}")
        else:
            all_steps = [d for s in spacings for d in s]
            parts.append(f"non-uniform echo spacing ({_ms(min(all_steps))}\u2013{_ms(max(all_steps))} ms) "
                         f"in {_plural(len(spacings) - len(uniform), 'scan')}")
    parts.append(f"last TE = {last}")
    sources = describe_values(a.get("echo_times_source") for a in acquisitions)
    if sources:
        parts.append(f"echo times from {sources}")
    known.append(", ".join(parts))
    return known, unknown


def acquisition_sentences(recons: list[dict]) -> list[str]:
    """What the records tell about the scanner and the sequence, and what they do not."""
    acquisitions = [_as_dict(r.get("acquisition")) for r in recons]
    if not acquisitions:
        return ["No reconstruction records were available, so the scanner, coil and sequence "
                "parameters (field strength, vendor, model, echo times, TR, flip angle, voxel size, "
                "matrix, acceleration, partial Fourier, readout polarity, flow compensation) are "
                "unknown to this report."]
    unknown: list[str] = []

    def item(key: str, fmt: Callable[[Any], str] = str, unit: str = "", label: str | None = None) -> str | None:
        text = describe_values((a.get(key) for a in acquisitions), fmt, unit)
        if text is None:
            unknown.append(label or key)
        return text

    field = item("field_strength_t", lambda v: _sig(float(v), 3), "T", "field strength")
    vendor = item("manufacturer", label="vendor")
    model = item("manufacturers_model_name", label="scanner model")
    coil = item("receive_coil", label="receive coil")
    scanner_software = item("software_versions", label="scanner software version")
    scanner = f"{_plural(len(recons), 'scan')} were reconstructed"
    where = []
    if field:
        where.append(f"at {field}")
    if vendor or model:
        where.append("on " + " ".join(t for t in (vendor, model) if t) + " scanner(s)")
    if scanner_software:
        where.append(f"(scanner software {scanner_software})")
    if coil:
        where.append(f"with receive coil {coil}")
    first = scanner + (" (acquired " + " ".join(where) + ")" if where else "") + "."

    echo_known, echo_unknown = _echo_summary(acquisitions)
    unknown.extend(echo_unknown)
    dimensionality = item("mr_acquisition_type", label="2D or 3D acquisition")
    sequence_name = describe_values(a.get("sequence_name") for a in acquisitions)
    kind = f"{dimensionality} multi-echo gradient-echo (GRE)" if dimensionality else "multi-echo gradient-echo (GRE)"
    if sequence_name:
        kind += f" (sequence {sequence_name})"
    sequence = [kind + " magnitude and phase"] + echo_known
    tr = item("repetition_time_s", _ms, "ms", "TR")
    if tr:
        sequence.append(f"TR = {tr}")
    flip = item("flip_angle_deg", lambda v: _sig(float(v), 3) + "\u00b0", "", "flip angle")
    if flip:
        sequence.append(f"flip angle {flip}")
    voxel = item("voxel_size_mm", lambda v: _triple(v, lambda x: f"{x:.2f}"), "mm", "voxel size")
    if voxel:
        sequence.append(f"voxel size {voxel}")
    matrix = item("matrix", lambda v: _triple(v, lambda x: str(int(x))), "", "matrix")
    if matrix:
        sequence.append(f"matrix {matrix}")
    fovs = []
    for a in acquisitions:
        m, v = a.get("matrix"), a.get("voxel_size_mm")
        if isinstance(m, (list, tuple)) and isinstance(v, (list, tuple)) and len(m) >= 3 and len(v) >= 3:
            fovs.append([float(mi) * float(vi) for mi, vi in zip(m[:3], v[:3])])
    fov = describe_values(fovs, lambda v: _triple(v, lambda x: f"{x:.0f}"), "mm")
    if fov:
        sequence.append(f"field of view {fov} (matrix \u00d7 voxel size)")
    else:
        unknown.append("field of view")
    accel = item("parallel_reduction_factor_in_plane", _acceleration_text, "", "acceleration (parallel imaging)")
    if accel:
        sequence.append(accel)
    pf = item("partial_fourier", _partial_fourier_text, "", "partial Fourier")
    if pf:
        sequence.append(pf)
    for key, label in (("readout_polarity", "readout polarity"), ("flow_compensation", "flow compensation")):
        text = describe_values(a.get(key) for a in acquisitions)
        if text is None:
            unknown.append(label)
        else:
            sequence.append(f"{label} {text}")
    sentences = [first, "Input: " + "; ".join(sequence) + "."]
    oblique = _present(a.get("oblique_angle_deg") for a in acquisitions)
    if oblique:
        angle = max(float(v) for v in oblique)
        sentences.append(
            f"Slices were oblique to the scanner axes by up to {angle:.1f}\u00b0; the B0 direction in "
            "voxel coordinates was taken from each image's affine." if angle > 0.05 else
            "Slices were not oblique; the B0 direction in voxel coordinates was taken from each image's affine.")
    if unknown:
        sentences.append("Not recorded in the data, hence unknown: " + _join(unknown) + ".")
    return sentences


# --------------------------------------------------------------------------- processing
def _parameter_name(key: str) -> tuple[str, str]:
    for suffix, unit in UNIT_SUFFIXES.items():
        if key.endswith(suffix) and len(key) > len(suffix):
            return key, unit
    return key, ""


def _format_parameter(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if _is_number(value):
        return _sig(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_format_parameter(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{k}: {_format_parameter(v)}" for k, v in value.items()) + "}"
    return "none" if value is None else str(value)


def _summarise_parameter(key: str, values: list[Any], varying: str = "set per scan") -> str | None:
    name, unit = _parameter_name(key)
    suffix = f" {unit}" if unit else ""
    texts = [_format_parameter(v) for v in values]
    if not texts:
        return None
    if len(set(texts)) == 1:
        if values[0] is None:
            # A setting left unset means "the method's own default" (recorded separately).
            return f"{name} = method default"
        return f"{name} = {texts[0]}{suffix}"
    numbers = [v for v in values if _is_number(v)]
    if len(numbers) == len(values):
        ordered = sorted(numbers)
        mid = len(ordered) // 2
        median = ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2
        return (f"{name} = {_sig(min(numbers))}\u2013{_sig(max(numbers))}{suffix} "
                f"({varying}, median {_sig(median)})")
    counts = Counter(texts)
    return f"{name} = " + " or ".join(f"{t}{suffix} ({_plural(n, 'scan')})" for t, n in counts.most_common())


def _step_records(recons: list[dict]) -> dict[str, list[dict]]:
    records: dict[str, list[dict]] = {}
    for recon in recons:
        for step in recon.get("steps") or []:
            if isinstance(step, Mapping) and step.get("step"):
                records.setdefault(str(step["step"]), []).append(dict(step))
    order = [s for s in STEP_ORDER if s in records] + [s for s in records if s not in STEP_ORDER]
    return {s: records[s] for s in order}


def _step_clause(step: str, records: list[dict]) -> str:
    methods = Counter(str(r.get("method")) for r in records if r.get("method") is not None)
    if not methods:
        method_text = "method not recorded"
    elif len(methods) == 1:
        method = next(iter(methods))
        method_text = METHOD_LABELS.get(method.lower(), method)
    else:
        method_text = " or ".join(f"{METHOD_LABELS.get(m.lower(), m)} ({_plural(n, 'scan')})"
                                  for m, n in methods.most_common())
    keys: list[str] = []
    for record in records:
        for key in _as_dict(record.get("parameters")):
            if key not in keys:
                keys.append(key)
    parameters = []
    for key in keys:
        values = [_as_dict(r.get("parameters")).get(key) for r in records
                  if key in _as_dict(r.get("parameters"))]
        text = _summarise_parameter(key, values)
        if text:
            parameters.append(text)
    notes = []
    note_keys: list[str] = []
    for record in records:
        for key, value in _as_dict(record.get("notes")).items():
            if (key not in note_keys and any(word in key.lower() for word in NOTE_KEYWORDS)
                    and (_is_number(value) or isinstance(value, (str, bool)))):
                note_keys.append(key)
    for key in note_keys:
        values = [_as_dict(r.get("notes")).get(key) for r in records if key in _as_dict(r.get("notes"))]
        text = _summarise_parameter(key, values, "varying across scans")
        if text:
            notes.append(text)
    label = STEP_LABELS.get(step, step.replace("_", " "))
    clause = f"{label}: {method_text}"
    if parameters:
        clause += " (" + "; ".join(parameters) + ")"
    if notes:
        clause += " [recorded: " + "; ".join(notes) + "]"
    return clause


def processing_sentences(recons: list[dict]) -> list[str]:
    """Every reconstruction step with its algorithm and parameters, units and the reference."""
    if not recons:
        return ["The reconstruction steps, their algorithms and parameters are unknown "
                "(no reconstruction records were available)."]
    sentences = []
    steps = _step_records(recons)
    if steps:
        clauses = [_step_clause(step, records) for step, records in steps.items()]
        sentences.append("Susceptibility maps were reconstructed in this order: "
                         + "; ".join(f"({i}) {c}" for i, c in enumerate(clauses, 1)) + ".")
    else:
        sentences.append("The reconstruction steps were not recorded (unknown).")
    user_masks = sum(1 for r in recons if _get(r, "inputs", "mask"))
    if user_masks:
        sentences.append(f"A user-supplied brain mask was used for {_plural(user_masks, 'scan')}.")
    units = describe_values(_get(r, "units", "Chimap") for r in recons)
    sentences.append(f"Susceptibility is given in {units}." if units else "The unit of susceptibility was not recorded (unknown).")
    regions = describe_values(_get(r, "reference", "region") for r in recons)
    methods = describe_values(_get(r, "reference", "method") for r in recons)
    if regions:
        text = f"Values are relative, referenced to the {'mean' if methods == 'mean' else (methods or 'mean')} susceptibility of the {regions}"
        if "whole" not in regions.lower():
            text += " (whole-brain-referenced values are not given by this pipeline run)"
        sentences.append(text + ".")
    else:
        sentences.append("The susceptibility reference region was not recorded (unknown).")
    return sentences


# --------------------------------------------------------------------------- registration / ROI
def _text_of(value: Any, *keys: str) -> Any:
    if isinstance(value, Mapping):
        for key in keys:
            if value.get(key) not in (None, ""):
                return value[key]
        return None
    return value


def _first_dict(records: list[dict], *paths: tuple[str, ...]) -> list[dict]:
    """Per record, the first of ``paths`` that holds a dict (records without one are skipped)."""
    out = []
    for record in records:
        for path in paths:
            value = _get(record, *path)
            if isinstance(value, Mapping):
                out.append(dict(value))
                break
    return out


def registration_sentences(rois: list[dict], recons: list[dict]) -> list[str]:
    """Normalisation, atlas and the space where regions were measured.

    Read from the ROI records (atlas, template, registration, measurement) and from the
    configuration recorded with each scan (``config.registration``, ``config.roi``).
    """
    configs = _first_dict(rois + recons, ("config", "registration"))
    roi_configs = _first_dict(rois + recons, ("config", "roi"))
    if not rois and not configs:
        return ["No regional-measurement records were available, so the registration method, "
                "template, atlas and measurement space are unknown."]
    atlas = describe_values([_text_of(r.get("atlas"), "name", "atlas") for r in rois]
                            or [c.get("atlas") for c in roi_configs])
    space = describe_values(_text_of(r.get("template"), "space", "name") or _text_of(r.get("atlas"), "space")
                            for r in rois)
    if space is None and atlas and atlas.strip().lower() == "cit168":
        from qsmiron.atlas.builtin import TEMPLATE_SPACE

        space = TEMPLATE_SPACE  # the built-in CIT168 label map is defined on this template
    registration = _first_dict(rois, ("registration",))
    tool = describe_values(_text_of(reg, "tool", "software") for reg in registration)
    transform = describe_values(_text_of(reg, "transform", "type_of_transform", "stages", "method")
                                for reg in registration)
    metric = describe_values(_text_of(reg, "metric") for reg in registration)
    if not (tool or transform) and configs:
        # qsmiron's registration (qsmiron.register): ANTs, rigid -> affine -> SyN (SyN skipped
        # when its iterations are empty), Mattes mutual information; the settings say which.
        tool = "ANTs"
        transform = describe_values("rigid + affine" + (" + SyN" if c.get("syn_iterations") else "")
                                    for c in configs)
        metric = metric or "Mattes mutual information"
    sentences = []
    what = ("Each subject's magnitude image was registered to the "
            + (f"{space} template" if space else "template (space not recorded)"))
    how = [" ".join(str(t) for t in (tool, transform) if t)] if (tool or transform) else []
    if metric:
        how.append(f"metric {metric}")
    what += (" with " + ", ".join(how)) if how else " (registration method not recorded, unknown)"
    sentences.append(what + ".")
    if configs:
        keys = list(dict.fromkeys(k for c in configs for k in c))
        parameters = [_summarise_parameter(k, [c[k] for c in configs if k in c]) for k in keys]
        sentences.append("Registration parameters: " + "; ".join(p for p in parameters if p) + ".")
    measurement = _first_dict(rois, ("measurement",), ("measurement_settings",), ("settings",))
    m_space = describe_values(_text_of(m, "space") for m in measurement)
    erode = describe_values(([_text_of(m, "erode_voxels") for m in measurement]
                             or [c.get("erode_voxels") for c in roi_configs]), lambda v: str(int(v)), "voxel(s)")
    interpolation = describe_values(_text_of(m, "label_interpolation", "interpolation") for m in measurement)
    if interpolation is None and configs:
        interpolation = describe_values(c.get("label_interpolation") for c in configs)
    text = f"The {atlas or 'atlas (name not recorded)'} labels were brought into each subject's native space"
    if interpolation:
        text += f" ({interpolation} interpolation)"
    if m_space in (None, "native", "subject"):
        text += ", and regional susceptibility was measured there"
    else:
        text += f", and regional susceptibility was measured in {m_space} space"
    text += " as the mean over each label"
    if erode:
        text += (", without label erosion" if erode.startswith("0 ") else f", after eroding each label by {erode}")
    sentences.append(text + ".")
    metric_records = _first_dict(rois, ("registration", "metrics"), ("registration_metrics",), ("metrics",))
    metrics_keys = list(dict.fromkeys(k for m in metric_records for k, v in m.items() if _is_number(v)))
    if metrics_keys:
        parts = [f"{key} {describe_values([m.get(key) for m in metric_records], lambda v: f'{float(v):.3f}')}"
                 for key in metrics_keys]
        sentences.append("Registration quality: " + "; ".join(parts) + ".")
    elif rois:
        sentences.append("Registration quality metrics were not recorded.")
    return sentences


# --------------------------------------------------------------------------- statistics
DEFAULT_METHOD_TEXT = {
    "group_comparison": ("ANCOVA by ordinary least squares with the F test of group, covariate-adjusted "
                         "means, partial eta squared, Cohen's d from the raw group means and pooled SD, and "
                         "a Mann-Whitney U test as the non-parametric check"),
    "associations": ("partial correlation controlling the covariates (Spearman: Pearson partial "
                     "correlation of the ranks of all variables), p from t with n - 2 - k degrees of "
                     "freedom (k covariates)"),
    "relapse": ("logistic regression (odds ratio per 1 SD of susceptibility, Wald 95 % CI); ROC AUC of "
                "susceptibility alone with DeLong 95 % CI and the Youden cut-off; Cox proportional "
                "hazards (hazard ratio per SD) and Kaplan-Meier curves split at the median when "
                "time-to-event data exist; Poisson or negative-binomial regression of counts"),
    "multiple_comparisons": ("Benjamini-Hochberg false discovery rate over all region-hemisphere rows "
                             "of each analysis (associations: over all region x variable rows within a "
                             "group)"),
    "missing_values": "listwise deletion per analysis, every excluded participant reported",
}
"""Used only when the study settings do not carry the statistics module's own descriptions."""


def statistics_sentences(settings: Mapping[str, Any], results: Any = None) -> list[str]:
    """Models, covariates, multiple-comparison control, as the study settings say.

    The model descriptions come from ``settings["methods"]`` (written by the statistics
    module from what it ran) when present.
    """
    settings = _as_dict(settings)
    if not settings:
        return ["The statistical settings were not recorded (unknown)."]
    described = {**DEFAULT_METHOD_TEXT, **{k: str(v) for k, v in _as_dict(settings.get("methods")).items()}}
    groups = _as_dict(settings.get("groups"))
    compare = groups.get("compare") or [groups.get("group_a"), groups.get("group_b")]
    compare = [str(c) for c in compare if c is not None]
    covariates = list(settings.get("covariates") or [])
    alpha = settings.get("alpha", 0.05)
    regions = settings.get("regions") or []
    sentences = []
    session = settings.get("session")
    if session:
        others = [str(s) for s in settings.get("sessions_in_regions_table") or [] if s != session]
        text = f"Participants were compared at session {session}"
        if others:
            text += f" (the dataset's other session{'s' if len(others) > 1 else ''}, {_join(others)}, analysed separately)"
        if settings.get("sessions_table"):
            text += "; values recorded per session (sessions tables) replaced the participants table's values"
        sentences.append(text + ".")
    if len(compare) == 2:
        sentences.append(
            f"Groups {compare[0]} and {compare[1]} (column '{groups.get('column', 'group')}') were compared per "
            f"region and hemisphere{f' ({len(regions)} regions)' if regions else ''}, "
            f"{('adjusting for ' + _join(covariates)) if covariates else 'without covariates'}: "
            f"{described['group_comparison']}.")
    if "table1" in described:
        sentences.append(f"Table 1: {described['table1']}.")
    assoc = _as_dict(settings.get("associations"))
    table = getattr(results, "associations", None)
    if assoc.get("variables") and (table is None or not table.empty):
        a_cov = assoc.get("covariates")
        a_cov = covariates if a_cov is None else list(a_cov)
        method = str(assoc.get("method", "spearman")).capitalize()
        group = assoc.get("group")
        where = "in the pooled sample" if str(group).lower() == "all" else f"within group {group}"
        sentences.append(
            f"Associations of regional susceptibility with {_join(list(map(str, assoc['variables'])))} were "
            f"tested {where} ({method}, {('controlling for ' + _join(a_cov)) if a_cov else 'no covariates'}): "
            f"{described['associations']}.")
    relapse = _as_dict(settings.get("relapse"))
    relapse_table = getattr(results, "relapse", None)
    counts = getattr(results, "relapse_counts", None)
    ran_relapse = relapse.get("outcome") and (relapse_table is None or not relapse_table.empty)
    ran_counts = relapse.get("count") and (counts is None or not counts.empty)
    if ran_relapse or ran_counts:
        r_cov = relapse.get("covariates")
        r_cov = covariates if r_cov is None else list(r_cov)
        group = relapse.get("group")
        where = "in the pooled sample" if str(group).lower() == "all" else f"within group {group}"
        columns = [f"outcome '{relapse['outcome']}' (0/1)"] if relapse.get("outcome") else []
        if relapse.get("time"):
            columns.append(f"time to event '{relapse['time']}' (event '{relapse.get('event') or relapse.get('outcome')}')")
        if relapse.get("count"):
            exposure = relapse.get("exposure")
            columns.append(f"count '{relapse['count']}'" + (f" with exposure '{exposure}'" if exposure else ""))
        sentences.append(
            f"Relapse was modelled {where} per region from {_join(columns)}, "
            f"{('with ' + _join(r_cov) + ' as covariates') if r_cov else 'without covariates'}: "
            f"{described['relapse']}.")
    sentences.append(
        f"Multiple comparisons: {described['multiple_comparisons']}; rows with FDR-adjusted p < "
        f"{_sig(float(alpha), 3)} are called significant. Missing values: {described['missing_values']}.")
    return sentences


# --------------------------------------------------------------------------- QC, exclusions, software
def qc_sentences(provenance: Mapping[str, Any], results: Any = None, n_qc_images: int | None = None) -> list[str]:
    pipeline = _as_dict(provenance.get("pipeline"))
    recons = [_as_dict(r) for r in provenance.get("recon") or []]
    sentences = []
    if n_qc_images:
        sentences.append(f"{_plural(n_qc_images, 'quality-control image')} (susceptibility maps and atlas/registration "
                         f"overlays) {'is' if n_qc_images == 1 else 'are'} included for visual review; how artefacts "
                         "were judged beyond that is not recorded.")
    else:
        sentences.append("No quality-control images were provided; how artefacts were judged is not recorded (unknown).")
    warned = [w for r in recons for w in (r.get("warnings") or [])]
    if warned:
        counts = Counter(str(w) for w in warned)
        sentences.append("Acquisition and reconstruction warnings: " + "; ".join(
            f"{text} ({_plural(n, 'scan')})" for text, n in counts.most_common()) + ".")
    failed = list(pipeline.get("failed") or [])
    excluded = list(pipeline.get("excluded") or [])
    n_subjects = pipeline.get("n_subjects")
    if n_subjects is not None or failed or excluded:
        text = f"Of {n_subjects} subjects, " if n_subjects is not None else ""
        text += f"{_plural(len(failed), 'subject')} failed processing"
        if failed:
            text += " (" + "; ".join(f"{_as_dict(f).get('participant_id', '?')}: {_as_dict(f).get('step', '?')}, "
                                     f"{_as_dict(f).get('reason', 'reason not recorded')}" for f in failed) + ")"
        text += f" and {_plural(len(excluded), 'subject')} {'was' if len(excluded) == 1 else 'were'} excluded"
        if excluded:
            text += " (" + "; ".join(_exclusion_text(e) for e in excluded) + ")"
        sentences.append(text + ".")
    exclusions = list(getattr(results, "exclusions", None) or [])
    if exclusions:
        counts = Counter((str(e.get("analysis", "?")), str(e.get("reason", "?"))) for e in exclusions)
        sentences.append("Left out of individual analyses: " + "; ".join(
            f"{_plural(n, 'participant')} from {analysis} ({reason})" for (analysis, reason), n in counts.most_common())
            + ".")
    elif results is not None:
        sentences.append("No participant was left out of any statistical analysis.")
    return sentences


def _exclusion_text(item: Any) -> str:
    if isinstance(item, Mapping):
        pid = item.get("participant_id", "?")
        reason = item.get("reason")
        return f"{pid}: {reason}" if reason else str(pid)
    return str(item)


def software_sentence(provenance: Mapping[str, Any], results: Any = None) -> str:
    qsmiron_versions = _present(_as_dict(r).get("qsmiron_version") for r in provenance.get("recon") or [])
    qsmiron_versions += _present(_as_dict(r).get("qsmiron_version") for r in provenance.get("roi") or [])
    versions: dict[str, list[str]] = {}
    sources = [_as_dict(r).get("versions") for r in (provenance.get("recon") or [])]
    sources += [_as_dict(r).get("versions") for r in (provenance.get("roi") or [])]
    sources.append(getattr(results, "versions", None))
    for source in sources:
        for package, version in _as_dict(source).items():
            if version is None:
                continue
            versions.setdefault(str(package), [])
            if str(version) not in versions[str(package)]:
                versions[str(package)].append(str(version))
    for version in qsmiron_versions:
        versions.setdefault("qsmiron", [])
        if str(version) not in versions["qsmiron"]:
            versions["qsmiron"].append(str(version))
    if not versions:
        return "Software versions were not recorded (unknown)."
    order = sorted(versions, key=lambda name: (name != "qsmiron", name.lower()))
    return ("Software: " + ", ".join(f"{name} {' / '.join(versions[name])}" for name in order)
            + " (qsmiron: open source, BSD-3-Clause).")


def methods_paragraph(provenance: Mapping[str, Any] | None, settings: Mapping[str, Any] | Any, *,
                      results: Any = None, n_qc_images: int | None = None) -> str:
    """The methods section of the report, as plain text paragraphs separated by blank lines.

    Parameters
    ----------
    provenance : dict or None
        ``{"recon": [recon.json dicts], "roi": [ROI JSON dicts], "pipeline": {"n_subjects",
        "failed", "excluded"}}``; every key optional.
    settings : dict or Study
        The resolved study settings (``StudyResults.settings``).
    results : StudyResults, optional
        Used for the statistics versions, which analyses produced rows and the exclusions.
    n_qc_images : int, optional
        How many QC images the report shows.

    Returns
    -------
    str
        Paragraphs on acquisition, reconstruction, registration and measurement,
        statistics, quality control and software. Whatever the records do not hold is
        called unknown.
    """
    provenance = _as_dict(provenance)
    recons = [_as_dict(r) for r in provenance.get("recon") or []]
    rois = [_as_dict(r) for r in provenance.get("roi") or []]
    paragraphs = [
        acquisition_sentences(recons),
        processing_sentences(recons),
        registration_sentences(rois, recons),
        statistics_sentences(settings, results),
        qc_sentences(provenance, results, n_qc_images) + [software_sentence(provenance, results)],
    ]
    return "\n\n".join(" ".join(sentences) for sentences in paragraphs if sentences)
