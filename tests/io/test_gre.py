"""Loading multi-echo GRE files: what is accepted, and every bad input named in one line.

The bad-input cases run through the API (``load_gre`` raises ``InputError`` naming the file)
and through the command line (``qsmiron recon`` exits 2 with one line on stderr naming the
file, and the output folder holds nothing). The images are tiny: these checks happen before
any reconstruction.
"""

import json

import nibabel as nib
import numpy as np
import pytest

from qsmiron.cli import main
from qsmiron.errors import InputError
from qsmiron.io.acquisition import acquisition_warnings, oblique_angle_deg
from qsmiron.io.gre import load_gre

SHAPE = (10, 9, 8)
TES = [0.005, 0.012, 0.019, 0.026]


def write(path, data, affine=None, sidecar=None):
    affine = np.diag([1.0, 1.0, 1.0, 1.0]) if affine is None else affine
    nib.save(nib.Nifti1Image(np.asarray(data), affine), str(path))
    if sidecar is not None:
        name = path.name.replace(".nii.gz", ".json").replace(".nii", ".json")
        (path.parent / name).write_text(json.dumps(sidecar))
    return path


def gre_arrays(n_echoes=4, shape=SHAPE, seed=0):
    rng = np.random.default_rng(seed)
    magnitude = rng.uniform(100, 1000, shape + (n_echoes,)).astype(np.float32)
    phase = rng.integers(-4096, 4096, shape + (n_echoes,)).astype(np.int16)
    return magnitude, phase


def write_4d(folder, *, magnitude=None, phase=None, mag_affine=None, phase_affine=None,
             sidecar=None, phase_sidecar=None):
    mag_default, phase_default = gre_arrays()
    magnitude = mag_default if magnitude is None else magnitude
    phase = phase_default if phase is None else phase
    mag = write(folder / "mag.nii.gz", magnitude, mag_affine, sidecar)
    pha = write(folder / "phase.nii.gz", phase, phase_affine,
                sidecar if phase_sidecar is None else phase_sidecar)
    return mag, pha


def write_per_echo(folder, *, tes=TES, field_strength=3.0, affines=None, extra=None):
    magnitude, phase = gre_arrays(len(tes))
    mags, phases = [], []
    for echo, te in enumerate(tes):
        sidecar = {"EchoTime": te, "MagneticFieldStrength": field_strength,
                   "Manufacturer": "Siemens", "RepetitionTime": 0.035, "FlipAngle": 15}
        if field_strength is None:
            del sidecar["MagneticFieldStrength"]
        if te is None:
            del sidecar["EchoTime"]
        sidecar.update(extra or {})
        affine = None if affines is None else affines[echo]
        mags.append(write(folder / f"sub-1_echo-{echo + 1}_part-mag_MEGRE.nii.gz",
                          magnitude[..., echo], affine, sidecar))
        phases.append(write(folder / f"sub-1_echo-{echo + 1}_part-phase_MEGRE.nii.gz",
                            phase[..., echo], affine, sidecar))
    return mags, phases


# ---------------------------------------------------------------------------------------
# What is accepted


def test_per_echo_files_take_echo_times_field_strength_and_vendor_from_sidecars(tmp_path):
    mags, phases = write_per_echo(tmp_path)
    gre = load_gre(mags, phases)
    assert gre.magnitude.shape == SHAPE + (4,)
    assert gre.phase.shape == SHAPE + (4,)
    assert gre.echo_times_s == pytest.approx(TES)
    assert gre.field_strength_t == 3.0
    assert gre.acquisition.manufacturer == "Siemens"
    assert gre.acquisition.repetition_time_s == 0.035
    assert gre.acquisition.flip_angle_deg == 15
    assert gre.acquisition.echo_times_source == "sidecar"
    assert gre.acquisition.n_echoes == 4
    assert gre.acquisition.matrix == list(SHAPE)


def test_phase_is_returned_unscaled_as_the_vendor_stored_it(tmp_path):
    magnitude, phase = gre_arrays()
    mag, pha = write_4d(tmp_path, magnitude=magnitude, phase=phase)
    gre = load_gre(mag, pha, echo_times_s=TES, field_strength_t=3)
    assert np.array_equal(gre.phase, phase.astype(np.float32))
    assert np.allclose(gre.magnitude, magnitude)


