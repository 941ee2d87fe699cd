"""A forward-simulated multi-echo GRE head for the ``qsmiron recon`` tests (qsm-forward).

Truth comes from an independent forward model, the ``qsm-forward`` package: its dipole
convolution (``generate_field``), its multi-echo signal model (``generate_signal``,
``generate_phase_offset``, ``add_noise``). The phantom is a head in air with an air-filled
sinus (background field with phase wraps), a brain with white matter and iron-rich nuclei,
each with its R2*. Phase is stored as the vendor does (integers -4096..4095), with BIDS JSON
sidecars. ``tests/pipeline`` is on pytest's pythonpath (pyproject.toml).
"""

import json

import nibabel as nib
import numpy as np
import qsm_forward

from qsmiron.io.nifti import b0_direction_voxel
from qsmiron.simulate.ellipsoid_head import CHI_AIR_PPM, ellipsoid_head

TES = (0.004, 0.012, 0.020, 0.028)
FIELD_STRENGTH_T = 3.0


def rotation_x(degrees):
    t = np.deg2rad(degrees)
    return np.array([[1, 0, 0], [0, np.cos(t), -np.sin(t)], [0, np.sin(t), np.cos(t)]])


def grid_affine(shape, voxel_mm, rotation=np.eye(3)):
    """Affine whose grid centre sits at the world origin."""
    affine = np.eye(4)
    affine[:3, :3] = rotation @ np.diag(voxel_mm)
    affine[:3, 3] = -affine[:3, :3] @ ((np.asarray(shape) - 1) / 2.0)
    return affine


def head_phantom(shape, affine):
    """Tissue maps of the ellipsoid head (``qsmiron.simulate.ellipsoid_head``) sampled at the
    world positions (mm) of the voxel centres: chi_brain, chi_total, brain, head, M0, R2*."""
    ijk = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), axis=-1)
    world = ijk @ affine[:3, :3].T + affine[:3, 3]
    return ellipsoid_head(world[..., 0], world[..., 1], world[..., 2])


WORLD_GRID = (48, 48, 48)
"""The scanner-aligned 1 mm grid on which the background field is simulated (B0 along z)."""


def simulate_field_ppm(shape, affine):
    """Total field (ppm) at the voxel centres of a possibly oblique, anisotropic grid.

    The tissue field comes from qsm-forward on the image grid itself, with B0 expressed in
    voxel axes. The background (skull, sinus and air around the head: sharp, 9.4 ppm edges)
    is simulated on a scanner-aligned 1 mm grid with B0 along z and interpolated at the voxel
    centres, as the scanner samples a continuous field: a k-space dipole kernel tilted on
    the image grid rings at such edges, which would be an artefact of the simulation rather
    than a property of the data.
    """
    import scipy.ndimage

    voxel = [float(v) for v in np.linalg.norm(affine[:3, :3], axis=0)]
    b0 = b0_direction_voxel(affine)
    chi_brain, chi_total, *_ = head_phantom(shape, affine)
    tissue = qsm_forward.generate_field(chi_brain, voxel_size=voxel, B0_dir=list(b0))
    world_affine = grid_affine(WORLD_GRID, (1.0, 1.0, 1.0))
    world_brain, world_total, *_ = head_phantom(WORLD_GRID, world_affine)
    background_world = qsm_forward.generate_field(world_total - world_brain, voxel_size=[1, 1, 1],
                                                  B0_dir=[0, 0, 1])
    ijk = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij")).reshape(3, -1)
    to_world_grid = np.linalg.inv(world_affine) @ affine
    coords = to_world_grid[:3, :3] @ ijk + to_world_grid[:3, 3:4]
    background = scipy.ndimage.map_coordinates(background_world, coords, order=3,
                                               mode="nearest").reshape(shape)
    return tissue + background


