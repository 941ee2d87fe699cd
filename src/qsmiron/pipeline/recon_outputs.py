"""What a reconstruction writes beside its record: each image by role, and its JSON sidecar.

The roles are those of ``qsmiron.io.derivatives.ReconPaths``. The four susceptibility-chain
maps get a BIDS sidecar in a cohort; the iron-specific maps (R2*, T2*, S0, the R2* mask, chi+
and chi-) always get one, because their units, method and, for chi-separation without an R2
map, the approximation they rest on are not evident from the image. Everything in a sidecar
comes from the ``ReconRecord`` (typed) and the method declarations.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from qsmiron.records.recon import ReconRecord

CHAIN_SIDECARS = {
    "chimap": {"Description": "magnetic susceptibility relative to the mean of the mask "
                              "(see the recon JSON for the reference)"},
    "mask": {"Type": "Brain", "Description": "voxels where Chimap and the local field are valid"},
    "fieldmap": {"Description": "total field from the multi-echo phase"},
    "localfield": {"Description": "local field after background field removal"},
}
"""BIDS sidecar of each susceptibility-chain map (``Units`` from ``ReconRecord.units``)."""

IRON_DESCRIPTIONS = {
    "r2starmap": "R2* from the multi-echo magnitude; NaN where the fit is not valid (see the "
                 "R2* mask), 0 outside the brain mask",
    "t2starmap": "T2* = 1 / R2*; NaN where R2* is not valid or not above zero",
    "s0map": "signal at echo time 0 of the R2* fit (magnitude units)",
    "r2star_mask": "the brain mask of the reconstruction's mask step (before the phase-quality refinement "
                   "and erosion that make the QSM mask) restricted to the voxels with a valid R2* fit: where "
                   "R2*, T2* and S0 are defined",
    "chimap_paramagnetic": "paramagnetic susceptibility (chi+) by chi-separation, a non-negative magnitude",
    "chimap_diamagnetic": "diamagnetic susceptibility (chi-) by chi-separation, a non-negative magnitude "
                          "(the diamagnetic source is -chi-)",
}
"""What each iron-specific map is."""

R2STAR_ROLES = ("r2starmap", "t2starmap", "s0map", "r2star_mask")
MASK_ROLES = ("mask", "r2star_mask")
"""Binary images: no ``Units``, no ``SkullStripped``; BIDS mask ``Type`` ``Brain`` (both are brain masks, the R2* one
with the voxels of a failed fit removed)."""
CHISEP_ROLES = ("chimap_paramagnetic", "chimap_diamagnetic")


def images(result) -> dict[str, tuple[np.ndarray, type]]:
    """Role -> (array, dtype) of every image a ``ReconResult`` holds."""
    out: dict[str, tuple[np.ndarray, type]] = {
        "chimap": (result.chi_ppm, np.float32), "mask": (result.mask, np.uint8),
        "fieldmap": (result.field_hz, np.float32), "localfield": (result.local_ppm, np.float32)}
    if result.r2star is not None:
        fit = result.r2star
        out.update(r2starmap=(fit.r2star_per_s, np.float32), t2starmap=(fit.t2star_s, np.float32),
                   s0map=(fit.s0, np.float32), r2star_mask=(fit.valid, np.uint8))
    if result.separation is not None:
        out.update(chimap_paramagnetic=(result.separation.paramagnetic_ppm, np.float32),
                   chimap_diamagnetic=(result.separation.diamagnetic_ppm, np.float32))
    return out


def _method(record: ReconRecord, stage_name: str) -> dict[str, Any]:
    """The method of a stage as it ran: name, label, reference and every parameter."""
    from qsmiron.recon.stages import stage

    step = record.step(stage_name)
    declared = stage(stage_name).method(step.method)
    return {"MethodName": step.method, "Method": declared.label, "MethodReference": declared.reference,
            "Parameters": step.parameters}


def iron_sidecar(record: ReconRecord, role: str) -> dict[str, Any]:
    """The sidecar of one iron-specific map, from the record."""
    sidecar: dict[str, Any] = ({"Type": "Brain"} if role in MASK_ROLES else {"Units": getattr(record.units, role)})
    sidecar["Description"] = IRON_DESCRIPTIONS[role]
    if role in R2STAR_ROLES:
        info = record.r2star
        sidecar.update(_method(record, "r2star"))
        sidecar.update(EchoTime=info.echo_times_s, NoiseSigma=info.noise_sigma, NoiseEstimate=info.noise_estimate)
    else:
        info = record.chi_separation
        sidecar.update(_method(record, "chisep"))
        sidecar["Approximation"] = info.approximation
        sidecar["R2Source"] = info.r2_source
        if info.approximation:
            sidecar["ApproximationDescription"] = (
                f"no R2 map: R2' = R2* - pseudo-R2 with {info.pseudo_r2_model} "
                f"(intercept {info.pseudo_r2_intercept_per_s:g} s^-1, slope {info.pseudo_r2_slope:g}; "
                f"{info.pseudo_r2_reference})")
        sidecar["RelaxometricConstant"] = {"value_hz_per_ppm": info.dr_hz_per_ppm, "source": info.dr_source}
    sidecar["qsmiron"] = info.to_json()
    return sidecar


def sidecars(record: ReconRecord, roles: Sequence[str], *, chain: bool,
             sources: Sequence[str] | None = None) -> dict[str, dict[str, Any]]:
    """Role -> sidecar of the images ``roles`` (the chain maps only when ``chain``).

    With ``sources`` (BIDS URIs: a cohort's derivative dataset) every sidecar lists them and
    names the grid its image is on, ``SpatialReference``: the first echo's magnitude as the
    record names the file the reconstruction read (every map is on that grid).
    """
    out = {}
    for role in roles:
        if role in CHAIN_SIDECARS:
            if not chain:
                continue
            sidecar = {"Units": getattr(record.units, role), **CHAIN_SIDECARS[role]}
            if role == "mask":
                sidecar.pop("Units")
        else:
            sidecar = iron_sidecar(record, role)
        if role not in MASK_ROLES:
            # BIDS requires it of derivative parametric maps: ours are zero/NaN outside the brain mask.
            sidecar["SkullStripped"] = True
        if sources is not None:
            sidecar["SpatialReference"] = record.inputs.magnitude[0]
            sidecar["Sources"] = list(sources)
        out[role] = sidecar
    return out
