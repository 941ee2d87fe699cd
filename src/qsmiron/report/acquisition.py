"""The acquisition sentences of the methods paragraph, from the scans' ``Acquisition`` records.

Every field the records hold is reported (a range or counts when scans differ); a field that
is None in every scan is named unknown, and so are the consensus-checklist items no record
holds at all (``NOT_RECORDED``). The readout polarity, which no record holds, is stated as the
reconstruction read it from the phase (``ReconRecord.readout``).
"""

from __future__ import annotations

from typing import Any, Callable

from qsmiron.records.acquisition import Acquisition, ReadoutInfo
from qsmiron.report.describe import describe_values, is_number, join, milliseconds, plural, sig, triple

NOT_RECORDED = ("readout polarity", "flow compensation")
"""QSM consensus checklist items that neither BIDS sidecars nor the images carry: always unknown."""


def _partial_fourier_text(value: Any) -> str:
    if is_number(value):
        return "no partial Fourier" if float(value) >= 1 else f"partial Fourier factor {sig(float(value), 3)}"
    text = str(value).strip()
    return "no partial Fourier" if text.lower() in {"none", "off", "no", "1", "1.0"} else f"partial Fourier {text}"


def _acceleration_text(value: Any) -> str:
    if float(value) <= 1:
        return "no in-plane parallel imaging"
    return f"in-plane parallel imaging factor {sig(float(value), 3)}"


def _echo_summary(acquisitions: list[Acquisition]) -> str:
    """The echoes: count, first TE, spacing (uniform or not), last TE, where the TEs came from."""
    echo_lists = [a.echo_times_s for a in acquisitions]
    n_echoes = describe_values([len(e) for e in echo_lists], lambda v: str(int(v)))
    parts = [f"TE1 = {describe_values([e[0] for e in echo_lists], milliseconds, 'ms')}"]
    spacings = [[b - a for a, b in zip(e, e[1:])] for e in echo_lists if len(e) > 1]
    if spacings:
        uniform = [s for s in spacings if max(s) - min(s) <= 1e-5]
        if len(uniform) == len(spacings):
            parts.append(f"\u0394TE = {describe_values([sum(s) / len(s) for s in spacings], milliseconds, 'ms')}")
        else:
            steps = [d for s in spacings for d in s]
            parts.append(f"non-uniform echo spacing ({milliseconds(min(steps))}\u2013{milliseconds(max(steps))} ms) "
                         f"in {plural(len(spacings) - len(uniform), 'scan')}")
    parts.append(f"last TE = {describe_values([e[-1] for e in echo_lists], milliseconds, 'ms')}")
    parts.append(f"echo times from {describe_values(a.echo_times_source for a in acquisitions)}")
    return f"{n_echoes} echoes, " + ", ".join(parts)


def _scanner_sentence(acquisitions: list[Acquisition], item: Callable) -> str:
    field = item("field_strength_t", lambda v: sig(float(v), 3), "T", "field strength")
    vendor = item("manufacturer", label="vendor")
    model = item("manufacturers_model_name", label="scanner model")
    software = item("software_versions", label="scanner software version")
    coil = item("receive_coil", label="receive coil")
    where = []
    if field:
        where.append(f"at {field}")
    if vendor or model:
        where.append("on " + " ".join(t for t in (vendor, model) if t) + " scanner(s)")
    if software:
        where.append(f"(scanner software {software})")
    if coil:
        where.append(f"with receive coil {coil}")
    return (f"{plural(len(acquisitions), 'scan')} were reconstructed"
            + (" (acquired " + " ".join(where) + ")" if where else "") + ".")