def simulate_gre(shape, voxel_mm, rotation=np.eye(3), *, seed=0, peak_snr=120.0):
    """Multi-echo magnitude and integer phase from qsm-forward, with the truth.

    qsm-forward evaluates the signal at voxel centres; a real voxel also dephases where the
    field varies across it. That is added analytically (a linear field change across the
    voxel along each axis attenuates the signal by |sinc(gamma B0 dB TE)|), so the voxels
    next to the sinus darken as in a scan instead of carrying aliased phase at full signal.
    """
    affine = grid_affine(shape, voxel_mm, rotation)
    b0 = b0_direction_voxel(affine)
    chi_brain, _, brain, head, m0, r2s = head_phantom(shape, affine)
    field_ppm = simulate_field_ppm(shape, affine)
    across_voxel_ppm = [np.abs(g) for g in np.gradient(field_ppm)]
    offset = qsm_forward.generate_phase_offset(m0, head, shape)
    rng = np.random.default_rng(seed)
    magnitude = np.empty(shape + (len(TES),), np.float32)
    phase = np.empty(shape + (len(TES),), np.int16)
    hz_per_ppm = 42.58 * FIELD_STRENGTH_T  # qsm-forward's gyromagnetic ratio, MHz/T
    for echo, te in enumerate(TES):
        signal = qsm_forward.generate_signal(field_ppm, B0=FIELD_STRENGTH_T, TR=0.05, TE=te,
                                             flip_angle=15, phase_offset=offset, R1=1.0,
                                             R2star=r2s, M0=m0)
        for change in across_voxel_ppm:
            signal = signal * np.abs(np.sinc(hz_per_ppm * change * te))
        signal = qsm_forward.add_noise(signal, peak_snr=peak_snr, rng=rng)
        magnitude[..., echo] = np.abs(signal) * 1000
        phase[..., echo] = np.clip(np.round(np.angle(signal) / np.pi * 4096), -4096, 4095)
    return {"magnitude": magnitude, "phase": phase, "affine": affine, "b0": b0,
            "chi_brain": chi_brain, "brain": brain, "voxel_mm": voxel_mm}


def write_image(path, data, affine):
    nib.save(nib.Nifti1Image(np.asarray(data), affine), str(path))
    return path


def write_sidecar(path, payload):
    path.with_name(path.name.replace(".nii.gz", ".json")).write_text(json.dumps(payload))


SIDECAR = {"MagneticFieldStrength": FIELD_STRENGTH_T, "Manufacturer": "Siemens",
           "ManufacturersModelName": "Prisma", "RepetitionTime": 0.05, "FlipAngle": 15,
           "ParallelReductionFactorInPlane": 2, "ReceiveCoilName": "Head_32"}


def write_4d_dataset(folder, sim):
    folder.mkdir(parents=True, exist_ok=True)
    mag = write_image(folder / "mag.nii.gz", sim["magnitude"], sim["affine"])
    pha = write_image(folder / "phase.nii.gz", sim["phase"], sim["affine"])
    return mag, pha


def write_per_echo_dataset(folder, sim):
    folder.mkdir(parents=True, exist_ok=True)
    mags, phases = [], []
    for echo, te in enumerate(TES):
        for part, key, store in (("mag", "magnitude", mags), ("phase", "phase", phases)):
            path = write_image(folder / f"sub-01_echo-{echo + 1}_part-{part}_MEGRE.nii.gz",
                               sim[key][..., echo], sim["affine"])
            write_sidecar(path, SIDECAR | {"EchoTime": te})
            store.append(path)
    return mags, phases


def nrmse_percent(estimate, truth, mask):
    """Demeaned NRMSE (%) inside ``mask``, as on the QSM challenge leaderboard."""
    x = estimate[mask] - estimate[mask].mean()
    r = truth[mask] - truth[mask].mean()
    return 100.0 * np.linalg.norm(x - r) / np.linalg.norm(r)


def recon_args(mags, phases, out_dir, *, echo_times=True, field_strength=True, listed=False):
    """``qsmiron recon`` arguments; per-echo files by repeating the option, or ``listed``
    after one option as a shell glob gives them."""
    args = ["recon"]
    for option, paths in (("--magnitude", mags), ("--phase", phases)):
        if listed:
            args += [option, *map(str, paths)]
        else:
            for path in paths:
                args += [option, str(path)]
    if echo_times:
        args += ["--echo-times", ",".join(str(t) for t in TES)]
    if field_strength:
        args += ["--field-strength", str(FIELD_STRENGTH_T)]
    return args + ["-o", str(out_dir)]
