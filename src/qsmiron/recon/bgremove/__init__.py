"""Background field removal: total field to local (tissue) field, units in = units out.

Methods (declared in ``METHODS``): ``ismv`` (iterative SMV, the default), ``vsharp``
(variable-radius SHARP), ``resharp`` (Tikhonov-regularised SHARP, L-curve weight) and ``pdf``
(projection onto dipole fields). Each method is
``f(field, mask, voxel_size_mm, b0_direction, **params) -> (local, eroded_mask, info)``.

Why iSMV is the default
-----------------------
The consensus checklist (QSM consensus, MRM 2024) asks for a SHARP-family method or PDF; on the QSM-CI
head phantom the SHARP family leads (local-field NRMSE: RESHARP 20.7 %, iSMV 28.1 %, SHARP
36.3 %, V-SHARP 42.6 %, PDF 44.5 %). Among those, iSMV solves the SHARP equations exactly on
the eroded mask (``M_r (delta - S) x = M_r (delta - S) f``) instead of truncating a
deconvolution (SHARP, V-SHARP) or shrinking the solution with a weight picked per dataset
(RESHARP), so no regularisation weight or threshold changes its result. Its ball is twice
the largest voxel (QSM.jl), which erodes the mask exactly as V-SHARP's smallest sphere does.
Measured on the true total field (demeaned local-field NRMSE, %, inside each method's mask,
the fraction of the mask kept in brackets; tests/recon/test_bgremove.py for the spheres,
H3's phantom of tests/pipeline/test_single.py for the 48^3 heads, benchmarks/bench_bgremove.py
for 256 x 256 x 176):

==============================  ===========  ===========  ===========  ===========
case                            iSMV         RESHARP      V-SHARP      PDF
==============================  ===========  ===========  ===========  ===========
sphere + outside source, axial  6.7 (0.74)   17.3 (0.57)  7.1 (0.74)   22.6 (1)
same, oblique B0                6.7 (0.74)   17.2 (0.57)  7.1 (0.74)   23.5 (1)
same, 1 x 1 x 2 mm              10.5 (0.55)  17.5 (0.55)  1.0 (0.41)   21.1 (1)
head, air sinus, axial          24.6 (0.63)  17.2 (0.41)  39.5 (0.63)  38.9 (1)
same, tilted 20 deg, 1.5 mm     21.6 (0.50)  16.9 (0.40)  32.3 (0.50)  55.7 (1)
head 256 x 256 x 176, 1 mm      16.6 (0.90)  50.4 (0.82)  24.0 (0.90)  see bench
==============================  ===========  ===========  ===========  ===========

At the same erosion iSMV beats V-SHARP on every head (V-SHARP's rim, where a small sphere's
high-pass is deconvolved with the largest kernel, carries its error); RESHARP's 4 mm ball
keeps less of the brain and its L-curve weight failed at full size; PDF keeps the whole mask
but its error sits at the edge next to air and it needs 100-500 CGLS iterations on a padded
grid (about 2 s CPU at 64^3). In the 4 mm core common to all, iSMV gives 12 % on the axial
head and 13 % at full size. iSMV is also the fastest: with SHARP's deconvolution as CG
preconditioner it needs 9 iterations at 256 x 256 x 176 (1.3 s CPU).
"""

from __future__ import annotations

import inspect
from typing import Any, Sequence

import numpy as np

from qsmiron.methods import Method
from qsmiron.recon.bgremove.ismv import ismv
from qsmiron.recon.bgremove.hybrid import pdf_ismv
from qsmiron.recon.bgremove.lbv import lbv
from qsmiron.recon.bgremove.passthrough import keep_total_field
from qsmiron.recon.bgremove.pdf import pdf
from qsmiron.recon.bgremove.resharp import resharp
from qsmiron.recon.bgremove.vsharp import vsharp

METHODS = (
    Method("ismv", ismv, label="iSMV (iterative spherical mean value)",
           description="solve the SHARP equations exactly on the eroded mask by preconditioned CG "
                       "(ball of twice the largest voxel)",
           citation="Wen Y, Zhou D, Liu T, Spincemaille P, Wang Y. Magn Reson Med 2014;72:1065-1071",
           doi="10.1002/mrm.24998"),
    Method("vsharp", vsharp, label="V-SHARP (variable-radius SHARP)",
           description="SHARP with spheres shrinking towards the mask edge, truncated deconvolution",
           citation="Li W, Wu B, Liu C. NeuroImage 2011;55:1645-1656",
           doi="10.1016/j.neuroimage.2010.11.088"),
    Method("resharp", resharp, label="RESHARP (Tikhonov-regularised SHARP)",
           description="SHARP with Tikhonov regularisation, weight from the L-curve",
           citation="Sun H, Wilman AH. Magn Reson Med 2014;71:1151-1157", doi="10.1002/mrm.24765"),
    Method("lbv", lbv, label="LBV (Laplacian boundary value)",
           description="the background as the harmonic field matching the total field on the mask's "
                       "boundary (Poisson equation, CG preconditioned by a fast sine-transform solve)",
           citation="Zhou D, Liu T, Spincemaille P, Wang Y. NMR Biomed 2014;27:312-319",
           doi="10.1002/nbm.3064"),
    Method("pdf", pdf, label="PDF (projection onto dipole fields)",
           description="fit the field of dipoles outside the mask (CGLS, noise-weighted, coarse to fine) "
                       "and subtract it",
           citation="Liu T, Khalidov I, de Rochefort L, et al. NMR Biomed 2011;24:1129-1136",
           doi="10.1002/nbm.1670"),
    Method("pdf_ismv", pdf_ismv, label="PDF followed by iSMV (projection onto dipole fields, then the "
                                       "harmonic remainder removed by iterative SMV)",
           description="PDF's fit of outside dipoles removes the background, including its non-harmonic "
                       "part; iSMV then removes the harmonic remainder (SHARP's erosion)",
           citation="Liu T, Khalidov I, de Rochefort L, et al. NMR Biomed 2011;24:1129-1136",
           doi="10.1002/nbm.1670",
           also_cites=(("Wen Y, Zhou D, Liu T, Spincemaille P, Wang Y. Magn Reson Med 2014;72:1065-1071",
                        "10.1002/mrm.24998"),)),
    Method("none", keep_total_field, label="none (the total field inversion models the background)",
           description="pass the total field on unchanged: only for a total field inversion "
                       "(inversion method 'tfi')"),
)
"""Background field removal methods (stage ``background``), each
``f(field, mask, voxel_size_mm, b0_direction, **params) -> (local, eroded_mask, info)``."""

BACKGROUND_METHODS: dict[str, Any] = {method.name: method.function for method in METHODS}
"""Name -> function, from ``METHODS``."""

DEFAULT_BACKGROUND = "ismv"


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