def test_4d_and_per_echo_forms_load_the_same_arrays(tmp_path):
    mags, phases = write_per_echo(tmp_path)
    magnitude = np.stack([nib.load(str(p)).get_fdata() for p in mags], axis=-1)
    phase = np.stack([nib.load(str(p)).get_fdata() for p in phases], axis=-1)
    four_d = tmp_path / "4d"
    four_d.mkdir()
    mag, pha = write_4d(four_d, magnitude=magnitude.astype(np.float32),
                        phase=phase.astype(np.int16))
    a = load_gre(mags, phases)
    b = load_gre(mag, pha, echo_times_s=TES, field_strength_t=3.0)
    assert np.array_equal(a.magnitude, b.magnitude)
    assert np.array_equal(a.phase, b.phase)


def test_4d_sidecar_may_list_one_echo_time_per_volume(tmp_path):
    mag, pha = write_4d(tmp_path, sidecar={"EchoTime": TES, "MagneticFieldStrength": 7})
    gre = load_gre(mag, pha)
    assert gre.echo_times_s == pytest.approx(TES)
    assert gre.field_strength_t == 7


def test_arguments_override_sidecars_with_a_warning(tmp_path):
    mags, phases = write_per_echo(tmp_path)
    gre = load_gre(mags, phases, echo_times_s=[0.004, 0.010, 0.016, 0.022], field_strength_t=2.89)
    assert gre.echo_times_s == pytest.approx([0.004, 0.010, 0.016, 0.022])
    assert gre.field_strength_t == 2.89
    assert any("differ from the sidecars" in w for w in gre.warnings)


def test_oblique_affine_gives_b0_in_voxel_axes_and_the_oblique_angle(tmp_path):
    t = np.deg2rad(25)
    affine = np.eye(4)
    affine[:3, :3] = np.array([[1, 0, 0], [0, np.cos(t), -np.sin(t)],
                               [0, np.sin(t), np.cos(t)]]) @ np.diag([1.0, 1.0, 1.5])
    mag, pha = write_4d(tmp_path, mag_affine=affine, phase_affine=affine)
    gre = load_gre(mag, pha, echo_times_s=TES, field_strength_t=3)
    assert np.allclose(gre.b0_direction, [0, np.sin(t), np.cos(t)], atol=1e-6)
    assert gre.voxel_size_mm == pytest.approx((1.0, 1.0, 1.5))
    assert gre.acquisition.oblique_angle_deg == pytest.approx(25.0, abs=1e-3)
    assert oblique_angle_deg([1, 0, 0]) == 0.0


# ---------------------------------------------------------------------------------------
# Acquisition warnings (consensus checklist)


def test_a_conforming_3t_acquisition_has_no_warning():
    assert acquisition_warnings((1.0, 1.0, 1.0), [0.004, 0.012, 0.020, 0.028, 0.036], 3.0, {}) == []


def test_thick_anisotropic_slices_short_last_echo_and_partial_fourier_are_each_warned():
    warnings = acquisition_warnings((0.5, 0.5, 2.0), [0.003, 0.006, 0.009], 3.0,
                                    {"PartialFourier": 0.75})
    text = " | ".join(warnings)
    assert len(warnings) == 4
    assert "2 mm or more" in text and "anisotropic" in text
    assert "last echo at 9.0 ms" in text and "partial Fourier" in text


def test_short_last_echo_threshold_scales_with_field_strength():
    # 12 ms is fine at 7 T (T2* about 3/7 of its 3 T value) but short at 3 T.
    assert acquisition_warnings((1, 1, 1), [0.004, 0.008, 0.012], 7.0, {}) == []
    assert len(acquisition_warnings((1, 1, 1), [0.004, 0.008, 0.012], 3.0, {})) == 1


def test_warnings_reach_the_loaded_acquisition(tmp_path):
    mags, phases = write_per_echo(tmp_path, tes=[0.002, 0.004, 0.006],
                                  extra={"PartialFourier": 0.875})
    gre = load_gre(mags, phases)
    assert any("partial Fourier" in w for w in gre.warnings)
    assert any("last echo" in w for w in gre.warnings)


# ---------------------------------------------------------------------------------------
# Bad input: each case builds its files and returns (magnitude, phase, kwargs, culprit)


def case_shape_mismatch(folder):
    magnitude, phase = gre_arrays()
    mag, pha = write_4d(folder, magnitude=magnitude, phase=phase[:, :, :-1])
    return mag, pha, {"echo_times_s": TES, "field_strength_t": 3}, pha, "does not match"


def case_affine_mismatch(folder):
    shifted = np.eye(4)
    shifted[0, 3] = 2.0
    mag, pha = write_4d(folder, phase_affine=shifted)
    return mag, pha, {"echo_times_s": TES, "field_strength_t": 3}, pha, "affine differs"


