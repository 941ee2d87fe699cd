"""Speed and memory of the full ``recon`` (256 x 256 x 176, 5 echoes) and the default ``invert``
(160^3), as the user runs them: files in, files out.

Targets (issue 2): recon at most 20 s on 2 cores, invert at most 10 s, peak memory at most
4 GB. The input is simulated first (a head phantom with an air sinus, forward model of
``qsmiron.recon.dipole``, 3 T, integer vendor phase); the simulation is not timed. Each
command then runs in a fresh child process, which reports its wall time and its own peak
resident memory, so that the figures do not include the simulation. Per-step seconds (wall
and process CPU) come from ``ReconResult.steps`` as written into recon.json; R2* mapping is
part of the default recon (issue 13: it may add at most 2 s), chi-separation is not
(``--chisep`` turns it on, ``[recon.chisep] method = "shin"``, to measure what it costs).

    .venv/bin/python benchmarks/bench_recon.py [--keep DIR] [--chisep]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from qsmiron.simulate.ellipsoid_head import CHI_AIR_PPM, ellipsoid_head

RECON_SHAPE = (256, 256, 176)
INVERT_SHAPE = (160, 160, 160)
ECHO_TIMES_S = (0.004, 0.0115, 0.019, 0.0265, 0.034)
FIELD_STRENGTH_T = 3.0
GAMMA = 42.577478518e6


def _peak_rss_mb() -> float:
    # ru_maxrss is in kilobytes on Linux.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def head_phantom(shape, voxel_mm=(1.0, 1.0, 1.0), scale=None):
    """The ellipsoid head (``qsmiron.simulate.ellipsoid_head``) scaled to the grid (about 4x for
    256 mm): brain susceptibility (ppm), susceptibility with air, head mask, M0 and R2* (1/s)."""
    if scale is None:
        scale = min(n * d for n, d in zip(shape, voxel_mm)) / 44.0
    axes = [((np.arange(n, dtype=np.float32) - (n - 1) / 2) * d / scale)
            for n, d in zip(shape, voxel_mm)]
    x, y, z = np.meshgrid(*axes, indexing="ij", sparse=True)
    return ellipsoid_head(x, y, z, dtype=np.float32)


def simulate_inputs(folder: Path) -> tuple[Path, Path]:
    """Write mag.nii and phase.nii (4D, 5 echoes) of the phantom at 3 T."""
    import nibabel as nib

    from qsmiron.recon.dipole import forward_field

    shape = RECON_SHAPE
    chi, chi_total, brain, head, m0, r2s = head_phantom(shape)
    del chi, brain
    # Air outside the head is +9.4 ppm; shift by it so the padded surround (zero) is air.
    field_ppm = forward_field(chi_total - np.float32(CHI_AIR_PPM), (1.0, 1.0, 1.0), (0, 0, 1),
                              pad_factor=0.5)
    del chi_total
    rng = np.random.default_rng(0)
    idx = [np.linspace(-1, 1, n, dtype=np.float32) for n in shape]
    x, y, z = np.meshgrid(*idx, indexing="ij", sparse=True)
    offset = (0.8 * x + 0.5 * y * y - 0.6 * z + 0.3).astype(np.float32)  # smooth coil phase
    magnitude = np.empty(shape + (len(ECHO_TIMES_S),), np.float32)
    phase = np.empty(shape + (len(ECHO_TIMES_S),), np.int16)
    noise_sd = np.float32(0.85 / 100.0)  # peak SNR 100 in the first echo
    for echo, te in enumerate(ECHO_TIMES_S):
        angle = (2 * np.pi * GAMMA * FIELD_STRENGTH_T * 1e-6 * te) * field_ppm + offset
        signal = (m0 * np.exp(-r2s * np.float32(te))) * np.exp(1j * angle).astype(np.complex64)
        signal += noise_sd * (rng.standard_normal(shape, np.float32)
                              + 1j * rng.standard_normal(shape, np.float32))
        magnitude[..., echo] = np.abs(signal) * 1000
        phase[..., echo] = np.clip(np.round(np.angle(signal) / np.pi * 4096), -4096, 4095)
        del signal, angle
    affine = np.diag([1.0, 1.0, 1.0, 1.0])
    affine[:3, 3] = -(np.asarray(shape) - 1) / 2.0
    mag_path, phase_path = folder / "mag.nii", folder / "phase.nii"
    nib.save(nib.Nifti1Image(magnitude, affine), str(mag_path))
    nib.save(nib.Nifti1Image(phase, affine), str(phase_path))
    return mag_path, phase_path


def simulate_invert_inputs(folder: Path) -> tuple[Path, Path]:
    import nibabel as nib

    from qsmiron.recon.dipole import forward_field

    chi, _, brain, _, _, _ = head_phantom(INVERT_SHAPE)
    local = forward_field(chi, (1.0, 1.0, 1.0), (0, 0, 1))
    local += np.random.default_rng(1).normal(0, 0.002, INVERT_SHAPE).astype(np.float32)
    local[~brain] = 0
    affine = np.eye(4)
    field_path, mask_path = folder / "local.nii.gz", folder / "mask.nii.gz"
    nib.save(nib.Nifti1Image(local.astype(np.float32), affine), str(field_path))
    nib.save(nib.Nifti1Image(brain.astype(np.uint8), affine), str(mask_path))
    np.save(folder / "chi_true.npy", chi)
    return field_path, mask_path


def child_recon(mag: str, phase: str, out_dir: str, chisep: str = "none") -> None:
    from qsmiron.config import QsmironConfig
    from qsmiron.pipeline.single import reconstruct_files

    settings = QsmironConfig.model_validate({"recon": {"chisep": {"method": chisep}}})
    start = time.perf_counter()
    reconstruct_files(mag, phase, out_dir, echo_times_s=ECHO_TIMES_S,
                      field_strength_t=FIELD_STRENGTH_T, settings=settings)
    print(json.dumps({"seconds": time.perf_counter() - start, "peak_rss_mb": _peak_rss_mb()}))


def child_invert(field: str, mask: str, out: str) -> None:
    from qsmiron.pipeline.single import invert_file

    start = time.perf_counter()
    invert_file(field, mask, out)
    print(json.dumps({"seconds": time.perf_counter() - start, "peak_rss_mb": _peak_rss_mb()}))


def run_child(*args: str) -> dict:
    completed = subprocess.run([sys.executable, __file__, "--child", *args], check=True,
                               capture_output=True, text=True)
    return json.loads(completed.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", metavar="DIR", default=None, help="keep inputs and outputs here")
    parser.add_argument("--chisep", action="store_true", help="run chi-separation too")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, *rest = args.child
        (child_recon if kind == "recon" else child_invert)(*rest)
        return

    with tempfile.TemporaryDirectory(prefix="bench_recon_") as scratch:
        folder = Path(args.keep) if args.keep else Path(scratch)
        folder.mkdir(parents=True, exist_ok=True)
        start = time.perf_counter()
        mag, phase = simulate_inputs(folder)
        field, mask = simulate_invert_inputs(folder)
        print(f"simulation (not timed below): {time.perf_counter() - start:.1f} s, "
              f"cores available: {len(os.sched_getaffinity(0))}")

        figures = run_child("recon", str(mag), str(phase), str(folder / "recon"), "shin" if args.chisep else "none")
        record = json.loads((folder / "recon" / "recon.json").read_text())
        print(f"\nrecon {RECON_SHAPE[0]} x {RECON_SHAPE[1]} x {RECON_SHAPE[2]}, "
              f"{len(ECHO_TIMES_S)} echoes (files in, files out)")
        for step in record["steps"]:
            print(f"  {step['step']:<20} {step['method'] or '':<24} {step['seconds']:7.2f} s  "
                  f"(CPU {step['cpu_seconds']:6.2f} s)")
        steps_total = sum(step["seconds"] for step in record["steps"])
        print(f"  {'steps total':<45} {steps_total:7.2f} s")
        print(f"  {'reading, validation, writing':<45} {figures['seconds'] - steps_total:7.2f} s")
        print(f"  {'wall time':<45} {figures['seconds']:7.2f} s   (target <= 20 s)")
        print(f"  {'peak RSS':<45} {figures['peak_rss_mb'] / 1024:7.2f} GB  (target <= 4 GB)")

        figures = run_child("invert", str(field), str(mask), str(folder / "chi_invert.nii.gz"))
        sidecar = json.loads((folder / "chi_invert.json").read_text())
        print(f"\ninvert {INVERT_SHAPE[0]}^3, default method "
              f"({sidecar['qsmiron']['method']})")
        print(f"  {'wall time':<45} {figures['seconds']:7.2f} s   (target <= 10 s)")
        print(f"  {'peak RSS':<45} {figures['peak_rss_mb'] / 1024:7.2f} GB  (target <= 4 GB)")
        import nibabel as nib

        chi = nib.load(str(folder / "chi_invert.nii.gz")).get_fdata()
        truth = np.load(folder / "chi_true.npy")
        inside = nib.load(str(mask)).get_fdata() > 0
        x = chi[inside] - chi[inside].mean()
        r = truth[inside] - truth[inside].mean()
        print(f"  {'NRMSE against the simulated truth':<45} "
              f"{100 * np.linalg.norm(x - r) / np.linalg.norm(r):7.1f} %")
        rec_chi = nib.load(str(folder / "recon" / "Chimap.nii.gz")).get_fdata()
        rec_mask = nib.load(str(folder / "recon" / "mask.nii.gz")).get_fdata() > 0
        chi_full, *_ = head_phantom(RECON_SHAPE)
        x = rec_chi[rec_mask] - rec_chi[rec_mask].mean()
        r = chi_full[rec_mask] - chi_full[rec_mask].mean()
        print(f"\nrecon NRMSE against the simulated truth: "
              f"{100 * np.linalg.norm(x - r) / np.linalg.norm(r):.1f} %")
        print("(the CPU is shared with other work while this runs: figures are pessimistic)")


if __name__ == "__main__":
    main()
