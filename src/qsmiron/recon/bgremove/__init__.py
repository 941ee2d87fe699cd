"""Background field removal: total field to local (tissue) field, units in = units out.

Methods (registry ``BACKGROUND_METHODS``): ``vsharp`` (default, the consensus SHARP-family
choice), ``pdf`` (projection onto dipole fields), ``resharp`` (Tikhonov-regularised SHARP,
L-curve weight) and ``ismv`` (iterative SMV). Each method is
``f(field, mask, voxel_size_mm, b0_direction, **params) -> (local, eroded_mask, info)``.
"""

from __future__ import annotations

import inspect
from typing import Any, Callable, Sequence

import numpy as np

from qsmiron.recon.bgremove.ismv import ismv
from qsmiron.recon.bgremove.pdf import pdf
from qsmiron.recon.bgremove.resharp import resharp
from qsmiron.recon.bgremove.vsharp import vsharp

BACKGROUND_METHODS: dict[str, Callable[..., tuple[np.ndarray, np.ndarray, dict]]] = {
    "vsharp": vsharp,
    "pdf": pdf,
    "resharp": resharp,
    "ismv": ismv,
}

DEFAULT_BACKGROUND = "vsharp"


def method_parameters(method: str) -> dict[str, Any]:
    """The keyword parameters of a background-removal method and their defaults."""
    return {name: p.default for name, p in inspect.signature(BACKGROUND_METHODS[method]).parameters.items()
            if p.kind is inspect.Parameter.KEYWORD_ONLY}


def remove_background(field: np.ndarray, mask: np.ndarray, voxel_size_mm: Sequence[float],
                      b0_direction: Sequence[float], *, method: str = DEFAULT_BACKGROUND,
                      return_info: bool = False, **params):
    """Remove the background field with the named method.

    Parameters
    ----------
    field : ndarray, shape (X, Y, Z)
        Total field inside the mask, Hz or ppm (the local field comes back in the same unit).
    mask : ndarray of bool
    voxel_size_mm : sequence of 3 floats
    b0_direction : sequence of 3 floats, voxel axes
    method : str
        A key of ``BACKGROUND_METHODS``.
    return_info : bool
        Also return a dict with the method and every parameter used (chosen weights,
        iterations).
    **params
        The method's keyword parameters (``pdf`` takes ``noise``, a noise map in the
        field's unit).

    Returns
    -------
    local_field : ndarray, float32, zero outside ``eroded_mask``
    eroded_mask : ndarray of bool
    info : dict, only with ``return_info=True``
    """
    if method not in BACKGROUND_METHODS:
        raise ValueError(f"unknown background method {method!r}; choose one of {sorted(BACKGROUND_METHODS)}")
    accepted = method_parameters(method)
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        raise ValueError(f"background method {method!r} has no parameter(s) {unknown}; "
                         f"it takes {sorted(accepted)}")
    local, eroded, details = BACKGROUND_METHODS[method](field, mask, voxel_size_mm, b0_direction, **params)
    if not return_info:
        return local, eroded
    used = {name: value for name, value in accepted.items() if name != "noise"}
    used.update({k: v for k, v in params.items() if k != "noise"})
    info = {"method": method, "parameters": used, "noise_weighted": params.get("noise") is not None}
    info.update(details)
    return local, eroded, info
