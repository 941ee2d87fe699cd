"""The arrays of one reconstruction, filled in stage by stage (``qsmiron.recon.stages``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from qsmiron import ppm_per_hz
from qsmiron.records.acquisition import ReadoutInfo
from qsmiron.records.relaxometry import ChiSeparationInfo, R2starInfo
from qsmiron.recon.chisep import ChiSeparation
from qsmiron.recon.echofit import EchoFit
from qsmiron.recon.fill import marked_without_data, scaled_noise
from qsmiron.recon.r2star import R2starFit
from qsmiron.recon.unwrap.romeo import RomeoResult


@dataclass
class ReconState:
    """The arrays of one reconstruction, filled in stage by stage.

    The acquisition comes first (never changed); each stage reads what earlier stages left
    and sets its own fields. A part of the chain can start from any point by filling the
    fields its first stage reads (``total_field`` starts at ``readout``, ``qsmiron invert`` at
    ``inversion``). Intermediate arrays a later stage no longer needs are dropped
    (set to None) to keep memory at about two copies of the 4D data.
    """

    voxel_size_mm: tuple[float, float, float]
    magnitude: np.ndarray | None = None
    """(X, Y, Z, E) float32, echoes last."""
    phase: np.ndarray | None = None
    """(X, Y, Z, E) as stored (vendor integers or radians)."""
    echo_times_s: tuple[float, ...] | None = None
    b0_direction: np.ndarray | None = None
    """Unit B0 vector, voxel axes (needed from background field removal on)."""
    field_strength_t: float | None = None
    """B0, tesla (needed from background field removal on)."""
    given_mask: np.ndarray | None = None
    """The user's brain mask (used as it is, never refined)."""
    brain_probability: np.ndarray | None = None
    """A template's brain on this grid (0..1), registered to the magnitude by the pipeline
    (``qsmiron.register.brainmask``), for the mask methods that take it."""
    brain_probability_notes: dict[str, Any] = field(default_factory=dict)
    """How ``brain_probability`` was obtained (its seconds, checks), or why there is none."""
    brain_probability_source: Callable[[], tuple[np.ndarray | None, dict[str, Any]]] | None = None
    """Gives ``brain_probability`` and its notes when the mask method asks, once the magnitude
    mask is made: a registration running in another thread meanwhile overlaps the phase
    scaling and the threshold mask (``qsmiron.pipeline.single``)."""
    reference_mask: np.ndarray | None = None
    r2_per_s: np.ndarray | None = None
    """A measured (spin-echo) R2 map, s^-1, for chi-separation."""
    phase_rad: np.ndarray | None = None
    """phase: wrapped phase in [-pi, pi), rad."""
    mask: np.ndarray | None = None
    """mask: the brain mask."""
    r2star: R2starFit | None = None
    """r2star: R2*, T2*, S0 and the valid-fit mask (None when not mapped)."""
    r2star_info: R2starInfo | None = None
    """r2star: how they were made, or why not."""
    readout_info: ReadoutInfo | None = None
    """readout: the polarity found in the phase (the phase itself corrected when bipolar)."""
    unwrapped: RomeoResult | None = None
    """unwrap: unwrapped phase, phase offset and edge quality."""
    quality: np.ndarray | None = None
    """unwrap: the edge quality, kept for the mask refinement."""
    fit: EchoFit | None = None
    """echo_fit: field, noise and residual maps over the brain mask."""
    field_mask: np.ndarray | None = None
    """mask_refinement: the brain mask where the phase is reliable."""
    field_hz: np.ndarray | None = None
    """mask_refinement: total field, Hz, zero outside ``field_mask``."""
    noise_hz: np.ndarray | None = None
    """mask_refinement: field noise (SD), Hz, zero outside ``field_mask``."""
    field_misfit: np.ndarray | None = None
    """mask_refinement: voxels of ``field_mask`` whose phase the echo fit could not explain
    (``EchoFit.misfit``); their field counts as unknown (``data_noise_ppm``)."""
    misfit_factor: np.ndarray | None = None
    """mask_refinement: the field's SD over the noise model's, from the fit's local residuals
    (``echofit.local_misfit_factor``; the inversion's data weights, ``inversion_noise_ppm``)."""
    local_ppm: np.ndarray | None = None
    """background: local field, ppm of B0, zero outside ``local_mask``."""
    local_mask: np.ndarray | None = None
    """background: the mask left after the erosion of background field removal."""
    chi_ppm: np.ndarray | None = None
    """inversion, reference: susceptibility, ppm."""
    inversion_alpha: float | None = None
    """inversion: the TV weight (ppm mm) wtv chose, which chi-separation shares."""
    separation: ChiSeparation | None = None
    """chisep: paramagnetic and diamagnetic maps (None when not made)."""
    chisep_info: ChiSeparationInfo | None = None
    """chisep: how they were made, or why not."""

    @property
    def to_ppm(self) -> np.float32:
        """Hz -> ppm of B0 at this field strength."""
        return np.float32(ppm_per_hz(self.field_strength_t))

    def combined_magnitude(self) -> np.ndarray:
        """Root sum of squares of the echoes (chi-separation's edge weights)."""
        return np.sqrt(np.sum(np.square(self.magnitude, dtype=np.float32), axis=3))

    def edge_magnitude(self) -> np.ndarray:
        """The last echo's magnitude, whose edges the inversions keep: the most T2*-weighted echo
        shows where iron and myelin, the sources of susceptibility, change; the echoes' root sum
        of squares is mostly the first echoes' contrast (``invert.wtv.DEFAULT_EDGE_FRACTION``)."""
        return np.asarray(self.magnitude[..., -1], dtype=np.float32)

    def edge_magnitude_text(self) -> str:
        """Which image ``edge_magnitude`` is, for the record."""
        n_echoes = self.magnitude.shape[3]
        if n_echoes == 1:
            return "the magnitude given (one echo)"
        echo_time = f", TE {1e3 * self.echo_times_s[-1]:g} ms" if self.echo_times_s else ""
        return f"the last echo's (of {n_echoes}{echo_time})"

    def data_noise_ppm(self) -> np.ndarray | None:
        """The field noise (SD, ppm) the fits weight by: infinite, i.e. weight 0, where the
        echo fit failed (``field_misfit``), so background removal and inversion use no field
        there but still place susceptibility there. The noise map written out stays finite."""
        if self.noise_hz is None:
            return None
        return marked_without_data(self.noise_hz * self.to_ppm, self.field_misfit)

    def inversion_noise_ppm(self) -> np.ndarray | None:
        """``data_noise_ppm`` times ``misfit_factor``, for the inversion only (background removal
        keeps the noise model's SD: see ``qsmiron.recon.invert``)."""
        noise = self.data_noise_ppm()
        return None if noise is None else scaled_noise(noise, self.misfit_factor)

    def mask_notes(self, mask: np.ndarray) -> dict[str, Any]:
        """Size of a mask: voxels and volume (mL)."""
        n = int(np.count_nonzero(mask))
        return {"n_voxels": n, "volume_ml": round(n * float(np.prod(self.voxel_size_mm)) / 1000.0, 3)}
