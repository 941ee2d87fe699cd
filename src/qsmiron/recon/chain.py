"""All reconstruction stages in order, on arrays: magnitude and phase in, susceptibility out.

phase preparation -> brain mask -> total field (unwrapping and echo fit) -> background field
removal -> dipole inversion -> referencing. Each stage is the registered function of its
module; this module only wires them, converts units between them (Hz <-> ppm of B0) and
records what each step did (method, the parameters actually used, seconds, notes) so that
the file-level pipeline can write it into ``recon.json``. Pure: no files, no printing.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from qsmiron import GYROMAGNETIC_RATIO_HZ_PER_T
from qsmiron.errors import InputError
from qsmiron.recon.settings import ReconSettings

STEP_NAMES = ("phase_preparation", "mask", "unwrap", "echo_fit", "background_removal",
              "inversion", "reference")
"""The steps recorded in ``ReconResult.steps``, in order (the recon.json vocabulary)."""


@dataclass
class ReconResult:
    """What ``reconstruct_arrays`` returns.

    Attributes
    ----------
    chi_ppm : ndarray, shape (X, Y, Z), float32
        Susceptibility, ppm, referenced (whole-brain mean by default), zero outside ``mask``.
    mask : ndarray of bool, shape (X, Y, Z)
        Where ``chi_ppm`` and ``local_ppm`` are valid (the brain mask after the erosion of
        background field removal).
    field_hz : ndarray, shape (X, Y, Z), float32
        Total field, Hz, zero outside ``field_mask``.
    local_ppm : ndarray, shape (X, Y, Z), float32
        Local field, ppm of B0, zero outside ``mask``.
    noise_hz : ndarray, shape (X, Y, Z), float32
        Standard deviation of the total field from the echo fit, Hz.
    steps : list of dict
        One record per step: ``{"step", "method", "parameters", "seconds", "notes"}``.
    warnings : list of str
        Problems noticed on the way (the stages' own warnings).
    field_mask : ndarray of bool or None
        The mask of the total field (before the erosion of background removal).
    phase_scaling : dict
        How the raw phase was turned into radians (the phase preparation's info).
    """

    chi_ppm: np.ndarray
    mask: np.ndarray
    field_hz: np.ndarray
    local_ppm: np.ndarray
    noise_hz: np.ndarray
    steps: list[dict[str, Any]]
    warnings: list[str] = field(default_factory=list)
    field_mask: np.ndarray | None = None
    phase_scaling: dict[str, Any] = field(default_factory=dict)

    @property
    def seconds(self) -> float:
        """Total time of all steps, s."""
        return float(sum(step["seconds"] for step in self.steps))


def ppm_per_hz(field_strength_t: float) -> float:
    """The factor from a field in Hz to a relative field in ppm of B0."""
    return 1e6 / (GYROMAGNETIC_RATIO_HZ_PER_T * float(field_strength_t))


def _jsonable(value: Any) -> Any:
    """A copy of ``value`` that ``json.dumps`` accepts (arrays summarised, not dumped)."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        if value.size <= 16:
            return _jsonable(value.tolist())
        return {"array_shape": list(value.shape), "dtype": str(value.dtype)}
    if isinstance(value, np.generic):
        return _jsonable(value.item())
    if isinstance(value, float) and not np.isfinite(value):
        return None
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json")
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def _block_parameters(block) -> dict[str, Any]:
    """A settings block's parameters without its ``method`` field."""
    return {k: v for k, v in block.model_dump(mode="json").items() if k != "method"}


def _method_parameters(block) -> dict[str, Any]:
    """The keyword parameters a settings block gives its stage's chosen method.

    Blocks with several methods pick the keys of the chosen one (``method_params``); the
    others pass all their fields but ``method``.
    """
    if hasattr(block, "method_params"):
        return dict(block.method_params())
    return _block_parameters(block)


def _step(name: str, method: str | None, parameters: dict, seconds: float,
          notes: dict | None = None) -> dict[str, Any]:
    return {"step": name, "method": method, "parameters": _jsonable(parameters),
            "seconds": round(float(seconds), 4), "notes": _jsonable(notes or {})}


def _collect_warnings(info: Any, out: list[str]) -> None:
    if isinstance(info, dict):
        for value in info.get("warnings", []) or []:
            out.append(str(value))


def _mask_notes(mask: np.ndarray, voxel_size_mm: Sequence[float]) -> dict[str, Any]:
    n = int(np.count_nonzero(mask))
    return {"n_voxels": n, "volume_ml": round(n * float(np.prod(voxel_size_mm)) / 1000.0, 3)}


def _template_restriction(mask: np.ndarray, voxel_size_mm, settings: ReconSettings,
                          probability: np.ndarray | None, notes: dict | None) -> tuple[np.ndarray, dict]:
    """The magnitude mask restricted to the template brain when given and enabled, and notes."""
    from qsmiron.recon.mask import restrict_to_template_brain

    notes = dict(notes or {})
    if not settings.mask.template_brain:
        return mask, {"used": False, "reason": "disabled (mask.template_brain = false)"}
    if probability is None:
        notes.setdefault("reason", "no template brain was given")
        return mask, {**notes, "used": False}
    restricted, info = restrict_to_template_brain(mask, probability, voxel_size_mm,
                                                  threshold=settings.mask.template_threshold,
                                                  margin_mm=settings.mask.template_margin_mm)
    if not restricted.any():
        return mask, {**notes, **info, "used": False,
                      "reason": "the template brain and the magnitude mask do not overlap; magnitude mask only"}
    return restricted, {**notes, **info, "used": True}


def _stage_error(error: InputError, step: str) -> InputError:
    """Tag a stage's ``InputError`` with the step it came from (the pipeline names the file)."""
    error.step = step  # type: ignore[attr-defined]
    return error


def _split_field_info(info: dict[str, Any], settings: ReconSettings,
                      seconds: float) -> tuple[dict, dict]:
    """Turn ``total_field``'s info into the ``unwrap`` and ``echo_fit`` step records."""
    info = dict(info or {})
    unwrap_info = info.pop("unwrap", None)
    fit_info = info.pop("echo_fit", None)
    if not isinstance(unwrap_info, dict):
        unwrap_info = {}
    if not isinstance(fit_info, dict):
        fit_info = {}
    unwrap_info = dict(unwrap_info)
    fit_info = dict(fit_info)
    unwrap_seconds = unwrap_info.pop("seconds", None)
    fit_seconds = fit_info.pop("seconds", None)
    if unwrap_seconds is None and fit_seconds is None:
        unwrap_seconds, fit_seconds = seconds, 0.0
    elif unwrap_seconds is None:
        unwrap_seconds = max(seconds - float(fit_seconds), 0.0)
    elif fit_seconds is None:
        fit_seconds = max(seconds - float(unwrap_seconds), 0.0)
    unwrap_method = unwrap_info.pop("method", settings.unwrap.method)
    unwrap_parameters = unwrap_info.pop("parameters", None)
    if unwrap_parameters is None:
        unwrap_parameters = _block_parameters(settings.unwrap)
    fit_method = fit_info.pop("method", "weighted_least_squares")
    fit_parameters = fit_info.pop("parameters", None)
    if fit_parameters is None:
        fit_parameters = _block_parameters(settings.echo_fit)
    # Whatever total_field reports beyond the two sub-steps (mask refinement, ...) goes
    # with the echo fit, whose output it describes.
    fit_info.update({k: v for k, v in info.items() if k != "warnings"})
    unwrap = _step("unwrap", unwrap_method, unwrap_parameters, unwrap_seconds, unwrap_info)
    fit = _step("echo_fit", fit_method, fit_parameters, fit_seconds, fit_info)
    return unwrap, fit


def reconstruct_arrays(magnitude: np.ndarray, phase: np.ndarray,
                       voxel_size_mm: Sequence[float], b0_direction: Sequence[float],
                       echo_times_s: Sequence[float], field_strength_t: float, *,
                       settings: ReconSettings | None = None,
                       mask: np.ndarray | None = None,
                       reference_mask: np.ndarray | None = None,
                       brain_probability: np.ndarray | None = None,
                       brain_probability_notes: dict | None = None) -> ReconResult:
    """Reconstruct a susceptibility map from multi-echo magnitude and raw phase.

    Parameters
    ----------
    magnitude : ndarray, shape (X, Y, Z, E)
        Magnitude, echoes last.
    phase : ndarray, shape (X, Y, Z, E)
        Phase as stored by the scanner (vendor integers or radians), echoes last.
    voxel_size_mm : sequence of 3 floats
    b0_direction : sequence of 3 floats
        Unit B0 vector in voxel axes.
    echo_times_s : sequence of float
        One per echo, seconds, increasing.
    field_strength_t : float
        B0, tesla.
    settings : ReconSettings, optional
        Methods and parameters of every stage (default: ``ReconSettings()``).
    mask : ndarray of bool, shape (X, Y, Z), optional
        A brain mask to use instead of the automatic one (not refined by phase quality).
    reference_mask : ndarray of bool, shape (X, Y, Z), optional
        The reference region when ``settings.reference.method == "mask"``.
    brain_probability : ndarray, shape (X, Y, Z), optional
        A template's brain on this grid (0..1, e.g. registered by
        ``qsmiron.register.brainmask``): the automatic mask is restricted to it
        (``recon.mask.restrict_to_template_brain``) when ``settings.mask.template_brain``.
    brain_probability_notes : dict, optional
        How it was obtained, or why there is none; recorded with the mask step.

    Returns
    -------
    ReconResult

    Raises
    ------
    InputError
        When a stage finds the data unusable (unrecognisable phase scaling, an empty mask);
        the error carries a ``step`` attribute naming the step.
    """
    from qsmiron.recon.bgremove import method_parameters as background_parameters
    from qsmiron.recon.bgremove import remove_background
    from qsmiron.recon.field import total_field
    from qsmiron.recon.invert import invert
    from qsmiron.recon.mask import brain_mask
    from qsmiron.recon.phase import phase_to_radians
    from qsmiron.recon.reference import reference_susceptibility

    settings = ReconSettings() if settings is None else settings
    magnitude = np.asarray(magnitude, dtype=np.float32)
    if magnitude.ndim != 4 or np.shape(phase) != magnitude.shape:
        raise ValueError(f"magnitude and phase must both be (X, Y, Z, E); got "
                         f"{magnitude.shape} and {np.shape(phase)}")
    echo_times_s = tuple(float(t) for t in echo_times_s)
    if len(echo_times_s) != magnitude.shape[3]:
        raise ValueError(f"{len(echo_times_s)} echo times for {magnitude.shape[3]} echoes")
    voxel_size_mm = tuple(float(v) for v in voxel_size_mm)
    b0_direction = np.asarray(b0_direction, dtype=float)
    b0_direction = b0_direction / np.linalg.norm(b0_direction)
    if settings.reference.method == "mask" and reference_mask is None:
        raise _stage_error(InputError("reference method 'mask' needs a reference mask; recon "
                                      "takes none, so use the whole-brain 'mean'"), "reference")
    to_ppm = ppm_per_hz(field_strength_t)
    steps: list[dict[str, Any]] = []
    warnings: list[str] = []

    # 1. Phase preparation: vendor integers or radians -> radians.
    start = time.perf_counter()
    try:
        phase_rad, phase_info = phase_to_radians(phase, scaling=settings.phase.scaling)
    except InputError as error:
        raise _stage_error(error, "phase_preparation")
    _collect_warnings(phase_info, warnings)
    steps.append(_step("phase_preparation", (phase_info or {}).get("method", settings.phase.scaling),
                       _block_parameters(settings.phase) | {"scaling": settings.phase.scaling},
                       time.perf_counter() - start, phase_info))

    # 2. Brain mask: the user's, or from the magnitude.
    start = time.perf_counter()
    user_mask = mask is not None
    if user_mask:
        mask = np.asarray(mask).astype(bool)
        if mask.shape != magnitude.shape[:3]:
            raise ValueError(f"mask shape {mask.shape} differs from the data's {magnitude.shape[:3]}")
        if not mask.any():
            raise _stage_error(InputError("the brain mask is empty"), "mask")
        steps.append(_step("mask", "user", {}, time.perf_counter() - start,
                           _mask_notes(mask, voxel_size_mm)))
    else:
        mask_params = _method_parameters(settings.mask)
        try:
            mask = np.asarray(brain_mask(magnitude, voxel_size_mm, **mask_params), dtype=bool)
        except InputError as error:
            raise _stage_error(error, "mask")
        if not mask.any():
            raise _stage_error(InputError("the automatic brain mask is empty: the magnitude "
                                          "shows no head (give --mask)"), "mask")
        mask, template_notes = _template_restriction(mask, voxel_size_mm, settings, brain_probability,
                                                     brain_probability_notes)
        method = settings.mask.method + ("+template" if template_notes.get("used") else "")
        if template_notes.get("used"):
            mask_params = {**mask_params, "template_threshold": settings.mask.template_threshold,
                           "template_margin_mm": settings.mask.template_margin_mm}
        # The template registration ran in the file-level pipeline before this step; its
        # seconds belong to the mask's cost.
        registration_s = float(template_notes.get("seconds", 0.0) or 0.0)
        steps.append(_step("mask", method, mask_params, time.perf_counter() - start + registration_s,
                           {**_mask_notes(mask, voxel_size_mm), "template_brain": template_notes}))

    # 3. Total field: unwrapping, echo fit, mask refinement by phase quality.
    start = time.perf_counter()
    try:
        fieldmap = total_field(magnitude, phase_rad, mask, voxel_size_mm, echo_times_s,
                               settings=settings, user_mask=user_mask)
    except InputError as error:
        raise _stage_error(error, "unwrap")
    seconds = time.perf_counter() - start
    del phase_rad
    _collect_warnings(fieldmap.info, warnings)
    unwrap_step, fit_step = _split_field_info(fieldmap.info, settings, seconds)
    field_mask = np.asarray(fieldmap.mask, dtype=bool)
    fit_step["notes"]["mask_after_refinement"] = _mask_notes(field_mask, voxel_size_mm)
    steps.extend([unwrap_step, fit_step])
    if not field_mask.any():
        raise _stage_error(InputError("no voxel of the brain mask has a reliable phase"),
                           "echo_fit")
    field_hz = np.where(field_mask, fieldmap.field_hz, 0).astype(np.float32)
    noise_hz = np.asarray(fieldmap.noise_hz, dtype=np.float32)
    del fieldmap

    # 4. Background field removal, in ppm of B0.
    start = time.perf_counter()
    bg_method = settings.background.method
    bg_params = _method_parameters(settings.background)
    if "noise" in background_parameters(bg_method) and "noise" not in bg_params:
        bg_params["noise"] = noise_hz * np.float32(to_ppm)
    local_ppm, eroded, bg_info = remove_background(field_hz * np.float32(to_ppm), field_mask,
                                                   voxel_size_mm, b0_direction, method=bg_method,
                                                   return_info=True, **bg_params)
    bg_params.pop("noise", None)
    bg_info = dict(bg_info or {})
    _collect_warnings(bg_info, warnings)
    eroded = np.asarray(eroded, dtype=bool)
    local_ppm = np.where(eroded, local_ppm, 0).astype(np.float32)
    used = bg_info.pop("parameters", None)
    bg_info.pop("method", None)
    bg_info.pop("warnings", None)
    steps.append(_step("background_removal", bg_method,
                       bg_params if used is None else {**bg_params, **used},
                       time.perf_counter() - start,
                       {**bg_info, "mask_after_erosion": _mask_notes(eroded, voxel_size_mm)}))
    if not eroded.any():
        raise _stage_error(InputError("nothing of the brain mask is left after background "
                                      "field removal (the mask is too small or too thin)"),
                           "background_removal")

    # 5. Dipole inversion.
    start = time.perf_counter()
    inv_method = settings.inversion.method
    inv_params = _method_parameters(settings.inversion)
    combined_magnitude = np.sqrt(np.sum(np.square(magnitude, dtype=np.float32), axis=3))
    noise_ppm = noise_hz * np.float32(to_ppm)
    inversion = invert(local_ppm, eroded, voxel_size_mm, b0_direction, method=inv_method,
                       magnitude=combined_magnitude, noise_ppm=noise_ppm, **inv_params)
    del combined_magnitude, noise_ppm
    inv_info = dict(inversion.info or {})
    _collect_warnings(inv_info, warnings)
    used = inv_info.pop("parameters", None)
    parameters = dict(inv_params) if used is None else {**inv_params, **used}
    steps.append(_step("inversion", inv_info.pop("method", inv_method), parameters,
                       time.perf_counter() - start,
                       {k: v for k, v in inv_info.items() if k != "warnings"}))

    # 6. Referencing: whole-brain mean unless configured otherwise.
    start = time.perf_counter()
    reference_kw = {} if reference_mask is None else {"reference_mask": np.asarray(reference_mask, bool)}
    chi_ppm, ref_info = reference_susceptibility(np.where(eroded, inversion.chi_ppm, 0), eroded,
                                                 method=settings.reference.method, **reference_kw)
    _collect_warnings(ref_info, warnings)
    steps.append(_step("reference", settings.reference.method,
                       _block_parameters(settings.reference), time.perf_counter() - start,
                       {k: v for k, v in dict(ref_info or {}).items() if k != "warnings"}))
    chi_ppm = np.where(eroded, chi_ppm, 0).astype(np.float32)

    return ReconResult(chi_ppm=chi_ppm, mask=eroded, field_hz=field_hz, local_ppm=local_ppm,
                       noise_hz=noise_hz, steps=steps, warnings=warnings,
                       field_mask=field_mask, phase_scaling=_jsonable(phase_info or {}))
