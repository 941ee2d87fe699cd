"""qsm-forward's GRE signal model, in our own code (qsm-forward is GPL: tests only).

qsm-forward (A. Stewart, github.com/astewartau/qsm-forward): the signal on a fine grid,
cropped in k-space to the acquisition's resolution, with complex Gaussian noise scaled to
the peak signal. ``tests/simulate/test_simulate_heads.py`` checks each function against the
qsm-forward function it mirrors.
"""

from __future__ import annotations

import numpy as np
import scipy.fft

QSM_FORWARD_GAMMA_MHZ_PER_T = 42.58
"""The gyromagnetic ratio qsm-forward's signal model uses (MHz/T)."""


def gre_signal(field_ppm: np.ndarray, m0: np.ndarray, r2star_per_s: np.ndarray, te_s: float, *,
               field_strength_t: float = 3.0, phase_offset_rad=0.0) -> np.ndarray:
    """Complex GRE signal ``m0 exp(-TE R2*) exp(i (2 pi gamma B0 field TE + offset))``.

    ``m0`` already holds the T1 weighting (qsm-forward's ``generate_signal`` with the
    steady-state factor folded in); gamma is qsm-forward's 42.58 MHz/T.
    """
    phase = (2.0 * np.pi * QSM_FORWARD_GAMMA_MHZ_PER_T * field_strength_t * te_s) * field_ppm
    phase = phase + phase_offset_rad
    return (m0 * np.exp(-te_s * r2star_per_s) * np.exp(1j * phase)).astype(np.complex64)


def crop_kspace(volume: np.ndarray, shape) -> np.ndarray:
    """Keep the central ``shape`` of the volume's spectrum (a lower-resolution acquisition).

    Values keep their scale (qsm-forward's ``crop_kspace`` with ``scaling=True`` and no
    Gibbs correction); complex in, complex out, real in, real out.
    """
    shape = tuple(int(n) for n in shape)
    if tuple(volume.shape) == shape:
        return volume
    spectrum = scipy.fft.fftshift(scipy.fft.fftn(volume, workers=-1))
    box = tuple(slice(m // 2 - s // 2, m // 2 - s // 2 + s) for m, s in zip(volume.shape, shape))
    out = scipy.fft.ifftn(scipy.fft.ifftshift(spectrum[box]), workers=-1)
    out *= np.prod(shape) / np.prod(volume.shape)
    if not np.iscomplexobj(volume):
        out = out.real
    return out.astype(np.complex64 if np.iscomplexobj(volume) else np.float32)


def add_complex_noise(signal: np.ndarray, peak_snr: float, rng: np.random.Generator) -> np.ndarray:
    """Complex Gaussian noise of SD ``max|signal| / peak_snr`` per channel (qsm-forward)."""
    sd = np.float32(np.abs(signal).max() / peak_snr)
    noise = rng.standard_normal(signal.shape, np.float32) + 1j * rng.standard_normal(signal.shape, np.float32)
    return (signal + sd * noise).astype(np.complex64)


def quadratic_phase_offset(m0: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """qsm-forward's receive phase: ``-pi`` times a quadratic about the magnitude's centre.

    Centre and widths are the centroid and standard deviations of ``|m0|`` (1-based voxel
    coordinates); the quadratic is scaled to span pi over the mask.
    """
    weights = np.abs(m0).astype(np.float64)
    total = weights.sum()
    coords = [np.arange(1, n + 1, dtype=np.float64) for n in m0.shape]
    centre, width = [], []
    for axis, c in enumerate(coords):
        profile = weights.sum(axis=tuple(a for a in range(3) if a != axis))
        mean = float((profile * c).sum() / total)
        centre.append(mean)
        width.append(float(np.sqrt((profile * (c - mean) ** 2).sum() / total)))
    grids = np.meshgrid(*[(c - m) / w for c, m, w in zip(coords, centre, width)], indexing="ij",
                        sparse=True)
    quadratic = grids[0] ** 2 + grids[1] ** 2 + grids[2] ** 2
    inside = quadratic[np.asarray(mask, dtype=bool)]
    return (-quadratic / (inside.max() - inside.min()) * np.pi).astype(np.float32)
