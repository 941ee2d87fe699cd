"""Background field removal: total field to local (tissue) field, units in = units out.

Methods (declared in ``METHODS``): ``pdf_ismv`` (PDF then iSMV, the default), ``ismv``
(iterative SMV), ``vsharp`` (variable-radius SHARP), ``resharp`` (Tikhonov-regularised SHARP,
L-curve weight), ``lbv`` (Laplacian boundary value), ``pdf`` (projection onto dipole fields,
coarse to fine) and ``none`` (the total field passes on, for the total field inversion
``inversion.method = "tfi"``, which models the background itself). Each method is
``f(field, mask, voxel_size_mm, b0_direction, **params) -> (local, eroded_mask, info)``.

Why two phantom families ranked the methods differently (issue 9)
-----------------------------------------------------------------
The project's ellipsoid head ranked iSMV first (16.6 % local-field NRMSE); on the issue's
independent heads iSMV gave 84 % and PDF 33 %. The head family of ``qsmiron.simulate.heads``
reproduces both and separates the causes (``benchmarks/bench_bgremove.py --mechanism``;
noise-free true total field, true brain mask; NRMSE from the total field / from the true local
field alone, the latter being what a method takes of the tissue's own field):

=================================  ==============  ==============  ==============
head h03 (25 deg, 1.2 mm slices)   LBV             iSMV            PDF
=================================  ==============  ==============  ==============
as simulated (field on the slab)   78.9 / 23.3     79.7 / 32.3     40.8 / 39.8
field in the scanner frame         28.2 / 23.3     36.1 / 32.3     41.4 / 39.8
no background sources              23.9 / 23.3     32.4 / 32.3     40.1 / 39.8
no edge contrast                   79.1 / 13.0     75.5 / 15.9     36.8 / 35.5
neither                            14.0 / 13.0     16.7 / 15.9     35.8 / 35.5
old ellipsoid head (axial)         117  / 10.7     16.6 / 12.5     31.9 / 31.3
=================================  ==============  ==============  ==============

(Measured again with simulated heads revision 2, whose scanner frame interpolates the field by
cubic B-splines: with linear interpolation that row read 23.5 / 23.3, 36.2 / 32.3 and 42.0 /
39.8, the blur smoothing part of what the binary air and bone edges leave on the scanner grid.)

1. **A non-harmonic background, the largest part (about 55 points for LBV and iSMV).** The
   independent heads, like this family's "slab" frame, compute the field with the FFT dipole
   model on the oblique image grid (B0 oblique in voxel axes) from binary air and bone. The
   tilted discrete kernel rings at those edges and the background it gives is not harmonic
   inside the brain: one air sphere 6 mm from the brain leaves 2.5 ppb RMS of such field and
   adds 35-37 % of the local field's norm to LBV's and iSMV's error, where its analytic field
   adds 0.6-2.3 % (on a 48^3 sphere 75 % against 8 % with B0 along a grid axis;
   ``tests/recon/test_bgremove.py``). SHARP-type methods and LBV assume a harmonic
   background; PDF fits it with the same discrete kernel and absorbs it. A scanner measures
   the field of continuous tissue (the "scanner" frame: computed on a scanner-aligned grid,
   sampled on the slab), where most of it vanishes (LBV 28.2 % against 78.9 %). The
   project's old head is axial, so it never showed.
2. **PDF takes tissue field.** PDF's least-squares fit over the whole mask also takes the
   large-scale part of the tissue's own field that outside sources can imitate: 35.5 % of
   the true local field on h03 even without edge contrast (iSMV 15.9 %, LBV 13.0 %). After
   inversion that is a smooth susceptibility error that moves the deep nuclei against the
   whole-brain mean: on h01 (axial, exact mask) PDF applied to the *true local field alone*
   gives regional bias -9.0 ppb and VeP -25.6 ppb, the same as from the total field (-8.9,
   -25.8): neither residual background nor convergence (tol 0.01 to 0.03 moves the local
   field by 1.3 points at most), nor the edge (fitting only the mask eroded by 1 or 2 mm:
   VeP -29, -33 ppb). That is the VeP bias of -21 to -35 ppb PDF showed over the family.
3. **Edge contrast (10-16 points).** Cortex and sulcal CSF at the mask's edge give the
   tissue field a part that is harmonic in the brain, which every background method
   assigns to the background. The old head has none (0 ppm at the brain edge).
4. **Mask errors.** A mask dilated into skull hands LBV (boundary values) and PDF (data
   weights alone) voxels whose field is noise or wrapped (Chimap NRMSE 559 % and 238 % on
   the 2 mm-dilated head, 2.5 mm slices), where iSMV and V-SHARP erode them away.

Why PDF followed by iSMV is the default
---------------------------------------
``pdf_ismv`` (``hybrid.py``) combines what holds on each family: PDF removes the background
including its non-harmonic part (cause 1); iSMV on PDF's result then removes every field
harmonic in its eroded mask and only that, so what PDF took of the tissue field (cause 2), a
field of outside sources, is replaced by what iSMV's own rule takes (``iSMV(f - b) = iSMV(f)``
for a harmonic ``b``), and SHARP's erosion handles mask errors (cause 4). On fields with a
harmonic background it equals iSMV (h01, slab / scanner frame: chi NRMSE 32.4 / 35.1 % against
32.3 / 34.9 %, VeP -3.9 / -3.2 ppb against PDF's -24.9 / -23.9); on the binary air sphere with
oblique B0 it gives 13.5 % where iSMV gives 73.4 % and PDF 27.2 %. Where it loses: a sinus
touching the brain (the 48^3 qsm-forward head tilted 20 deg, 40 % against iSMV's 24.6 %),
where PDF's sources next to the brain leave a field iSMV does not remove.

Over the head family (``benchmarks/bench_bgremove.py``, heads h01-h04 of
``qsmiron.simulate.heads.FAMILY``: axial 1 mm exact mask; 10 deg, mask 1 mm too large; 25 deg,
1.2 mm slices, mask 1 mm too small; 15 deg, 2.5 mm slices, mask 2 mm too large; in both field
frames; total field from ROMEO and the echo fit of the simulated 5-echo signal, then each
method and the default inversion ``wtv_bregman``, whole-brain-mean referenced; median / worst;
regional error and slope over the CIT168 regions; CPU seconds of background removal and
inversion together, on a loaded machine):

=========  =======  ===  =============  =============  ===========  ===========  ===========  ======
method     frame    n    Chimap NRMSE   XSIM           region ppb   slope        |VeP| ppb    CPU s
=========  =======  ===  =============  =============  ===========  ===========  ===========  ======
pdf_ismv   slab       4   38.9 /  44.6  0.726 / 0.668   2.8 /  3.9  1.00 / 0.99   4.3 /  8.9   11.8
pdf_ismv   scanner    4   38.4 /  45.0  0.742 / 0.664   2.6 /  4.0  1.00 / 1.01   4.8 /  9.0   10.4
ismv       slab       4   50.1 /  63.0  0.602 / 0.437   4.0 /  7.7  1.00 / 0.99   8.4 / 15.0    5.2
ismv       scanner    4   41.2 /  57.0  0.716 / 0.550   3.8 /  6.1  1.01 / 1.01   9.4 / 13.3    5.3
vsharp     slab       4   46.9 /  52.4  0.615 / 0.512   6.9 /  9.7  0.89 / 0.85   3.9 / 11.4    5.3
vsharp     scanner    4   40.5 /  45.1  0.712 / 0.632   6.0 /  7.9  0.92 / 0.87   7.9 / 12.2    5.5
lbv        slab       4   51.2 / 322.4  0.607 / 0.130   3.5 / 15.5  0.98 / 0.96   5.3 / 13.4    6.8
lbv        scanner    4   40.9 / 232.3  0.734 / 0.113   6.1 / 15.1  0.99 / 1.02   8.8 / 15.7    7.1
pdf        slab       4   48.4 / 129.3  0.645 / 0.333   8.6 / 13.6  1.04 / 1.05  24.6 / 36.3   24.6
pdf        scanner    4   49.5 / 116.2  0.642 / 0.376   8.4 / 11.8  1.04 / 1.06  24.9 / 37.9   22.9
=========  =======  ===  =============  =============  ===========  ===========  ===========  ======

(Measured again at results revision 9 with simulated heads revision 2 and
``recon.fill.prepared_total_field``. Before that rule, which leaves groups of voxels without
field that reach the mask's edge out of the mask of the methods that cannot weight, those
methods filled them and failed on the heads whose masks reach a sinus: iSMV 165 / 258 % and
176 / 235 %, V-SHARP 94 / 200 % and 102 / 178 %, LBV 221 / 548 % and 221 / 493 %, slab /
scanner frame.) PDF then iSMV has the lowest Chimap NRMSE, the smallest regional error
(median 2.6-2.8 ppb, worst 4.0) and slopes within 0.01 of 1 in both frames. V-SHARP compresses
regional contrast (slope 0.85-0.92, regional error 6-10 ppb); iSMV leaves the slab frame's
non-harmonic background (63 % worst) and misplaces VeP by up to 15 ppb; LBV fails on the 2
mm-dilated, 2.5 mm-slice head (232-322 %); PDF alone biases the deep nuclei (VeP 25-38 ppb,
regional 8-14 ppb) and fails on that head too (116-129 %). For a study of 10-20 ppb regional
differences the regional figures decide. None of the methods reaches issue 9's Chimap NRMSE
target of a 35 % median on this family.

Cost: PDF at a loose tolerance (0.03, at most 50 full-resolution iterations; iSMV removes a
smooth remainder anyway) plus iSMV: about 6 s of CPU more than iSMV per head (median 10.4-11.8
against 5.2-5.3 s with the inversion, the table above). In ``qsmiron recon`` of a 256 x 256 x
176 x 5 input (``benchmarks/bench_recon_cli.py``) the background step took 6.4 s of CPU on the
axial ellipsoid head and 12.3 s on a head tilted 15 deg.
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

DEFAULT_BACKGROUND = "pdf_ismv"


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
        The method's keyword parameters. Every method but ``none`` takes ``noise``, a noise
        map in the field's unit: PDF weights its fit by it, and each fills the voxels it marks
        without usable field (infinite noise) before its unweighted steps.

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
    info = {"method": method, "parameters": used, "noise_map": params.get("noise") is not None}
    info.update(details)
    return local, eroded, info
