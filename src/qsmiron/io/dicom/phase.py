"""Phase images in radians at conversion, with the vendor scaling recorded.

The DICOM header says how a scanner stored the phase, and the converter is the last place
that still has it; the BIDS sidecar then says ``"Units": "rad"`` and ``PhaseScaling`` records
where the radians came from. The pixel data are never rounded again: the NIfTI's
``scl_slope``/``scl_inter`` are rescaled, the stored integers kept.

- **Already radians** after dcm2niix: Philips stores milliradians after RescaleSlope and
  RescaleIntercept, and dcm2niix divides by RescaleSlope x ScaleSlope (about 1000).
- **Milliradians**: Philips without its private scale (RescaleIntercept -3142 = -round(1000 pi)),
  or signed integers reaching +-3142 (GE): divided by 1000.
- **Vendor levels**: one turn of phase spans the ``2**BitsStored`` stored values times
  RescaleSlope (Siemens: 12 bits x slope 2 = 8192 units, -4096..4094 -> -pi..pi).
- Anything else is left as stored with ``"Units": "arbitrary"``; ``qsmiron run`` then
  detects the scaling itself (setting ``recon.phase.rescale.scaling``).

The milliradian rule and the settings key are the reconstruction's own
(``qsmiron.recon.phase``), so that the converter and ``qsmiron run`` read a phase alike.

Real and imaginary images (GE) become magnitude ``|z|`` and phase ``angle(z)``. Some GE
reconstructions alternate the sign of the complex image from slice to slice (a k-space shift
along the slices); this shows as a phase step of pi between every pair of neighbouring slices,
and is undone (every second slice times -1) when the median step is closer to pi than to 0.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from qsmiron import __version__
from qsmiron.recon.phase import MILLIRADIAN_LIMIT, SCALING_SETTING, is_milliradians

RADIAN_TOLERANCE = 0.01
"""Slack (rad) beyond +-pi for values rounded on storage."""


def _philips_note(sidecar: dict[str, Any]) -> str | None:
    rs, ri, ss = (sidecar.get(k) for k in ("PhilipsRescaleSlope", "PhilipsRescaleIntercept", "PhilipsScaleSlope"))
    if not all(isinstance(v, (int, float)) for v in (rs, ri, ss)):
        return None
    return (f"Philips: stored value x RescaleSlope ({rs:g}) + RescaleIntercept ({ri:g}) is the phase in "
            f"milliradians; dcm2niix divided it by RescaleSlope x ScaleSlope ({ss:g}), "
            f"= {rs * ss:.6g}, giving radians")


def _record(method: str, note: str, low: float, high: float) -> dict[str, Any]:
    return {"Method": method, "Description": note, "StoredRange": [round(float(low), 6), round(float(high), 6)],
            "ConvertedBy": f"qsmiron {__version__} convert"}


def scale_phase_file(path: Path, sidecar: dict[str, Any], *, bits_stored: int | None,
                     rescale_slope: float | None, rescale_intercept: float | None = None) -> tuple[str, dict[str, Any]]:
    """Bring a dcm2niix phase NIfTI to radians in place (header scaling only).

    Returns
    -------
    units : {"rad", "arbitrary"}
        The ``Units`` of the BIDS sidecar.
    record : dict
        The ``PhaseScaling`` entry: method, description, the range found.
    """
    import nibabel as nib

    image = nib.load(str(path))
    values = np.asanyarray(image.dataobj, dtype=np.float64)
    low, high = float(np.min(values)), float(np.max(values))
    tol = RADIAN_TOLERANCE
    if low >= -np.pi - tol and high <= np.pi + tol:
        note = _philips_note(sidecar)
        method = "Philips milliradians" if note else "radians"
        return "rad", _record(method, note or "radians as converted by dcm2niix", low, high)
    integers = bool(np.all(values == np.round(values)))
    factor = None
    philips_intercept = rescale_intercept is not None and round(rescale_intercept) == -MILLIRADIAN_LIMIT
    if philips_intercept and low >= -MILLIRADIAN_LIMIT - 1:
        factor = 1e-3
        note = (f"RescaleIntercept -3142 = -round(1000 pi) (Philips): stored value x RescaleSlope "
                f"({rescale_slope:g}) - 3142 is milliradians, divided by 1000")
    elif is_milliradians(values, low, high):
        factor = 1e-3
        note = "signed integers bounded by +-3142 = round(1000 pi): milliradians, divided by 1000"
    elif integers and bits_stored and rescale_slope:
        period = float(2 ** bits_stored) * abs(rescale_slope)
        # 12-bit storage is a vendor phase encoding (Siemens); wider integers must also cover
        # half a turn before their bit depth is trusted as one turn.
        if high - low <= period and (bits_stored <= 12 or high - low >= 0.5 * period):
            factor = 2 * np.pi / period
            note = (f"vendor levels: one turn of phase is 2**BitsStored ({bits_stored}) x RescaleSlope "
                    f"({rescale_slope:g}) = {period:g} units; radians = value x 2 pi / {period:g}")
    if factor is None:
        note = ("scaling not recognised from the DICOM header; left as stored (qsmiron run detects it, "
                f"setting {SCALING_SETTING})")
        return "arbitrary", _record("unrecognised", note, low, high)
    slope, inter = image.dataobj.slope, image.dataobj.inter
    scaled = nib.Nifti1Image(np.asanyarray(image.dataobj.get_unscaled()), image.affine, image.header.copy())
    scaled.set_data_dtype(image.get_data_dtype())
    scaled.header.set_slope_inter(slope * factor, inter * factor)  # after construction, which resets it
    nib.save(scaled, str(path))
    return "rad", _record("milliradians" if factor == 1e-3 else "levels", note, low, high)


def complex_to_polar(real: np.ndarray, imaginary: np.ndarray) -> tuple[np.ndarray, np.ndarray, bool]:
    """Magnitude and phase (rad) from real and imaginary images, slice-alternating sign undone.

    Returns
    -------
    magnitude, phase_rad : ndarray of float32
    chopped : bool
        True when every second slice was multiplied by -1 (see the module docstring).
    """
    z = np.asarray(real, dtype=np.float64) + 1j * np.asarray(imaginary, dtype=np.float64)
    chopped = False
    if z.ndim == 3 and z.shape[2] > 2:
        product = z[:, :, 1:] * np.conj(z[:, :, :-1])
        weight = np.abs(product)
        strong = weight > np.percentile(weight, 75)
        if strong.any():
            steps = np.abs(np.angle(product[strong]))
            if np.median(steps) > np.pi / 2:
                z[:, :, 1::2] *= -1
                chopped = True
    return np.abs(z).astype(np.float32), np.angle(z).astype(np.float32), chopped
