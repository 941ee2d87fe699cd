"""``qsmiron recon`` and ``qsmiron invert`` end to end on forward-simulated and real data.

Truth comes from an independent forward model, the ``qsm-forward`` package: its dipole
convolution (``generate_field``), its multi-echo signal model (``generate_signal``,
``generate_phase_offset``, ``add_noise``). The phantom is a head in air with an air-filled
sinus (background field with phase wraps), a brain with white matter and iron-rich nuclei.
Phase is stored as the vendor does (integers -4096..4095), with BIDS JSON sidecars.
Accuracy is the demeaned NRMSE of the benchmarks (100 ||x - r|| / ||r||, both demeaned in
the mask) inside the final mask.
"""

import json

import nibabel as nib
import numpy as np
import pytest
import qsm_forward
from gre_phantom import (FIELD_STRENGTH_T, TES, grid_affine, head_phantom, nrmse_percent, recon_args,
                         rotation_x, simulate_gre, write_4d_dataset, write_image, write_per_echo_dataset)

from qsmiron.cli import main
from qsmiron.io.nifti import b0_direction_voxel
from qsmiron.records.recon import InversionRecord, ReconRecord
from qsmiron.recon.stages import INVERSION

OUTPUTS = {"Chimap.nii.gz", "mask.nii.gz", "fieldmap.nii.gz", "localfield.nii.gz", "recon.json",
           "R2starmap.nii.gz", "T2starmap.nii.gz", "S0map.nii.gz", "desc-r2star_mask.nii.gz",
           "R2starmap.json", "T2starmap.json", "S0map.json", "desc-r2star_mask.json"}
"""What ``qsmiron recon`` writes by default from 4 echoes: chi-separation is off by default."""
RECON_NRMSE_BOUND = 55.0  # %; measured 47 (axial) and 45 (oblique), see the report of issue 2
TFI_NRMSE_BOUND = 58.0  # %; the chain with inversion "tfi" after background "none": measured 47.9 (axial)
INVERT_NRMSE_BOUND = 25.0  # %, default method on a noisy forward-simulated local field (measured 13.5)


@pytest.fixture(scope="module")
def axial_sim():
    return simulate_gre((48, 48, 40), (1.0, 1.0, 1.0))


@pytest.fixture(scope="module")
def axial_recon(axial_sim, tmp_path_factory):
    """The 4D-file form through the command line, echo times and B0 as arguments."""
    folder = tmp_path_factory.mktemp("axial")
    mag, pha = write_4d_dataset(folder / "in", axial_sim)
    out_dir = folder / "out"
    code = main(recon_args([mag], [pha], out_dir))
    assert code == 0
    return out_dir


# ---------------------------------------------------------------------------------------
# recon


def test_recon_writes_every_output_on_the_input_grid_with_units(axial_recon, axial_sim):
    assert {p.name for p in axial_recon.iterdir()} == OUTPUTS
    for name in (name for name in OUTPUTS if name.endswith(".nii.gz")):
        image = nib.load(str(axial_recon / name))
        assert image.shape == axial_sim["magnitude"].shape[:3], name
        assert np.allclose(image.affine, axial_sim["affine"], atol=1e-4), name
    chi = nib.load(str(axial_recon / "Chimap.nii.gz")).get_fdata()
    mask = nib.load(str(axial_recon / "mask.nii.gz")).get_fdata() > 0
    field_hz = nib.load(str(axial_recon / "fieldmap.nii.gz")).get_fdata()
    assert set(np.unique(nib.load(str(axial_recon / "mask.nii.gz")).get_fdata())) == {0.0, 1.0}
    assert np.all(np.isfinite(chi)) and np.all(chi[~mask] == 0)
    # ppm: brain susceptibilities are tenths of a ppm, not Hz or radians.
    assert 0.05 < np.percentile(np.abs(chi[mask]), 99) < 1.0
    # Hz: the sinus field reaches tens of Hz at 3 T in the brain (ppm would be below 2).
    assert np.percentile(np.abs(field_hz[mask]), 99) > 10
    # The mean over the mask is the reference (whole-brain referencing).
    assert abs(chi[mask].mean()) < 1e-4