def case_echo_grids_differ(folder):
    affines = [np.eye(4)] * 4
    affines[2] = np.diag([1.0, 1.0, 1.2, 1.0])
    mags, phases = write_per_echo(folder, affines=affines)
    return mags, phases, {}, mags[2], "differs from the first"


def case_single_echo(folder):
    magnitude, phase = gre_arrays(1)
    mag = write(folder / "mag.nii.gz", magnitude[..., 0])
    pha = write(folder / "phase.nii.gz", phase[..., 0])
    return mag, pha, {"echo_times_s": [0.02], "field_strength_t": 3}, mag, "one echo"


def case_nan_in_phase(folder):
    magnitude, phase = gre_arrays()
    phase = phase.astype(np.float32)
    phase[3, 3, 3, 1] = np.nan
    mag, pha = write_4d(folder, magnitude=magnitude, phase=phase)
    return mag, pha, {"echo_times_s": TES, "field_strength_t": 3}, pha, "NaN"


def case_inf_in_magnitude(folder):
    magnitude, phase = gre_arrays()
    magnitude[1, 2, 3, 0] = np.inf
    mag, pha = write_4d(folder, magnitude=magnitude, phase=phase)
    return mag, pha, {"echo_times_s": TES, "field_strength_t": 3}, mag, "infinite"


def case_integer_magnitude_scaled_past_float32(folder):
    magnitude, phase = gre_arrays()
    image = nib.Nifti1Image(np.rint(magnitude).astype(np.int16), np.eye(4))
    image.header.set_slope_inter(1e36, 0.0)  # 1000 x 1e36 overflows float32: infinite voxels
    mag = folder / "mag.nii.gz"
    nib.save(image, str(mag))
    pha = write(folder / "phase.nii.gz", phase)
    return mag, pha, {"echo_times_s": TES, "field_strength_t": 3}, mag, "infinite"


def case_echo_times_in_ms(folder):
    mag, pha = write_4d(folder)
    return mag, pha, {"echo_times_s": [5, 12, 19, 26], "field_strength_t": 3}, pha, "milliseconds"


def case_sidecar_echo_times_in_ms(folder):
    mags, phases = write_per_echo(folder, tes=[5.0, 12.0, 19.0, 26.0])
    return mags, phases, {}, phases[0].name.replace(".nii.gz", ".json"), "milliseconds"


def case_non_increasing_echo_times(folder):
    mag, pha = write_4d(folder)
    return mag, pha, {"echo_times_s": [0.005, 0.019, 0.012, 0.026], "field_strength_t": 3}, pha, \
        "not strictly increasing"


def case_too_few_echo_times(folder):
    mag, pha = write_4d(folder)
    return mag, pha, {"echo_times_s": TES[:3], "field_strength_t": 3}, pha, "for 4 echoes"


def case_missing_echo_times(folder):
    mag, pha = write_4d(folder)
    return mag, pha, {"field_strength_t": 3}, pha, "echo times unknown"


def case_missing_field_strength(folder):
    mags, phases = write_per_echo(folder, field_strength=None)
    return mags, phases, {}, phases[0], "field strength unknown"


def case_field_strength_in_millitesla(folder):
    mag, pha = write_4d(folder)
    return mag, pha, {"echo_times_s": TES, "field_strength_t": 3000}, pha, "not a B0 in tesla"


def case_zero_magnitude(folder):
    magnitude, phase = gre_arrays()
    magnitude[..., 2] = 0
    mag, pha = write_4d(folder, magnitude=magnitude, phase=phase)
    return mag, pha, {"echo_times_s": TES, "field_strength_t": 3}, mag, "zero everywhere"


def case_phase_given_as_magnitude(folder):
    _, phase = gre_arrays()
    mag, pha = write_4d(folder, magnitude=phase.astype(np.float32), phase=phase)
    return mag, pha, {"echo_times_s": TES, "field_strength_t": 3}, mag, "negative"


def case_missing_file(folder):
    mag, _ = write_4d(folder)
    return mag, folder / "nope.nii.gz", {"echo_times_s": TES, "field_strength_t": 3}, \
        folder / "nope.nii.gz", "file not found"


def case_not_an_image(folder):
    mag, _ = write_4d(folder)
    bad = folder / "phase_bad.nii.gz"
    bad.write_text("not an image")
    return mag, bad, {"echo_times_s": TES, "field_strength_t": 3}, bad, "not a readable NIfTI"


