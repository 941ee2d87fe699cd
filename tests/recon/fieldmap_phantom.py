"""Multi-echo GRE test data from the independent `qsm-forward` model (helper, not a test file).

Imported by name by the field-mapping tests (``tests/recon`` is on pytest's pythonpath, see
pyproject.toml; with --import-mode=importlib sibling modules are not importable otherwise).

The phantom: qsm-forward's cylinder susceptibility phantom (a large cylinder holding smaller
ones), its dipole field for the given voxel size and B0 direction, plus a smooth background
field (second-order polynomial, as left by shimming) large enough that the last echo wraps
several times; qsm-forward's phase offset (smooth, spanning pi over the object); signal and
complex Gaussian noise from qsm-forward (``generate_signal``, ``add_noise`` at a peak SNR).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import qsm_forward

B0_T = 3.0
HZ_PER_PPM = B0_T * 42.58  # qsm-forward's own gyromagnetic ratio (generate_signal)
ECHO_TIMES_S = (0.004, 0.008, 0.012, 0.016, 0.020)


@dataclass
class Phantom:
    magnitude: np.ndarray       # (X, Y, Z, E)
    phase: np.ndarray           # wrapped, (X, Y, Z, E), rad
    true_phase: np.ndarray      # unwrapped truth incl. offset, (X, Y, Z, E), rad
    field_hz: np.ndarray        # true total field, Hz
    offset_rad: np.ndarray      # true phase offset, rad
    mask: np.ndarray            # the object (large cylinder)
    voxel_size_mm: tuple
    b0_direction: tuple
    echo_times_s: tuple
    noise_sigma: float          # std of the complex noise (each of real, imaginary)
    signal: np.ndarray          # noise-free complex signal


def make_phantom(n=48, *, voxel_size_mm=(1.0, 1.0, 1.0), b0_direction=(0.0, 0.0, 1.0),
                 echo_times_s=ECHO_TIMES_S, peak_snr=np.inf, background_hz=120.0,
                 with_offset=True, seed=0) -> Phantom:
    rng = np.random.default_rng(seed)
    shape = (n, n, n)
    chi = qsm_forward.generate_susceptibility_phantom(
        resolution=shape, background=0.0, large_cylinder_val=0.05,
        small_cylinder_radii=[4, 3, 3, 2], small_cylinder_vals=[0.15, -0.1, 0.2, 0.25])
    mask = chi != 0
    local_ppm = qsm_forward.generate_field(chi, mask=mask, voxel_size=list(voxel_size_mm),
                                           B0_dir=list(b0_direction))
    # Smooth background field (ppm): linear + second order, in mm from the centre.
    axes = [(np.arange(k) - (k - 1) / 2.0) * d for k, d in zip(shape, voxel_size_mm)]
    x, y, z = np.meshgrid(*axes, indexing="ij")
    extent = max(n * d for d in voxel_size_mm) / 2.0
    u, v, w = x / extent, y / extent, z / extent
    background = background_hz / HZ_PER_PPM * (0.6 * u - 0.4 * v + 0.5 * w + 0.5 * (u * u - v * v)
                                                + 0.4 * u * w)
    field_ppm = local_ppm + background
    m0 = np.where(mask, 1.0, 0.0) * (0.8 + 0.2 * np.cos(u * 3.0) * np.cos(v * 2.0))
    m0 = np.where(chi > 0.1, m0 * 0.85, m0)
    r2star = np.where(mask, 25.0 + 60.0 * np.abs(chi), 0.0)
    offset = qsm_forward.generate_phase_offset(m0, mask, shape) if with_offset else np.zeros(shape)
    signals = []
    for te in echo_times_s:
        signals.append(qsm_forward.generate_signal(field_ppm, B0=B0_T, TR=1.0, TE=te,
                                                   flip_angle=90, phase_offset=offset,
                                                   R1=1.0, R2star=r2star, M0=m0))
    signal = np.stack(signals, axis=-1)
    if np.isfinite(peak_snr):
        noisy = qsm_forward.add_noise(signal, peak_snr=peak_snr, rng=rng)
        sigma = float(np.max(np.abs(signal)) / peak_snr)
    else:
        noisy = signal
        sigma = 0.0
    te = np.asarray(echo_times_s)
    true_phase = 2 * np.pi * field_ppm[..., None] * HZ_PER_PPM * te + offset[..., None]
    return Phantom(
        magnitude=np.abs(noisy).astype(np.float32),
        phase=np.angle(noisy).astype(np.float32),
        true_phase=true_phase.astype(np.float64),
        field_hz=(field_ppm * HZ_PER_PPM).astype(np.float64),
        offset_rad=np.asarray(offset, float),
        mask=mask,
        voxel_size_mm=tuple(voxel_size_mm),
        b0_direction=tuple(b0_direction),
        echo_times_s=tuple(echo_times_s),
        noise_sigma=sigma,
        signal=signal,
    )


def exact_fraction(unwrapped, truth, mask):
    """Per echo: the fraction of mask voxels equal to truth + 2*pi*k for the most common k."""
    fractions = []
    for e in range(truth.shape[-1]):
        turns = np.round((unwrapped[..., e][mask] - truth[..., e][mask]) / (2 * np.pi))
        values, counts = np.unique(turns, return_counts=True)
        k = values[np.argmax(counts)]
        fractions.append(float(np.mean(turns == k)))
    return np.array(fractions)