def test_recon_json_records_inputs_acquisition_every_step_and_versions(axial_recon):
    record = ReconRecord.read(axial_recon / "recon.json")
    assert record.schema_version == 1 and record.qsmiron_version and record.created
    acquisition = record.acquisition
    assert acquisition.echo_times_s == list(TES)
    assert acquisition.field_strength_t == FIELD_STRENGTH_T
    assert acquisition.n_echoes == 4 and acquisition.matrix == [48, 48, 40]
    assert [step.step for step in record.steps] == [
        "phase", "mask", "r2star", "readout", "unwrap", "echo_fit", "mask_refinement", "background", "inversion",
        "chisep", "reference"]
    assert record.step("r2star").method == "nlls" and record.r2star.n_valid > 0
    assert record.readout.polarity == "monopolar" and record.readout.largest_rad < record.readout.detection_rad
    assert record.step("chisep").method == "none" and record.chi_separation.skipped.endswith("not asked for "
                                                                                           "(recon.chisep.method = 'none')")
    assert record.step("phase").notes["detected_scaling"] == "levels"
    for step in record.steps:
        assert step.seconds >= 0 and step.cpu_seconds >= 0
    # Every parameter of the method that ran is recorded, defaults included.
    assert set(record.step("background").parameters) == {"pad_mm", "pdf_tol", "pdf_max_iter", "radius_mm", "ismv_tol",
                                                         "fill_sigma_mm"}
    assert record.step("echo_fit").parameters["misfit_p"] == 1e-4
    assert record.step("mask_refinement").notes["misfit_voxels_kept_without_field"] >= 0
    assert record.config.recon.inversion.method == record.step("inversion").method
    assert record.units.chimap == "ppm" and record.units.fieldmap == "Hz"
    assert record.step("reference").method == "mean"
    assert record.versions["numpy"] and record.versions["qsmiron"]


def test_recon_susceptibility_matches_the_forward_simulated_truth(axial_recon, axial_sim):
    chi = nib.load(str(axial_recon / "Chimap.nii.gz")).get_fdata()
    mask = nib.load(str(axial_recon / "mask.nii.gz")).get_fdata() > 0
    # The final mask covers much of the brain and little outside it. This brain is 18 ml (a ball
    # of about 16 mm): the mask refinement's 1 mm surface layer and iSMV's 2 mm take 53 % of it
    # (measured 47 % covered; 58 % without the surface layer, whose cost here is the price of the
    # family heads' gain, recon.mask.refine_mask_by_phase_quality).
    brain = axial_sim["brain"]
    assert np.count_nonzero(mask & brain) > 0.4 * np.count_nonzero(brain)
    assert np.count_nonzero(mask & ~brain) < 0.05 * np.count_nonzero(mask)
    error = nrmse_percent(chi, axial_sim["chi_brain"], mask)
    print(f"recon NRMSE (axial, 1 mm): {error:.1f} %")
    assert error < RECON_NRMSE_BOUND


def test_recon_of_a_small_field_of_view_records_why_the_template_brain_was_skipped(axial_recon):
    record = ReconRecord.read(axial_recon / "recon.json")
    mask_step = record.step("mask")
    assert mask_step.method == "magnitude" and "template_margin_mm" not in mask_step.parameters
    template = mask_step.notes["template_brain"]
    assert template["used"] is False and "field of view too small" in template["reason"]


def test_reconstruct_arrays_restricts_the_automatic_mask_to_a_given_template_brain(axial_sim):
    """A template brain that leaves out the brain's lower third: the mask follows it, and the
    step records the method, the parameters, the volumes and the registration's seconds;
    switched off, the mask is the magnitude's and the step says why."""
    from qsmiron.recon.chain import reconstruct_arrays
    from qsmiron.recon.settings import ReconSettings

    probability = axial_sim["brain"].astype(np.float32)
    probability[:, :, :14] = 0.0
    args = (axial_sim["magnitude"], axial_sim["phase"], (1, 1, 1), (0, 0, 1), TES, FIELD_STRENGTH_T)
    settings = ReconSettings()
    settings.inversion.method = "tkd"
    restricted = reconstruct_arrays(*args, settings=settings, brain_probability=probability,
                                    brain_probability_notes={"used": True, "seconds": 100.0})
    step = restricted.steps[1]
    assert step.method == "magnitude_template" and step.parameters["template_margin_mm"] == 4.0
    assert step.notes["template_brain"]["volume_after_ml"] < step.notes["template_brain"]["volume_before_ml"]
    assert step.seconds >= 100.0
    assert not restricted.mask[:, :, :8].any()
    settings.mask.magnitude.template_brain = False
    kept = reconstruct_arrays(*args, settings=settings, brain_probability=probability)
    step = kept.steps[1]
    assert step.method == "magnitude" and step.notes["template_brain"]["reason"].startswith("switched off")
    assert step.notes["n_voxels"] > restricted.steps[1].notes["n_voxels"]