def case_sidecar_disagreement(folder):
    mag, pha = write_4d(folder, sidecar={"EchoTime": TES, "MagneticFieldStrength": 3},
                        phase_sidecar={"EchoTime": [t + 0.001 for t in TES],
                                       "MagneticFieldStrength": 3})
    return mag, pha, {}, "phase.json", "magnitude sidecars give"


def case_4d_sidecar_with_one_echo_time(folder):
    mag, pha = write_4d(folder, sidecar={"EchoTime": 0.005, "MagneticFieldStrength": 3})
    return mag, pha, {}, "phase.json", "1 EchoTime value"


def case_single_slice(folder):
    magnitude, phase = gre_arrays(shape=(10, 9, 1))
    mag, pha = write_4d(folder, magnitude=magnitude, phase=phase)
    return mag, pha, {"echo_times_s": TES, "field_strength_t": 3}, mag, "QSM needs a 3D volume"


def case_voxels_of_100_mm(folder):
    affine = np.diag([100.0, 100.0, 100.0, 1.0])
    mag, pha = write_4d(folder, mag_affine=affine, phase_affine=affine)
    return mag, pha, {"echo_times_s": TES, "field_strength_t": 3}, mag, "not a plausible MRI"


def case_singular_affine(folder):
    affine = np.eye(4)
    affine[:3, 1] = affine[:3, 0]  # two identical voxel axes: determinant zero
    mag, pha = write_4d(folder, mag_affine=affine, phase_affine=affine)
    return mag, pha, {"echo_times_s": TES, "field_strength_t": 3}, mag, "singular"


def case_all_zero_affine(folder):
    mag, pha = write_4d(folder)
    for path in (mag, pha):
        image = nib.load(str(path))
        header = image.header.copy()
        header.set_qform(None, code=0)
        header.set_sform(np.zeros((4, 4)), code=1)
        header["pixdim"][1:4] = 0
        nib.save(nib.Nifti1Image(np.asanyarray(image.dataobj), None, header), str(path))
    return mag, pha, {"echo_times_s": TES, "field_strength_t": 3}, mag, "affine"


def case_truncated_gzip(folder):
    mag, pha = write_4d(folder)
    pha.write_bytes(pha.read_bytes()[:-40])
    return mag, pha, {"echo_times_s": TES, "field_strength_t": 3}, pha, "truncated or corrupt gzip"


def case_corrupt_gzip_stream(folder):
    mag, pha = write_4d(folder)
    data = bytearray(pha.read_bytes())
    data[-8] ^= 0xFF  # the stored CRC no longer matches the voxels
    pha.write_bytes(bytes(data))
    return mag, pha, {"echo_times_s": TES, "field_strength_t": 3}, pha, "truncated or corrupt gzip"


def case_truncated_uncompressed(folder):
    mag, pha = write_4d(folder)
    raw = folder / "phase_raw.nii"
    nib.save(nib.load(str(pha)), str(raw))
    raw.write_bytes(raw.read_bytes()[:-400])
    return mag, raw, {"echo_times_s": TES, "field_strength_t": 3}, raw, "the image data cannot be read"


def case_sidecar_echo_time_true(folder):
    mags, phases = write_per_echo(folder)
    phases[0].with_name(phases[0].name.replace(".nii.gz", ".json")).write_text(
        json.dumps({"EchoTime": True, "MagneticFieldStrength": 3.0}))
    return mags, phases, {}, phases[0].name.replace(".nii.gz", ".json"), "EchoTime must be a number, got True"


def case_echo_without_sidecar(folder):
    mags, phases = write_per_echo(folder)
    phases[2].with_name(phases[2].name.replace(".nii.gz", ".json")).unlink()
    return mags, phases, {}, phases[2], "has no JSON sidecar"


BAD_INPUTS = [case_shape_mismatch, case_affine_mismatch, case_echo_grids_differ, case_single_echo,
              case_nan_in_phase, case_inf_in_magnitude, case_integer_magnitude_scaled_past_float32,
              case_echo_times_in_ms,
              case_sidecar_echo_times_in_ms, case_non_increasing_echo_times,
              case_too_few_echo_times, case_missing_echo_times, case_missing_field_strength,
              case_field_strength_in_millitesla, case_zero_magnitude,
              case_phase_given_as_magnitude, case_missing_file, case_not_an_image,
              case_sidecar_disagreement, case_4d_sidecar_with_one_echo_time, case_single_slice,
              case_voxels_of_100_mm, case_singular_affine, case_all_zero_affine,
              case_truncated_gzip, case_corrupt_gzip_stream, case_truncated_uncompressed,
              case_echo_without_sidecar, case_sidecar_echo_time_true]


