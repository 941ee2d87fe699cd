"""Exact quality-guided region-growing unwrapping, consistent across echoes (ROMEO-like).

Method (after Dymerska, Eckstein et al., "Phase unwrapping with a rapid opensource minimum
spanning tree algorithm (ROMEO)", Magn Reson Med 2021;85:2294):

1. **Edge quality**: each pair of face neighbours in the mask gets a quality in [0, 1], the
   product of phase coherence, phase-gradient coherence with the next echo, magnitude
   coherence and a magnitude weight (``_grow.edge_costs``), quantised to 255 costs.
2. **Region growing**: from the best voxel, the cheapest edge leaving the unwrapped region is
   taken next (bucket priority queue) and its new voxel is unwrapped relative to its
   neighbour, ``p_new -= 2 pi round((p_new - p_old) / 2 pi)``. Every step adds an integer
   multiple of 2*pi, so on noise-free data the result equals the true phase up to one
   2*pi*k per connected component; unreliable voxels are reached last, so errors there do not
   propagate into good tissue.
3. **Phase offset** (``phase_offset="mcpc3ds"``, after Eckstein et al., MRM 2018;79:2996):
   the echo-independent offset is ``phi_1 - TE_1 / (TE_2 - TE_1) * unwrap(phi_2 - phi_1)``,
   smoothed as unit phasors (Gaussian, ``offset_sigma_mm``) and subtracted from every echo.
4. **Echoes**: the template echo (offset removed) is unwrapped spatially; every other echo is
   unwrapped *temporally* against the field fitted from the echoes already unwrapped
   (weights magnitude^2 * TE^2), which keeps all echoes consistent and confines errors to
   single voxels. The global 2*pi*k of each component is fixed so that the template agrees
   with the echo-difference field (or, with no offset removal, so that its phase lies in
   [-pi, pi)), judged by the magnitude-weighted median over the component, which noise
   voxels of a mask reaching into skull or air cannot move.

The output is the *input* phase plus an integer multiple of 2*pi in every voxel; the offset
is returned separately (``unwrap_romeo_full``) for the echo fit.
"""

from __future__ import annotations

from dataclasses import dataclass, field
import math
from typing import Any, Callable, Literal, Sequence

import numba
import numpy as np

from qsmiron.recon.fourier import bounding_box
from qsmiron.recon.params import NonNegativeInt, PositiveFloat
from qsmiron.recon.phase import wrap_to_pi
from qsmiron.recon.unwrap import _grow
from qsmiron.recon.unwrap._common import as_4d, check_geometry, component_weighted_medians, smooth_phasors

__all__ = ["RomeoResult", "unwrap_romeo", "unwrap_romeo_full", "unwrap_spatial",
           "mcpc3ds_offset", "PHASE_OFFSET_METHODS"]

PHASE_OFFSET_METHODS = ("mcpc3ds", "none")

TWO_PI = np.float32(2.0 * np.pi)


@dataclass
class RomeoResult:
    """Everything the ROMEO-like unwrapper produces.

    Attributes
    ----------
    unwrapped_rad : ndarray of float32, shape (X, Y, Z, E)
        Input phase + 2*pi*k, rad; 0 outside the mask.
    offset_rad : ndarray of float32, shape (X, Y, Z)
        The echo-independent phase offset that was estimated (0 when ``phase_offset="none"``),
        rad, in [-pi, pi); 0 outside the mask.
    quality : ndarray of float32, shape (X, Y, Z), or None
        Mean ROMEO quality (0 worst .. 1 best) of the edges of each voxel in the template
        echo; 0 outside the mask. None from an unwrapper without a quality measure.
    info : dict
        Template echo, number of connected components, offset method and smoothing.
    """

    unwrapped_rad: np.ndarray
    offset_rad: np.ndarray
    quality: np.ndarray | None
    info: dict[str, Any] = field(default_factory=dict)


