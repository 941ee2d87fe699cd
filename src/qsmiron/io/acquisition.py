"""An acquisition's metadata: voxel size and obliquity from the affine, sidecar fields, warnings.

``acquisition_record`` builds the ``Acquisition`` record of a reconstruction;
``acquisition_warnings`` checks the QSM consensus checklist's acquisition items.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

from qsmiron.io.nifti import voxel_size_mm
from qsmiron.records.acquisition import Acquisition

VOXEL_SIZE_DECIMALS = 6
"""Voxel sizes are rounded to 1 nm: affines stored as float32 carry ~1e-7 relative noise
(1.5 mm reads back as 1.50000005), which would otherwise leak into every recorded parameter
and into rules that compare radii with voxel multiples."""

THICK_SLICE_MM = 2.0
"""Consensus: slices of 2 mm or more bias small nuclei low."""

ANISOTROPY_RATIO = 2.0
"""Largest / smallest voxel edge from which voxels count as strongly anisotropic."""

LAST_ECHO_3T_S = 0.020
"""Consensus: the last echo should reach about the T2* of deep grey matter (30-40 ms at 3T);
a last echo below 20 ms at 3T (scaled by 3 T / B0, since T2* shortens about as 1/B0) gets a
warning."""

_SIDECAR_TEXT = {
    # acquisition field: BIDS sidecar key
    "manufacturer": "Manufacturer",
    "manufacturers_model_name": "ManufacturersModelName",
    "receive_coil": "ReceiveCoilName",
    "software_versions": "SoftwareVersions",
    "mr_acquisition_type": "MRAcquisitionType",
    "sequence_name": "SequenceName",
}
_SIDECAR_NUMBERS = {
    # acquisition field: BIDS sidecar key (units as BIDS: seconds, degrees)
    "repetition_time_s": "RepetitionTime",
    "flip_angle_deg": "FlipAngle",
    "parallel_reduction_factor_in_plane": "ParallelReductionFactorInPlane",
}


def format_mm(values: Sequence[float]) -> str:
    return " x ".join(f"{v:.3g}" for v in values) + " mm"


def clean_voxel_size_mm(affine: np.ndarray) -> tuple[float, float, float]:
    """Voxel edge lengths (mm) from an affine, rounded to ``VOXEL_SIZE_DECIMALS`` places."""
    return tuple(round(v, VOXEL_SIZE_DECIMALS) for v in voxel_size_mm(affine))


def oblique_angle_deg(b0_direction: Sequence[float]) -> float:
    """Angle between B0 and the voxel axis closest to it, degrees (0 for a straight slab)."""
    b0 = np.abs(np.asarray(b0_direction, dtype=float))
    b0 = b0 / np.linalg.norm(b0)
    return float(np.degrees(np.arccos(np.clip(b0.max(), -1.0, 1.0))))


def acquisition_warnings(voxel_size: Sequence[float], echo_times_s: Sequence[float],
                         field_strength_t: float, sidecar: dict[str, Any]) -> list[str]:
    """The consensus checklist's warnings about an acquisition (empty when it conforms).

    Checks: slices of 2 mm or more, strongly anisotropic voxels (largest / smallest edge
    >= 2), a last echo much shorter than the T2* of deep grey matter (below 20 ms at 3T,
    scaled by 3 T / B0), partial Fourier.
    """
    warnings = []
    voxel = [float(v) for v in voxel_size]
    if max(voxel) >= THICK_SLICE_MM:
        warnings.append(f"voxels of {format_mm(voxel)}: edges of {THICK_SLICE_MM:g} mm or more "
                        f"bias the susceptibility of small nuclei low (consensus: about 1 mm "
                        f"isotropic)")
    if max(voxel) / min(voxel) >= ANISOTROPY_RATIO:
        warnings.append(f"strongly anisotropic voxels ({format_mm(voxel)}, ratio "
                        f"{max(voxel) / min(voxel):.1f}); the consensus recommends roughly "
                        f"isotropic voxels")
    recommended_last = LAST_ECHO_3T_S * 3.0 / float(field_strength_t)
    if echo_times_s[-1] < recommended_last:
        warnings.append(f"last echo at {echo_times_s[-1] * 1000:.1f} ms, well below the T2* "
                        f"of deep grey matter at {field_strength_t:g} T (consensus: last echo "
                        f"near T2*, at least about {recommended_last * 1000:.0f} ms here); "
                        f"the field estimate is noisy")
    partial = sidecar.get("PartialFourier")
    try:
        partial_value = None if partial is None else float(partial)
    except (TypeError, ValueError):
        partial_value = None
    if partial_value is not None and partial_value < 1.0:
        warnings.append(f"partial Fourier ({partial_value:g}) was used; the consensus advises "
                        f"against it for QSM (it blurs the phase)")
    return warnings


def _sidecar_text(value: Any) -> str | None:
    return None if value is None else str(value)


def _sidecar_number(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def acquisition_record(shape3d, affine, echo_times, field_strength, b0, sidecar,
                 echo_source: str, field_source: str) -> Acquisition:
    """The acquisition record; sidecar values of another type than BIDS says are not trusted."""
    partial = sidecar.get("PartialFourier")
    return Acquisition(
        field_strength_t=float(field_strength), field_strength_source=field_source,
        echo_times_s=[float(t) for t in echo_times], echo_times_source=echo_source,
        n_echoes=len(echo_times), matrix=[int(n) for n in shape3d],
        voxel_size_mm=list(clean_voxel_size_mm(affine)), b0_direction_voxel=[float(v) for v in b0],
        oblique_angle_deg=oblique_angle_deg(b0),
        **{key: _sidecar_text(sidecar.get(bids_key)) for key, bids_key in _SIDECAR_TEXT.items()},
        **{key: _sidecar_number(sidecar.get(bids_key)) for key, bids_key in _SIDECAR_NUMBERS.items()},
        partial_fourier=_sidecar_number(partial) if _sidecar_number(partial) is not None else _sidecar_text(partial))
