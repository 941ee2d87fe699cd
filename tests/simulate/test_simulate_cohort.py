"""simulate_cohort and `qsmiron simulate`: BIDS layout, sidecars, truth files, determinism."""

import hashlib
import json

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from qsmiron.cli import main
from qsmiron.errors import InputError
from qsmiron.io.bids import discover_bids
from qsmiron.io.bids_validation import validate_dataset
from qsmiron.io.nifti import b0_direction_voxel
from qsmiron.simulate import cohort as cohort_module
from qsmiron.simulate.cohort import simulate_cohort
from qsmiron.simulate.settings import SimulationSettings

COARSE = SimulationSettings(voxel_size_mm=(3.0, 3.0, 3.0), phantom_resolution_mm=2.0,
                            oblique_probability=1.0, echo_times_s=(0.004, 0.012, 0.020))
N = 3


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return simulate_cohort(tmp_path_factory.mktemp("sim") / "bids", N, 7, settings=COARSE)


def _digest(folder):
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_every_bids_file_is_present_with_valid_sidecars(dataset):
    for name in ("dataset_description.json", "participants.tsv", "participants.json", "README"):
        assert (dataset / name).is_file()
    assert json.loads((dataset / "dataset_description.json").read_text())["BIDSVersion"]
    participants = pd.read_csv(dataset / "participants.tsv", sep="\t")
    assert list(participants["participant_id"]) == ["sub-01", "sub-02", "sub-03"]
    for pid in participants["participant_id"]:
        tes = []
        for echo in range(1, 4):
            for part in ("mag", "phase"):
                image = dataset / pid / "anat" / f"{pid}_echo-{echo}_part-{part}_MEGRE.nii.gz"
                sidecar = json.loads(image.with_name(image.name.replace(".nii.gz", ".json")).read_text())
                assert sidecar["MagneticFieldStrength"] == 3.0
                assert sidecar["Manufacturer"] == "qsmiron-simulator"
                assert sidecar["EchoNumber"] == echo and sidecar["RepetitionTime"] > sidecar["EchoTime"]
                assert nib.load(str(image)).shape == COARSE.matrix
            tes.append(sidecar["EchoTime"])
        assert tes == sorted(tes) and tes[0] == pytest.approx(0.004) and max(tes) < 0.1  # seconds


def test_qsmiron_bids_validation_finds_no_problem(dataset):
    subjects = discover_bids(dataset)
    assert [s.participant_id for s in subjects] == ["sub-01", "sub-02", "sub-03"]
    assert validate_dataset(dataset, subjects) == []
    assert subjects[0].echo_times_s == [0.004, 0.012, 0.020]


def test_phase_files_hold_vendor_integers(dataset):
    image = nib.load(str(dataset / "sub-01" / "anat" / "sub-01_echo-3_part-phase_MEGRE.nii.gz"))
    assert image.get_data_dtype() == np.int16
    data = np.asarray(image.dataobj)
    assert data.min() == -4096 and data.max() == 4095


def test_truth_files_agree_with_each_other(dataset):
    truth = dataset / "derivatives" / "truth"
    regions = pd.read_csv(truth / "regions_truth.tsv", sep="\t")
    assert len(regions) == N * 28
    assert set(regions["hemisphere"]) == {"L", "R"}
    assert {"Pu", "VeP", "SNc_PBP_VTA", "STH"} <= set(regions["region"])
    lookup = pd.read_csv(truth / "desc-cit168_dseg.tsv", sep="\t")
    assert len(lookup) == 28
    for pid in ("sub-01", "sub-03"):
        anat = truth / pid / "anat"
        chi = nib.load(str(anat / f"{pid}_Chimap.nii.gz"))
        mask = np.asarray(nib.load(str(anat / f"{pid}_desc-brain_mask.nii.gz")).dataobj) > 0
        labels = np.asarray(nib.load(str(anat / f"{pid}_dseg.nii.gz")).dataobj)
        data = chi.get_fdata()
        assert abs(data[mask].mean()) < 1e-5  # whole-brain referenced
        rows = regions[regions["participant_id"] == pid].set_index(["region", "hemisphere"])
        for (region, hemisphere), row in rows.iterrows():
            index = int(lookup.query("region == @region and hemisphere == @hemisphere")["index"].iloc[0])
            assert row["n_voxels"] == np.sum(labels == index)
            if row["n_voxels"]:
                assert row["mean_ppm_grid"] == pytest.approx(data[labels == index].mean(), abs=1e-5)
        # The regional truth is the subject's value minus the brain mean of the true map.
        brain_mean = json.loads((anat / f"{pid}_Chimap.json").read_text())["BrainMeanRelativeToWater_ppm"]
        assert rows["mean_ppm"].between(-0.2, 0.4).all()
        # R2* of the nuclei follows their iron: pallidum (0.14 ppm) above nucleus accumbens
        # (0.02 ppm), all brain-like at 3 T.
        assert rows["r2star_per_s_grid"].dropna().between(10, 80).all()
        assert rows.loc[("GPe", "L"), "r2star_per_s_grid"] > rows.loc[("NAC", "L"), "r2star_per_s_grid"] + 5
        xfm = json.loads((anat / f"{pid}_xfm.json").read_text())
        assert np.allclose(xfm["affine"], chi.affine, atol=1e-6)
        assert np.allclose(xfm["b0_direction_voxel"], b0_direction_voxel(chi.affine), atol=1e-6)
        assert xfm["oblique_angle_deg"] >= COARSE.oblique_min_deg - 1e-6
        assert isinstance(brain_mean, float)
    planted = json.loads((truth / "planted_effects.json").read_text())
    assert planted["group_difference"]["regions"]["VeP"]["cohen_d"] == -0.7
    simulation = json.loads((truth / "simulation.json").read_text())
    assert simulation["seed"] == 7 and simulation["settings"]["echo_times_s"] == [0.004, 0.012, 0.02]


