"""Does the default inversion stop its Bregman steps at the right one? Per head, per step.

``qsmiron recon``'s default (``wtv_bregman``) stops its Bregman steps at the first whose
residual reaches the field's leak-corrected inconsistency (``recon.invert.bregman``). Here the
steps go on past that stop, on the very problem the recon's inversion solves (its local field,
mask, data weights and edge weights, recorded from a run of ``qsmiron recon``'s defaults on a
simulated head with its own brain mask, as ``bench_bgremove.py --own-mask`` runs it), and each
step's map is scored against the truth: Chimap NRMSE (%), regional error and VeP error (ppb).

Beside the discrepancy stop, an independent data-driven choice: hold-out cross-validation over
voxels. A random tenth of the mask's voxels gets data weight zero, the weight and the steps are
chosen on the rest exactly as the default chooses them, and after each step the field the map
predicts is compared with the measured field in the held-out voxels (RMS, ppb). Fitting
structure lowers that error; fitting noise and inconsistency raises it. The step where it is
lowest is the cross-validation choice, applied to the chain on all voxels.

Printed per head: each step's residual RMS, level and held-out error (ppb) and its scores,
with the discrepancy stop (``*``), the cross-validation choice (``cv``) and the step with the
lowest Chimap NRMSE (``best``) marked; then, over the heads, median / worst Chimap NRMSE and
regional error of each choice and of fixed step counts. (The weight raise of
``run_bregman_tv``, which never acted on these heads, is not repeated here.)

With ``--weight-offsets``, the steps' weight instead: at each given offset (decades above the
level's crossing; the default's is 0.25) the steps run to the discrepancy stop, on all voxels
(scored) and without the held-out ones (their error at the stop); the same summary follows,
with the weight cross-validation chooses.

    .venv/bin/python benchmarks/bench_bregman_stop.py [--drawn 12 --draw-seed 1] [--frame scanner]
        [--heads 3,4] [--extra-steps 3] [--weight-offsets 0,0.25,0.5,0.75]
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np

HOLDOUT_FRACTION = 0.1
FIXED_STEPS = (1, 2, 3)


def recorded_inversion(bench, head) -> tuple[dict, dict]:
    """Run ``qsmiron recon``'s defaults on ``head``; return the recon's scores-ready run and the
    inversion's prepared problem (``run_bregman_tv``'s arguments)."""
    from qsmiron.recon.invert import bregman

    recorded: dict = {}
    original = bregman.run_bregman_tv

    def record(problem, weights, gradient_weights, **parameters):
        recorded.update(problem=problem, weights=weights, gradient_weights=gradient_weights, **parameters)
        return original(problem, weights, gradient_weights, **parameters)

    bregman.run_bregman_tv = record
    try:
        run = bench.run_default_recon(head)
    finally:
        bregman.run_bregman_tv = original
    if not recorded:
        raise RuntimeError("the recon's inversion is not wtv_bregman: nothing recorded")
    return run, recorded


def step_chain(recorded: dict, weights: np.ndarray, n_steps: int, held_out: np.ndarray | None = None,
               extra_steps: int | None = None, offset_decades: float | None = None):
    """Bregman steps from the default's start on ``weights``: per step the iterate, the residual
    RMS in the fitted voxels and, with ``held_out``, the residual RMS there (ppm). ``n_steps`` of
    them, or with ``extra_steps`` that many past the first to reach the level (``n_steps`` at most).
    ``offset_decades``: the steps' weight that far above the level's crossing instead of the
    default's half path step."""
    from qsmiron.recon.invert.bregman import bregman_start

    problem = recorded["problem"]
    begin = bregman_start(problem, weights, recorded["gradient_weights"],
                          path_step_decades=recorded["path_step_decades"],
                          path_iterations=recorded["path_iterations"], path_decades=recorded["path_decades"])
    solver = begin.solver
    solver.restart(begin.start)
    alpha = begin.alpha
    if offset_decades is not None and begin.crossing_alpha is not None:
        alpha = begin.crossing_alpha * 10.0 ** offset_decades
    solver.set_alpha(alpha)
    target = problem.field_ppm.copy()
    fitted = problem.mask if held_out is None else problem.mask & ~held_out
    steps, first_at_level = [], None
    for _ in range(n_steps):
        solver.iterate(recorded["inner_iterations"])
        residual = np.where(problem.mask, problem.field_ppm - solver.dchi / np.float32(solver.scale), 0)
        residual = residual.astype(np.float32)
        steps.append({"chi": solver.chi.copy(), "residual_ppm": float(np.sqrt(np.mean(residual[fitted] ** 2))),
                      "held_out_ppm": (float(np.sqrt(np.mean(residual[held_out] ** 2)))
                                       if held_out is not None else float("nan"))})
        if first_at_level is None and steps[-1]["residual_ppm"] <= begin.level_ppm:
            first_at_level = len(steps) - 1
        if extra_steps is not None and first_at_level is not None and len(steps) > first_at_level + extra_steps:
            break
        target += np.where(fitted, residual, 0).astype(np.float32)
        solver.set_field(target)
    return begin, steps


