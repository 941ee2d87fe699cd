"""The reconstruction stages, in order, and how each runs its chosen method on the arrays.

phase -> mask -> r2star -> readout -> unwrap -> echo_fit -> mask_refinement -> background -> inversion
-> chisep -> reference

Each stage is a ``qsmiron.methods.Stage``: its methods are declared in the stage's own module
(``qsmiron.recon.bgremove.METHODS``, ...), its settings block is generated from them
(``qsmiron.recon.settings``), and its ``run`` function here calls the chosen method on the
``ReconState``: it takes the arrays the method needs from the state, supplies the stage's
data inputs (a noise map, the magnitude) to the methods that accept them, puts the results
back and returns what the record needs (``StepResult``). ``run_stages`` times every stage and
turns its result into a ``qsmiron.records.StepInfo``.

Adding a stage is a ``Stage`` with its methods and a ``run`` function that reads and fills
fields of ``ReconState`` (add the fields it produces there), placed in ``RECON_STAGES``; the
settings, the record and the methods paragraph follow from it (``r2star`` and ``chisep`` are
examples). A stage the data cannot support (R2* from fewer than 3 echoes) is recorded as
method ``none`` with the reason, not raised. Pure: arrays in, arrays out; no files, no
printing.
"""

from __future__ import annotations

import functools
import inspect
import time
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from qsmiron.errors import InputError
from qsmiron.methods import Method, Stage
from qsmiron.records.acquisition import ReadoutInfo
from qsmiron.records.base import StepInfo
from qsmiron.records.relaxometry import ChiSeparationInfo, R2starInfo
from qsmiron.recon import (bgremove, bipolar, chisep, echofit, invert, mask as masking, phase, r2star, reference,
                           unwrap)
from qsmiron.recon.chisep import check_r2_map
from qsmiron.recon.dipole import forward_field
from qsmiron.recon.echofit import local_misfit_factor, misfit_factor_notes
from qsmiron.recon.plausibility import plausibility_warning
from qsmiron.recon.r2star import MIN_ECHOES
from qsmiron.recon.state import ReconState, ppm_per_hz  # noqa: F401 - re-exported: the chain's public names


@dataclass
class StepResult:
    """What a stage's ``run`` returns for the record (the arrays went into the state).

    ``method`` is set when the stage ran another method than the configured one (the user's
    mask instead of the automatic one); ``parameters`` when the parameters used differ from
    the configured ones.
    """

    notes: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    method: str | None = None
    parameters: dict[str, Any] | None = None
    seconds_before: float = 0.0
    """Wall time spent on the stage's inputs before the chain ran (the template registration of
    the mask), counted in the step's seconds."""
    cpu_seconds_before: float = 0.0


def accepts(method: Method, keyword: str) -> bool:
    """Whether the method's function takes ``keyword`` (a data input of its stage)."""
    return keyword in inspect.signature(method.function).parameters


def _details(info: dict[str, Any] | None) -> tuple[dict[str, Any], list[str]]:
    """A method's info dict split into notes and warnings."""
    notes = dict(info or {})
    warnings = [str(w) for w in notes.pop("warnings", None) or []]
    return notes, warnings


# ------------------------------------------------------------------------------------ runs
def run_phase(state: ReconState, method: Method, parameters: dict[str, Any]) -> StepResult:
    state.phase_rad, info = method.function(state.phase, **parameters)
    notes, warnings = _details(info)
    notes["detected_scaling"] = notes.pop("method", None)
    return StepResult(notes, warnings)


def run_mask(state: ReconState, method: Method, parameters: dict[str, Any]) -> StepResult:
    if state.given_mask is not None:
        given = MASK.method("given")
        state.mask = given.function(state.magnitude, state.voxel_size_mm, mask=state.given_mask)
        return StepResult(state.mask_notes(state.mask), method=given.name, parameters={})
    overlapped = state.brain_probability_source is not None
    inputs = {}
    if accepts(method, "brain_probability"):
        inputs["brain_probability"] = functools.partial(_resolved_brain_probability, state) if overlapped \
            else state.brain_probability
    mask, info = method.function(state.magnitude, state.voxel_size_mm, **parameters, **inputs)
    given = state.brain_probability is not None
    state.mask, state.brain_probability, state.brain_probability_source = np.asarray(mask, dtype=bool), None, None
    if not state.mask.any():
        raise InputError("the automatic brain mask is empty: the magnitude shows no head (give --mask)")
    notes, warnings = _details(info)
    result = StepResult({**state.mask_notes(state.mask), **notes}, warnings)
    if "template_brain" in notes:
        result = _with_template_notes(result, state.brain_probability_notes, given, parameters,
                                      counted=overlapped)
    return result


