"""Parameters of the reconstruction, one block per stage, with principled defaults.

Each block names the method (one of the stage's registry) and its parameters. Defaults
follow the QSM consensus recommendations (Magn Reson Med 2024;91:1834), not one dataset.
"""

from __future__ import annotations

from typing import Literal

from pydantic import AliasChoices, Field, field_validator

from qsmiron.settings_base import Settings


class PhaseSettings(Settings):
    """Phase preparation (``qsmiron.recon.phase.phase_to_radians``)."""

    # "auto" recognises radians and power-of-two vendor levels (12-bit, Siemens -4096..4094)
    # from the data themselves; force "radians" or "integer" only when detection refuses.
    scaling: Literal["auto", "radians", "integer"] = "auto"


class MaskSettings(Settings):
    """Brain mask from magnitude (``qsmiron.recon.mask.brain_mask``, these are its keywords)."""

    method: Literal["magnitude"] = "magnitude"
    # Otsu separates background noise from the head; capping it at a quarter of the bright
    # tissue level (99th percentile) keeps all tissue when the field of view has no background.
    threshold_cap: float = Field(0.25, gt=0, le=1)
    # A 2 mm opening cuts skull/scalp bridges thinner than ~4 mm without eroding cortex.
    opening_mm: float = Field(2.0, ge=0)
    fill_holes: bool = True
    # The refinement of this mask by phase quality is applied after the echo fit and its
    # parameters live in EchoFitSettings (refine_*).
    # Whole-head scans: intersect with the template's brain registered to the magnitude
    # (affine at 4 mm, done by the file-level pipeline; skipped with a stated reason for
    # crops and slabs or when no template is installed). The brain is probability >= threshold
    # grown by the margin, which covers the misfit of an affine (recon.mask docstring).
    template_brain: bool = True
    template_threshold: float = Field(0.5, gt=0, lt=1)
    template_margin_mm: float = Field(4.0, ge=0)

    def method_params(self) -> dict:
        """Keyword parameters of ``brain_mask`` (the template keys are the pipeline's)."""
        return {"threshold_cap": self.threshold_cap, "opening_mm": self.opening_mm,
                "fill_holes": self.fill_holes}


class UnwrapSettings(Settings):
    """Phase unwrapping (``qsmiron.recon.unwrap``)."""

    # ROMEO-like region growing is exact; Laplacian unwrapping alters the field near strong
    # sources (consensus: prefer exact unwrapping).
    method: Literal["romeo", "laplacian"] = "romeo"
    # MCPC-3D-S removes the echo-independent phase offset before temporal unwrapping; "none"
    # when the offset is known to be removed already.
    phase_offset: Literal["mcpc3ds", "none"] = "mcpc3ds"
    # The offset varies over centimetres (coil sensitivities): 8 mm suppresses noise while
    # the echo fit corrects what is left.
    offset_sigma_mm: float = Field(8.0, gt=0)
    # The first echo has the fewest wraps and the most signal: unwrapped spatially; the others
    # temporally against it.
    template_echo: int = Field(0, ge=0)
    # Zero padding of the Laplacian's FFT box, fraction of its size per axis.
    laplacian_pad_fraction: float = Field(0.5, ge=0)


class EchoFitSettings(Settings):
    """Weighted least-squares fit of the field over echoes (``qsmiron.recon.echofit``)."""

    # "smooth": per-voxel offset fitted then smoothed (the field keeps nearly the noise of a
    # fit through the origin, and a residual offset is not mistaken for field); "fit": free
    # offset per voxel (unbiased, ~2.3x noisier); "none": offset already removed.
    offset: Literal["smooth", "fit", "none"] = "smooth"
    # Smoothing of the fitted offset: 2 mm averages a few hundred voxels (offset noise
    # negligible) while the curvature bias, growing with sigma^2, stays small.
    offset_sigma_mm: float = Field(2.0, gt=0)
    # Mask refinement by phase quality after the fit (never for a user mask): peel edge voxels
    # whose field noise exceeds 3x the brain median (SNR a third of typical tissue or worse),
    refine_mask: bool = True
    refine_noise_factor: float = Field(3.0, gt=1)
    # whose mean ROMEO edge quality is poor (phase incoherent with its neighbours),
    refine_min_quality: float = Field(0.25, ge=0, lt=1)
    # or whose echo-fit residual has a 1-in-10^4 chance under Gaussian noise;
    refine_chi2_p: float = Field(1e-4, gt=0, lt=1)
    # then a 1 mm opening smooths the peeled edge.
    refine_opening_mm: float = Field(1.0, ge=0)


