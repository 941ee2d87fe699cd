"""PDF, then iSMV on what PDF leaves: the two background models in sequence.

PDF (``qsmiron.recon.bgremove.pdf``) fits the background with the discrete dipole kernel of
sources outside the mask, so it also removes the part of a background that is *not* harmonic
inside the brain (the aliasing of binary air and bone edges in an FFT-simulated field, see
``qsmiron.recon.bgremove``), which defeats SHARP-type methods. But its least-squares fit
over the whole mask also takes the large-scale part of the tissue's own field that outside
sources can imitate: regional values then sit 10-30 ppb below the whole-brain mean.

iSMV applied to PDF's local field removes every field that is harmonic in the eroded mask,
and only that (``iSMV(f - b) = iSMV(f)`` for a harmonic ``b``): what PDF fitted of the
background is gone either way, and what PDF took of the tissue field, being a field of outside
sources, is taken again by iSMV's own rule, no more. So the result is iSMV's tissue field
(SHARP's erosion, its regional accuracy) without the non-harmonic background that iSMV
cannot remove. PDF here needs only the background's detail, not its smooth part (iSMV
removes any harmonic remainder), so it stops at a looser tolerance than PDF alone.

Voxels without usable field (infinite noise: the echo fit's misfit, ``qsmiron.recon.echofit``)
weigh nothing in PDF's fit. iSMV has no weights, and its deconvolution would spread their
wrong values over its ball; so before iSMV they take the Gaussian-weighted mean of the usable
local field around them (``fill_sigma_mm``), a guess the inversion then gives no weight.
Over the family of ``benchmarks/bench_bgremove.py`` (11 heads; h09, whose mask holds skull,
fails either way) this took Chimap NRMSE with the default inversion from 53.0 to 41.7 %
(median) and 65.5 to 52.0 % (worst), the local field from 47.2 to 34.4 % (median), XSIM from
0.556 to 0.709 (median), and the worst VeP error from -20.8 to -17.5 ppb; h01, with 1 473
misfit voxels, did not change.

Where the rest of the error is (``benchmarks/bench_error_budget.py``, same 11 heads, median /
worst, % of the true local field's norm in the output mask). Of the field of the susceptibility
inside the output mask, pdf_ismv loses 20.0 / 26.2 %. Of the field of the brain in the ring it
erodes (8.3 / 13.7 % of the local field) it leaves 21.0 / 24.7 %: iSMV's deconvolution spreads
the near field of the cortex just outside its mask over the mask, 1.3 to 3.9 times its size.
These two SHARP boundary terms are the largest on every head, and they make the deep nuclei's
negative bias. On h11 (mask 2 mm small) the exact field of the susceptibility inside iSMV's
mask, inverted, gives VeP -0.3 ppb and a mean regional bias of -1.0 ppb; the true local field
through iSMV, without any background, -13.6 and -6.5 ppb; end to end -14.2 and -6.6 ppb. Knowing
the tissue field's SMV-filtered values only inside the eroded mask, the deconvolution loses the
part of the tissue field that is harmonic there. That loss is not a global shading: the
susceptibility whose field is harmonic in the whole mask (constant, gradients and five
quadratics such as r^2, which iSMV removes to 97-98 %, against 30 % for (B0 . x)^2), fitted to
the error map and removed, leaves h11's VeP error at -13.5 ppb and takes h05's from -9.6 to -7.2
ppb. Of the background and the echo fit's error together it leaves 15.9 / 19.6 %. The default
inversion of the exact inside field gives 25.7 / 29.0 % Chimap NRMSE (its floor on these masks),
of pdf_ismv's output of that field 33.3 / 36.3 %, end to end 41.7 / 52.0 % (these figures with
``wtv_bregman``'s earlier weight rule; with its interpolated crossing, end to end 41.6 / 48.2 %,
XSIM 0.700 / 0.617, regional error 4.4 / 7.1 ppb). With the inversion's edges taken from the
last echo (``qsmiron.recon.invert``): floor 24.3 / 31.9 %, pdf_ismv's output of the inside field
29.8 / 34.5 %, end to end 39.0 / 45.0 %; the background removal columns are unchanged. Measured and not kept: a larger iSMV ball (3
or 4 x the largest voxel: lower NRMSE only by eroding 4-18 % more brain; in the common region
h01 33.1 -> 34.5-35.9 %, h04 46.6 -> 45.8-46.0 %), a smaller one (1 x: h04 88.9 %), LBV instead
of iSMV after PDF (h03 48.4, h12 36.5 %, but h04 402-457 %: the dilated mask's boundary values),
PDF again on the eroded mask instead of iSMV (h01 52.4 %, VeP -35 ppb), a tighter PDF (tol 0.01,
200 iterations: h04 52.0 -> 49.0 %, h12 41.5 -> 40.8 % for three times the CPU; over all 11
heads tol 0.01 with up to 300 iterations gave 41.3 / 49.1 % against 41.7 / 52.0 %, regional
error 3.7 / 6.5 against 4.3 / 6.8 ppb, for 18-44 s of background CPU against 8-15 s; with the
interpolated Bregman weight the three worst heads then give 47.0, 46.7 and 44.6 % against 48.2,
47.1 and 46.7 %), and the inversion with the SMV-filtered field as its data term and the ring's
susceptibility as unknowns (single-step SHARP + TV; h03 53.0-75.2 % on the same region). Nor
feeding a first inversion back (the field of PDF's local field inverted over the whole mask
subtracted in the ring, that of the eroded inversion subtracted before iSMV and added back after
it, then inverted again): the local field improved (h03 36.7 -> 29.6 %, h12 35.4 -> 29.5 %, h01
27.6 -> 20.8 %) and the Chimap a little (49.5 -> 46.6, 41.5 -> 38.0, 36.8 -> 35.5 %), but where
the ring holds more than tissue field the first inversion's ring is wrong (h04, mask 2 mm into
skull: 52.0 -> 82.9 %; h10, sinus 2 mm from the brain: 44.9 -> 50.4 %), a second round did not
help, and it costs two more inversions. Nor V-SHARP instead of iSMV after PDF: in the region
both keep, h03 47.9 against 47.5 %, h04 48.5 both, h10 47.4 against 41.1 %, h12 44.4 against
41.5 %, with regional slopes of 0.87-0.94 and regional errors of 5.4-7.9 ppb (iSMV 4.3-5.8).
Nor the rule of the methods that take the total field (``recon.fill.prepared_total_field``)
before the iSMV step, leaving the groups of voxels without field that reach the mask's edge
out of iSMV's mask instead of filling PDF's local field there: over the 11 family heads (slab /
scanner frame) the Chimap NRMSE went 38.4 / 44.6 -> 37.9 / 43.2 % and 38.6 / 45.0 -> 38.5 / 44.0 %
and the worst |VeP error| 18.0 -> 13.2 and 17.8 -> 13.6 ppb (h10's -18.0 -> -8.1 ppb in the
slab frame), but the median regional error rose 3.7 -> 4.2 and 3.2 -> 3.5 ppb and h10's slope
fell 0.97 -> 0.94. PDF's local field is small and smooth there, so the fill interpolates what
the rule would cut away. Nor PDF alone now that the reconstruction's own mask no longer reaches
the skull (``pdf``, tol 0.01, up to 300 iterations; ``bench_bgremove.py --own-mask``, family heads
h01, h03, h04, h06, h07 and h10, slab frame): Chimap NRMSE median / worst 49.8 / 53.8 % against
37.4 / 40.7 %, regional error 8.0 / 14.7 against 4.0 / 4.8 ppb, VeP -18.7 to -42.6 ppb against
-9.0 to +4.8 ppb: the large-scale tissue field PDF takes still costs more than iSMV's loss. Nor
LBV instead of iSMV after PDF with the own mask (``lbv`` on PDF's local field, ``peel`` 1: no
erosion beyond the boundary layer). In the slab frame it did better on each of the six heads above
(36.1 / 40.1 % against 37.4 / 40.7 %, slopes 0.98-1.03, h10 0.98 against 0.92; ``peel`` 2: 35.0 /
38.6 %), though VeP read lower (-14.2 against -9.0 ppb at worst). In the scanner frame, over the 12
family heads, it gave 40.4 / 89.5 % against 37.1 / 41.1 % (h01 89.5 % against 36.5 %), and on the
qsm-forward scenes of the tests 12.2 % (sphere, oblique B0) and 22.6 / 61.4 % (head with a sinus
touching the mask) against 8.6 % and 19.3 / 44.9 %. The cause on h01 (results revision 13,
own mask): in the scanner frame PDF leaves the background on the mask's boundary layer at 11.7 ppb
RMS (114 ppb at most; it stops at its cap of 50 iterations) where the true local field is 0.3 ppb,
and LBV takes those boundary values as background: local-field NRMSE 97.0 % (``peel`` 1) and
91.1 % (2) against iSMV's 32.4 %. PDF run on (tol 0.01, 300 iterations, 130 s of CPU) still left
6.1 ppb there, and LBV then gave 59.9 and 54.6 %; the mask eroded by 1, 2, 3 or 4 mm before LBV gave
45.4, 35.3, 37.4 and 37.1 %, above iSMV's on the region both keep (31.1 % at 2 mm, 27.5 % at 4 mm).
In the slab frame, where the simulator's field is made with the discrete kernel PDF fits with,
PDF converges in 32 iterations, leaves 4.5 ppb on the boundary layer, and LBV beats iSMV (22.9
and 19.8 % against 24.7 %). A scanner's background is continuous, so LBV stays out of the default.

What limits the regional slope of the 2 mm family head h10 (0.92 with its own mask, against 1.01
from its true local field). It is the brain's own field, not the sinus 2 mm from the brain: on the
recon's own mask (its eroded mask grown back by iSMV's ball, in the brain), the noise-free
background alone through ``pdf_ismv`` and the default inversion moves no CIT168 region by more than
0.3 ppb, while the true local field alone reads the nucleus accumbens 14 and 22 ppb high (the two
sides; truth 24 ppb) and the external pallidum 5 and 6 ppb low. End to end the accumbens reads 11
and 20 ppb high, the hypothalamus 5 and 6 ppb and one extended amygdala 9 ppb high, the external
pallidum 4 and 6 ppb and one internal pallidum 7 ppb low, VeP within 0.4 ppb: the basal forebrain
lies a few mm above the mask's base, where iSMV loses the part of the tissue field that is harmonic
in its eroded mask (above). A smaller ball (1.5 times the largest voxel, at least twice the
smallest: 3 mm on h10) left the slope at 0.92 and read VeP 7 ppb lower (-0.4 -> -7.4 ppb; the
``radius_mm`` note). The regions that make the slope are those the mask covers in part: the
phase-quality refinement peels the voxels under the basal forebrain whose field the sinus spoils
(``qsmiron.recon.mask.refine_mask_by_phase_quality``), and iSMV erodes 4 mm more, so the right
accumbens keeps 13 % of its voxels, the hypothalami 19 and 45 %, the left accumbens 75 %. Over
the 19 regions with at least 90 % of their voxels in the mask (those ``qsmiron roi`` reports
without ``flag_partial_coverage``) h10's slope is 1.00 and its regional error 2.5 ppb.

The same loss makes most of the low nuclei of the held-out heads above 8 ppb
(``benchmarks/bench_bias_sources.py``: the recon with the truth put in at one stage, own mask,
scanner frame; mean regional bias in ppb). d1-11 (1.5 mm slices): end to end -8.2, from the true
total field -7.5, from the true local field given to ``pdf_ismv`` (no background) -5.7, from the
true local field on ``pdf_ismv``'s mask -1.4; d1-03 (2.5 mm): -7.9, -6.9, -6.5, -4.1; d0-07 (2.5 mm):
-7.4, -6.5, -4.5, -3.1. So the tissue field's harmonic part costs 1.4 to 4.3 ppb, the background
0.4 to 2.0 and the echo fit up to 1.0; the inversion keeps the rest. Its sign depends on the
head: on family head h01 (1 mm, axial), whose nuclei read high, the same rows are +6.4, +6.8, +5.1
and +1.9 ppb; on h10 -0.3, -0.1, +0.3 and -0.6.

Measured and not kept: adding back what iSMV takes of the field of the susceptibility inside its
own mask (``bench_bias_sources.py --restored``). The field of a first inversion on iSMV's mask,
minus iSMV's output of that field, is added to the local field, and the inversion runs again. With
the true susceptibility in place of the first inversion (the ceiling) d1-11, d1-03 and d0-07 read
4.4, 7.6 and 5.4 ppb (VeP -6.4, -24.9, -20.2 ppb). With the first inversion they read 6.1, 8.3 and
6.8 ppb against 8.2, 8.8 and 7.7 (a second round, tried by hand: 5.6, 7.9, 6.0), but the Chimap
NRMSE went 38.1, 41.6, 42.5 -> 39.2, 41.1, 44.6 % and VeP on the 2.5 mm heads -19.7, -16.0 ->
-26.3, -22.7 ppb. Over the 12 family heads (own mask, scanner frame; the same rows with ``--heads
h01,...,h12``) it lifted h10's slope from 0.94 to 1.02, but the Chimap NRMSE went 35.2 / 39.5 ->
37.3 / 43.7 % (median / worst), the regional error 2.8 / 6.4 -> 3.5 / 9.2 ppb (h12 4.5 -> 9.2 ppb,
bias -0.3 -> +7.8), XSIM worst 0.741 -> 0.714, for one inversion more (6 s on a 256 x 256 x 176
head). The correction is the harmonic extension of the first map's field in iSMV's ring, and that
field is set mostly by the map's values next to the mask's edge, where the first inversion is least
accurate. Even the ceiling leaves the low VeP of the 2.5 mm heads: that part of their bias is the
inversion's on thick slices. """