def _costs(phase: np.ndarray, mask: np.ndarray, *, phase2: np.ndarray | None = None,
           ratio: float = 1.0, magnitude: np.ndarray | None = None) -> np.ndarray:
    empty = np.zeros((0, 0, 0), np.float32)
    p2 = empty if phase2 is None else np.ascontiguousarray(phase2, np.float32)
    mag = empty if magnitude is None else np.ascontiguousarray(magnitude, np.float32)
    ref = 0.0
    if magnitude is not None:
        inside = mag[mask]
        # Edges between voxels at less than half the median brain magnitude are
        # progressively distrusted (noise-dominated phase); above that they are not.
        ref = 0.5 * float(np.median(inside)) if inside.size else 0.0
    return _grow.edge_costs(np.ascontiguousarray(phase, np.float32), p2, float(ratio), mag,
                            np.ascontiguousarray(mask), ref)


def _grow_unwrap(phase: np.ndarray, mask: np.ndarray, costs: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(unwrapped copy, component labels, voxel quality) for one 3D phase."""
    quality = _grow.voxel_quality(costs, mask)
    order = _grow.seed_order(quality, mask)
    unwrapped = np.array(phase, dtype=np.float32, order="C", copy=True)
    labels = _grow.grow(unwrapped, costs, mask, order)
    return unwrapped, labels, quality


def _subtract_component_turns(unwrapped: np.ndarray, labels: np.ndarray,
                              reference: np.ndarray | None = None, weights: np.ndarray | None = None) -> None:
    """Shift each component by 2*pi*k so that its (``weights``-weighted) median lies within pi
    of ``reference``'s (a median: see ``component_weighted_medians``)."""
    difference = unwrapped if reference is None else unwrapped - reference
    turns = np.round(component_weighted_medians(difference, labels, weights) / (2.0 * np.pi)).astype(np.float32)
    turns[0] = 0.0
    unwrapped -= TWO_PI * turns[labels]


def unwrap_spatial(phase_rad: np.ndarray, mask: np.ndarray, *,
                   magnitude: np.ndarray | None = None, phase2_rad: np.ndarray | None = None,
                   te_ratio: float = 1.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Region-growing unwrapping of one 3D phase (no cropping, no global correction).

    Parameters
    ----------
    phase_rad : ndarray, shape (X, Y, Z)
        Wrapped phase, rad.
    mask : ndarray of bool, shape (X, Y, Z)
    magnitude : ndarray, shape (X, Y, Z), optional
        Enables the magnitude terms of the edge quality.
    phase2_rad : ndarray, shape (X, Y, Z), optional
        Another echo, for the phase-gradient coherence term.
    te_ratio : float
        TE of ``phase_rad`` / TE of ``phase2_rad``.

    Returns
    -------
    unwrapped_rad : ndarray of float32
        ``phase_rad`` + 2*pi*k in the mask, unchanged outside.
    labels : ndarray of int32
        Connected component (1, 2, ...) of each mask voxel.
    quality : ndarray of float32
        Mean edge quality of each voxel (0..1).
    """
    mask = np.ascontiguousarray(mask, dtype=bool)
    costs = _costs(phase_rad, mask, phase2=phase2_rad, ratio=te_ratio, magnitude=magnitude)
    return _grow_unwrap(phase_rad, mask, costs)


def mcpc3ds_offset(phase_rad: np.ndarray, magnitude: np.ndarray | None, mask: np.ndarray,
                   voxel_size_mm: Sequence[float], echo_times_s: Sequence[float], *,
                   sigma_mm: float = 8.0,
                   unwrap3d: Callable[[np.ndarray, np.ndarray, np.ndarray | None], np.ndarray]
                   | None = None, workers: int = -1) -> np.ndarray:
    """Echo-independent phase offset from the first two echoes (MCPC-3D-S), rad.

    ``offset = phi_1 - TE_1 / (TE_2 - TE_1) * unwrap(wrap(phi_2 - phi_1))``, where the echo
    difference is unwrapped spatially (its magnitude-weighted median field per connected component taken within
    +-1 / (2 (TE_2 - TE_1)) Hz of zero, i.e. a shimmed brain), then smoothed as unit phasors
    weighted by the magnitude of echo 1 with a Gaussian of ``sigma_mm`` (the offset comes from
    coil sensitivities and the excitation and varies over centimetres).

    Parameters
    ----------
    phase_rad : ndarray, shape (X, Y, Z, E), E >= 2
        Wrapped phase, rad.
    magnitude : ndarray, shape (X, Y, Z, E), optional
    mask : ndarray of bool, shape (X, Y, Z)
    voxel_size_mm : 3 floats, mm
    echo_times_s : E floats, s
    sigma_mm : float
        Smoothing of the offset, mm.
    unwrap3d : callable, optional
        ``unwrap3d(phase, mask, magnitude) -> unwrapped`` for the echo difference; default
        the region-growing unwrapper.
    workers : int
        Threads for the FFT smoothing.

    Returns
    -------
    offset_rad : ndarray of float32, shape (X, Y, Z)
        Offset in [-pi, pi) inside the mask, 0 outside.
    """
    phase = as_4d(phase_rad, "phase_rad")
    mask, voxel = check_geometry(phase.shape[:3], mask, voxel_size_mm)
    if phase.shape[3] < 2:
        raise ValueError("MCPC-3D-S needs at least two echoes")
    te = np.asarray(echo_times_s, dtype=float)
    box = bounding_box(mask)
    m = np.ascontiguousarray(mask[box])
    p1 = np.ascontiguousarray(phase[box + (0,)], np.float32)
    p2 = np.ascontiguousarray(phase[box + (1,)], np.float32)
    mag = None
    if magnitude is not None:
        magnitude = as_4d(magnitude, "magnitude")
        mag = np.sqrt(np.abs(magnitude[box + (0,)] * magnitude[box + (1,)])).astype(np.float32)
    offset_box, _ = _offset_in_box(p1, p2, mag, m, voxel, te, sigma_mm, unwrap3d, workers)
    offset = np.zeros(mask.shape, np.float32)
    offset[box] = offset_box
    return offset


def _offset_in_box(p1, p2, mag, mask, voxel, te, sigma_mm, unwrap3d, workers):
    delta = wrap_to_pi(p2 - p1)
    if unwrap3d is None:
        delta_unw, labels, _ = unwrap_spatial(delta, mask, magnitude=mag)
        _subtract_component_turns(delta_unw, labels, weights=mag)
    else:
        delta_unw = np.asarray(unwrap3d(delta, mask, mag), np.float32)
    raw = p1 - delta_unw * np.float32(te[0] / (te[1] - te[0]))
    weights = mask.astype(np.float32) if mag is None else mag
    offset = smooth_phasors(raw, weights, mask, sigma_mm, voxel, workers=workers)
    return offset, delta_unw


_EMPTY4 = np.zeros((0, 0, 0, 0), np.float32)


@numba.njit(cache=True, inline="always")
def _wrap32(v):
    """``wrap_to_pi`` of one float32 value, the same float32 operations."""
    pi32 = np.float32(np.pi)
    two_pi32 = np.float32(2.0 * np.pi)
    a = np.float32(v + pi32)
    r = np.float32(np.fmod(a, two_pi32))
    if r != 0 and r < 0:
        r = np.float32(r + two_pi32)
    r = np.float32(r - pi32)
    if r >= pi32:
        r = np.float32(r - two_pi32)
    return r


@numba.njit(parallel=True, cache=True)
def _corrected_echo(phase, origin, offset, n, use_offset, out):
    """Echo ``n`` of the box at ``origin``, minus the offset and wrapped (when used)."""
    nx, ny, nz = out.shape
    x0, y0, z0 = origin[0], origin[1], origin[2]
    for x in numba.prange(nx):
        for y in range(ny):
            for z in range(nz):
                v = phase[x0 + x, y0 + y, z0 + z, n]
                if use_offset:
                    v = _wrap32(np.float32(v - offset[x, y, z]))
                out[x, y, z] = v


@numba.njit(cache=True, inline="always")
def _fit_weight(mag, use_mag, te2, X, Y, Z, n):
    """Weight of echo ``n`` in the running field fit: |m|^2 TE^2 (TE^2 without magnitude)."""
    if use_mag:
        a = mag[X, Y, Z, n]
        return np.float32(np.float32(a * a) * te2[n])
    return np.float32(te2[n])


@numba.njit(cache=True, inline="always")
def _store_turns(phase, X, Y, Z, n, corrected_unw, offset, out):
    """The input phase plus the multiple of 2*pi that brings it to ``corrected + offset``."""
    two_pi32 = np.float32(2.0 * np.pi)
    original = phase[X, Y, Z, n]
    turns = np.float32(np.round(np.float32(np.float32(np.float32(corrected_unw + offset)
                                                      - original) / two_pi32)))
    out[X, Y, Z, n] = np.float32(original + np.float32(two_pi32 * turns))


@numba.njit(parallel=True, cache=True)
def _temporal_unwrap(phase, mag, origin, m, offset, template_unw, te, te2, t, order,
                     use_offset, out):
    """Unwrap every echo but the template against the field of the echoes done so far.

    Per voxel: the field is the weighted mean (weights magnitude^2 TE^2) of the per-echo
    estimates ``psi_n / TE_n``; the next echo (offset removed) gets the multiple of 2*pi that
    brings it nearest the phase that field predicts. Every echo is written to ``out`` as its
    input phase plus a multiple of 2*pi.
    """
    nx, ny, nz = m.shape
    x0, y0, z0 = origin[0], origin[1], origin[2]
    use_mag = mag.size > 0
    two_pi32 = np.float32(2.0 * np.pi)
    for x in numba.prange(nx):
        for y in range(ny):
            for z in range(nz):
                if not m[x, y, z]:
                    continue
                X, Y, Z = x0 + x, y0 + y, z0 + z
                off = offset[x, y, z]
                psi_t = template_unw[x, y, z]
                _store_turns(phase, X, Y, Z, t, psi_t, off, out)
                w = _fit_weight(mag, use_mag, te2, X, Y, Z, t)
                numerator = np.float32(np.float32(w * psi_t) / te[t])
                denominator = w
                for k in range(order.size):
                    n = order[k]
                    omega = np.float32(0.0)
                    if denominator > 0:
                        omega = np.float32(numerator / denominator)
                    predicted = np.float32(omega * te[n])
                    psi = phase[X, Y, Z, n]
                    if use_offset:
                        psi = _wrap32(np.float32(psi - off))
                    turns = np.float32(np.round(np.float32(np.float32(predicted - psi)
                                                           / two_pi32)))
                    psi = np.float32(psi + np.float32(two_pi32 * turns))
                    _store_turns(phase, X, Y, Z, n, psi, off, out)
                    w = _fit_weight(mag, use_mag, te2, X, Y, Z, n)
                    numerator = np.float32(numerator + np.float32(np.float32(w * psi) / te[n]))
                    denominator = np.float32(denominator + w)


def unwrap_romeo_full(phase_rad: np.ndarray, magnitude: np.ndarray | None, mask: np.ndarray,
                      voxel_size_mm: Sequence[float], echo_times_s: Sequence[float], *,
                      phase_offset: Literal["mcpc3ds", "none"] = "mcpc3ds",
                      offset_sigma_mm: PositiveFloat = 8.0, template_echo: NonNegativeInt = 0,
                      workers: int = -1) -> RomeoResult:
    """Unwrap multi-echo phase exactly and consistently; also return offset and quality.

    Parameters
    ----------
    phase_rad : ndarray, shape (X, Y, Z, E) or (X, Y, Z)
        Wrapped phase, rad (see ``qsmiron.recon.phase.phase_to_radians``).
    magnitude : ndarray, same shape, optional
        Magnitude (any units); used in the edge quality and in the temporal weights.
    mask : ndarray of bool, shape (X, Y, Z)
        Voxels to unwrap.
    voxel_size_mm : 3 floats, mm
        Used for the offset smoothing.
    echo_times_s : E floats, s
        Increasing echo times.
    phase_offset : {"mcpc3ds", "none"}
        Estimate and remove an echo-independent offset (needs >= 2 echoes), or assume it is
        already removed (the temporal unwrapping then assumes phase proportional to TE).
    offset_sigma_mm : float
        Gaussian smoothing of the offset, mm.
    template_echo : int
        Echo unwrapped spatially (0-based); the others are unwrapped temporally.
    workers : int
        Threads for the FFT smoothing.

    Returns
    -------
    RomeoResult
    """
    phase = as_4d(phase_rad, "phase_rad")
    n_echoes = phase.shape[3]
    mask, voxel = check_geometry(phase.shape[:3], mask, voxel_size_mm)
    te = np.asarray(echo_times_s, dtype=float).reshape(-1)
    if te.size != n_echoes:
        raise ValueError(f"{te.size} echo times for {n_echoes} echoes")
    if n_echoes > 1 and np.any(np.diff(te) <= 0):
        raise ValueError("echo times must increase")
    if phase_offset not in PHASE_OFFSET_METHODS:
        raise ValueError(f"phase_offset must be one of {PHASE_OFFSET_METHODS}")
    if not 0 <= template_echo < n_echoes:
        raise ValueError(f"template_echo {template_echo} out of range for {n_echoes} echoes")
    mag4 = None if magnitude is None else as_4d(magnitude, "magnitude")
    if mag4 is not None and mag4.shape != phase.shape:
        raise ValueError(f"magnitude shape {mag4.shape} differs from phase shape {phase.shape}")

    box = bounding_box(mask)
    m = np.ascontiguousarray(mask[box])
    origin = np.array([b.start for b in box], np.int64)
    phase32 = np.asarray(phase, np.float32)
    mag32 = None if mag4 is None else np.asarray(mag4, np.float32)
    echo = lambda array, n: np.ascontiguousarray(array[box + (n,)], np.float32)  # noqa: E731
    info: dict[str, Any] = {"template_echo": template_echo, "phase_offset": phase_offset}

    use_offset = phase_offset == "mcpc3ds" and n_echoes >= 2
    if use_offset:
        mag_pair = None if mag4 is None else np.sqrt(np.abs(echo(mag32, 0) * echo(mag32, 1)))
        offset_box, delta_unw = _offset_in_box(echo(phase32, 0), echo(phase32, 1), mag_pair, m,
                                               voxel, te, offset_sigma_mm, None, workers)
        info["offset_sigma_mm"] = offset_sigma_mm
    else:
        offset_box = np.zeros(m.shape, np.float32)
        delta_unw = None

    def corrected(n: int) -> np.ndarray:
        values = np.empty(m.shape, np.float32)
        _corrected_echo(phase32, origin, offset_box, n, use_offset, values)
        return values

    # Spatial unwrapping of the template echo.
    t = template_echo
    other = t + 1 if t + 1 < n_echoes else (t - 1 if t > 0 else None)
    template = corrected(t)
    costs = _costs(template, m,
                   phase2=None if other is None else corrected(other),
                   ratio=1.0 if other is None else te[t] / te[other],
                   magnitude=None if mag4 is None else echo(mag32, t))
    template_unw, labels, quality = _grow_unwrap(template, m, costs)
    del costs
    reference = None if delta_unw is None else delta_unw * np.float32(te[t] / (te[1] - te[0]))
    _subtract_component_turns(template_unw, labels, reference,
                              weights=None if mag4 is None else echo(mag32, t))
    info["n_components"] = int(labels.max())
    del reference, delta_unw

    # Temporal unwrapping of the other echoes, nearest to the template first.
    unwrapped = np.zeros(phase.shape, np.float32)
    order = np.array(list(range(t + 1, n_echoes)) + list(range(t - 1, -1, -1)), np.int64)
    _temporal_unwrap(phase32, _EMPTY4 if mag4 is None else mag32, origin, m, offset_box,
                     template_unw, te.astype(np.float32), (te ** 2).astype(np.float32), t,
                     order, use_offset, unwrapped)
    offset = np.zeros(mask.shape, np.float32)
    offset[box] = offset_box
    quality_full = np.zeros(mask.shape, np.float32)
    quality_full[box] = quality
    if phase_rad.ndim == 3:
        unwrapped = unwrapped[..., 0]
    return RomeoResult(unwrapped, offset, quality_full, info)


def unwrap_romeo(phase_rad: np.ndarray, magnitude: np.ndarray | None, mask: np.ndarray,
                 voxel_size_mm: Sequence[float], echo_times_s: Sequence[float], *,
                 phase_offset: Literal["mcpc3ds", "none"] = "mcpc3ds",
                 offset_sigma_mm: float = 8.0, template_echo: int = 0,
                 workers: int = -1) -> np.ndarray:
    """Unwrap multi-echo phase exactly and consistently across echoes (ROMEO-like).

    The same as ``unwrap_romeo_full`` but returns only the unwrapped phase (rad, shape of the
    input, input + 2*pi*k inside the mask, 0 outside). See the module docstring for the
    method and ``unwrap_romeo_full`` for the parameters.
    """
    return unwrap_romeo_full(phase_rad, magnitude, mask, voxel_size_mm, echo_times_s,
                             phase_offset=phase_offset, offset_sigma_mm=offset_sigma_mm,
                             template_echo=template_echo, workers=workers).unwrapped_rad
