"""``qsmiron recon`` with the iron-specific maps: R2*, T2*, S0, the R2* mask, chi+ and chi-.

The data are the forward-simulated head of ``gre_phantom`` (qsm-forward's signal model, R2*
known per tissue: 22 s^-1 white matter, 25 s^-1 grey, 28-45 s^-1 in the nuclei), on a small
1.5 mm grid. Bad input (two echoes, an R2 map on another grid or in ms, an R2 map without
chi-separation) is a one-line message naming the file, with nothing written; two echoes are
not an error: R2* is skipped and the reason stated.
"""

import json

import nibabel as nib
import numpy as np
import pytest
from gre_phantom import FIELD_STRENGTH_T, TES, head_phantom, recon_args, simulate_gre, write_4d_dataset, write_image

from qsmiron.cli import main
from qsmiron.records.recon import ReconRecord

SHAPE, VOXEL_MM = (32, 32, 28), (1.5, 1.5, 1.5)
CHISEP_FAST = '[recon.chisep]\nmethod = "shin"\n[recon.chisep.shin]\nmax_iter = 60\n'


@pytest.fixture(scope="module")
def sim():
    return simulate_gre(SHAPE, VOXEL_MM, seed=4)


@pytest.fixture(scope="module")
def truth(sim):
    _, _, brain, _, _, r2s = head_phantom(SHAPE, sim["affine"])
    return {"brain": brain, "r2star": r2s}


@pytest.fixture(scope="module")
def inputs(sim, tmp_path_factory):
    folder = tmp_path_factory.mktemp("iron_in")
    mag, pha = write_4d_dataset(folder, sim)
    config = folder / "chisep.toml"
    config.write_text(CHISEP_FAST)
    return {"folder": folder, "mag": mag, "pha": pha, "config": config}


@pytest.fixture(scope="module")
def iron_recon(sim, truth, inputs, tmp_path_factory):
    """R2* and chi-separation with a measured R2 map (70 % of the true R2*: R2' = 30 % of R2*)."""
    r2 = write_image(inputs["folder"] / "r2.nii.gz", (0.7 * truth["r2star"]).astype(np.float32), sim["affine"])
    out = tmp_path_factory.mktemp("iron_out")
    code = main(recon_args([inputs["mag"]], [inputs["pha"]], out) + ["--config", str(inputs["config"]),
                                                                      "--r2", str(r2)])
    assert code == 0
    return out


def _image(folder, name):
    return nib.load(str(folder / name)).get_fdata()


def test_r2star_map_recovers_the_simulated_decay_within_5_percent_median(iron_recon, truth):
    r2star = _image(iron_recon, "R2starmap.nii.gz")
    valid = _image(iron_recon, "desc-r2star_mask.nii.gz") > 0
    brain = truth["brain"] & valid
    assert brain.sum() > 0.9 * truth["brain"].sum()  # the fit is valid over the brain
    error = np.abs(r2star[brain] - truth["r2star"][brain]) / truth["r2star"][brain]
    print(f"R2* through qsmiron recon: median relative error {100 * np.median(error):.1f} %")
    # The simulated signal also dephases across each 1.5 mm voxel where the field varies
    # (sinc of the field change, strongest near the sinus): a real part of R2* that the
    # tissue's own R2* does not hold, so the fit sits a few per cent above it (3.6 % seen).
    assert np.median(error) < 0.05
    t2star = _image(iron_recon, "T2starmap.nii.gz")
    assert np.allclose(t2star[brain], 1.0 / r2star[brain], rtol=1e-5)
    assert np.all(np.isnan(r2star[~valid & (r2star != 0)]))  # not fitted: NaN, never a silent value
    assert np.all(_image(iron_recon, "S0map.nii.gz")[brain] > 0)