def _resolved_brain_probability(state: ReconState) -> np.ndarray | None:
    state.brain_probability, state.brain_probability_notes = state.brain_probability_source()
    return state.brain_probability


def _with_template_notes(result: StepResult, prior: dict[str, Any], given: bool,
                         parameters: dict[str, Any], *, counted: bool = False) -> StepResult:
    """The mask step with the pipeline's record of the template registration (``prior``).

    Its seconds count in the step, unless the step already ``counted`` them (it waited for a
    registration that ran alongside). Without a template brain the pipeline's reason (a crop,
    a failed registration) replaces the method's; the method that ran is ``magnitude_template``
    when the restriction was applied, else the magnitude mask alone with its own parameters.
    """
    method_notes = result.notes["template_brain"]
    template = {**prior, **method_notes} if given else {**method_notes, **prior}
    result.notes["template_brain"] = template
    if not counted:
        result.seconds_before = float(prior.get("seconds", 0.0) or 0.0)
        result.cpu_seconds_before = float(prior.get("cpu_seconds", 0.0) or 0.0)
    if template.get("used"):
        result.method = MASK.method("magnitude_template").name
    else:
        result.parameters = {k: v for k, v in parameters.items() if not k.startswith("template_")}
    return result


def run_readout(state: ReconState, method: Method, parameters: dict[str, Any]) -> StepResult:
    state.phase_rad, info = method.function(state.magnitude, state.phase_rad, state.mask, state.voxel_size_mm,
                                            state.echo_times_s, **parameters)
    result = StepResult(*_details(info))
    state.readout_info = ReadoutInfo.from_notes(result.notes)
    return result


R2_MAP_STEP = "r2_map"
"""``InputError.step`` of a problem with the user's R2 map (the pipeline names the file)."""


def _skipped(reason: str, *, stated: bool) -> StepResult:
    """A stage that made no map: method ``none`` with the reason (a warning when the user
    asked for the map and the data could not give it)."""
    return StepResult({"skipped": reason}, [reason] if stated else [], method="none", parameters={})


def run_r2star(state: ReconState, method: Method, parameters: dict[str, Any]) -> StepResult:
    n_echoes = state.magnitude.shape[3]
    fit = None
    if method.name != "none" and n_echoes < MIN_ECHOES:
        reason = (f"R2* not mapped: it needs at least {MIN_ECHOES} echoes (two parameters and a "
                  f"residual); this acquisition has {n_echoes}")
        state.r2star_info = R2starInfo(method="none", skipped=reason, echo_times_s=list(state.echo_times_s))
        return _skipped(reason, stated=True)
    if method.name != "none":
        fit = method.function(state.magnitude, state.mask, state.echo_times_s, **parameters)
    if fit is None:
        reason = "R2* not mapped: not asked for (recon.r2star.method = 'none')"
        state.r2star_info = R2starInfo(method="none", skipped=reason, echo_times_s=list(state.echo_times_s))
        return _skipped(reason, stated=False)
    state.r2star = fit
    if state.r2_per_s is not None:  # checked now, before the costly stages, not at chisep
        try:
            state.r2_per_s = check_r2_map(state.r2_per_s, fit.r2star_per_s, state.mask)
        except InputError as error:
            raise error.in_step(R2_MAP_STEP) from None
    info = fit.info
    valid = fit.r2star_per_s[fit.valid]
    state.r2star_info = R2starInfo(
        method=method.name, echo_times_s=list(state.echo_times_s), noise_sigma=info["noise_sigma"],
        noise_estimate=info["noise_estimate"], floor_factor=info["parameters"]["floor_factor"],
        n_voxels=info["n_voxels"], n_valid=info["n_valid"], masked=info["masked"],
        median_r2star_per_s=float(np.median(valid)) if valid.size else None)
    notes, warnings = _details(info)
    notes.pop("method", None)
    notes.pop("parameters", None)
    notes["r2star_mask"] = state.mask_notes(fit.valid)
    return StepResult(notes, warnings)