from __future__ import annotations

from typing import Sequence

import numpy as np

from qsmiron.recon.bgremove.ismv import ismv
from qsmiron.recon.bgremove.pdf import pdf
from qsmiron.recon.fill import NO_DATA_FILL_SIGMA_MM, filled_where_no_data
from qsmiron.recon.params import NonNegativeFloat, OpenFraction, PositiveFloat, PositiveInt


def pdf_ismv(field: np.ndarray, mask: np.ndarray, voxel_size_mm: Sequence[float],
             b0_direction: Sequence[float] = (0.0, 0.0, 1.0), *, noise: np.ndarray | None = None,
             pad_mm: NonNegativeFloat = 10.0, pdf_tol: OpenFraction = 3e-2, pdf_max_iter: PositiveInt = 50,
             radius_mm: PositiveFloat | None = None, ismv_tol: OpenFraction = 1e-3,
             fill_sigma_mm: PositiveFloat = NO_DATA_FILL_SIGMA_MM) -> tuple[np.ndarray, np.ndarray, dict]:
    """Remove the background by PDF, then the harmonic remainder by iSMV.

    Parameters
    ----------
    field : ndarray, shape (X, Y, Z)
        Total field (Hz or ppm; the output has the same unit).
    mask : ndarray of bool
    voxel_size_mm : sequence of 3 floats
    b0_direction : sequence of 3 floats
        B0 in voxel axes.
    noise : ndarray, optional
        Field-noise map in the field's unit (PDF's data weights); +inf marks voxels without
        usable field (filled before iSMV).
    pad_mm : float
        PDF's room for background sources around the mask's bounding box. 5 mm instead of 10 was
        measured and not kept: on head_obl15 PDF took 3.5-4.0 s instead of 4.4-5.1 s (grid 160 x
        200 x 180 instead of 180 x 216 x 180; 30 full-resolution iterations instead of 26), and the
        12 family heads with their own masks kept their figures in the scanner frame (Chimap NRMSE
        37.1 / 41.1 % both), but in the slab frame the most tilted heads lost up to 3.7 points
        (h03, 25 deg: 40.7 -> 44.4 %; h08 +2.3, h05 +1.9; XSIM worst 0.717 -> 0.643).
    pdf_tol : float
        PDF's stopping tolerance (``pdf``'s ``tol``); looser than PDF alone, since iSMV removes
        a smooth remainder anyway. Looser still, 0.06, was measured for speed and not kept: on
        the 12 family heads with their own masks (scanner frame, results revision 14) it halved
        PDF's full-resolution iterations (14-32 instead of 25-50; median recon CPU 22.2 -> 19.5
        s), but the Chimap NRMSE went 35.2 / 39.5 -> 35.6 / 39.9 % (median / worst) and h01's
        regional error 6.4 -> 8.4 ppb: what PDF leaves at its skull base is not all harmonic.
    pdf_max_iter : int
        Cap on PDF's full-resolution iterations (after its two coarser grids). On family head
        h02 (10 deg, mask 1 mm too large) 30 gave the same result as 200 (local field 66.3
        against 66.2 %, Chimap 59.2 % both, VeP -6.9 against -6.8 ppb) for 3 s less CPU. Fewer
        cost accuracy where PDF needs them (h03, h04, h10 take 35-50): over the 11 family heads
        with the default inversion, Chimap NRMSE median / worst 41.6 / 48.2 % at 50, 42.0 / 49.6 %
        at 20 and 43.7 / 64.4 % at 10, for a median background CPU time of 9.2, 7.6 and 5.1 s.
    radius_mm : float, optional
        iSMV's ball (default twice the largest voxel). On the 2 and 2.5 mm family heads h04, h05
        and h10 (own masks, slab frame) 3 or 3.5 mm instead of 4 or 5 kept 7-11 % more brain and
        lowered the NRMSE of the region both keep by 0.4-0.9 point, but read VeP 2.6-8.7 ppb lower
        (h04 +1.6 -> -6.2 ppb at 3.5 mm): not kept.
    ismv_tol : float
        iSMV's relative residual.
    fill_sigma_mm : float
        Reach of the fill of voxels without usable field: 2 mm averages their nearest few
        dozen usable neighbours, well inside iSMV's ball. On 6 family heads 1 and 4 mm gave
        the same figures (Chimap NRMSE median 43.9 and 43.9 %, worst 52.1 and 51.8 %, against
        43.7 and 52.0 %; worst VeP -16.9 and -18.0 against -17.5 ppb).

    Returns
    -------
    local : ndarray, float32, zero outside ``eroded``
    eroded : ndarray of bool (iSMV's erosion)
    info : dict (``pdf`` and ``ismv``: each method's details)
    """
    after_pdf, pdf_mask, pdf_info = pdf(field, mask, voxel_size_mm, b0_direction, noise=noise,
                                        pad_mm=pad_mm, tol=pdf_tol, max_iter=pdf_max_iter)
    if noise is not None:
        after_pdf, pdf_info["filled_voxels"] = filled_where_no_data(after_pdf, pdf_mask, noise, voxel_size_mm,
                                                                    fill_sigma_mm)
    local, eroded, ismv_info = ismv(after_pdf, pdf_mask, voxel_size_mm, b0_direction,
                                    radius_mm=radius_mm, tol=ismv_tol)
    # PDF stopping at its cap is expected here (iSMV removes the smooth remainder it leaves):
    # recorded in its details, not raised as a warning.
    pdf_info.pop("warnings", None)
    warnings = ismv_info.pop("warnings", [])
    info = {"pdf": pdf_info, "ismv": ismv_info}
    if warnings:
        info["warnings"] = warnings
    return local, eroded, info
