"""Phase preparation: recognise how a phase image is scaled and bring it to radians.

Scanners and converters store phase in radians (float, [-pi, pi) or [0, 2*pi)), in whole
milliradians (-3142..3142: Philips after RescaleSlope/Intercept, GE), or as evenly spaced
integer levels: Siemens -4096..4094 in steps of 2 or 0..4095, 12-bit levels rescaled to
arbitrary float units by a NIfTI slope, and so on. Levels sit on a regular grid of ``L``
levels with ``L`` a power of two, and the phase of a head image covers nearly the whole
circle. ``phase_to_radians`` tests for the three and maps the values onto [-pi, pi); the
setting ``recon.phase.rescale.scaling`` (``SCALING_SETTING``) names one when detection fails.
"""

from __future__ import annotations

import typing
from typing import Any, Literal

import numba
import numpy as np

from qsmiron.errors import InputError
from qsmiron.methods import Method

__all__ = ["phase_to_radians", "wrap_to_pi", "is_milliradians", "PHASE_SCALINGS", "MILLIRADIAN_LIMIT",
           "SCALING_SETTING", "METHODS"]

PhaseScaling = Literal["auto", "radians", "milliradians", "integer"]
PHASE_SCALINGS: tuple[str, ...] = typing.get_args(PhaseScaling)
"""Accepted values of ``scaling``."""

SCALING_SETTING = "recon.phase.rescale.scaling"
"""The settings key of ``scaling`` (stage ``phase``, method ``rescale``; the block is generated
from ``METHODS`` in ``qsmiron.recon.settings``): error messages tell the user to set it."""

MILLIRADIAN_LIMIT = 3142
"""round(1000 pi): the largest value of a phase stored in whole milliradians (Philips after its
RescaleSlope/Intercept, GE)."""

_RADIAN_TOLERANCE = 0.01
"""Slack (rad) beyond +-pi or 2*pi for values rounded on storage (float32, 16-bit scaling)."""

_MIN_COVERAGE = 0.75
"""A wrapped head phase covers nearly the whole circle; below this fraction of 2*pi (or of
the level range) the scaling cannot be recognised with confidence."""

_SAMPLE_SIZE = 1_000_000
"""Values looked at when detecting the level grid (a strided sample, deterministic)."""


@numba.njit(parallel=True, cache=True)
def _range(flat):
    """(min, max, all finite) in one parallel pass (NaN and infinities are skipped)."""
    low = np.inf
    high = -np.inf
    bad = 0
    for i in numba.prange(flat.size):
        v = float(flat[i])
        if np.isfinite(v):
            low = min(low, v)
            high = max(high, v)
        else:
            bad += 1
    return low, high, bad == 0


@numba.njit(parallel=True, cache=True)
def _scale_wrap(flat, out, scale, shift):
    """out = wrap(flat * scale + shift) into [-pi, pi), one parallel pass."""
    pi = np.pi
    two_pi = 2.0 * np.pi
    for i in numba.prange(flat.size):
        v = float(flat[i]) * scale + shift
        if v >= pi or v < -pi:
            v -= two_pi * np.floor((v + pi) / two_pi)
        r = np.float32(v)
        if r >= np.float32(pi):
            r -= np.float32(two_pi)
        out[i] = r


def wrap_to_pi(phase_rad: np.ndarray, *, out: np.ndarray | None = None) -> np.ndarray:
    """Wrap angles (rad) into [-pi, pi), float32.

    Parameters
    ----------
    phase_rad : ndarray
        Angles, rad, any range.
    out : ndarray of float32, optional
        Where to write the result (may be ``phase_rad`` itself for in-place wrapping).

    Returns
    -------
    ndarray of float32
        The same angles in [-pi, pi).
    """
    phase = np.asarray(phase_rad)
    if out is None:
        out = np.empty(phase.shape, np.float32)
    two_pi = np.float32(2.0 * np.pi)
    np.add(phase, np.float32(np.pi), out=out, casting="unsafe")
    np.mod(out, two_pi, out=out)
    out -= np.float32(np.pi)
    # float32 rounding can leave exactly +pi; fold it onto -pi.
    out[out >= np.float32(np.pi)] -= two_pi
    return out