def _chisep_inputs(state: ReconState, method: Method, parameters: dict[str, Any]) -> tuple[dict, dict, str]:
    """The data inputs the method takes, the parameters with the TV weight resolved, and
    where that weight comes from."""
    available = {"field_strength_t": lambda: state.field_strength_t, "r2_per_s": lambda: state.r2_per_s,
                 "magnitude": state.combined_magnitude,
                 "noise_ppm": state.data_noise_ppm,
                 "r2star_sd_per_s": lambda: state.r2star.r2star_sd_per_s}
    inputs = {name: get() for name, get in available.items() if accepts(method, name)}
    parameters = dict(parameters)
    source = "given"
    if parameters.get("alpha") == "auto" and state.inversion_alpha is not None and accepts(method, "chi_ppm"):
        parameters["alpha"] = state.inversion_alpha
        inputs["chi_ppm"] = state.chi_ppm
        source = "the weight the dipole inversion (wtv) chose for this field; started from its map"
    return inputs, parameters, source


def run_chisep(state: ReconState, method: Method, parameters: dict[str, Any]) -> StepResult:
    if method.name != "none" and state.r2star is None:
        reason = f"chi-separation not done: it needs R2* ({state.r2star_info.skipped})"
        state.chisep_info = ChiSeparationInfo(method="none", skipped=reason)
        return _skipped(reason, stated=True)
    inputs, parameters, alpha_source = _chisep_inputs(state, method, parameters)
    r2star_map = state.r2star.r2star_per_s if state.r2star is not None else None
    result = method.function(state.local_ppm, r2star_map, state.local_mask, state.voxel_size_mm,
                             state.b0_direction, **parameters, **inputs)
    if result is None:
        reason = "chi-separation not done: not asked for (recon.chisep.method = 'none')"
        state.chisep_info = ChiSeparationInfo(method="none", skipped=reason)
        return _skipped(reason, stated=False)
    state.separation = result
    info = result.info
    r2prime, pseudo = info["r2prime"], info["r2prime"].get("pseudo_r2") or {}
    state.chisep_info = ChiSeparationInfo(
        method=method.name, approximation=info["approximation"], r2_source=r2prime["source"],
        pseudo_r2_intercept_per_s=pseudo.get("intercept_per_s"), pseudo_r2_slope=pseudo.get("slope"),
        pseudo_r2_model=pseudo.get("model"), pseudo_r2_reference=pseudo.get("reference"),
        dr_hz_per_ppm=info["parameters"]["dr_hz_per_ppm"], dr_source=info["dr_source"],
        field_strength_t=state.field_strength_t, alpha=info["parameters"]["alpha"],
        alpha_source=info["alpha_source"] if info.get("alpha_selection") else alpha_source,
        iterations=info["iterations"], converged=info["converged"])
    notes, warnings = _details(info)
    for key in ("method", "parameters", "alpha_source"):
        notes.pop(key, None)
    notes["inputs"] = sorted(inputs)
    return StepResult(notes, warnings, parameters=parameters)


def run_unwrap(state: ReconState, method: Method, parameters: dict[str, Any]) -> StepResult:
    parameters = dict(parameters)
    if "template_echo" in parameters:  # the first echo of a short series is the safe template
        parameters["template_echo"] = min(parameters["template_echo"], state.magnitude.shape[3] - 1)
    state.unwrapped = method.function(state.phase_rad, state.magnitude, state.mask, state.voxel_size_mm,
                                      state.echo_times_s, **parameters)
    state.phase_rad = None
    notes, warnings = _details(state.unwrapped.info)
    return StepResult(notes, warnings, parameters=parameters)


def run_echo_fit(state: ReconState, method: Method, parameters: dict[str, Any]) -> StepResult:
    unwrapped = state.unwrapped
    state.fit = method.function(unwrapped.unwrapped_rad, state.magnitude, state.mask, state.echo_times_s,
                                offset_rad=unwrapped.offset_rad, voxel_size_mm=state.voxel_size_mm,
                                field_strength_t=state.field_strength_t, **parameters)
    state.quality, state.unwrapped = unwrapped.quality, None
    notes, warnings = _details(state.fit.info)
    return StepResult(notes, warnings)


