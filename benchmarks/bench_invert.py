"""Speed and accuracy of background removal and dipole inversion (prints tables).

1. The default ``invert`` of a 160^3 field: seconds and peak RSS (targets: 10 s on 2 cores,
   4 GB).
2. Each background-removal method on a 64^3 qsm-forward phantom with an outside source and
   shim terms: seconds and local-field NRMSE in the eroded mask.
3. Each inversion method on 64^3 qsm-forward phantoms (axial, oblique B0, 1x1x2 mm voxels,
   and axial with model errors the dipole model cannot explain): seconds, NRMSE, XSIM, HFEN.
4. The default's automatic weight against the oracle (best of a quarter-decade grid, solved
   the same way) on phantoms with model error of different kinds: qsm-forward (oblique B0 +
   anisotropy-like error) and the head simulator at 2.5 mm (WM anisotropy + non-dipolar WM
   frequency, residual background, noise).
5. The default's iteration cap (30) against caps of 60 and 120 on the same phantoms.

Run: ``.venv/bin/python benchmarks/bench_invert.py`` (needs the ``qsm-forward`` test extra).
Figures on a shared machine are pessimistic.
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
from qsmiron.recon.invert import DEFAULT_INVERSION, INVERSION_METHODS, invert
from qsmiron.recon.metrics import all_metrics, nrmse


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def main() -> None:
    print("== default inversion of a 160^3 field ==")
    chi, field, mask, magnitude, noise = forward_phantom((1, 1, 1), (0, 0, 1), n=160)
    invert(field[64:96, 64:96, 64:96], mask[64:96, 64:96, 64:96], (1, 1, 1), (0, 0, 1))  # numba warm-up
    start = time.perf_counter()
    result = invert(field, mask, (1, 1, 1), (0, 0, 1), magnitude=magnitude, noise_ppm=noise)
    seconds = time.perf_counter() - start
    print(f"method {DEFAULT_INVERSION}: {seconds:.2f} s, {result.info['iterations']} iterations, "
          f"alpha {result.info['alpha']:.3g} ({result.info['chosen_by']}), "
          f"NRMSE {nrmse(result.chi_ppm, chi, mask):.1f} %, peak RSS {peak_rss_mb():.0f} MB")

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
        auto = invert(field, mask, voxel, b0, magnitude=magnitude, noise_ppm=noise)
        top = auto.info["path"]["alphas"][0]
        rows = []
        for a in top * 10.0 ** -np.arange(0.5, 3.01, 0.25):
            r = invert(field, mask, voxel, b0, magnitude=magnitude, noise_ppm=noise, alpha=float(a))
            rows.append((float(a), all_metrics(r.chi_ppm, chi, mask)))
        best_alpha, best = min(rows, key=lambda row: row[1]["nrmse"])
        m = all_metrics(auto.chi_ppm, chi, mask)
        print(f"{case:16s} {auto.info['alpha']:10.3g} {m['nrmse']:6.1f} {m['xsim']:6.3f} | {best_alpha:8.3g} "
              f"{best['nrmse']:6.1f} {best['xsim']:6.3f} | {auto.info['alpha'] / best_alpha:.2f}")
    iteration_cap()
    print(f"\npeak RSS {peak_rss_mb():.0f} MB")


def iteration_cap(caps=(30, 60, 120)) -> None:
    """The default's iteration cap against running it to convergence on the same phantoms.

    Where the cap is met before the tolerance (``converged`` False), the extra iterations are
    what a larger cap would buy: NRMSE at each cap says whether they bring the map nearer the
    truth or merely fit more of the model error.
    """
    print(f"\n== {DEFAULT_INVERSION}: iteration cap (iterations, NRMSE %, converged) ==")
    print(f"{'case':16s} " + " | ".join(f"{'cap ' + str(cap):>16s}" for cap in caps))
    for case, make in oracle_cases().items():
        chi, field, mask, magnitude, noise, voxel, b0 = make()
        cells = []
        for cap in caps:
            result = invert(field, mask, voxel, b0, magnitude=magnitude, noise_ppm=noise, max_iter=cap)
            cells.append(f"{result.info['iterations']:4d} {nrmse(result.chi_ppm, chi, mask):6.1f} "
                         f"{'yes' if result.info['converged'] else 'no':>4s}")
        print(f"{case:16s} " + " | ".join(cells))


def head_case(*, anisotropy_ppm=0.0, nondipolar_ppm=0.0, residual_ppm=0.0, noise_ppm=0.003,
              b0=(0.0, 0.0, 1.0), seed=0):
    """The project's head simulator (2.5 mm) with model errors added to the local field."""
    from qsmiron.recon.fourier import bounding_box
    from qsmiron.simulate.phantom import CODE_WM, build_head_phantom, mr_property_tables, population_chi
    from qsmiron.simulate.settings import SimulationSettings

    settings = SimulationSettings()
    head = build_head_phantom(2.5)
    box = tuple(slice(b.start - 2, b.stop + 2) for b in bounding_box(head.brain))
    codes = head.codes[box]
    brain = ndimage.binary_erosion(head.brain[box], iterations=1)
    rng = np.random.default_rng(seed)
    chi = head.chi_table(population_chi(settings))[codes].astype(float)
    texture = ndimage.gaussian_filter(rng.standard_normal(chi.shape), 1.0)
    chi += 0.008 * texture / texture.std()
    for _ in range(6):  # veins
        start = np.array([rng.integers(n // 4, 3 * n // 4) for n in chi.shape])
        d = rng.standard_normal(3)
        d /= np.linalg.norm(d)
        for s in np.linspace(-20, 20, 160):
            q = tuple(np.round(start + s * d).astype(int))
            if all(0 <= q[i] < chi.shape[i] for i in range(3)) and brain[q]:
                chi[q] = 0.3
    chi = np.where(brain, chi, 0.0)
    voxel = (2.5, 2.5, 2.5)
    field = forward_field(chi, voxel, b0)
    wm = brain & (codes == CODE_WM)
    if anisotropy_ppm:
        t = ndimage.gaussian_filter(rng.standard_normal(chi.shape), 1.5)
        t = anisotropy_ppm * t / t[wm].std() * wm
        field += forward_field(t, voxel, np.asarray(b0) + [0.5, 0.3, 0.0]) - forward_field(t, voxel, b0)
    if nondipolar_ppm:  # orientation-dependent WM frequency (fibre angle to B0), not dipolar
        v = ndimage.gaussian_filter(rng.standard_normal((3, *chi.shape)), (0, 3, 3, 3))
        cos2 = v[2] ** 2 / np.maximum((v ** 2).sum(0), 1e-12)
        field += nondipolar_ppm * (1 - cos2 - 2 / 3) * ndimage.gaussian_filter(wm.astype(float), 0.7)
    if residual_ppm:
        x, y, z = [(a - a.mean()) / a.shape[i] for i, a in enumerate(np.indices(chi.shape))]
        field += residual_ppm * (x * x - y * y + 2 * x * z + x + 0.5 * y * z - 0.7 * z) / 0.25
    magnitude = mr_property_tables(head, settings)[0][codes]
    magnitude = magnitude / magnitude[brain].max()
    sd = noise_ppm / np.maximum(magnitude, 0.2)
    field = field + sd * rng.standard_normal(chi.shape)
    field = np.where(brain, field - field[brain].mean(), 0.0).astype(np.float32)
    return (chi.astype(np.float32), field, brain, magnitude.astype(np.float32),
            np.where(brain, sd, 0.0).astype(np.float32), voxel, b0)


def oracle_cases():
    def qf(b0, with_error, snr=100.0):
        def make():
            chi, field, mask, magnitude, noise = forward_phantom((1, 1, 1), b0, n=64, peak_snr=snr)
            if with_error:
                field = with_model_error(field, mask, (1, 1, 1), b0)
            return chi, field, mask, magnitude, noise, (1, 1, 1), b0
        return make

    return {"qf noise": qf((0, 0, 1), False), "qf aniso+bg": qf((0, 0, 1), True),
            "qf obl+aniso+bg": qf((0.34, -0.24, 0.91), True), "qf SNR 30": qf((0, 0, 1), False, 30.0),
            "head noise": lambda: head_case(),
            "head WM aniso": lambda: head_case(anisotropy_ppm=0.01, nondipolar_ppm=0.01),
            "head residual bg": lambda: head_case(residual_ppm=0.002),
            "head all, obl": lambda: head_case(anisotropy_ppm=0.01, nondipolar_ppm=0.01, residual_ppm=0.005,
                                               noise_ppm=0.005, b0=(0.2, 0.3, 0.93))}


if __name__ == "__main__":
    main()