def held_out_weights(recorded: dict) -> tuple[np.ndarray, np.ndarray]:
    """A fixed random tenth of the mask's voxels, and the data weights with those set to zero."""
    problem = recorded["problem"]
    held_out = problem.mask & (np.random.default_rng(0).random(problem.mask.shape) < HOLDOUT_FRACTION)
    return held_out, np.where(held_out, 0, recorded["weights"]).astype(np.float32)


def referenced_map(problem, chi_pad: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """An iterate on the image grid, referenced to its mean in ``mask`` as the recon's map is."""
    chi = problem.result(chi_pad)
    return np.where(mask, chi - chi[mask].mean(), 0).astype(np.float32)


def head_steps(bench, head, extra_steps: int) -> dict:
    """Scores of every step on all voxels, the discrepancy stop and the cross-validation choice."""
    run, recorded = recorded_inversion(bench, head)
    problem = recorded["problem"]
    begin, steps = step_chain(recorded, recorded["weights"], recorded["max_outer"] + extra_steps,
                              extra_steps=extra_steps)
    stop = next((i for i, s in enumerate(steps) if s["residual_ppm"] <= begin.level_ppm), recorded["max_outer"] - 1)
    held_out, cv_weights = held_out_weights(recorded)
    _, cv_steps = step_chain(recorded, cv_weights, len(steps), held_out)
    mask = run["mask"]
    for step, cv_step in zip(steps, cv_steps):
        chi = referenced_map(problem, step.pop("chi"), mask)
        step.update(bench.score({**run, "chi": chi}, head), held_out_ppm=cv_step["held_out_ppm"])
    cv = int(np.argmin([s["held_out_ppm"] for s in steps]))
    best = int(np.argmin([s["chi_nrmse"] for s in steps]))
    return {"name": head.spec.name, "level_ppm": begin.level_ppm, "steps": steps, "stop": stop, "cv": cv,
            "best": best}


def weight_check(bench, head, offsets: list[float]) -> dict:
    """Per weight offset (decades above the level's crossing): the map at the discrepancy stop on
    all voxels, scored, and the held-out error at the stop of the chain fitted without them."""
    run, recorded = recorded_inversion(bench, head)
    problem, mask = recorded["problem"], run["mask"]
    held_out, cv_weights = held_out_weights(recorded)
    rows = []
    for offset in offsets:
        _, steps = step_chain(recorded, recorded["weights"], recorded["max_outer"], extra_steps=0,
                              offset_decades=offset)
        _, cv_steps = step_chain(recorded, cv_weights, recorded["max_outer"], held_out, extra_steps=0,
                                 offset_decades=offset)
        chi = referenced_map(problem, steps[-1]["chi"], mask)
        rows.append({"offset": offset, "steps": len(steps), "held_out_ppm": cv_steps[-1]["held_out_ppm"],
                     **bench.score({**run, "chi": chi}, head)})
        print(f"  {head.spec.name[:28]:<28} weight +{offset:.2f} decade: {len(steps)} steps, held-out "
              f"{1e3 * rows[-1]['held_out_ppm']:5.2f} ppb, Chimap {rows[-1]['chi_nrmse']:5.1f} %, regional "
              f"{rows[-1]['regional_ppb']:4.1f}, VeP {rows[-1]['vep_ppb']:+6.1f}", flush=True)
    return {"name": head.spec.name, "rows": rows,
            "cv": int(np.argmin([r["held_out_ppm"] for r in rows])),
            "best": int(np.argmin([r["chi_nrmse"] for r in rows]))}


def summary_line(label: str, chosen: list[dict]) -> str:
    """Median / worst Chimap NRMSE, regional error and |VeP error| of one chosen map per head."""
    nrmse = np.array([c["chi_nrmse"] for c in chosen])
    regional = np.array([c["regional_ppb"] for c in chosen])
    vep = np.abs([c["vep_ppb"] for c in chosen])
    return (f"  {label:<28} Chimap {np.median(nrmse):5.1f} / {nrmse.max():5.1f} %   regional "
            f"{np.median(regional):4.1f} / {regional.max():4.1f} ppb   |VeP| {np.median(vep):4.1f} / {vep.max():4.1f}")


def summarise_weights(results: list[dict], offsets: list[float]) -> None:
    def line(label: str, pick) -> str:
        return summary_line(label, [r["rows"][pick(r)] for r in results])

    print(f"\n{len(results)} heads, median / worst:")
    for i, offset in enumerate(offsets):
        print(line(f"weight +{offset:.2f} decade", lambda r, i=i: i))
    print(line("cross-validated weight", lambda r: r["cv"]))
    print(line("best weight (truth, oracle)", lambda r: r["best"]))
    counts = np.bincount([r["cv"] for r in results], minlength=len(offsets))
    print("  cross-validation chose " + ", ".join(f"+{o:.2f}: {c}" for o, c in zip(offsets, counts)))


def print_head(result: dict) -> None:
    print(f"{result['name']}  level {1e3 * result['level_ppm']:.2f} ppb")
    for i, s in enumerate(result["steps"]):
        marks = " ".join(m for m, at in (("*", result["stop"]), ("cv", result["cv"]), ("best", result["best"]))
                         if at == i)
        print(f"  step {i + 1}: residual {1e3 * s['residual_ppm']:5.2f}  held-out {1e3 * s['held_out_ppm']:5.2f}"
              f"  Chimap {s['chi_nrmse']:5.1f} %  regional {s['regional_ppb']:4.1f}  VeP {s['vep_ppb']:+6.1f}"
              f"  slope {s['slope']:.2f}  {marks}", flush=True)


def summarise(results: list[dict]) -> None:
    def line(label: str, pick) -> str:
        return summary_line(label, [r["steps"][min(pick(r), len(r["steps"]) - 1)] for r in results])

    print(f"\n{len(results)} heads, median / worst:")
    print(line("discrepancy stop (default)", lambda r: r["stop"]))
    print(line("cross-validation", lambda r: r["cv"]))
    print(line("best step (truth, oracle)", lambda r: r["best"]))
    for n in FIXED_STEPS:
        print(line(f"{n} step(s)", lambda r, n=n: n - 1))
    agree = sum(r["cv"] == r["stop"] for r in results)
    print(f"  cross-validation chose the discrepancy stop on {agree} of {len(results)} heads; the oracle's best "
          f"step was the stop on {sum(r['best'] == r['stop'] for r in results)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--drawn", type=int, default=0, help="held-out heads (simulate.head_draws) instead of the family")
    parser.add_argument("--draw-seed", type=int, default=0)
    parser.add_argument("--frame", choices=("slab", "scanner"), default="scanner")
    parser.add_argument("--heads", default=None, help="1-based indices, comma-separated")
    parser.add_argument("--extra-steps", type=int, default=3, help="steps past the stop")
    parser.add_argument("--weight-offsets", default=None,
                        help="instead: compare the steps' weight at these decades above the level's "
                             "crossing (comma-separated; the default's is 0.25)")
    parser.add_argument("--cache", default=os.environ.get("QSMIRON_HEADS_CACHE", "/tmp/qsmiron_heads"))
    args = parser.parse_args()
    from qsmiron.simulate.head_draws import drawn_heads
    from qsmiron.simulate.heads import FAMILY, variant

    specs = list(drawn_heads(args.drawn, args.draw_seed) if args.drawn else FAMILY)
    if args.heads:
        specs = [specs[int(i) - 1] for i in args.heads.split(",")]
    if args.frame != "slab":
        specs = [variant(spec, field_frame=args.frame) for spec in specs]
    import bench_bgremove as bench  # the sibling script (benchmarks/ is on sys.path)
    results = []
    if args.weight_offsets:
        offsets = [float(v) for v in args.weight_offsets.split(",")]
        for spec in specs:
            results.append(weight_check(bench, bench.load_head(spec, Path(args.cache)), offsets))
        summarise_weights(results, offsets)
        return
    for spec in specs:
        results.append(head_steps(bench, bench.load_head(spec, Path(args.cache)), args.extra_steps))
        print_head(results[-1])
    summarise(results)


if __name__ == "__main__":
    main()