def run_mask_refinement(state: ReconState, method: Method, parameters: dict[str, Any]) -> StepResult:
    fit = state.fit
    result = StepResult()
    if state.given_mask is not None:  # the user's mask is used as given
        method = MASK_REFINEMENT.method("none")
        result = StepResult(method=method.name, parameters={})
        parameters = {}
    evidence = {"noise_hz": fit.noise_hz, "quality": state.quality, "reduced_chi2": fit.reduced_chi2,
                "dof": int(fit.info["dof"]), "misfit_tolerance_hz": float(fit.info.get("misfit_tolerance_hz", 0.0))}
    inputs = {name: value for name, value in evidence.items() if accepts(method, name)}
    refined, info = method.function(state.mask, state.voxel_size_mm, **parameters, **inputs)
    refined = np.asarray(refined, dtype=bool)
    if not refined.any():
        raise InputError("no voxel of the brain mask has a reliable phase (check the phase images, "
                         "or give a mask)")
    state.field_mask = refined
    state.field_hz = np.where(refined, fit.field_hz, 0).astype(np.float32)
    state.noise_hz = np.where(refined, fit.noise_hz, 0).astype(np.float32)
    state.field_misfit = None if fit.misfit is None else refined & fit.misfit
    usable = refined if state.field_misfit is None else refined & ~state.field_misfit
    if int(fit.info.get("dof", 0)) > 0:
        state.misfit_factor = local_misfit_factor(fit.reduced_chi2, usable)
        info = {**info, "misfit_factor": misfit_factor_notes(state.misfit_factor, usable)}
    state.fit = state.quality = None
    result.notes, result.warnings = _details(info)
    result.notes["mask_after_refinement"] = state.mask_notes(refined)
    if state.field_misfit is not None:
        result.notes["misfit_voxels_kept_without_field"] = int(state.field_misfit.sum())
    return result


def run_background(state: ReconState, method: Method, parameters: dict[str, Any]) -> StepResult:
    inputs = {"noise": state.data_noise_ppm()} if accepts(method, "noise") else {}
    local, eroded, info = method.function(state.field_hz * state.to_ppm, state.field_mask, state.voxel_size_mm,
                                          state.b0_direction, **parameters, **inputs)
    eroded = np.asarray(eroded, dtype=bool)
    if not eroded.any():
        raise InputError("nothing of the brain mask is left after background field removal (the mask "
                         "is too small or too thin)")
    state.local_mask = eroded
    state.local_ppm = np.where(eroded, local, 0).astype(np.float32)
    notes, warnings = _details(info)
    notes.update(noise_map=bool(inputs), mask_after_erosion=state.mask_notes(eroded))
    return StepResult(notes, warnings)


def run_inversion(state: ReconState, method: Method, parameters: dict[str, Any]) -> StepResult:
    inputs: dict[str, np.ndarray] = {}
    if accepts(method, "magnitude") and state.magnitude is not None:
        inputs["magnitude"] = state.edge_magnitude()
    if accepts(method, "noise_ppm") and state.noise_hz is not None:
        inputs["noise_ppm"] = state.inversion_noise_ppm()
    chi, info = method.function(state.local_ppm, state.local_mask, state.voxel_size_mm, state.b0_direction,
                                **parameters, **inputs)
    state.chi_ppm = np.asarray(chi, dtype=np.float32)
    if method.name in invert.TOTAL_FIELD_METHODS:
        # The local field of a total field inversion: the field of the tissue it found.
        tissue = np.where(state.local_mask, state.chi_ppm, 0).astype(np.float32)
        state.local_ppm = np.where(state.local_mask, forward_field(tissue, state.voxel_size_mm, state.b0_direction),
                                   0).astype(np.float32)
    # Chi-separation regularises its maps with the same magnitude-weighted TV: wtv's weight
    # (linear data term, magnitude edges) carries over; other methods' weights (wtv_bregman's
    # last level included) do not, and chi-separation then chooses its own.
    if method.name == "wtv" and "magnitude" in inputs and (info or {}).get("data_term") == "linear":
        state.inversion_alpha = float(info["alpha"])
    notes, warnings = _details(info)
    if "magnitude" in inputs:
        notes["magnitude_for_weights"] = state.edge_magnitude_text()
    return StepResult({"inputs": sorted(inputs), **notes}, warnings)


