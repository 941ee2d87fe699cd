"""Where a head's regional bias comes from: ``qsmiron recon`` with one stage's input made exact.

On heads of the issue-9 family or its held-out draws (``benchmarks/bench_bgremove.py``'s heads
and cache), the default reconstruction runs end to end with its own mask (template brain,
phase-quality refinement, ITK on one thread as ``qsmiron recon`` registers by default), and
again with the truth put in at one point, everything else as it runs:

- ``true total field``: the echo fit's field replaced by the simulated total field inside the
  refined mask, before background removal (what is left: background removal and inversion);
- ``true local, bg removal``: the true *local* field given to background removal instead (no
  background to remove: what background removal does to the tissue's own field);
- ``true local field``: background removal's output replaced by the true local field on the
  mask it leaves (what is left: the inversion, on that mask).

With ``--restored`` two more rows add back to background removal's output what iSMV takes of
the field of the susceptibility inside its own mask (that field minus iSMV's output of it, on
iSMV's mask; the default ``pdf_ismv`` only):

- ``true inside loss``: of the true susceptibility (the ceiling of such a correction);
- ``inverted inside loss``: of a first inversion of the local field on that mask, after which
  the inversion runs again (a correction the reconstruction could make; measured and not kept,
  see ``qsmiron.recon.bgremove.hybrid``).

Differences between the rows attribute the bias (mean regional error over the CIT168 regions
with 10 voxels inside the map's mask, whole-brain-mean referenced) to the echo fit and noise,
the background, background removal's treatment of the tissue field, and the inversion.

    .venv/bin/python benchmarks/bench_bias_sources.py [--heads d1-11,d1-03,d0-07] [--frame scanner]
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import os
from pathlib import Path

import numpy as np

MODES = ("end to end", "true total field", "true local, bg removal", "true local field")
RESTORED_MODES = ("true inside loss", "inverted inside loss")


def ismv_inside_loss(chi_ppm: np.ndarray, state, radius_mm: float | None) -> np.ndarray:
    """What iSMV takes of the field of ``chi_ppm`` on iSMV's mask: that field minus iSMV's output."""
    from qsmiron.recon.bgremove.ismv import ismv
    from qsmiron.recon.dipole import forward_field

    inside = np.where(state.local_mask, chi_ppm, 0).astype(np.float32)
    field = np.where(state.field_mask, forward_field(inside, state.voxel_size_mm, state.b0_direction), 0)
    kept, eroded, _ = ismv(field.astype(np.float32), state.field_mask, state.voxel_size_mm, radius_mm=radius_mm)
    if not np.array_equal(eroded, state.local_mask):
        raise SystemExit("iSMV's mask differs from the background stage's: run with the default background")
    return np.where(state.local_mask, field - kept, 0).astype(np.float32)


def restore_inside_loss(state, mode: str, head, radius_mm: float | None) -> None:
    """``state.local_ppm`` plus iSMV's loss of the true or of a first inverted susceptibility."""
    from qsmiron.recon.settings import ReconSettings
    from qsmiron.recon.stages import INVERSION

    if mode == "true inside loss":
        chi = head.chi_ppm
    else:
        block = ReconSettings().inversion
        local = state.local_ppm.copy()
        INVERSION.run(state, INVERSION.method(block.method), INVERSION.parameters(block))
        chi, state.local_ppm = state.chi_ppm - state.chi_ppm[state.local_mask].mean(), local
    state.local_ppm = state.local_ppm + ismv_inside_loss(chi, state, radius_mm)


def stages_with_truth(mode: str, head) -> tuple:
    """The reconstruction's stages, the background stage wrapped to put the truth in for ``mode``."""
    from qsmiron.recon.stages import BACKGROUND, RECON_STAGES

    def background(state, method, parameters):
        if mode in ("true total field", "true local, bg removal"):
            field_ppm = head.total_field_ppm if mode == "true total field" else head.local_field_ppm
            state.field_hz = np.where(state.field_mask, field_ppm / state.to_ppm, 0).astype(np.float32)
        result = BACKGROUND.run(state, method, parameters)
        if mode == "true local field":
            state.local_ppm = np.where(state.local_mask, head.local_field_ppm, 0).astype(np.float32)
        if mode in RESTORED_MODES:
            restore_inside_loss(state, mode, head, parameters.get("radius_mm"))
        return result

    wrapped = dataclasses.replace(BACKGROUND, run=background)
    return tuple(wrapped if stage is BACKGROUND else stage for stage in RECON_STAGES)


def run_with_truth(bench, head, mode: str) -> dict:
    """``bench_bgremove.run_default_recon`` with the stages of ``stages_with_truth``."""
    from qsmiron.recon import chain

    original = chain.run_stages
    chain.run_stages = functools.partial(original, stages=stages_with_truth(mode, head))
    try:
        return bench.run_default_recon(head)
    finally:
        chain.run_stages = original


def find_specs(names: list[str], frame: str) -> list:
    from qsmiron.simulate.head_draws import drawn_heads
    from qsmiron.simulate.heads import FAMILY, variant

    known = list(FAMILY) + [spec for seed in range(5) for spec in drawn_heads(12, seed)]
    specs = []
    for name in names:
        matches = [spec for spec in known if spec.name.startswith(name)]
        if not matches:
            raise SystemExit(f"no family or held-out head (draws 0-4) is named {name}*")
        specs.append(matches[0] if frame == "slab" else variant(matches[0], field_frame=frame))
    return specs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--heads", default="d1-11,d1-03,d0-07",
                        help="head names (or their starts): h01..h12, dS-NN of held-out draw S")
    parser.add_argument("--frame", choices=("slab", "scanner"), default="scanner")
    parser.add_argument("--restored", action="store_true", help="add the two rows that restore iSMV's loss")
    parser.add_argument("--cache", default=os.environ.get("QSMIRON_HEADS_CACHE", "/tmp/qsmiron_heads"))
    args = parser.parse_args()
    from qsmiron.register.ants_backend import pin_itk_to_one_thread

    pin_itk_to_one_thread()
    import bench_bgremove as bench  # the sibling script (benchmarks/ is on sys.path)
    print(f"{'head':<26}{'input made exact':<24}{'chi NRMSE %':>12}{'regional ppb':>13}{'bias ppb':>9}"
          f"{'VeP ppb':>8}{'slope':>7}")
    for spec in find_specs(args.heads.split(","), args.frame):
        head = bench.load_head(spec, Path(args.cache))
        for mode in MODES + (RESTORED_MODES if args.restored else ()):
            values = bench.score(run_with_truth(bench, head, mode), head)
            print(f"{spec.name[:24]:<26}{mode:<24}{values['chi_nrmse']:>12.1f}{values['regional_ppb']:>13.1f}"
                  f"{values['bias_ppb']:>9.1f}{values['vep_ppb']:>8.1f}{values['slope']:>7.2f}", flush=True)


if __name__ == "__main__":
    main()