def test_a_template_brain_given_late_gives_the_same_mask_and_is_asked_for_once(axial_sim):
    """The pipeline registers the template while the phase is scaled and the magnitude
    thresholded (``brain_probability_source``): the mask and its notes are those of the array
    given up front, and the step counts only its own time (it waited for the registration)."""
    from qsmiron.recon.chain import reconstruct_arrays
    from qsmiron.recon.settings import ReconSettings

    probability = axial_sim["brain"].astype(np.float32)
    probability[:, :, :14] = 0.0
    notes = {"used": True, "seconds": 100.0, "cpu_seconds": 90.0}
    args = (axial_sim["magnitude"], axial_sim["phase"], (1, 1, 1), (0, 0, 1), TES, FIELD_STRENGTH_T)
    settings = ReconSettings()
    settings.inversion.method = "tkd"
    up_front = reconstruct_arrays(*args, settings=settings, brain_probability=probability,
                                  brain_probability_notes=notes)
    calls = []

    def source():
        calls.append(True)
        return probability, dict(notes)

    late = reconstruct_arrays(*args, settings=settings, brain_probability_source=source)
    assert calls == [True]
    np.testing.assert_array_equal(late.mask, up_front.mask)
    assert late.steps[1].method == "magnitude_template"
    assert late.steps[1].notes["template_brain"] == up_front.steps[1].notes["template_brain"]
    assert up_front.steps[1].seconds >= 100.0 > late.steps[1].seconds
    settings.mask.magnitude.template_brain = False  # switched off: never asked for
    reconstruct_arrays(*args, settings=settings, brain_probability_source=source)
    assert calls == [True]


def test_per_echo_files_with_sidecars_give_the_same_result_as_the_4d_file(
        axial_recon, axial_sim, tmp_path):
    mags, phases = write_per_echo_dataset(tmp_path / "in", axial_sim)
    out_dir = tmp_path / "out"
    (out_dir).mkdir()
    (out_dir / "notes.txt").write_text("unrelated")
    assert main(recon_args(mags, phases, out_dir, echo_times=False, field_strength=False, listed=True)) == 0
    assert {p.name for p in out_dir.iterdir()} == OUTPUTS | {"notes.txt"}
    for name in ("Chimap.nii.gz", "mask.nii.gz", "fieldmap.nii.gz", "localfield.nii.gz"):
        a = nib.load(str(axial_recon / name)).get_fdata()
        b = nib.load(str(out_dir / name)).get_fdata()
        assert np.allclose(a, b, atol=1e-6), name
    record = ReconRecord.read(out_dir / "recon.json")
    assert record.acquisition.echo_times_source == "sidecar"
    assert record.acquisition.manufacturer == "Siemens"
    assert record.acquisition.receive_coil == "Head_32"
    assert len(record.inputs.magnitude) == 4


