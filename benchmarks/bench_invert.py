"""Speed and accuracy of dipole inversion (prints tables).

1. The default ``invert`` on a 1 mm head (the project's head simulator, brain box about
   141 x 178 x 151 voxels, as in a 256 x 256 x 176 scan): wall and CPU seconds, iterations, peak
   RSS; the previous default ``wtv`` beside it.
2. The proxy family of ``invert_proxies.py`` (10 cases: qsm-forward cylinders and the head
   simulator with WM anisotropy, non-dipolar WM frequency, V-SHARP residual background, noise,
   oblique B0 and thick slices): per case and method NRMSE, XSIM, HFEN, regional slope, mean
   absolute regional error (ppb) and seconds, then median and worst per method. The TV family
   is run with the magnitude (and field-noise map) as ``recon`` gives them, and on the field
   alone as ``qsmiron invert`` without ``--magnitude`` (and the 2016 challenge's local field)
   gives it.
3. With ``--all``: the previous parts (background removal at 64^3, every method on 64^3
   qsm-forward phantoms, the ``wtv`` weight against an oracle, its iteration cap).

Run: ``.venv/bin/python benchmarks/bench_invert.py [--all]`` (needs the ``qsm-forward`` test
extra). Figures on a shared machine are pessimistic; CPU seconds are given beside wall seconds.
"""

from __future__ import annotations

import resource
import sys
import time
from pathlib import Path

import numpy as np
from scipy import ndimage

# The phantom the inversion tests use (needs the qsm-forward test extra).
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "recon"))
from dipole_phantom import forward_phantom, with_model_error  # noqa: E402

from qsmiron.recon.bgremove import BACKGROUND_METHODS, remove_background
from qsmiron.recon.dipole import forward_field
from qsmiron.recon.invert import INVERSION_METHODS, invert
from qsmiron.recon.metrics import all_metrics, nrmse


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


PROXY_METHODS = {
    "wtv": ("wtv", True), "wtv_bregman": ("wtv_bregman", True),
    "wtv field-only": ("wtv", False), "wtv_bregman field-only": ("wtv_bregman", False),
    "tv": ("tv", True), "rts": ("rts", True),
}
"""Row label -> (method, whether the magnitude and noise map are given)."""


def head_1mm():
    """The head simulator at 1 mm: true local field + 2 ppb noise in the brain eroded by 2 voxels."""
    from qsmiron.simulate.phantom import build_head_phantom, mr_property_tables, population_chi
    from qsmiron.simulate.settings import SimulationSettings

    head = build_head_phantom(1.0)
    settings = SimulationSettings()
    chi = np.where(head.brain, head.chi_table(population_chi(settings))[head.codes], 0).astype(np.float32)
    mask = ndimage.binary_erosion(head.brain, iterations=2)
    field = forward_field(chi, (1, 1, 1), (0, 0, 1))
    field += np.random.default_rng(0).normal(0, 0.002, field.shape).astype(np.float32)
    magnitude = mr_property_tables(head, settings)[0][head.codes].astype(np.float32)
    return chi, np.where(mask, field, 0).astype(np.float32), mask, magnitude


def speed() -> None:
    chi, field, mask, magnitude = head_1mm()
    box = [b.stop - b.start for b in ndimage.find_objects(mask.astype(int))[0]]
    print(f"== speed: 1 mm head, brain box {box}, {mask.sum()} mask voxels ==")
    invert(field[80:112, 100:132, 100:132], mask[80:112, 100:132, 100:132], (1, 1, 1), (0, 0, 1))  # numba
    for method in ("wtv_bregman", "wtv"):
        wall, cpu = time.perf_counter(), time.process_time()
        result = invert(field, mask, (1, 1, 1), (0, 0, 1), method=method, magnitude=magnitude)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        print(f"{method:12s} wall {wall:6.2f} s  CPU {cpu:6.2f} s  iterations {result.info['iterations']:3d}  "
              f"NRMSE {nrmse(result.chi_ppm, chi, mask):5.1f} %  peak RSS {peak_rss_mb():.0f} MB")


