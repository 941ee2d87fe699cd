"""The odd/even echo phase difference of a bipolar readout: estimated, reported and removed.

A bipolar multi-echo GRE reads the even echoes with the readout gradient reversed. Gradient
delays and eddy currents then shift the even echoes' k-space against the odd ones', which
adds a phase to the even echoes that is constant plus linear in space (Li, Chang, Liu et al.,
"Phase-corrected bipolar gradients in multi-echo gradient-echo sequences for quantitative
susceptibility mapping", MAGMA 2015;28:347-355). The phase no longer grows linearly with the
echo time, and the echo fit turns the alternation into field errors: on family heads h01 and
h03 of ``benchmarks/bench_bgremove.py`` an even-echo phase of 0.3 rad plus a ramp of 2 rad
across the field of view took the Chimap NRMSE from 32.4 to 60.5 % and from 42.5 to 51.2 %.
The consensus (Magn Reson Med 2024;91:1834) asks for a monopolar readout and for the readout
polarity in the methods; exports rarely record it, so it is read from the data.

The estimate, as Li et al.: for three echoes at equal spacing the second difference
``phi_k - 2 phi_k+1 + phi_k+2`` cancels the initial phase and the field and leaves twice the
even echoes' extra phase ``d``, with a sign that alternates from one run of three echoes to the
next (-2 d when the middle echo is an even one). It is formed on the complex echoes
(``z_k conj(z_k+1)^2 z_k+2``, no unwrapping) for every run, the runs' signs aligned and averaged
with binomial weights that cancel a phase bending with echo time (``_second_differences``), and
fitted by a constant plus a linear function of position. The fit is made without unwrapping
too: the gradient from the phase of neighbouring voxels' products along each axis, the
constant from the mean once the gradient is removed, then a weighted least-squares step on
what is left (now small). ``d`` is defined modulo pi; the branch kept, |d| < pi/2 at the
mask's centre, differs from any other by an alternation equivalent to a constant field offset,
which background field removal takes out.

Correcting subtracts ``d`` from the even echoes, leaving the odd ones as acquired.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from qsmiron.methods import Method
from qsmiron.recon.fourier import bounding_box
from qsmiron.recon.params import PositiveFloat
from qsmiron.recon.phase import wrap_to_pi

__all__ = ["OddEvenPhase", "estimate_odd_even_phase", "remove_odd_even_phase", "odd_even_linear",
           "none", "METHODS", "MIN_ECHOES", "DETECTION_RAD"]

MIN_ECHOES = 3
"""Three echoes give one second difference; with two, the alternation is the field."""
MIN_VOXELS = 1000
"""Fewer mask voxels than this are not checked (the fit uses a 2 mm lattice of them)."""
SPACING_TOLERANCE = 0.02
"""Echo spacings may differ by this fraction of their mean: the field's share of the second
difference is then at most 2 pi f 0.02 dTE (0.08 rad at 100 Hz, dTE 6 ms)."""
SUBLATTICE_MM = 2.0
"""The fit uses voxels this far apart (1 mm data: one in eight; 0.6 s -> 0.1 s on a 1 mm head)."""
DETECTION_RAD = 0.05
"""The alternation is corrected when the fitted even-echo phase reaches this size anywhere in
the mask. Monopolar data give far less: at most 0.0007 rad on the 12 family heads, 0.022 rad on
the real 3-echo scan of the tests (``gre_real_small``; with three echoes a bending phase counts
fully). An uncorrected constant of 0.05 and 0.1 rad cost family head h03 0.9 and 1.2 points of
Chimap NRMSE and moved its VeP by 0.8 and 1.7 ppb (h01: 0.2 and 0.4 points): the level where
the alternation starts to matter, twice what monopolar data showed."""


@dataclass(frozen=True)
class OddEvenPhase:
    """The even echoes' extra phase ``d(r) = constant + gradient . (r - centre)``, rad.

    Positions are in mm along the voxel axes (voxel index times voxel size).
    """

    constant_rad: float
    gradient_rad_per_mm: tuple[float, float, float]
    centre_mm: tuple[float, float, float]
    coherence: float
    """|sum of the second differences after the model| / sum of their moduli (1: every voxel's
    alternation is the model's; random phases give values near 0)."""

    def map_rad(self, shape: Sequence[int], voxel_size_mm: Sequence[float]) -> np.ndarray:
        """``d`` on a grid of ``shape`` (float32)."""
        out = np.full(tuple(shape[:3]), np.float32(self.constant_rad), np.float32)
        for axis, (n, dx) in enumerate(zip(shape[:3], voxel_size_mm)):
            positions = np.arange(n, dtype=np.float64) * float(dx) - self.centre_mm[axis]
            view = [1, 1, 1]
            view[axis] = n
            out += (self.gradient_rad_per_mm[axis] * positions).astype(np.float32).reshape(view)
        return out


def equal_spacing(echo_times_s: Sequence[float]) -> bool:
    spacings = np.diff(np.asarray(echo_times_s, float))
    return bool(np.all(np.abs(spacings - spacings.mean()) <= SPACING_TOLERANCE * spacings.mean()))


def _phasor(angle_rad: np.ndarray) -> np.ndarray:
    """exp(i angle) as complex64 (float32 sine and cosine: complex128 exponentials took most of
    the step's time)."""
    angle = np.asarray(angle_rad, dtype=np.float32)
    out = np.empty(angle.shape, np.complex64)
    out.real = np.cos(angle)
    out.imag = np.sin(angle)
    return out


def _complex_echoes(magnitude: np.ndarray, phase_rad: np.ndarray, box, inside: np.ndarray) -> list[np.ndarray]:
    """Each echo as complex64 over the mask's voxels."""
    # The second differences multiply four magnitudes: scaled to the first echo's largest
    # value, vendor scalings (up to 1e10 seen in float exports) cannot overflow float32.
    scale = np.float32(1.0 / max(float(np.abs(magnitude[box + (0,)][inside]).max()), 1e-30))
    return [np.asarray(magnitude[box + (echo,)][inside], dtype=np.float32) * scale
            * _phasor(phase_rad[box + (echo,)][inside]) for echo in range(phase_rad.shape[3])]


def _second_differences(magnitude: np.ndarray, phase_rad: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Per voxel, the binomially weighted mean of the runs' unit second differences
    ``z_k conj(z_k+1)^2 z_k+2`` (conjugated for odd k: angle -2 d), times their mean modulus.

    A phase that does not grow linearly with the echo time (a curvature ``c`` common to the
    runs, from tissue compartments or fat) adds ``+c`` to even runs and ``-c`` to odd ones:
    with equal weights five echoes (three runs) would read c/3 of it as alternation. Weights
    C(T-1, k) over the T runs cancel a curvature polynomial in k up to degree T-2 (from four
    echoes); with three echoes (one run) curvature and alternation cannot be told apart.
    """
    box = bounding_box(mask)
    inside = mask[box]
    echoes = _complex_echoes(magnitude, phase_rad, box, inside)
    runs = len(echoes) - 2
    weights = [math.comb(runs - 1, k) for k in range(runs)]
    total = np.zeros(int(inside.sum()), np.complex64)
    modulus = np.zeros(int(inside.sum()), np.float32)
    for k, weight in enumerate(weights):
        middle = np.conj(echoes[k + 1])
        term = echoes[k] * echoes[k + 2] * middle * middle
        size = np.abs(term)
        modulus += size / runs
        unit = np.divide(term, size, out=np.zeros_like(term), where=size > 0)
        total += np.float32(weight) * (np.conj(unit) if k % 2 else unit)
    total *= modulus / np.float32(sum(weights))
    out = np.zeros(mask.shape, np.complex64)
    out[box][inside] = total
    return out


def _fit_linear_phase(values: np.ndarray, mask: np.ndarray, voxel_size_mm: Sequence[float]):
    """Constant and gradient (rad, rad/mm) of the phase of ``values`` over ``mask``, unwrapped
    by construction; and the coherence of ``values`` once they are removed.

    The gradient comes from neighbours' products, so it must change the phase by less than pi
    between them: |grad d| < 0.78 rad/mm on the 2 mm lattice, against 0.01-0.05 rad/mm for the
    ramps of the family benchmark and of Li et al."""
    voxel = np.asarray(voxel_size_mm, float)
    gradient = np.zeros(3)
    for axis in range(3):
        lead = [slice(None)] * 3
        lag = [slice(None)] * 3
        lead[axis], lag[axis] = slice(1, None), slice(None, -1)
        pairs = mask[tuple(lead)] & mask[tuple(lag)]
        product = values[tuple(lead)][pairs] * np.conj(values[tuple(lag)][pairs])
        gradient[axis] = np.angle(product.sum(dtype=np.complex128)) / voxel[axis]
    index = np.nonzero(mask)
    relative = np.stack(index, axis=1) * voxel
    centre = relative.mean(axis=0)
    relative = (relative - centre).astype(np.float32)
    inside = values[index]
    weights = np.abs(inside)
    flattened = inside * _phasor(-(relative @ gradient.astype(np.float32)))
    constant = float(np.angle(flattened.sum(dtype=np.complex128)))
    residual = np.angle(flattened * _phasor(-constant))
    # One weighted least-squares step on the (now small) residual phase: normal equations.
    design = np.column_stack([np.ones(len(relative), np.float32), relative])
    normal = np.einsum("ni,n,nj->ij", design, weights, design, dtype=np.float64)
    rhs = np.einsum("ni,n->i", design, weights * residual, dtype=np.float64)
    step = np.linalg.lstsq(normal, rhs, rcond=None)[0]  # a mask one voxel thick leaves an axis unknown
    constant, gradient = constant + step[0], gradient + step[1:]
    explained = flattened * _phasor(-(step[0] + relative @ step[1:].astype(np.float32)))
    coherence = float(np.abs(explained.sum(dtype=np.complex128)) / max(float(weights.sum(dtype=np.float64)), 1e-30))
    return constant, gradient, tuple(float(c) for c in centre), coherence


def estimate_odd_even_phase(magnitude: np.ndarray, phase_rad: np.ndarray, mask: np.ndarray,
                            voxel_size_mm: Sequence[float]) -> OddEvenPhase:
    """Fit the even echoes' extra phase of a bipolar readout (echoes at equal spacing).

    Parameters
    ----------
    magnitude, phase_rad : ndarray, shape (X, Y, Z, E), E >= 3
        The echoes; phase wrapped, rad.
    mask : ndarray of bool, shape (X, Y, Z)
        Where the phase is signal (the brain mask).
    voxel_size_mm : sequence of 3 floats

    Returns
    -------
    OddEvenPhase
    """
    if phase_rad.shape[3] < MIN_ECHOES:
        raise ValueError(f"the odd/even phase needs at least {MIN_ECHOES} echoes")
    # Four parameters need no millions of voxels: every voxel of a lattice at least
    # SUBLATTICE_MM apart (positions stay those of the full grid: index times voxel size).
    stride = tuple(max(1, int(SUBLATTICE_MM // float(dx))) for dx in voxel_size_mm)
    lattice = tuple(slice(None, None, n) for n in stride)
    mask = np.asarray(mask, bool)[lattice]
    values = _second_differences(magnitude[lattice], phase_rad[lattice], mask)
    spacing = [float(dx) * n for dx, n in zip(voxel_size_mm, stride)]
    constant, gradient, centre, coherence = _fit_linear_phase(values, mask, spacing)
    # angle = -2 d: halve and negate; the constant's branch |d| < pi/2 (module docstring).
    return OddEvenPhase(constant_rad=float(-0.5 * np.angle(np.exp(1j * constant))),
                        gradient_rad_per_mm=tuple(float(-0.5 * g) for g in gradient),
                        centre_mm=centre, coherence=coherence)


def remove_odd_even_phase(phase_rad: np.ndarray, model: OddEvenPhase,
                          voxel_size_mm: Sequence[float]) -> np.ndarray:
    """The phase with ``d`` subtracted from the even echoes (2nd, 4th, ...), wrapped, float32."""
    return _subtract_from_even_echoes(phase_rad, model.map_rad(phase_rad.shape, voxel_size_mm))


def _subtract_from_even_echoes(phase_rad: np.ndarray, offset_rad: np.ndarray) -> np.ndarray:
    corrected = np.array(phase_rad, dtype=np.float32, copy=True)
    for echo in range(1, phase_rad.shape[3], 2):
        corrected[..., echo] = wrap_to_pi(corrected[..., echo] - offset_rad)
    return corrected


def odd_even_linear(magnitude: np.ndarray, phase_rad: np.ndarray, mask: np.ndarray,
                    voxel_size_mm: Sequence[float], echo_times_s: Sequence[float], *,
                    detection_rad: PositiveFloat = DETECTION_RAD) -> tuple[np.ndarray, dict[str, Any]]:
    """Estimate the odd/even phase of a bipolar readout and remove it when it is there.

    Parameters
    ----------
    magnitude, phase_rad : ndarray, shape (X, Y, Z, E)
    mask : ndarray of bool
    voxel_size_mm : sequence of 3 floats
    echo_times_s : sequence of float
    detection_rad : float
        The fitted even-echo phase must reach this size in the mask to be corrected.

    Returns
    -------
    phase_rad : ndarray
        Corrected (a new array) or the input itself.
    info : dict
        ``readout`` ("bipolar" when corrected, "monopolar" when no alternation was found, or
        "not checked" with the reason), the model's constant, gradient and largest value, the
        coherence; a warning when corrected.
    """
    n_echoes, n_voxels = phase_rad.shape[3], int(np.count_nonzero(mask))
    why = (f"{n_echoes} echoes; the odd/even phase needs {MIN_ECHOES}" if n_echoes < MIN_ECHOES
           else "echo spacing unequal" if not equal_spacing(echo_times_s)
           else f"a mask of {n_voxels} voxels (needs {MIN_VOXELS})" if n_voxels < MIN_VOXELS else None)
    if why:
        return phase_rad, {"readout": "not checked", "reason": why}
    model = estimate_odd_even_phase(magnitude, phase_rad, mask, voxel_size_mm)
    offset = model.map_rad(phase_rad.shape, voxel_size_mm)
    largest = float(np.abs(offset[np.asarray(mask, bool)]).max())
    info = {"even_echo_phase_rad": round(model.constant_rad, 4),
            "even_echo_gradient_rad_per_mm": [round(g, 5) for g in model.gradient_rad_per_mm],
            "largest_rad": round(largest, 4), "coherence": round(model.coherence, 3),
            "detection_rad": detection_rad}
    if largest < detection_rad:
        return phase_rad, {"readout": "monopolar", **info}
    warning = (f"the even echoes' phase differs from the odd echoes' by up to {largest:.2f} rad "
               f"(constant {model.constant_rad:+.2f} rad plus a linear ramp): a bipolar readout; "
               f"corrected (Li et al. 2015)")
    return _subtract_from_even_echoes(phase_rad, offset), {"readout": "bipolar", **info, "warnings": [warning]}


def none(magnitude: np.ndarray, phase_rad: np.ndarray, mask: np.ndarray, voxel_size_mm: Sequence[float],
         echo_times_s: Sequence[float]) -> tuple[np.ndarray, dict[str, Any]]:
    """No check of the readout: the phase as it is."""
    return phase_rad, {"readout": "not checked", "reason": "switched off"}


METHODS = (
    Method("odd_even_linear", odd_even_linear,
           label="odd/even echo phase correction for bipolar readouts (a constant plus a linear function of "
                 "position, fitted to the echoes' second differences; applied when it reaches detection_rad)",
           description="find the phase difference between odd and even echoes of a bipolar readout and "
                       "remove it from the even echoes",
           citation="Li J, Chang S, Liu T, et al. MAGMA 2015;28:347-355", doi="10.1007/s10334-014-0470-3"),
    Method("none", none, label="no readout polarity check", description="leave the echoes' phase as it is"),
)
"""Readout polarity methods (stage ``readout``)."""