def test_recon_of_an_oblique_anisotropic_acquisition_uses_b0_in_voxel_axes(tmp_path):
    sim = simulate_gre((48, 48, 32), (1.0, 1.0, 1.5), rotation_x(20), seed=1)
    mag, pha = write_4d_dataset(tmp_path / "in", sim)
    out_dir = tmp_path / "out"
    assert main(recon_args([mag], [pha], out_dir)) == 0
    chi = nib.load(str(out_dir / "Chimap.nii.gz")).get_fdata()
    mask = nib.load(str(out_dir / "mask.nii.gz")).get_fdata() > 0
    record = ReconRecord.read(out_dir / "recon.json")
    assert np.allclose(record.acquisition.b0_direction_voxel, sim["b0"], atol=1e-5)
    assert record.acquisition.oblique_angle_deg == pytest.approx(20.0, abs=0.01)
    assert record.acquisition.voxel_size_mm == pytest.approx([1.0, 1.0, 1.5])
    error = nrmse_percent(chi, sim["chi_brain"], mask)
    print(f"recon NRMSE (oblique 20 deg, 1 x 1 x 1.5 mm): {error:.1f} %")
    assert error < RECON_NRMSE_BOUND
    # Ignoring the obliquity (B0 along the voxel z axis) must do measurably worse: the
    # test would not notice a pipeline that dropped the affine's rotation otherwise.
    from qsmiron.recon.chain import reconstruct_arrays

    straight = reconstruct_arrays(sim["magnitude"], sim["phase"], sim["voxel_mm"], (0, 0, 1),
                                  TES, FIELD_STRENGTH_T, mask=mask)
    assert nrmse_percent(straight.chi_ppm, sim["chi_brain"], straight.mask) > error + 5


# ---------------------------------------------------------------------------------------
# recon: the mask option and its bad inputs


def test_recon_with_a_user_mask_keeps_it_unrefined_and_writes_the_names_asked_for(
        axial_sim, tmp_path):
    from qsmiron.pipeline.single import reconstruct_files

    mag, pha = write_4d_dataset(tmp_path / "in", axial_sim)
    mask_path = write_image(tmp_path / "in" / "brain.nii.gz",
                            axial_sim["brain"].astype(np.uint8), axial_sim["affine"])
    names = {"Chimap": "sub-01_Chimap.nii.gz", "mask": "sub-01_mask.nii.gz",
             "fieldmap": "sub-01_fieldmap.nii.gz", "localfield": "sub-01_localfield.nii.gz",
             "recon_json": "sub-01_recon.json", "R2starmap": "sub-01_R2starmap.nii.gz",
             "T2starmap": "sub-01_T2starmap.nii.gz", "S0map": "sub-01_S0map.nii.gz",
             "r2star_mask": "sub-01_desc-r2star_mask.nii.gz"}
    written = reconstruct_files(mag, pha, tmp_path / "out", echo_times_s=TES,
                                field_strength_t=FIELD_STRENGTH_T, mask=mask_path, names=names)
    assert [p.name for p in (written.chimap, written.mask, written.fieldmap, written.localfield,
                             written.record, written.r2starmap, written.t2starmap, written.s0map,
                             written.r2star_mask)] == list(names.values())
    sidecars = {name.replace(".nii.gz", ".json") for key, name in names.items()
                if key in ("R2starmap", "T2starmap", "S0map", "r2star_mask")}
    assert {p.name for p in (tmp_path / "out").iterdir()} == set(names.values()) | sidecars
    record = ReconRecord.read(written.record)
    assert record.inputs.mask.endswith("brain.nii.gz")
    assert record.step("mask").method == "given"
    assert record.step("mask_refinement").method == "none"
    mask = nib.load(str(written.mask)).get_fdata() > 0
    assert mask.any()
    assert not np.any(mask & ~axial_sim["brain"])  # never grows beyond the user's mask


def _bad_mask(kind, sim, folder):
    brain = sim["brain"].astype(np.float32)
    affine = sim["affine"]
    if kind == "empty":
        return write_image(folder / "mask.nii.gz", np.zeros_like(brain), affine), "empty"
    if kind == "other_grid":
        return write_image(folder / "mask.nii.gz", brain[:, :, :-2], affine), "another grid"
    if kind == "shifted":
        shifted = affine.copy()
        shifted[2, 3] += 1.0
        return write_image(folder / "mask.nii.gz", brain, shifted), "another grid"
    if kind == "not_binary":
        return write_image(folder / "mask.nii.gz", brain * 0.7, affine), "not binary"
    raise ValueError(kind)


@pytest.mark.parametrize("kind", ["empty", "other_grid", "shifted", "not_binary"])
def test_recon_rejects_a_bad_mask_in_one_line_and_writes_nothing(kind, axial_sim, tmp_path,
                                                                  capsys):
    mag, pha = write_4d_dataset(tmp_path / "in", axial_sim)
    mask_path, words = _bad_mask(kind, axial_sim, tmp_path / "in")
    out_dir = tmp_path / "out"
    code = main(recon_args([mag], [pha], out_dir) + ["--mask", str(mask_path)])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1 and "mask.nii.gz" in err and words in err
    assert not out_dir.exists()