def test_chi_separation_writes_two_non_negative_maps_with_sidecars_and_the_record_says_how(iron_recon, inputs):
    para = _image(iron_recon, "desc-paramagnetic_Chimap.nii.gz")
    dia = _image(iron_recon, "desc-diamagnetic_Chimap.nii.gz")
    mask = _image(iron_recon, "mask.nii.gz") > 0
    assert para.min() >= 0 and dia.min() >= 0 and not para[~mask].any() and not dia[~mask].any()
    assert para[mask].max() > 0.05  # the iron-rich nuclei (0.06-0.3 ppm) are paramagnetic sources
    record = ReconRecord.read(iron_recon / "recon.json")
    steps = [step.step for step in record.steps]
    assert steps.index("r2star") == steps.index("mask") + 1 and steps.index("chisep") == steps.index("inversion") + 1
    chisep = record.chi_separation
    assert record.step("chisep").method == "shin" and chisep.approximation is False
    assert chisep.r2_map.endswith("r2.nii.gz") and record.inputs.r2 == chisep.r2_map
    assert chisep.dr_hz_per_ppm == pytest.approx(137.0) and chisep.alpha > 0
    assert "wtv" in chisep.alpha_source  # the weight of wtv's automatic rule (the inversion is wtv_bregman)
    assert record.r2star.method == "nlls" and record.r2star.n_valid > 0 and record.r2star.noise_sigma > 0
    assert record.units.r2starmap == "s^-1" and record.units.chimap_paramagnetic == "ppm"
    sidecar = json.loads((iron_recon / "desc-paramagnetic_Chimap.json").read_text())
    assert sidecar["Units"] == "ppm" and sidecar["Approximation"] is False
    assert sidecar["MethodReference"].endswith("10.1016/j.neuroimage.2021.118371")
    r2star_sidecar = json.loads((iron_recon / "R2starmap.json").read_text())
    assert r2star_sidecar["Units"] == "s^-1" and r2star_sidecar["EchoTime"] == list(TES)
    assert set(r2star_sidecar["Parameters"]) == {"floor_factor", "rician_correction", "r2star_max_per_s", "max_iter"}
    assert set(record.outputs) >= {"r2starmap", "chimap_paramagnetic", "chimap_diamagnetic_json"}


def test_two_echoes_skip_r2star_and_chisep_with_the_reason_stated_not_an_error(sim, inputs, tmp_path, capsys):
    mag = write_image(tmp_path / "mag2.nii.gz", sim["magnitude"][..., :2], sim["affine"])
    pha = write_image(tmp_path / "pha2.nii.gz", sim["phase"][..., :2], sim["affine"])
    out = tmp_path / "out"
    args = ["recon", "--magnitude", str(mag), "--phase", str(pha), "--echo-times", "0.004,0.012",
            "--field-strength", str(FIELD_STRENGTH_T), "-o", str(out), "--config", str(inputs["config"])]
    assert main(args) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert err[0] == (f"qsmiron recon: note: {mag}: R2* not mapped: it needs at least 3 echoes (two parameters "
                      f"and a residual); this acquisition has 2")
    assert "chi-separation not done: it needs R2*" in err[1] and len(err) == 2
    assert not list(out.glob("*R2star*")) and not list(out.glob("*magnetic_Chimap*"))
    record = ReconRecord.read(out / "recon.json")
    assert record.step("r2star").method == "none" and record.step("chisep").method == "none"
    assert "has 2" in record.r2star.skipped and record.chi_separation.skipped.startswith("chi-separation not done")
    assert record.r2star.skipped in record.warnings


def _bad_r2(kind, sim, truth, folder):
    if kind == "other_grid":
        return write_image(folder / "r2.nii.gz", truth["r2star"][:, :, :-2].astype(np.float32), sim["affine"]), \
            "another grid"
    if kind == "t2_in_ms":  # T2 in ms instead of R2 in s^-1
        t2_ms = np.where(truth["r2star"] > 0, 1000.0 / (0.7 * truth["r2star"]), 0.0).astype(np.float32)
        return write_image(folder / "r2.nii.gz", t2_ms, sim["affine"]), "looks like T2 in ms"
    raise ValueError(kind)


@pytest.mark.parametrize("kind", ["other_grid", "t2_in_ms"])
def test_a_bad_r2_map_is_one_line_naming_it_and_nothing_is_written(kind, sim, truth, inputs, tmp_path, capsys):
    r2, words = _bad_r2(kind, sim, truth, tmp_path)
    out = tmp_path / "out"
    code = main(recon_args([inputs["mag"]], [inputs["pha"]], out) + ["--config", str(inputs["config"]),
                                                                      "--r2", str(r2)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert err.startswith(f"qsmiron recon: error: {r2}: ") and words in err
    assert not out.exists() and not list(tmp_path.glob(".qsmiron-recon-*"))


def test_an_r2_map_without_chi_separation_is_refused_before_any_work(sim, truth, inputs, tmp_path, capsys):
    r2 = write_image(tmp_path / "r2.nii.gz", (0.7 * truth["r2star"]).astype(np.float32), sim["affine"])
    code = main(recon_args([inputs["mag"]], [inputs["pha"]], tmp_path / "out") + ["--r2", str(r2)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and f"{r2}: an R2 map was given, but chi-separation" in err and "method = \"shin\"" in err
    assert not (tmp_path / "out").exists()
