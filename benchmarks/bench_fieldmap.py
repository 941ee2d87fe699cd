"""Speed and memory of the field-mapping steps on a 256 x 256 x 176 x 5-echo volume.

Run: ``.venv/bin/python benchmarks/bench_fieldmap.py [--threads N]``. Prints seconds per step
(phase preparation, mask, ROMEO unwrap per echo and in total, Laplacian unwrap, echo fit,
mask refinement, the whole ``total_field``), the accuracy of the result against the known
truth of the simulated head, and the peak resident memory of the process.

The simulated head: a brain ellipsoid inside a dark skull and a bright scalp, deep-grey-matter
nuclei and veins as susceptibility sources (dipole field by FFT), a second-order background
field of +-150 Hz, a quadratic phase offset spanning pi over the brain, R2* decay, TE = 4..20
ms at 3 T, complex noise at a peak SNR of 50, phase stored as 12-bit integers.
"""

from __future__ import annotations

import argparse
import os
import resource
import time


def _peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 ** 2


def simulate(shape=(256, 256, 176), voxel=(1.0, 1.0, 1.0), seed=0):
    import numpy as np

    from qsmiron.recon.dipole import forward_field

    rng = np.random.default_rng(seed)
    axes = [(np.arange(n, dtype=np.float32) - n / 2) * d for n, d in zip(shape, voxel)]
    x, y, z = np.meshgrid(*axes, indexing="ij", sparse=True)
    r_brain = (x / 70) ** 2 + (y / 88) ** 2 + (z / 62) ** 2
    brain = r_brain <= 1
    head = (x / 82) ** 2 + (y / 100) ** 2 + (z / 74) ** 2 <= 1
    skull = head & ((x / 76) ** 2 + (y / 94) ** 2 + (z / 68) ** 2 > 1)
    chi = np.zeros(shape, np.float32)
    for cx, cy, cz, a, b, c, value in [(-20, 5, -5, 8, 12, 8, 0.12), (20, 5, -5, 8, 12, 8, 0.12),
                                       (-12, -10, -15, 5, 6, 4, 0.2), (12, -10, -15, 5, 6, 4, 0.2),
                                       (0, 30, 10, 20, 3, 3, 0.4), (0, -60, 20, 2, 2, 25, 0.45)]:
        chi[((x - cx) / a) ** 2 + ((y - cy) / b) ** 2 + ((z - cz) / c) ** 2 <= 1] = value
    chi[~brain] = 0
    hz_per_ppm = 3.0 * 42.577
    field_hz = forward_field(chi, voxel, (0.0, 0.0, 1.0), pad_factor=0.25) * np.float32(hz_per_ppm)
    del chi
    u, v, w = x / 90, y / 90, z / 90
    field_hz += (150.0 * (0.5 * u - 0.3 * v + 0.4 * w + 0.4 * (u * u - v * v) + 0.3 * u * w)).astype(np.float32)
    offset = (-np.pi * ((x / 80) ** 2 + (y / 95) ** 2 + (z / 70) ** 2) + 1.0).astype(np.float32)
    m0 = np.where(brain, 1.0, 0.0).astype(np.float32)
    m0[head & ~brain & ~skull] = 1.2  # CSF between brain and skull
    m0[skull] = 0.05
    r2s = np.where(brain, 25.0, 15.0).astype(np.float32)
    te = (0.004, 0.008, 0.012, 0.016, 0.020)
    magnitude = np.empty(shape + (5,), np.float32)
    phase = np.empty(shape + (5,), np.float32)
    sigma = 1.0 / 50
    for n, t in enumerate(te):
        decay = m0 * np.exp(-r2s * t)
        angle = (2 * np.pi * field_hz * t + offset).astype(np.float32)
        re = decay * np.cos(angle) + sigma * rng.standard_normal(shape, np.float32)
        im = decay * np.sin(angle) + sigma * rng.standard_normal(shape, np.float32)
        magnitude[..., n] = np.hypot(re, im)
        phase[..., n] = np.round(np.arctan2(im, re) / np.pi * 2048).clip(-2048, 2047)
    return magnitude, phase, brain, field_hz, voxel, te


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2,
                        help="threads for the numba kernels and the FFTs (scipy workers)")
    args = parser.parse_args()
    os.environ.setdefault("NUMBA_NUM_THREADS", str(args.threads))
    import numba
    import numpy as np
    import scipy.ndimage

    from qsmiron.recon.echofit import fit_field
    from qsmiron.recon.field import total_field
    from qsmiron.recon.mask import brain_mask, refine_mask_by_phase_quality
    from qsmiron.recon.phase import phase_to_radians
    from qsmiron.recon.unwrap import unwrap_laplacian
    from qsmiron.recon.unwrap.romeo import unwrap_romeo_full, unwrap_spatial

    # Compile (first run) or load (cached on disk) the numba kernels outside the timings:
    # the whole chain once on a small volume. A CLI run pays the loading once per process.
    start = time.perf_counter()
    grid = np.indices((24, 24, 24), dtype=np.float32) - 12
    ball = (grid ** 2).sum(0) < 100
    field = (grid[0] * 30 + grid[2] ** 2 * 2) * ball
    small_te = (0.004, 0.008, 0.012)
    small_mag = np.stack([ball * 1.0 + 0.01] * 3, -1).astype(np.float32)
    small_phase = np.stack([np.angle(np.exp(2j * np.pi * field * t)) for t in small_te],
                           -1).astype(np.float32)
    small_phase, _ = phase_to_radians(small_phase)
    small_mask = brain_mask(small_mag, (1.0, 1.0, 1.0))
    total_field(small_mag, small_phase, small_mask, (1.0, 1.0, 1.0), small_te)
    print(f"numba kernels compiled or loaded: {time.perf_counter() - start:.1f} s "
          "(once per process)")

    print(f"numba threads: {numba.get_num_threads()} ({numba.threading_layer()} layer), "
          f"FFT workers: {args.threads}, load average: "
          f"{', '.join(f'{v:.1f}' for v in os.getloadavg())}")
    start = time.perf_counter()
    magnitude, phase_raw, brain, true_field, voxel, te = simulate()
    print(f"simulation: {time.perf_counter() - start:.1f} s (not part of the recon)")
    timings: dict[str, float] = {}

    def timed(name, fn, *a, **k):
        t0 = time.perf_counter()
        c0 = time.process_time()
        out = fn(*a, **k)
        timings[name] = time.perf_counter() - t0
        cpu = time.process_time() - c0
        print(f"{name:<34s} {timings[name]:7.2f} s wall  {cpu:7.2f} s CPU   "
              f"peak RSS {_peak_rss_gb():.2f} GB", flush=True)
        return out

    phase, info = timed("phase preparation", phase_to_radians, phase_raw)
    del phase_raw
    assert info["method"] == "levels", info
    mask = timed("brain mask (magnitude)", brain_mask, magnitude, voxel)
    mask_ml = mask.sum() / 1000
    m1 = np.ascontiguousarray(magnitude[..., 0])
    timed("ROMEO spatial unwrap, one echo", unwrap_spatial, np.ascontiguousarray(phase[..., 0]),
          mask, magnitude=m1, phase2_rad=np.ascontiguousarray(phase[..., 1]), te_ratio=0.5)
    romeo = timed("ROMEO unwrap, all 5 echoes (+MCPC)", unwrap_romeo_full, phase, magnitude, mask,
                  voxel, te, workers=args.threads)
    timed("Laplacian unwrap, all 5 echoes", unwrap_laplacian, phase, mask, voxel,
          workers=args.threads)
    fit = timed("echo fit (offset 'smooth')", fit_field, romeo.unwrapped_rad, magnitude, mask, te,
                offset_rad=romeo.offset_rad, voxel_size_mm=voxel, workers=args.threads)
    refined, _ = timed("mask refinement", refine_mask_by_phase_quality, mask, voxel,
                       noise_hz=fit.noise_hz, quality=romeo.quality,
                       reduced_chi2=fit.reduced_chi2, dof=fit.info["dof"])
    del romeo, fit
    result = timed("total_field (unwrap+fit+refine)", total_field, magnitude, phase, mask, voxel, te)
    print("  inside total_field: " + ", ".join(
        f"{step.step} {step.seconds:.2f} s" for step in result.steps))
    print(f"{'phase prep + mask + total_field':<34s} "
          f"{timings['phase preparation'] + timings['brain mask (magnitude)'] + timings['total_field (unwrap+fit+refine)']:7.2f} s")

    inner = scipy.ndimage.binary_erosion(result.mask & brain, iterations=3)
    error = result.field_hz - true_field
    error -= np.median(error[inner])
    rms = float(np.sqrt(np.mean(error[inner] ** 2)))
    print(f"mask: {mask_ml:.0f} ml from magnitude (brain {brain.sum() / 1000:.0f} ml plus the "
          f"bright 6 mm CSF layer inside the skull; brain covered: "
          f"{(mask & brain).sum() / brain.sum():.4f}); after refinement "
          f"{result.mask.sum() / 1000:.0f} ml")
    print(f"field error inside the eroded brain: rms {rms:.3f} Hz, "
          f"99th percentile {np.percentile(np.abs(error[inner]), 99):.3f} Hz "
          f"(median noise map {np.median(result.noise_hz[inner]):.3f} Hz)")
    print(f"peak resident memory of the process: {_peak_rss_gb():.2f} GB "
          "(includes the simulation and the truth arrays)")
    print("Wall timings on a shared 2-core machine are pessimistic when other jobs run; CPU "
          "time counts every thread (FFTs use --threads), so it is an upper bound on "
          "uncontended wall time of single-threaded steps.")


if __name__ == "__main__":
    main()