class BackgroundSettings(Settings):
    """Background field removal (``qsmiron.recon.bgremove``); each method reads its own keys."""

    # Default iSMV: see the reasoning and measurements in qsmiron.recon.bgremove.
    method: Literal["vsharp", "pdf", "resharp", "ismv"] = "ismv"
    # V-SHARP: None = 18 x the smallest voxel down to 2 x the largest (Wu et al. 2012).
    vsharp_radii_mm: list[float] | None = None
    vsharp_threshold: float = Field(0.05, gt=0, lt=1)
    # PDF: 10 mm of room for outside sources; CGLS until an iteration changes the fitted
    # background by under 1 % of the residual (the local field).
    pdf_pad_mm: float = Field(10.0, ge=0)
    pdf_tol: float = Field(1e-2, gt=0, lt=1)
    pdf_max_iter: int = Field(500, ge=1)
    # RESHARP / iSMV: None = the method's default ball (RESHARP: 4 mm or twice the largest
    # voxel; iSMV: twice the largest voxel); RESHARP lambda by L-curve.
    smv_radius_mm: float | None = Field(None, gt=0)
    resharp_lambda: float | Literal["lcurve"] = "lcurve"

    def method_params(self) -> dict:
        """Keyword parameters for ``remove_background`` with the chosen method."""
        if self.method == "vsharp":
            return {"radii_mm": self.vsharp_radii_mm, "threshold": self.vsharp_threshold}
        if self.method == "pdf":
            return {"pad_mm": self.pdf_pad_mm, "tol": self.pdf_tol, "max_iter": self.pdf_max_iter}
        if self.method == "resharp":
            return {"radius_mm": self.smv_radius_mm, "regularisation": self.resharp_lambda}
        return {"radius_mm": self.smv_radius_mm}


class InversionSettings(Settings):
    """Dipole inversion (``qsmiron.recon.invert``); each method reads its own keys.

    ``alpha`` is the TV weight of ``tv``/``wtv`` (ppm x mm) or the rule that picks it per
    dataset ("auto": the discrepancy principle with the field's total inconsistency with the
    dipole model, noise and model errors, measured on the magic cone; "lcurve"; "discrepancy"
    with the noise only); ``tikhonov_alpha`` likewise for closed-form Tikhonov ("auto" there:
    the larger of the L-curve corner and the noise discrepancy weight). The default
    ``wtv_bregman`` needs no weight: Bregman iterations stopped by the same discrepancy set
    its regularisation (``bregman_*`` keys: iterations per step, cap on the steps).
    ``method = "medi"`` (the old name of ``wtv``) is accepted and mapped to ``wtv``.
    """

    method: str = "wtv_bregman"
    alpha: float | Literal["auto", "lcurve", "discrepancy"] = "auto"
    max_iter: int = Field(30, ge=1)
    tol: float = Field(1e-2, gt=0)
    # Share of mask voxels treated as magnitude edges by wtv/wtv_bregman (MEDI's 30 %).
    edge_fraction: float = Field(0.3, ge=0, lt=1,
                                 validation_alias=AliasChoices("edge_fraction", "medi_edge_fraction"))
    bregman_inner_iterations: int = Field(7, ge=1)
    bregman_max_outer: int = Field(8, ge=1)
    tkd_threshold: float = Field(0.19, gt=0, lt=2.0 / 3.0)
    tikhonov_alpha: float | Literal["lcurve", "discrepancy", "auto"] = "auto"
    # The identity penalty bounds the gain at every frequency; a gradient penalty vanishes at
    # the lowest frequencies, where the zero-filled outside of the mask is most inconsistent.
    tikhonov_regulariser: Literal["gradient", "norm"] = "norm"
    pad_mm: float = Field(16.0, ge=0)

    @field_validator("method")
    @classmethod
    def _known_method(cls, value: str) -> str:
        from qsmiron.recon.invert import resolve_method

        return resolve_method(value)

    def method_params(self) -> dict:
        """Keyword parameters for ``invert`` with the chosen method."""
        common = {"pad_mm": self.pad_mm}
        if self.method == "tkd":
            return {**common, "threshold": self.tkd_threshold}
        if self.method == "tikhonov":
            return {**common, "alpha": self.tikhonov_alpha, "regulariser": self.tikhonov_regulariser}
        if self.method == "rts":
            return common
        if self.method == "wtv_bregman":
            return {**common, "edge_fraction": self.edge_fraction,
                    "inner_iterations": self.bregman_inner_iterations, "max_outer": self.bregman_max_outer}
        params = {**common, "alpha": self.alpha, "max_iter": self.max_iter, "tol": self.tol}
        if self.method == "wtv":
            params["edge_fraction"] = self.edge_fraction
        return params


class ReferenceSettings(Settings):
    """Referencing: whole-brain mean (consensus) or the mean of a reference mask."""

    method: Literal["mean", "mask"] = "mean"


class ReconSettings(Settings):
    """All reconstruction parameters."""

    phase: PhaseSettings = Field(default_factory=PhaseSettings)
    mask: MaskSettings = Field(default_factory=MaskSettings)
    unwrap: UnwrapSettings = Field(default_factory=UnwrapSettings)
    echo_fit: EchoFitSettings = Field(default_factory=EchoFitSettings)
    background: BackgroundSettings = Field(default_factory=BackgroundSettings)
    inversion: InversionSettings = Field(default_factory=InversionSettings)
    reference: ReferenceSettings = Field(default_factory=ReferenceSettings)