def run_reference(state: ReconState, method: Method, parameters: dict[str, Any]) -> StepResult:
    inputs = {"reference_mask": state.reference_mask} if accepts(method, "reference_mask") else {}
    chi, info = method.function(np.where(state.local_mask, state.chi_ppm, 0), state.local_mask,
                                **parameters, **inputs)
    state.chi_ppm = np.where(state.local_mask, chi, 0).astype(np.float32)
    notes, warnings = _details(info)
    notes.pop("method", None)
    notes["plausibility"], warning = plausibility_warning(state.chi_ppm, state.local_mask)
    if warning:
        warnings.append(warning)
    return StepResult(notes, warnings)


# ---------------------------------------------------------------------------------- stages
PHASE = Stage("phase", "phase scaling to radians", phase.METHODS, default="rescale", run=run_phase)
MASK = Stage("mask", "brain masking", masking.METHODS, default="magnitude", inputs=("mask", "brain_probability"),
             run=run_mask)
READOUT = Stage("readout", "readout polarity check (odd/even echo phase of a bipolar readout)", bipolar.METHODS,
                default="odd_even_linear", run=run_readout)
UNWRAP = Stage("unwrap", "phase unwrapping", unwrap.METHODS, default="romeo", inputs=("workers",),
               run=run_unwrap)
ECHO_FIT = Stage("echo_fit", "echo combination (fit of the field over echo time)", echofit.METHODS,
                 default="weighted_least_squares",
                 inputs=("offset_rad", "voxel_size_mm", "field_strength_t", "workers"),
                 run=run_echo_fit)
MASK_REFINEMENT = Stage("mask_refinement", "mask refinement by phase quality", masking.REFINEMENT_METHODS,
                        default="phase_quality",
                        inputs=("noise_hz", "quality", "reduced_chi2", "dof", "misfit_tolerance_hz"),
                        run=run_mask_refinement)
BACKGROUND = Stage("background", "background field removal", bgremove.METHODS, default=bgremove.DEFAULT_BACKGROUND,
                   inputs=("noise",), run=run_background)
INVERSION = Stage("inversion", "dipole inversion", invert.METHODS, default="wtv_bregman",
                  inputs=("magnitude", "noise_ppm"), run=run_inversion)
R2STAR = Stage("r2star", "R2* mapping", r2star.METHODS, default="nlls", inputs=("noise_sigma",), run=run_r2star)
CHISEP = Stage("chisep", "susceptibility source separation (paramagnetic and diamagnetic)", chisep.METHODS,
               default="none", inputs=("field_strength_t", "r2_per_s", "magnitude", "noise_ppm",
                                       "r2star_sd_per_s", "chi_ppm"), run=run_chisep)
REFERENCE = Stage("reference", "susceptibility referencing", reference.METHODS, default="mean",
                  inputs=("reference_mask",), run=run_reference)

RECON_STAGES: tuple[Stage, ...] = (PHASE, MASK, R2STAR, READOUT, UNWRAP, ECHO_FIT, MASK_REFINEMENT, BACKGROUND,
                                   INVERSION, CHISEP, REFERENCE)
"""The reconstruction, in order: the settings (``recon.<stage>``), the chain and the record follow it."""


def stage(name: str) -> Stage:
    """The reconstruction stage called ``name``."""
    for candidate in RECON_STAGES:
        if candidate.name == name:
            return candidate
    raise KeyError(f"no reconstruction stage {name!r}; stages: {', '.join(s.name for s in RECON_STAGES)}")


def run_stages(state: ReconState, settings: Any, stages: Sequence[Stage] = RECON_STAGES) -> list[StepInfo]:
    """Run ``stages`` in order on ``state`` with the methods ``settings`` choose; one record each.

    Raises
    ------
    InputError
        When a stage finds the data unusable, attributed to the stage (``error.step``).
    """
    steps = []
    for current in stages:
        block = getattr(settings, current.name)
        method = current.method(block.method)
        parameters = current.parameters(block)
        wall, cpu = time.perf_counter(), time.process_time()
        try:
            result = current.run(state, method, parameters)
        except InputError as error:
            raise error.in_step(current.name) from None
        steps.append(StepInfo(step=current.name, method=result.method or method.name,
                              parameters=parameters if result.parameters is None else result.parameters,
                              seconds=time.perf_counter() - wall + result.seconds_before,
                              cpu_seconds=time.process_time() - cpu + result.cpu_seconds_before,
                              notes=result.notes, warnings=result.warnings))
    return steps