def test_regional_truth_is_the_drawn_value_minus_the_brain_mean(dataset):
    from qsmiron.simulate.clinical import sample_cohort

    streams = np.random.SeedSequence(7).spawn(N + 1)
    drawn = sample_cohort(N, np.random.default_rng(streams[0]), COARSE).region_chi
    truth = dataset / "derivatives" / "truth"
    regions = pd.read_csv(truth / "regions_truth.tsv", sep="\t")
    for pid in ("sub-01", "sub-02", "sub-03"):
        meta = json.loads((truth / pid / "anat" / f"{pid}_Chimap.json").read_text())
        mine = regions[(regions["participant_id"] == pid) & (regions["region"] == "VeP")]
        for row in mine.itertuples():
            value = drawn.query("participant_id == @pid and region == 'VeP' and hemisphere == @row.hemisphere")
            assert row.mean_ppm == pytest.approx(float(value["chi_ppm"].iloc[0])
                                                 - meta["BrainMeanRelativeToWater_ppm"], abs=2e-7)


def test_same_seed_gives_identical_files_in_parallel_and_another_seed_does_not(dataset, tmp_path):
    settings = COARSE.model_copy(update={"echo_times_s": (0.004, 0.012, 0.020)})
    again = simulate_cohort(tmp_path / "again", N, 7, settings=settings, n_procs=2)
    assert _digest(again) == _digest(dataset)
    other = simulate_cohort(tmp_path / "other", 1, 8, settings=settings)
    name = "sub-01/anat/sub-01_echo-1_part-phase_MEGRE.nii.gz"
    assert _digest(other)[name] != _digest(dataset)[name]


@pytest.mark.parametrize("n", [0, -3, 2.5, True])
def test_invalid_number_of_subjects_is_an_input_error(tmp_path, n):
    with pytest.raises(InputError):
        simulate_cohort(tmp_path / "x", n, 0, settings=COARSE)
    assert not (tmp_path / "x").exists()


def test_existing_data_are_never_overwritten(dataset):
    before = _digest(dataset)
    with pytest.raises(InputError, match="not empty"):
        simulate_cohort(dataset, 1, 0, settings=COARSE)
    assert _digest(dataset) == before


def test_invalid_settings_dict_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match="echo_times_s"):
        simulate_cohort(tmp_path / "x", 1, 0, settings={"echo_times_s": [0.02, 0.01]})


def test_cli_simulate_rejects_a_bad_subject_count_with_exit_code_2(tmp_path, capsys):
    assert main(["simulate", str(tmp_path / "out"), "--subjects", "0", "--seed", "1"]) == 2
    assert "number of subjects" in capsys.readouterr().err


@pytest.mark.parametrize("where", ["/proc/sim", "afile/sim"])
def test_cli_simulate_into_a_folder_that_cannot_be_written_is_one_line_naming_it(where, tmp_path, capsys):
    (tmp_path / "afile").write_text("a file, not a folder")
    out = where if where.startswith("/") else str(tmp_path / where)
    before = sorted(tmp_path.rglob("*"))
    assert main(["simulate", out, "--subjects", "2"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith(f"qsmiron simulate: error: {out}: "), err
    assert sorted(tmp_path.rglob("*")) == before


def test_cli_simulate_writes_a_dataset(tmp_path, monkeypatch):
    # The command uses the default settings; make them coarse so the test stays fast.
    class Coarse(SimulationSettings):
        voxel_size_mm: tuple[float, float, float] = (3.0, 3.0, 3.0)
        phantom_resolution_mm: float = 2.0

    monkeypatch.setattr(cohort_module, "SimulationSettings", Coarse)
    assert main(["simulate", str(tmp_path / "out"), "--subjects", "1", "--seed", "4"]) == 0
    assert (tmp_path / "out" / "sub-01" / "anat" / "sub-01_echo-5_part-phase_MEGRE.nii.gz").is_file()
    assert (tmp_path / "out" / "derivatives" / "truth" / "regions_truth.tsv").is_file()


def test_simulated_raw_dataset_passes_the_bids_validator_with_zero_errors(dataset):
    from validator_helper import describe, validate

    errors, _ = validate(dataset)
    assert errors == [], describe(errors)