def _culprit_name(culprit):
    return culprit if isinstance(culprit, str) else culprit.name


@pytest.mark.parametrize("case", BAD_INPUTS, ids=lambda c: c.__name__[5:])
def test_load_gre_rejects_bad_input_naming_the_file(case, tmp_path):
    mag, pha, kwargs, culprit, words = case(tmp_path)
    with pytest.raises(InputError) as caught:
        load_gre(mag, pha, **kwargs)
    error = caught.value
    assert error.path is not None and error.path.endswith(_culprit_name(culprit))
    assert words in error.message
    assert "\n" not in error.one_line()


def _cli_args(mag, pha, kwargs, out_dir):
    args = ["recon"]
    for path in (mag if isinstance(mag, list) else [mag]):
        args += ["--magnitude", str(path)]
    for path in (pha if isinstance(pha, list) else [pha]):
        args += ["--phase", str(path)]
    if "echo_times_s" in kwargs:
        args += ["--echo-times", ",".join(str(t) for t in kwargs["echo_times_s"])]
    if "field_strength_t" in kwargs:
        args += ["--field-strength", str(kwargs["field_strength_t"])]
    return args + ["-o", str(out_dir)]


@pytest.mark.parametrize("case", BAD_INPUTS, ids=lambda c: c.__name__[5:])
def test_recon_command_exits_2_with_one_line_and_writes_nothing(case, tmp_path, capsys):
    inputs = tmp_path / "in"
    inputs.mkdir()
    mag, pha, kwargs, culprit, words = case(inputs)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    (out_dir / "unrelated.txt").write_text("keep me")
    before = sorted(p.name for p in inputs.iterdir())
    code = main(_cli_args(mag, pha, kwargs, out_dir))
    err = capsys.readouterr().err
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert _culprit_name(culprit) in lines[0] and words in lines[0]
    assert "Traceback" not in err
    assert sorted(p.name for p in out_dir.iterdir()) == ["unrelated.txt"]
    assert (out_dir / "unrelated.txt").read_text() == "keep me"
    assert sorted(p.name for p in inputs.iterdir()) == before  # inputs untouched
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_recon_command_leaves_a_missing_output_folder_uncreated_on_bad_input(tmp_path, capsys):
    mag, pha, kwargs, _, _ = case_echo_times_in_ms(tmp_path)
    out_dir = tmp_path / "new" / "out"
    assert main(_cli_args(mag, pha, kwargs, out_dir)) == 2
    assert not out_dir.exists()


def test_voxel_sizes_read_from_a_float32_affine_are_exact(tmp_path):
    # 1.5 mm stored in a float32 sform under a 20 degree rotation reads back as 1.50000005.
    t = np.deg2rad(20)
    affine = np.eye(4)
    affine[:3, :3] = np.array([[1, 0, 0], [0, np.cos(t), -np.sin(t)],
                               [0, np.sin(t), np.cos(t)]]) @ np.diag([1.0, 1.0, 1.5])
    mag, pha = write_4d(tmp_path, mag_affine=affine, phase_affine=affine)
    gre = load_gre(mag, pha, echo_times_s=TES, field_strength_t=3)
    assert gre.voxel_size_mm == (1.0, 1.0, 1.5)
    assert gre.acquisition.voxel_size_mm == [1.0, 1.0, 1.5]


def test_given_echo_times_override_a_4d_sidecar_with_only_the_first_echo_time(tmp_path):
    # dcm2niix-style merged 4D file: the sidecar carries the first echo's TE only.
    mag, pha = write_4d(tmp_path, sidecar={"EchoTime": 0.005, "MagneticFieldStrength": 3})
    gre = load_gre(mag, pha, echo_times_s=TES)
    assert gre.echo_times_s == pytest.approx(TES)
    assert gre.field_strength_t == 3


def test_a_fault_that_is_not_the_file_is_not_reported_as_an_unreadable_image(tmp_path, monkeypatch):
    """A runtime fault while reading (here numba's thread-count error) is the machine's, not the
    file's: it must reach the pipeline's infrastructure-error path, not read like a bad file."""
    import qsmiron.io.gre as gre

    mag, pha = write_4d(tmp_path)

    def fault(image):
        raise RuntimeError("Cannot set NUMBA_NUM_THREADS to a different value once the threads have been launched")

    monkeypatch.setattr(gre, "c_ordered_voxels", fault)
    with pytest.raises(RuntimeError, match="NUMBA_NUM_THREADS"):
        load_gre(mag, pha, echo_times_s=TES, field_strength_t=3)