def test_recon_names_the_config_file_with_an_unknown_key(axial_sim, tmp_path, capsys):
    mag, pha = write_4d_dataset(tmp_path / "in", axial_sim)
    config = tmp_path / "settings.toml"
    config.write_text("[recon.inversion]\nmethod = 'tv'\nlambda_typo = 1\n")
    code = main(recon_args([mag], [pha], tmp_path / "out") + ["--config", str(config)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "settings.toml" in err and "lambda_typo" in err
    assert not (tmp_path / "out").exists()


def test_total_field_inversion_runs_after_background_none_in_the_chain(axial_sim):
    """``inversion.method = "tfi"`` with ``background.method = "none"``: the background step
    passes the total field on (nothing eroded), TFI inverts it, and the map matches the truth
    within its bound; the local field written is the field of the tissue TFI found."""
    from qsmiron.recon.chain import reconstruct_arrays
    from qsmiron.recon.settings import ReconSettings

    settings = ReconSettings(background={"method": "none"}, inversion={"method": "tfi"})
    result = reconstruct_arrays(axial_sim["magnitude"], axial_sim["phase"], (1, 1, 1), (0, 0, 1),
                                TES, FIELD_STRENGTH_T, settings=settings)
    steps = {step.step: step for step in result.steps}
    assert steps["background"].method == "none" and steps["inversion"].method == "tfi"
    assert steps["inversion"].parameters["prior"] == "tv"
    assert steps["inversion"].notes["lambda_rule"] == "discrepancy"
    assert any("compressed regional values" in w for w in steps["inversion"].warnings)
    assert np.array_equal(result.mask, result.field_mask)  # nothing eroded
    assert np.all(result.local_ppm[~result.mask] == 0) and np.any(result.local_ppm[result.mask])
    error = nrmse_percent(result.chi_ppm, axial_sim["chi_brain"], result.mask & axial_sim["brain"])
    assert error < TFI_NRMSE_BOUND, error


def test_reconstruct_arrays_rejects_an_empty_mask(axial_sim):
    from qsmiron.errors import InputError
    from qsmiron.recon.chain import reconstruct_arrays

    with pytest.raises(InputError, match="empty"):
        reconstruct_arrays(axial_sim["magnitude"], axial_sim["phase"], (1, 1, 1), (0, 0, 1),
                           TES, FIELD_STRENGTH_T, mask=np.zeros((48, 48, 40), bool))


# ---------------------------------------------------------------------------------------
# invert


@pytest.fixture(scope="module")
def local_field_case(tmp_path_factory):
    """A forward-simulated local field (ppm) of the brain alone, oblique and anisotropic."""
    shape, voxel = (44, 44, 32), (1.0, 1.0, 1.3)
    affine = grid_affine(shape, voxel, rotation_x(-15))
    b0 = b0_direction_voxel(affine)
    chi_brain, _, brain, _, _, _ = head_phantom(shape, affine)
    local = qsm_forward.generate_field(chi_brain, voxel_size=list(voxel), B0_dir=list(b0))
    rng = np.random.default_rng(3)
    local = np.where(brain, local + rng.normal(0, 0.002, shape), 0.0)  # ~0.25 Hz at 3 T
    folder = tmp_path_factory.mktemp("invert")
    field = write_image(folder / "local.nii.gz", local.astype(np.float32), affine)
    mask = write_image(folder / "mask.nii.gz", brain.astype(np.uint8), affine)
    return {"field": field, "mask": mask, "chi": chi_brain, "brain": brain, "affine": affine,
            "folder": folder}


def test_invert_default_method_recovers_the_susceptibility_on_the_same_grid(local_field_case):
    case = local_field_case
    out = case["folder"] / "chi_default.nii.gz"
    assert main(["invert", str(case["field"]), str(case["mask"]), "-o", str(out)]) == 0
    image = nib.load(str(out))
    assert image.shape == case["chi"].shape
    assert np.allclose(image.affine, case["affine"], atol=1e-4)
    chi = image.get_fdata()
    error = nrmse_percent(chi, case["chi"], case["brain"])
    print(f"invert NRMSE (default method): {error:.1f} %")
    assert error < INVERT_NRMSE_BOUND
    sidecar = json.loads(out.with_name("chi_default.json").read_text())
    record = InversionRecord.model_validate(sidecar["qsmiron"])
    assert sidecar["Units"] == "ppm" and [step.step for step in record.steps] == ["inversion", "reference"]
    assert record.steps[0].method == INVERSION.default


def _inversion_methods():
    from qsmiron.recon.invert import INVERSION_METHODS

    return sorted(INVERSION_METHODS)


@pytest.mark.parametrize("method", _inversion_methods())
def test_invert_every_registered_method_runs_from_the_command_line(method, local_field_case):
    case = local_field_case
    out = case["folder"] / f"chi_{method}.nii.gz"
    assert main(["invert", str(case["field"]), str(case["mask"]), "-o", str(out),
                 "--method", method]) == 0
    chi = nib.load(str(out)).get_fdata()
    assert np.all(np.isfinite(chi))
    error = nrmse_percent(chi, case["chi"], case["brain"])
    print(f"invert NRMSE ({method}): {error:.1f} %")
    # Any registered method must at least resemble the truth (a zero map scores 100 %).
    assert error < 80.0


def _invert_bad(kind, case, folder):
    affine = case["affine"]
    field = nib.load(str(case["field"])).get_fdata().astype(np.float32)
    brain = case["brain"].astype(np.uint8)
    good_field, good_mask = case["field"], case["mask"]
    if kind == "4d_field":
        return write_image(folder / "f4d.nii.gz", np.stack([field, field], -1), affine), \
            good_mask, "f4d.nii.gz", "must be 3D"
    if kind == "nan_in_field":
        bad = field.copy()
        bad[case["brain"]] = np.where(np.arange(case["brain"].sum()) == 7, np.nan,
                                      bad[case["brain"]])
        return write_image(folder / "fnan.nii.gz", bad, affine), good_mask, "fnan.nii.gz", "NaN"
    if kind == "zero_field":  # the default method (wtv_bregman) and tv divided by zero, a traceback
        return write_image(folder / "fzero.nii.gz", 0 * field, affine), good_mask, "fzero.nii.gz", \
            "the local field is zero everywhere inside the mask"
    if kind == "mask_other_grid":
        return good_field, write_image(folder / "m_grid.nii.gz", brain[:-1], affine), \
            "m_grid.nii.gz", "another grid"
    if kind == "empty_mask":
        return good_field, write_image(folder / "m_empty.nii.gz", 0 * brain, affine), \
            "m_empty.nii.gz", "empty"
    if kind == "non_binary_mask":
        return good_field, write_image(folder / "m_nb.nii.gz", brain * 3, affine), \
            "m_nb.nii.gz", "not binary"
    raise ValueError(kind)


@pytest.mark.parametrize("kind", ["4d_field", "nan_in_field", "zero_field", "mask_other_grid", "empty_mask",
                                  "non_binary_mask"])
def test_invert_rejects_bad_input_in_one_line_and_writes_nothing(kind, local_field_case,
                                                                tmp_path, capsys):
    field, mask, culprit, words = _invert_bad(kind, local_field_case, tmp_path)
    out = tmp_path / "out" / "chi.nii.gz"
    code = main(["invert", str(field), str(mask), "-o", str(out)])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1 and culprit in err and words in err, err
    assert not out.exists() and not out.with_name("chi.json").exists()


def test_invert_rejects_an_unknown_method_listing_the_registry(local_field_case, tmp_path,
                                                              capsys):
    case = local_field_case
    code = main(["invert", str(case["field"]), str(case["mask"]), "-o",
                 str(tmp_path / "chi.nii.gz"), "--method", "nonsense"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "nonsense" in err
    assert all(name in err for name in _inversion_methods())


def test_invert_takes_magnitude_and_method_parameters_and_records_them(local_field_case):
    case = local_field_case
    magnitude = write_image(case["folder"] / "mag.nii.gz",
                            np.where(case["brain"], 1.0 - 2.0 * np.abs(case["chi"]), 0).astype(np.float32),
                            case["affine"])
    out = case["folder"] / "chi_params.nii.gz"
    assert main(["invert", str(case["field"]), str(case["mask"]), "-o", str(out), "--magnitude", str(magnitude),
                 "--param", "max_outer=2", "--param", "edge_fraction=0.2"]) == 0
    record = InversionRecord.model_validate(json.loads(out.with_name("chi_params.json").read_text())["qsmiron"])
    inversion = record.steps[0]
    assert inversion.method == "wtv_bregman"
    assert record.command_line_parameters == {"max_outer": 2, "edge_fraction": 0.2}
    assert inversion.parameters["max_outer"] == 2 and inversion.parameters["edge_fraction"] == 0.2
    assert inversion.parameters["inner_iterations"] == 7  # the others keep their declared defaults
    assert record.inputs["magnitude"].endswith("mag.nii.gz") and inversion.notes["inputs"] == ["magnitude"]
    assert inversion.notes["gradient_weights"] == "magnitude edges per axis (MEDI's gradient mask)"
    assert inversion.notes["bregman_steps"] <= 2
    assert nrmse_percent(nib.load(str(out)).get_fdata(), case["chi"], case["brain"]) < INVERT_NRMSE_BOUND


@pytest.mark.parametrize("param, words", [("alpah=0.001", "has no parameter 'alpah'"),
                                          ("max_outer=2.5", "'max_outer': Input should be a valid integer"),
                                          ("max_outer=0", "'max_outer': Input should be greater than or equal to 1"),
                                          ("edge_fraction=wide", "'edge_fraction': Input should be a valid number"),
                                          ("edge_mask=diagonal", "'edge_mask': Input should be 'voxel' or 'per_axis'")])
def test_invert_rejects_a_bad_method_parameter_in_one_line(param, words, local_field_case, tmp_path, capsys):
    case = local_field_case
    out = tmp_path / "chi.nii.gz"
    code = main(["invert", str(case["field"]), str(case["mask"]), "-o", str(out), "--param", param])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and words in err, err
    assert not out.exists()


def test_invert_rejects_a_magnitude_on_another_grid_naming_it(local_field_case, tmp_path, capsys):
    case = local_field_case
    magnitude = write_image(tmp_path / "mag_small.nii.gz", np.ones((10, 10, 10), np.float32), case["affine"])
    code = main(["invert", str(case["field"]), str(case["mask"]), "-o", str(tmp_path / "chi.nii.gz"),
                 "--magnitude", str(magnitude)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "mag_small.nii.gz" in err and "grid" in err, err


def test_invert_maps_the_former_method_name_medi_to_wtv_with_a_warning_and_records_the_new_name(
        local_field_case, tmp_path):
    case = local_field_case
    out = tmp_path / "chi.nii.gz"
    with pytest.warns(FutureWarning, match="'medi' is deprecated: the method is now called 'wtv'"):
        assert main(["invert", str(case["field"]), str(case["mask"]), "-o", str(out), "--method", "medi",
                     "--param", "max_iter=5"]) == 0
    record = InversionRecord.model_validate(json.loads(out.with_name("chi.json").read_text())["qsmiron"])
    assert record.steps[0].method == "wtv" and record.steps[0].parameters["max_iter"] == 5


# ---------------------------------------------------------------------------------------
# The real scan (7 T, TE 4/8/12 ms, 12-bit phase in arbitrary units)


@pytest.mark.realdata
def test_recon_of_the_real_scan_runs_end_to_end_without_nan(real_gre_dir, tmp_path):
    out_dir = tmp_path / "real"
    code = main(["recon", "--magnitude", str(real_gre_dir / "mag.nii.gz"),
                 "--phase", str(real_gre_dir / "phase.nii.gz"),
                 "--echo-times", "0.004,0.008,0.012", "--field-strength", "7",
                 "-o", str(out_dir)])
    assert code == 0
    chi = nib.load(str(out_dir / "Chimap.nii.gz")).get_fdata()
    mask = nib.load(str(out_dir / "mask.nii.gz")).get_fdata() > 0
    assert np.all(np.isfinite(chi))
    assert mask.sum() > 0.1 * mask.size
    # Plausible in-vivo values at 7 T: a few tenths of a ppm, not radians or Hz.
    assert 0.01 < np.percentile(np.abs(chi[mask]), 99) < 2.0
    record = ReconRecord.read(out_dir / "recon.json")
    assert record.step("phase").notes["detected_scaling"] == "levels"
    assert record.step("phase").notes["levels"] == 4096
    assert any("anisotropic" in w for w in record.warnings)


def test_phase_scaling_that_fails_detection_names_the_setting_and_the_override_works(axial_sim, tmp_path, capsys):
    """A weak field without phase offset (tissue only, radians) covers a third of the circle:
    auto-detection refuses it; recon.phase.rescale.scaling = "radians" in the config file accepts it."""
    affine = axial_sim["affine"]
    chi_brain, *_ = head_phantom(axial_sim["magnitude"].shape[:3], affine)
    tissue_ppm = qsm_forward.generate_field(chi_brain, voxel_size=list(axial_sim["voxel_mm"]),
                                            B0_dir=list(axial_sim["b0"]))
    hz = tissue_ppm * 42.58 * FIELD_STRENGTH_T
    phase_rad = np.stack([2 * np.pi * hz * te for te in TES], axis=-1).astype(np.float32)
    assert np.ptp(phase_rad) < 0.75 * 2 * np.pi  # the premise: too little of the circle to be sure
    folder = tmp_path / "in"
    folder.mkdir()
    mag = write_image(folder / "mag.nii.gz", axial_sim["magnitude"], affine)
    pha = write_image(folder / "phase.nii.gz", phase_rad, affine)
    code = main(recon_args([mag], [pha], tmp_path / "auto"))
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert "phase scaling not recognised" in err and 'recon.phase.rescale.scaling = "radians"' in err
    config = tmp_path / "settings.toml"
    config.write_text('[recon.phase.rescale]\nscaling = "radians"\n[recon.inversion]\nmethod = "tkd"\n')  # tkd: test speed
    code = main(recon_args([mag], [pha], tmp_path / "forced") + ["--config", str(config)])
    assert code == 0, capsys.readouterr().err
    record = ReconRecord.read(tmp_path / "forced" / "recon.json")
    assert record.step("phase").notes["detected_scaling"] == "radians"
    chi = nib.load(str(tmp_path / "forced" / "Chimap.nii.gz")).get_fdata()
    assert np.isfinite(chi).all() and np.abs(chi).max() > 0



@pytest.mark.parametrize("magnitude, says", [
    ("one voxel", "the magnitude's root sum of squares over the echoes is zero (in single precision) in all "
                  "voxels but at most one (values 0 to 100)"),
    ("constant", "the magnitude's root sum of squares over the echoes has one value wherever it is not zero"),
    ("huge", "the magnitude's root sum of squares over the echoes overflows single precision (values 0 to 1e+38)"),
])
def test_a_magnitude_no_mask_can_be_derived_from_is_one_line_naming_it(magnitude, says, tmp_path, capsys):
    """recon.mask.brain_mask raised 'ValueError: magnitude is constant or empty' or '... holds NaN or infinite
    values', a traceback."""
    shape = (16, 16, 16, 3)
    data = np.zeros(shape, np.float32)
    if magnitude == "one voxel":
        data[8, 8, 8] = 100.0
    elif magnitude == "constant":
        data[...] = 7.0
    else:  # finite, but its square is not
        data[4:12, 4:12, 4:12] = np.linspace(1e37, 1e38, 8 * 8 * 8 * 3).reshape(8, 8, 8, 3)
    phase = np.random.default_rng(0).uniform(-np.pi, np.pi, shape).astype(np.float32)
    sidecar = {"EchoTime": [0.005, 0.012, 0.019], "MagneticFieldStrength": 3.0}
    for name, array in (("mag", data), ("phase", phase)):
        nib.save(nib.Nifti1Image(array, np.diag([2.0, 2.0, 2.0, 1.0])), str(tmp_path / f"{name}.nii.gz"))
        (tmp_path / f"{name}.json").write_text(json.dumps(sidecar))
    code = main(["recon", "--magnitude", str(tmp_path / "mag.nii.gz"), "--phase", str(tmp_path / "phase.nii.gz"),
                 "-o", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert err.startswith(f"qsmiron recon: error: {tmp_path / 'mag.nii.gz'}: {says}"), err
    assert not (tmp_path / "out").exists()