def _sample(values: np.ndarray) -> np.ndarray:
    flat = values.reshape(-1)
    step = max(1, flat.size // _SAMPLE_SIZE)
    return np.asarray(flat[::step], dtype=np.float64)


def _level_grid(values: np.ndarray, low: float, high: float) -> dict[str, Any] | None:
    """The regular grid of levels the values sit on, or None when there is none.

    Returns the level step (in stored units), the number of levels spanned and the period
    (the next power of two of that number, times the step) that maps onto 2*pi.
    """
    span = high - low
    if not span > 0:
        return None
    sample = _sample(values)
    unique = np.unique(sample)
    if unique.size < 16:
        return None
    gaps = np.diff(unique)
    # The smallest gap between distinct values is the level step (possibly a few steps when
    # levels are missing from the sample; levels are then counted from the span below).
    # Float storage jitters single gaps by a few ulps: take the median of the gaps that are
    # one step long.
    step = float(np.median(gaps[gaps < 1.5 * gaps.min()]))
    # Guard against float noise making a tiny spurious gap: a step must divide every gap.
    ratios = gaps / step
    if np.max(np.abs(ratios - np.round(ratios))) > 0.05:
        step = float(np.median(gaps))
        ratios = gaps / step
        if np.max(np.abs(ratios - np.round(ratios))) > 0.05:
            return None
    n_levels = int(round(span / step)) + 1
    if n_levels < 64:
        return None
    # The span fixes the step far better than any single (float-rounded) gap.
    step = span / (n_levels - 1)
    if n_levels < 64:
        return None
    levels = 1 << int(np.ceil(np.log2(n_levels)))
    if n_levels < _MIN_COVERAGE * levels:
        return None
    offsets = (sample - low) / step
    if np.max(np.abs(offsets - np.round(offsets))) > 0.05:
        return None
    return {"step": step, "levels_spanned": n_levels, "levels": levels, "period": levels * step}


def is_milliradians(values: np.ndarray, low: float, high: float) -> bool:
    """Signed whole numbers reaching (95 % of) +-3142 and no further: milliradians.

    Such data span about 6284 levels, which the power-of-two level test would read as 8192
    levels per turn (77 % coverage), a scale error of 23 %. ``low`` and ``high`` are the
    values' minimum and maximum; whole numbers are checked on a strided sample.
    """
    reach = max(-low, high)
    if not (low < 0 and 0.95 * MILLIRADIAN_LIMIT < reach <= MILLIRADIAN_LIMIT):
        return False
    sample = _sample(values)
    return bool(np.all(sample == np.round(sample)))


def _radians_out(flat: np.ndarray, shape: tuple[int, ...], scale: float, shift: float) -> np.ndarray:
    out = np.empty(shape, np.float32)
    _scale_wrap(flat, out.reshape(-1), scale, shift)
    return out


def phase_to_radians(phase: np.ndarray, *,
                     scaling: PhaseScaling = "auto", negate: bool = False
                     ) -> tuple[np.ndarray, dict[str, Any]]:
    """Detect the scaling of a phase image and return it in radians, wrapped to [-pi, pi).

    Detection (``scaling="auto"``), in this order:

    1. **Radians**: all values within [-pi, pi] (or [0, 2*pi]) up to 0.01 rad, and the
       values cover at least 75 % of the circle (a wrapped head phase covers nearly all of
       it). Values are wrapped to [-pi, pi).
    2. **Milliradians**: signed whole numbers reaching +-3142 = round(1000 pi) (Philips
       after RescaleSlope/Intercept, GE): divided by 1000.
    3. **Vendor levels**: the values lie on a regular grid (integers, or integers times a
       NIfTI slope) spanning ``n`` levels with ``0.75 L <= n <= L`` for ``L`` a power of two
       >= 64 (for example 4096 levels for 12-bit phase). One period of ``L`` levels maps onto
       2*pi. Signed data (minimum below zero) keep zero at zero: ``phi = 2 pi v / (L step)``;
       unsigned data (0..L-1) put the middle level at zero, the Siemens convention:
       ``phi = 2 pi v / (L step) - pi``.

    Anything else is rejected: a phase that is neither is more likely a magnitude image or an
    already processed map given by mistake than an exotic scaling.

    Parameters
    ----------
    phase : ndarray
        Phase as stored, any shape (3D or 4D with echoes last), any real dtype.
    scaling : {"auto", "radians", "milliradians", "integer"}
        ``"radians"`` trusts the input to be radians and ``"milliradians"`` to be radians
        times 1000 (only the range is checked: coverage and whole numbers are not);
        ``"integer"`` skips both tests and requires a level grid.
    negate : bool
        The phase as stored is minus the phase of the field (an export's sign convention):
        reverse it. Without this, every susceptibility comes out with the wrong sign; the
        regional step warns when the iron-rich nuclei read negative
        (``qsmiron.roi.sign.iron_sign_check``).

    Returns
    -------
    phase_rad : ndarray of float32, same shape
        Phase in [-pi, pi), rad.
    info : dict
        How the scaling was detected: ``method`` ("radians", "milliradians" or "levels"), ``input_min``,
        ``input_max``, and for levels ``step``, ``levels``, ``levels_spanned``, ``period``,
        ``signed``.

    Raises
    ------
    InputError
        Non-finite values, a range that contradicts the requested scaling, or a phase that is
        none of the three (the message names ``SCALING_SETTING`` and has no path; the caller
        attributes it with ``InputError.with_path``).
    """
    if scaling not in PHASE_SCALINGS:
        raise ValueError(f"scaling must be one of {PHASE_SCALINGS}, got {scaling!r}")
    values = np.asarray(phase)
    if not np.issubdtype(values.dtype, np.number) or np.iscomplexobj(values):
        raise InputError(f"phase must be real numbers, got dtype {values.dtype}")
    if values.size == 0:
        raise InputError("phase image is empty")
    flat = np.ascontiguousarray(values).reshape(-1)
    low, high, finite = _range(flat)
    if not finite:
        raise InputError("phase holds NaN or infinite values")
    info: dict[str, Any] = {"input_min": low, "input_max": high, "requested": scaling}
    sign = -1.0 if negate else 1.0
    if negate:
        info["negated"] = True
    two_pi = 2.0 * np.pi
    tol = _RADIAN_TOLERANCE
    in_signed_radians = low >= -np.pi - tol and high <= np.pi + tol
    in_unsigned_radians = low >= -tol and high <= two_pi + tol
    covers_circle = (high - low) >= _MIN_COVERAGE * two_pi

    if scaling == "radians" or (scaling == "auto" and (in_signed_radians or in_unsigned_radians)
                                and covers_circle):
        if not (in_signed_radians or in_unsigned_radians):
            raise InputError(f"phase spans [{low:.4g}, {high:.4g}], outside [-pi, pi] and [0, 2*pi]: it is not in "
                             f"radians; set {SCALING_SETTING} = \"auto\" instead of \"radians\"")
        info.update(method="radians", range="[-pi, pi]" if in_signed_radians else "[0, 2*pi]")
        return _radians_out(flat, values.shape, sign, 0.0), info
    if scaling == "milliradians" or (scaling == "auto" and is_milliradians(values, low, high)):
        if max(-low, high) > 1000.0 * (np.pi + tol):
            raise InputError(f"phase spans [{low:.4g}, {high:.4g}], beyond +-1000 pi: it is not in milliradians; "
                             f"set {SCALING_SETTING} = \"auto\" instead of \"milliradians\"")
        info.update(method="milliradians", signed=True, period=2000.0 * np.pi)
        return _radians_out(flat, values.shape, sign * 1e-3, 0.0), info
    grid = _level_grid(values, low, high)
    if grid is None:
        raise InputError(
            f"phase scaling not recognised: values span [{low:.4g}, {high:.4g}], neither radians covering "
            f"{_MIN_COVERAGE:.0%} of the circle, nor whole milliradians, nor vendor integer levels (a power-of-two "
            f"number of evenly spaced values); if this is a phase image, set {SCALING_SETTING} = \"radians\", "
            "\"milliradians\" or \"integer\" (vendor levels) in the config file (qsmiron config shows the key)")
    signed = low < 0
    info.update(method="levels", signed=signed, **grid)
    shift = 0.0 if signed else -sign * np.pi
    return _radians_out(flat, values.shape, sign * two_pi / grid["period"], shift), info


METHODS = (
    Method("rescale", phase_to_radians,
           label="rescaling of the stored phase to radians (radians, whole milliradians or vendor "
                 "integer levels, recognised from the values unless set)",
           description="recognise radians, whole milliradians (+-3142) or power-of-two vendor levels "
                       "(or take the scaling set) and map them onto [-pi, pi); negate reverses an export's sign"),
)
"""Phase preparation methods (stage ``phase``)."""