def _sequence_items(acquisitions: list[Acquisition], item: Callable) -> list[str]:
    dimensionality = item("mr_acquisition_type", label="2D or 3D acquisition")
    sequence_name = describe_values(a.sequence_name for a in acquisitions)
    kind = f"{dimensionality} multi-echo gradient-echo (GRE)" if dimensionality else "multi-echo gradient-echo (GRE)"
    if sequence_name:
        kind += f" (sequence {sequence_name})"
    items = [kind + " magnitude and phase", _echo_summary(acquisitions)]
    for key, fmt, unit, label, prefix in (
            ("repetition_time_s", milliseconds, "ms", "TR", "TR = "),
            ("flip_angle_deg", lambda v: sig(float(v), 3) + "\u00b0", "", "flip angle", "flip angle "),
            ("voxel_size_mm", lambda v: triple(v, lambda x: f"{x:.2f}"), "mm", "voxel size", "voxel size "),
            ("matrix", lambda v: triple(v, lambda x: str(int(x))), "", "matrix", "matrix ")):
        text = item(key, fmt, unit, label)
        if text:
            items.append(prefix + text)
    fovs = [[m * v for m, v in zip(a.matrix, a.voxel_size_mm)] for a in acquisitions]
    items.append(f"field of view {describe_values(fovs, lambda v: triple(v, lambda x: f'{x:.0f}'), 'mm')} "
                 "(matrix \u00d7 voxel size)")
    for key, fmt, label in (("parallel_reduction_factor_in_plane", _acceleration_text, "acceleration (parallel imaging)"),
                            ("partial_fourier", _partial_fourier_text, "partial Fourier")):
        text = item(key, fmt, "", label)
        if text:
            items.append(text)
    return items


def readout_sentences(found: list[ReadoutInfo | None]) -> tuple[list[str], bool]:
    """What the reconstructions read of each scan's readout polarity from its phase, and whether
    every scan was checked (records made before the check hold none)."""
    polarity = [info.polarity if info is not None else "not checked" for info in found]
    counts = {kind: polarity.count(kind) for kind in ("monopolar", "bipolar", "not checked")}
    parts = []
    if counts["monopolar"]:
        level = describe_values(i.detection_rad for i in found if i is not None and i.polarity == "monopolar")
        parts.append(f"no odd/even echo phase difference of {level} rad or more, as with a monopolar "
                     f"readout, in {plural(counts['monopolar'], 'scan')}")
    if counts["bipolar"]:
        largest = describe_values((i.largest_rad for i in found if i is not None and i.polarity == "bipolar"),
                                  lambda v: f"{float(v):.2f}", "rad")
        parts.append(f"the even echoes' phase of a bipolar readout (up to {largest}) in "
                     f"{plural(counts['bipolar'], 'scan')}, removed before unwrapping")
    if counts["not checked"]:
        reasons = describe_values(i.reason for i in found if i is not None and i.polarity == "not checked")
        parts.append(f"no check in {plural(counts['not checked'], 'scan')}" + (f" ({reasons})" if reasons else ""))
    if not counts["monopolar"] and not counts["bipolar"]:
        return [], False
    return (["Readout polarity, which exports do not record, was read from the phase (odd/even echo phase "
             "difference as a constant plus a linear function of position, fitted to the echoes' second "
             "differences; Li et al., MAGMA 2015): " + "; ".join(parts) + "."], counts["not checked"] == 0)


def acquisition_sentences(acquisitions: list[Acquisition],
                          readouts: list[ReadoutInfo | None] | None = None) -> list[str]:
    """What the records tell about the scanner and the sequence, and what they do not; with the
    scans' ``ReconRecord.readout``, the readout polarity read from their phase."""
    if not acquisitions:
        return ["No reconstruction records were available, so the scanner, coil and sequence "
                "parameters (field strength, vendor, model, echo times, TR, flip angle, voxel size, "
                "matrix, acceleration, partial Fourier, readout polarity, flow compensation) are "
                "unknown to this report."]
    unknown: list[str] = []

    def item(key: str, fmt: Callable[[Any], str] = str, unit: str = "", label: str | None = None) -> str | None:
        text = describe_values((getattr(a, key) for a in acquisitions), fmt, unit)
        if text is None:
            unknown.append(label or key)
        return text

    sentences = [_scanner_sentence(acquisitions, item), "Input: " + "; ".join(_sequence_items(acquisitions, item)) + "."]
    angle = max(a.oblique_angle_deg for a in acquisitions)
    sentences.append(
        f"Slices were oblique to the scanner axes by up to {angle:.1f}\u00b0; the B0 direction in voxel "
        "coordinates was taken from each image's affine." if angle > 0.05 else
        "Slices were not oblique; the B0 direction in voxel coordinates was taken from each image's affine.")
    readout, every_scan_checked = readout_sentences(list(readouts or []))
    not_recorded = [item for item in NOT_RECORDED if not (item == "readout polarity" and every_scan_checked)]
    sentences.append("Not recorded in the data, hence unknown: " + join(unknown + not_recorded) + ".")
    return sentences + readout
