"""Dipole inversion: local field (ppm) to susceptibility (ppm).

Methods (declared in ``METHODS``, one module each): ``tkd`` (thresholded k-space
division), ``tikhonov`` (closed form, L-curve weight), ``tv`` (total variation by ADMM),
``rts`` (rapid two-step), ``wtv`` (magnitude-weighted TV with an automatic weight; called
``medi`` before, which it never was: Liu's MEDI has a nonlinear data term, a Gauss-Newton
solver and a fixed weight; a configuration naming ``"medi"`` still gets ``wtv``, with a FutureWarning) and
``wtv_bregman`` (the same problem regularised by Bregman iterations, the default); ``tfi``
(preconditioned total field inversion, ``tfi.py``) inverts the total field and runs only after
the background method ``none`` (``TOTAL_FIELD_METHODS``).

Why ``wtv_bregman`` is the default. In vivo (2016 challenge local field against COSMOS, held
out) the previous default scored NRMSE 63.0 but XSIM 0.399 and a regional slope of 0.77: it
over-smoothed and underestimated. Its weight comes from a discrepancy principle (the residual
inside the mask equals the field's inconsistency with the dipole model, measured on the
magic cone, ``_common.inconsistency_ppm``); a single TV solve meets that residual partly by
shrinking contrast. ``wtv_bregman`` keeps the principle and the level but reaches the level by
Bregman iterations (Osher et al. 2005) at a weight a quarter decade above the crossing: each
step adds back the unexplained field, so shrunk contrast returns while the stop at the level
keeps the fine-scale inconsistency out. No constant is fitted to any dataset; the noise
weighting is as in ``wtv``, and so is the magnitude prior (MEDI's edge mask, 30 %) except that
by default it exempts only the gradient components across an edge, as MEDI's gradient mask
does, where ``wtv`` exempts whole voxels (since results revision 13; ``wtv.magnitude_edge_weights``).

Evidence (``benchmarks/bench_invert.py``; the proxy family of ``benchmarks/invert_proxies.py``:
4 qsm-forward cylinder phantoms, 64^3, and 6 heads of the project's simulator at 1.5 mm with
CIT168 nuclei, texture and veins: true local field; + WM anisotropy and non-dipolar WM
frequency; V-SHARP local field from skull, sinuses and air; all of these with 20-degree
angulated slices, with 1.5 x 1.5 x 3 mm voxels, and with 3x the noise. Median / worst over the
10 cases; slope and regional error (ppb) over compartment or region means, mask-referenced;
"field-only" = no magnitude and no noise map, as ``qsmiron invert`` without ``--magnitude``):

    method                   NRMSE %      XSIM          HFEN %       slope         reg. ppb
    wtv (previous default)   48.3 / 78.8  0.454 / 0.296 42.5 / 69.8  0.975 / 0.850  5.1 / 10.8
    wtv_bregman (default)    45.2 / 73.1  0.489 / 0.379 39.1 / 66.0  0.982 / 0.841  5.7 / 10.3
    wtv field-only           43.9 / 65.8  0.476 / 0.329 41.5 / 68.0  0.911 / 0.695  8.2 / 17.5
    wtv_bregman field-only   41.4 / 65.5  0.509 / 0.406 38.8 / 64.3  0.938 / 0.762  6.2 / 13.9
    tv                       43.9 / 65.7  0.471 / 0.332 41.1 / 67.8  0.905 / 0.688  8.4 / 18.0
    rts                      58.7 / 97.7  0.382 / 0.267 56.6 / 70.5  0.675 / 0.559 21.5 / 29.3

(Results revision 12: the cone band in cycles per mm (``_common.CONE_MIN_FREQUENCY_PER_MM``), and
``wtv`` and ``tv`` take their weight at the level less the mask edge's cone leakage, as
``wtv_bregman`` stops at it since revision 11 (``tv_admm.LeakCorrectedLevel``). Before:
``wtv`` 49.6 / 79.0, 0.433 / 0.277, 44.6 / 71.5, 0.974 / 0.819, 5.2 / 12.4; ``wtv_bregman``
45.3 / 72.6, 0.472 / 0.368, 39.3 / 66.7, 0.982 / 0.816, 5.8 / 11.5; ``tv`` 45.3 / 69.3, 0.456 /
0.284, 42.9 / 69.9, 0.893 / 0.589, 9.1 / 23.9. The leak-corrected level alone moved ``wtv`` by
-0.9 to +0.8 points per case, and on the smooth thick-slice head of ``tests/recon/test_bregman.py``
(1 x 1 x 2.5 mm, noise 1 ppb) from 41.8 to 30.2 %, but at 1 mm from 28.6 to 32.2 %: a single TV
solve at a lower residual fits more noise there. The figures below are from before revision 11.)

The proxy closest to the in-vivo figures is "head all obl" (anisotropy, non-dipolar WM,
V-SHARP residual, angulated): field-only ``wtv`` 61.6 % / 0.416 / slope 0.767 (in vivo
63.0 / 0.399 / 0.77), ``wtv_bregman`` 61.8 % / 0.480 / 0.831; with the magnitude 66.3 / 0.411 /
0.909 against 65.7 / 0.462 / 0.894. Expect XSIM and slope to rise in vivo and NRMSE to stay
about where it was; whether that reaches the challenge targets (NRMSE <= 60, XSIM >= 0.50) is
not shown here. On the true local field of the head (the case where the previous default was
checked against independent heads, 18.7 % and 3.4 ppb there) it does not get worse: 1.5 mm
head 40.8 % / 3.9 ppb against 44.6 % / 3.6 ppb; 1 mm head without texture 29.0 % against
30.5 % / 5.6 ppb. (The ``wtv_bregman`` figures are with the interpolated crossing of
``bregman.level_crossing``; with the last path weight above the level, its previous rule, they
were 45.0 / 73.4, 42.0 / 65.4 field-only, 39.6 % and 27.8 %.) Interpolating the last Bregman
step back to the exact level was measured and is worse (NRMSE 48.6 / 70.7, slope 0.941 /
0.763), as is running the Bregman steps from a full decade above the crossing (more steps, NRMSE
4 to 12 points worse on the heads).

The data weights in ``qsmiron recon``. The noise map the inversion weighs the field by is the
echo fit's propagated SD (``recon.echofit``; infinite where the fit failed) times its local
misfit factor (``echofit.local_misfit_factor``: the root of the mean reduced chi-square of the
fit over a 5-voxel cube, at least 1). Where the phase is systematically not linear in TE (next to
sinuses and bone, thick slices) the field is off by more than the noise model says, and the
inversion then leans on it less. Background removal keeps the propagated SD: PDF needs the field
next to sinuses (h06, big sinus, local-field NRMSE 38.8 -> 44.2 % with the factor). Over the 11
family heads of ``benchmarks/bench_bgremove.py`` (pdf_ismv, median / worst): Chimap NRMSE 41.6 /
48.2 -> 40.9 / 47.2 %, XSIM 0.700 / 0.617 -> 0.706 / 0.627, regional error 4.4 / 7.1 -> 4.1 / 6.8
ppb, |VeP error| 8.3 / 21.0 -> 7.0 / 20.0 ppb, slopes 0.96-1.01 both; every head improved or
stayed (h10 47.1 -> 45.2 %, h06 43.3 -> 42.1 %, h01 35.4 both). Given to PDF too, the factor
gave 40.9 / 46.8 % with a 3-voxel cube and 41.0 / 46.8 % with 5, but h06 lost (43.3 -> 45.0 and
43.5 %) and its regional slope fell to 0.93 and 0.94.

The edges in ``qsmiron recon``. MEDI's prior keeps TV off the strongest magnitude edges, on the
premise that they are where susceptibility changes. The recon takes them from the last echo's
magnitude (``ReconState.edge_magnitude``), not from the echoes' root sum of squares, which is
mostly the first echoes' proton-density and T1 contrast: the last echo is the most
T2*-weighted, and R2* rises where iron and myelin, the sources of susceptibility, do. Over the
11 family heads (median / worst): Chimap NRMSE 40.9 / 47.2 -> 39.0 / 45.0 %, XSIM 0.706 / 0.627
-> 0.738 / 0.664, regional error 4.1 / 6.8 -> 3.8 / 7.1 ppb, |VeP error| 7.0 / 20.0 -> 7.0 /
16.6 ppb, slopes 0.96-1.01 -> 0.95-1.01; the sum of squares weighted by TE or TE^2 gave 40.4 /
46.8 and 39.7 / 46.2 %. Edges of an R2* map (log-linear fit over the echoes) gave the better map
(37.7 / 43.6 %, XSIM 0.748 / 0.682) but worse regions (4.3 / 7.4 ppb, |VeP| 10.0 / 24.4 ppb),
and a 2-echo scan has none: not kept. With a noisier magnitude (complex noise at SNR 40 and 20
of the first echo's brain mean, the last echo then at about 14 and 7 in the pallidum; field
unchanged; heads h01, h03, h04, h06, h10 and h11) the last echo's edges still gave the better map:
41.8 / 44.8 against 43.6 / 47.2 % and 42.0 / 44.9 against 43.5 / 47.0 %, regional error 4.1 / 7.3
against 4.2 / 7.0 and 4.7 / 7.8 against 4.5 / 7.2 ppb. Chi-separation keeps the echo sum's edges: with the last
echo's, ``benchmarks/bench_chisep.py`` gave the same NRMSE (chi+ / chi- 14 / 12 and 14 / 11 % on
its two heads) and worst chi+ errors of 3.8 and 3.7 against 3.1 and 3.0 ppb. On the demo's cohort (the project's simulator, 40 subjects at 2 mm),
against the true regional values, r rose in 19 of 28 region-sides and RMSE fell in 20 (VeP
slope 0.60 / 0.61 -> 0.64 / 0.64, bias -36.6 / -34.3 -> -31.9 / -30.3 ppb, but r 0.92 / 0.95
-> 0.90 / 0.93; habenula r 0.80 / 0.80 -> 0.73 / 0.77, the largest loss); on the 24-subject
family cohort at 1 x 1 x 1.2 mm (``validate_family_cohort.py``) RMSE fell in 18 of 28 and rose
by at most 1.1 ppb (habenula), r within 0.01 (VeP 0.98 / 0.96). ``qsmiron invert`` given a 4D
magnitude uses its last echo too, for the data weights as well when there is no noise map: on the
family heads without a noise map, 42.3 / 48.7 % with the echo sum and 40.2 / 46.1 % with the
last echo (regional error 4.6 / 7.5 and 4.4 / 7.5 ppb).

Cost: the descent takes 3-5 weights of 3 iterations, then 2-3 Bregman steps of 7: 20-36
iterations of 4 real FFTs on the mask's padded box. On the 1 mm head (brain box 141 x 178 x 151
of a 256 x 256 x 176 scan) 6.5 s CPU, 26 iterations (``wtv``: 10.5 s, 42), about 1 GB peak.
(Until results revision 11 the record counted the descent's iterations twice: "38" there.)
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from qsmiron.methods import Method
# Building blocks other susceptibility solvers share (chi-separation: qsmiron.recon.chisep).
from qsmiron.recon.invert._common import DEFAULT_PAD_MM, data_weights, estimate_noise_ppm, inconsistency_ppm
from qsmiron.recon.invert._common import setup as prepare_problem
from qsmiron.recon.invert._kernels import (gradient_adjoint_of_difference, gradient_shrink,
                                           gradient_shrink_by_axis)
from qsmiron.recon.invert.bregman import wtv_bregman
from qsmiron.recon.invert.rts import rts
from qsmiron.recon.invert.tikhonov import tikhonov
from qsmiron.recon.invert.tfi import tfi
from qsmiron.recon.invert.tkd import tkd
from qsmiron.recon.invert.tv_admm import tv_admm
from qsmiron.recon.invert.wtv import wtv

LIU_2011 = ("Liu T, Liu J, de Rochefort L, et al. Magn Reson Med 2011;66:777-783", "10.1002/mrm.22816")
"""MEDI: the magnitude edge prior of ``wtv`` and ``wtv_bregman``."""
LIU_2012 = ("Liu J, Liu T, de Rochefort L, et al. NeuroImage 2012;59:2560-2568",
            "10.1016/j.neuroimage.2011.08.082")
"""MEDI's gradient mask per gradient component, ``wtv_bregman``'s default edges (``edge_mask``)."""
MILOVIC_2018 = ("Milovic C, Bilgic B, Zhao B, Acosta-Cabronero J, Tejos C. Magn Reson Med 2018;80:814-821",
                "10.1002/mrm.27073")
"""FANSI: the ADMM splitting (and the optional nonlinear data term) of the TV solvers."""

METHODS = (
    Method("tkd", tkd, label="TKD (truncated k-space division)",
           description="division by the dipole kernel, truncated where |D| < threshold",
           citation="Shmueli K, de Zwart JA, van Gelderen P, et al. Magn Reson Med 2009;62:1510-1522",
           doi="10.1002/mrm.22135"),
    Method("tikhonov", tikhonov, label="Tikhonov-regularised inversion (closed form)",
           description="closed-form L2-regularised inversion, weight from the L-curve and the noise",
           citation="Bilgic B, Chatnuntawech I, Fan AP, et al. J Magn Reson Imaging 2014;40:181-191",
           doi="10.1002/jmri.24365"),
    Method("tv", tv_admm, label="total-variation-regularised inversion (TV, ADMM)",
           description="total-variation regularised inversion by ADMM, noise-weighted data term, "
                       "automatic weight (as wtv's)",
           citation="Bilgic B, Fan AP, Polimeni JR, et al. Magn Reson Med 2014;72:1444-1459",
           doi="10.1002/mrm.25029"),
    Method("rts", rts, label="RTS (rapid two-step)",
           description="well-conditioned k-space by LSMR, then TV on the ill-conditioned cone",
           citation="Kames C, Wiggermann V, Rauscher A. NeuroImage 2018;167:276-283",
           doi="10.1016/j.neuroimage.2017.11.018"),
    Method("wtv", wtv, label="magnitude-weighted total-variation inversion by ADMM (edge weights from the "
                             "magnitude as in MEDI; weight per scan by the discrepancy principle on the "
                             "field's magic-cone inconsistency, less the cone leakage of the mask's edge)",
           description="TV with edges taken from the magnitude, noise-weighted data term, weight "
                       "by the discrepancy principle on the magic cone (the mask edge's leakage removed)",
           citation=LIU_2011[0], doi=LIU_2011[1], also_cites=(MILOVIC_2018,), former_names=("medi",),
           renamed_because="magnitude-weighted TV with qsmiron's weight rule, not Liu's MEDI algorithm"),
    Method("wtv_bregman", wtv_bregman,
           label="magnitude-weighted total-variation inversion with Bregman iterations stopped by the "
                 "discrepancy principle on the field's magic-cone inconsistency, less the cone leakage of "
                 "the mask's edge (edge weights from the magnitude as in MEDI when a magnitude is given; "
                 "ADMM solver)",
           description="the TV problem of wtv regularised by Bregman iterations (contrast restored step "
                       "by step), stopped where the residual reaches the field's inconsistency (the "
                       "mask edge's cone leakage removed)",
           citation="Osher S, Burger M, Goldfarb D, Xu J, Yin W. Multiscale Model Simul 2005;4:460-489",
           doi="10.1137/040605412", also_cites=(LIU_2011, LIU_2012, MILOVIC_2018)),
    Method("tfi", tfi, label="preconditioned total field inversion (TFI: background and tissue fields "
                             "solved together, outside sources started from PDF's fit)",
           description="susceptibility inside and outside the mask from the total field in one "
                       "preconditioned solve (with background method 'none')",
           citation="Liu Z, Kee Y, Zhou D, Wang Y, Spincemaille P. Magn Reson Med 2017;78:303-315",
           doi="10.1002/mrm.26331"),
)
"""Dipole inversion methods (stage ``inversion``), each
``f(local_ppm, mask, voxel_size_mm, b0_direction, **params) -> (chi_ppm, info)``."""

INVERSION_METHODS: dict[str, Callable[..., tuple[np.ndarray, dict]]] = {
    method.name: method.function for method in METHODS}
"""Name -> function, from ``METHODS``."""

DEFAULT_INVERSION = "wtv_bregman"

TOTAL_FIELD_METHODS = ("tfi",)
"""Inversions of the total field: they model the background themselves and run after the
background method ``none`` (which passes the total field on), never after another."""

@dataclass
class InversionResult:
    """A susceptibility map (ppm, zero outside the mask) and how it was obtained.

    ``info`` holds the method, every parameter actually used (automatically chosen weights
    included), the iterations and whether the solver converged.
    """

    chi_ppm: np.ndarray
    info: dict[str, Any] = field(default_factory=dict)


def declared(name: str) -> Method:
    """The declaration of inversion method ``name``; a former name (``medi``) gives its method,
    with a ``FutureWarning``.

    Raises
    ------
    ValueError
        An unknown name (the message lists the choices).
    """
    for method in METHODS:
        if name == method.name:
            return method
        if name in method.former_names:
            method.warn_renamed(name, "inversion method")
            return method
    raise ValueError(f"unknown inversion method {name!r}; choose one of {sorted(INVERSION_METHODS)}")


def method_parameters(method: str) -> dict[str, Any]:
    """The keyword parameters of a method and their defaults."""
    function = declared(method).function
    return {name: p.default for name, p in inspect.signature(function).parameters.items()
            if p.kind is inspect.Parameter.KEYWORD_ONLY}


def invert(local_ppm: np.ndarray, mask: np.ndarray, voxel_size_mm: Sequence[float],
           b0_direction: Sequence[float], *, method: str = DEFAULT_INVERSION,
           magnitude: np.ndarray | None = None, noise_ppm: np.ndarray | None = None,
           **params) -> InversionResult:
    """Dipole inversion with the named method.

    Parameters
    ----------
    local_ppm : ndarray, shape (X, Y, Z)
        Local (tissue) field, ppm of B0.
    mask : ndarray of bool, shape (X, Y, Z)
    voxel_size_mm : sequence of 3 floats
    b0_direction : sequence of 3 floats
        B0 in voxel axes.
    method : str
        A key of ``INVERSION_METHODS`` (or a former name, see ``declared``).
    magnitude, noise_ppm : ndarray, optional
        Passed to the methods that use them (``wtv``, ``wtv_bregman``: both; ``tv``: the
        noise map); ignored by the others (``info["inputs"]`` says what was used).
    **params
        The method's own keyword parameters.

    Returns
    -------
    InversionResult
    """
    method = declared(method).name
    accepted = method_parameters(method)
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        raise ValueError(f"inversion method {method!r} has no parameter(s) {unknown}; "
                         f"it takes {sorted(accepted)}")
    extra = {}
    if "magnitude" in accepted:
        extra["magnitude"] = magnitude
    if "noise_ppm" in accepted:
        extra["noise_ppm"] = noise_ppm
    chi, details = INVERSION_METHODS[method](local_ppm, mask, voxel_size_mm, b0_direction, **params, **extra)
    used = {name: value for name, value in accepted.items() if name not in ("magnitude", "noise_ppm")}
    used.update(params)
    info = {"method": method, "parameters": used, "inputs": {
        "magnitude": magnitude is not None and "magnitude" in accepted,
        "noise_ppm": noise_ppm is not None and "noise_ppm" in accepted}}
    info.update(details)
    return InversionResult(np.asarray(chi, dtype=np.float32), info)