def proxy_table() -> None:
    from invert_proxies import proxy_cases, score

    print("\n== proxy family: per case and method ==")
    print(f"{'case':22s} {'method':24s} {'NRMSE':>6s} {'XSIM':>6s} {'HFEN':>6s} {'slope':>6s} {'reg ppb':>7s} "
          f"{'s':>6s}")
    rows: dict[str, list[dict]] = {label: [] for label in PROXY_METHODS}
    for case_name, make in proxy_cases().items():
        case = make()
        for label, (method, with_magnitude) in PROXY_METHODS.items():
            extra = {"magnitude": case.magnitude, "noise_ppm": case.noise} if with_magnitude else {}
            start = time.perf_counter()
            result = invert(case.field, case.mask, case.voxel, case.b0, method=method, **extra)
            metrics = score(result.chi_ppm, case)
            metrics["seconds"] = time.perf_counter() - start
            rows[label].append(metrics)
            print(f"{case_name:22s} {label:24s} {metrics['nrmse']:6.1f} {metrics['xsim']:6.3f} "
                  f"{metrics['hfen']:6.1f} {metrics['slope']:6.3f} {metrics['regional_ppb']:7.1f} "
                  f"{metrics['seconds']:6.1f}", flush=True)
    print(f"\n{'method':24s} {'NRMSE med/worst':>16s} {'XSIM med/worst':>16s} {'HFEN med/worst':>16s} "
          f"{'slope med/worst':>16s} {'reg ppb med/worst':>18s}")
    for label, metrics in rows.items():
        values = {key: np.array([m[key] for m in metrics]) for key in metrics[0]}
        slope = values["slope"]
        print(f"{label:24s} {np.median(values['nrmse']):7.1f} / {values['nrmse'].max():5.1f} "
              f"{np.median(values['xsim']):7.3f} / {values['xsim'].min():5.3f} "
              f"{np.median(values['hfen']):7.1f} / {values['hfen'].max():5.1f} "
              f"{np.median(slope):7.3f} / {slope[np.argmax(np.abs(slope - 1))]:5.3f} "
              f"{np.median(values['regional_ppb']):8.1f} / {values['regional_ppb'].max():5.1f}")


def main() -> None:
    speed()
    proxy_table()
    if "--all" in sys.argv:
        previous_parts()
    print(f"\npeak RSS {peak_rss_mb():.0f} MB")


def previous_parts() -> None:
    print("\n== background removal, 64^3, local-field NRMSE (%) in the eroded mask ==")
    n = 64
    chi, local, mask, _, _ = forward_phantom((1, 1, 1), (0, 0, 1), n=n)
    outside = np.zeros((n, n, n), np.float32)
    outside[n // 2 - 3:n // 2 + 3, n // 2 - 3:n // 2 + 3, 1:5] = 9.0  # air-like source outside the mask
    background = forward_field(outside, (1, 1, 1), (0, 0, 1))
    x = np.indices((n, n, n))[0] - n / 2.0
    total = np.where(mask, local + background + 0.005 * x, 0.0)
    print(f"{'method':10s} {'seconds':>8s} {'NRMSE':>7s} {'eroded/mask':>12s}")
    for method in BACKGROUND_METHODS:
        start = time.perf_counter()
        estimate, eroded = remove_background(total, mask, (1, 1, 1), (0, 0, 1), method=method)
        seconds = time.perf_counter() - start
        print(f"{method:10s} {seconds:8.2f} {nrmse(estimate, local, eroded):7.1f} "
              f"{eroded.sum() / mask.sum():12.2f}")

    print("\n== inversion, 64^3 qsm-forward phantoms (peak SNR 100) ==")
    cases = {"axial": ((1, 1, 1), (0, 0, 1), False), "oblique": ((1, 1, 1), (0.34, -0.24, 0.91), False),
             "aniso-1x1x2": ((1, 1, 2), (0, 0, 1), False), "axial+model-error": ((1, 1, 1), (0, 0, 1), True)}
    print(f"{'case':18s} {'method':9s} {'seconds':>8s} {'NRMSE':>7s} {'XSIM':>6s} {'HFEN':>7s}  alpha")
    for case, (voxel, b0, with_error) in cases.items():
        chi, field, mask, magnitude, noise = forward_phantom(voxel, b0, n=n)
        if with_error:
            field = with_model_error(field, mask, voxel, b0)
        for method in INVERSION_METHODS:
            start = time.perf_counter()
            result = invert(field, mask, voxel, b0, method=method, magnitude=magnitude, noise_ppm=noise)
            seconds = time.perf_counter() - start
            m = all_metrics(result.chi_ppm, chi, mask)
            alpha = result.info.get("alpha")
            print(f"{case:18s} {method:9s} {seconds:8.2f} {m['nrmse']:7.1f} {m['xsim']:6.3f} {m['hfen']:7.1f}  "
                  f"{'' if alpha is None else format(alpha, '.3g')}")
    print("\n== default weight vs oracle with model error (NRMSE %, XSIM) ==")
    print(f"{'case':16s} {'auto alpha':>10s} {'NRMSE':>6s} {'XSIM':>6s} | {'oracle':>8s} {'NRMSE':>6s} {'XSIM':>6s} | ratio")
    for case, make in oracle_cases().items():
        chi, field, mask, magnitude, noise, voxel, b0 = make()
        auto = invert(field, mask, voxel, b0, method="wtv", magnitude=magnitude, noise_ppm=noise)
        top = auto.info["path"]["alphas"][0]
        rows = []
        for a in top * 10.0 ** -np.arange(0.5, 3.01, 0.25):
            r = invert(field, mask, voxel, b0, method="wtv", magnitude=magnitude, noise_ppm=noise, alpha=float(a))
            rows.append((float(a), all_metrics(r.chi_ppm, chi, mask)))
        best_alpha, best = min(rows, key=lambda row: row[1]["nrmse"])
        m = all_metrics(auto.chi_ppm, chi, mask)
        print(f"{case:16s} {auto.info['alpha']:10.3g} {m['nrmse']:6.1f} {m['xsim']:6.3f} | {best_alpha:8.3g} "
              f"{best['nrmse']:6.1f} {best['xsim']:6.3f} | {auto.info['alpha'] / best_alpha:.2f}")
    iteration_cap()




def iteration_cap(caps=(30, 60, 120)) -> None:
    """The default's iteration cap against running it to convergence on the same phantoms.

    Where the cap is met before the tolerance (``converged`` False), the extra iterations are
    what a larger cap would buy: NRMSE at each cap says whether they bring the map nearer the
    truth or merely fit more of the model error.
    """
    print(f"\n== wtv: iteration cap (iterations, NRMSE %, converged) ==")
    print(f"{'case':16s} " + " | ".join(f"{'cap ' + str(cap):>16s}" for cap in caps))
    for case, make in oracle_cases().items():
        chi, field, mask, magnitude, noise, voxel, b0 = make()
        cells = []
        for cap in caps:
            result = invert(field, mask, voxel, b0, method="wtv", magnitude=magnitude, noise_ppm=noise, max_iter=cap)
            cells.append(f"{result.info['iterations']:4d} {nrmse(result.chi_ppm, chi, mask):6.1f} "
                         f"{'yes' if result.info['converged'] else 'no':>4s}")
        print(f"{case:16s} " + " | ".join(cells))


def oracle_cases():
    """The proxy family as (chi, field, mask, magnitude, noise, voxel, b0) builders."""
    from invert_proxies import proxy_cases

    def unpack(make):
        def build():
            case = make()
            return case.chi, case.field, case.mask, case.magnitude, case.noise, case.voxel, case.b0
        return build

    return {name: unpack(make) for name, make in proxy_cases().items()}


if __name__ == "__main__":
    main()
