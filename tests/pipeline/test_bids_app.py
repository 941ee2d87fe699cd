"""``qsmiron run``: BIDS in, derivatives and the group report out.

The first tests check the BIDS-App wiring with light steps; the end-to-end test runs the real
reconstruction, registration, regions, statistics and report on a small simulated cohort with
faults planted (a corrupt phase file, a deleted echo).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from qsmiron.config import QsmironConfig, config_from_dict, load_config
from qsmiron.records.study import StudyRecord
from qsmiron.errors import InputError
from qsmiron.pipeline.bids_app import read_status, run_bids_app


def fast_config(**pipeline) -> QsmironConfig:
    return QsmironConfig.model_validate({"pipeline": {"progress": False, "n_procs": 1, **pipeline}})


@pytest.fixture()
def captured_group(monkeypatch):
    """Replace the statistics with a recorder (the wiring is under test here, not the stats)."""
    calls = []

    def fake_group(regions_tsv, participants_tsv, out_dir, *, study_path=None, session=None, sessions=None,
                   qc_images=(), provenance=None, derivatives_dir=None, atlas="cit168"):
        calls.append(dict(regions=pd.read_csv(regions_tsv, sep="\t"), participants=participants_tsv,
                          out_dir=Path(out_dir), study_path=study_path, session=session, sessions=sessions,
                          qc_images=list(qc_images), provenance=provenance))
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        (Path(out_dir) / "report.html").write_text("<html></html>")
        return Path(out_dir) / "report.html"

    monkeypatch.setattr("qsmiron.pipeline.group.run_group_analysis", fake_group)
    return calls


def test_participant_level_writes_a_bids_derivative_dataset(tiny_bids, light_steps, tmp_path, captured_group):
    bids = tiny_bids()
    result = run_bids_app(bids, tmp_path / "out", "participant", config=fast_config(), steps=light_steps)
    root = tmp_path / "out" / "qsmiron"
    description = json.loads((root / "dataset_description.json").read_text())
    assert description["DatasetType"] == "derivative"
    assert description["GeneratedBy"][0]["Name"] == "qsmiron"
    # The raw dataset by its path relative to the derivatives (bids:raw:... in the sidecars), never absolute.
    assert description["SourceDatasets"][0]["URL"] == description["DatasetLinks"]["raw"] == "../../bids"
    assert (root / description["DatasetLinks"]["raw"]).resolve() == bids.resolve()
    assert "/regions.tsv" in (root / ".bidsignore").read_text().splitlines()
    assert "Authors" not in description  # none in the settings: qsmiron does not guess people
    readme = (root / "README").read_text()  # what the files are, and the methods of the settings in config.json
    assert "`config.json`" in readme and "dipole inversion: `wtv_bregman`" in readme and "sub-<label>" in readme
    atlas = json.loads((root / "atlas-cit168_description.json").read_text())  # what atlas-cit168 names
    assert atlas["SpatialReference"] == "MNI152NLin2009cAsym" and "CIT168" in atlas["Name"]
    assert load_config(root / "config.json") == fast_config()
    regions = pd.read_csv(root / "regions.tsv", sep="\t")
    assert sorted(regions.participant_id.unique()) == ["sub-01", "sub-02", "sub-03"]
    assert list(read_status(root)["status"]) == ["done"] * 3
    assert result.regions_tsv == root / "regions.tsv" and result.report is None
    assert captured_group == []  # participant level only


def test_the_dataset_credits_the_authors_of_the_settings_and_its_readme_follows_them(
        tiny_bids, light_steps, tmp_path, captured_group):
    config = QsmironConfig.model_validate({"pipeline": {"progress": False, "n_procs": 1,
                                                        "authors": ["Test Author One", "Test Author Two"]},
                                           "recon": {"chisep": {"method": "shin"}},
                                           "registration": {"warp_chi_to_template": False}})
    run_bids_app(tiny_bids(), tmp_path / "out", "participant", config=config, steps=light_steps)
    root = tmp_path / "out" / "qsmiron"
    description = json.loads((root / "dataset_description.json").read_text())
    assert description["Authors"] == ["Test Author One", "Test Author Two"]
    readme = (root / "README").read_text()
    assert "desc-paramagnetic_Chimap" in readme and "space-MNI152NLin2009cAsym_Chimap" not in readme
    with pytest.raises(InputError, match="pipeline.authors"):  # a blank name is no author
        config_from_dict({"pipeline": {"authors": ["Test Author One", " "]}})


def test_invalid_subjects_are_listed_and_skipped_and_the_group_level_says_who_was_left_out(
        tiny_bids, light_steps, tmp_path, captured_group):
    bids = tiny_bids(labels=("01", "02", "03", "04"), flags={"04": {"PlantedFailure": True}})
    (bids / "sub-02" / "anat" / "sub-02_echo-2_part-phase_MEGRE.nii.gz").unlink()
    lines = []
    result = run_bids_app(bids, tmp_path / "out", config=fast_config(), steps=light_steps, echo=lines.append)
    root = tmp_path / "out" / "qsmiron"
    status = read_status(root).set_index("participant_id")
    assert status.loc["sub-02", "status"] == "invalid" and status.loc["sub-02", "step"] == "validation"
    assert "echo 2 has magnitude but no phase" in status.loc["sub-02", "reason"]
    assert status.loc["sub-04", "status"] == "failed" and status.loc["sub-04", "step"] == "check"
    validation = pd.read_csv(root / "validation.tsv", sep="\t")
    assert validation.participant_id.tolist() == ["sub-02"]
    (call,) = captured_group
    assert sorted(call["regions"].participant_id.unique()) == ["sub-01", "sub-03"]
    failed = {item.participant_id: item for item in call["provenance"].pipeline.failed}
    assert set(failed) == {"sub-02", "sub-04"}
    assert failed["sub-04"].step == "check" and "planted failure" in failed["sub-04"].reason
    assert any("left out: sub-04" in line for line in lines)
    assert "qsmiron: group level on 2 participant(s)" in lines  # one scan each: no session count
    assert {item.participant_id for item in result.left_out} == {"sub-02", "sub-04"}
    assert result.report == root / "group" / "report.html"


def test_participant_labels_add_to_the_cohort_table(tiny_bids, light_steps, tmp_path, captured_group):
    bids = tiny_bids()
    out = tmp_path / "out"
    run_bids_app(bids, out, "participant", participant_labels=["01"], config=fast_config(), steps=light_steps)
    assert pd.read_csv(out / "qsmiron" / "regions.tsv", sep="\t").participant_id.unique().tolist() == ["sub-01"]
    run_bids_app(bids, out, "participant", participant_labels=["sub-03"], config=fast_config(), steps=light_steps)
    regions = pd.read_csv(out / "qsmiron" / "regions.tsv", sep="\t")
    assert sorted(regions.participant_id.unique()) == ["sub-01", "sub-03"]
    assert sorted(read_status(out / "qsmiron").participant_id) == ["sub-01", "sub-03"]
    run_bids_app(bids, out, "group", config=fast_config(), steps=light_steps)
    excluded = captured_group[0]["provenance"].pipeline.excluded
    assert [item.participant_id for item in excluded] == ["sub-02"]


def test_group_level_before_participant_level_and_all_invalid_are_input_errors(tiny_bids, light_steps, tmp_path):
    bids = tiny_bids(labels=("01",))
    with pytest.raises(InputError, match="run the participant level first"):
        run_bids_app(bids, tmp_path / "out", "group", config=fast_config())
    (bids / "sub-01" / "anat" / "sub-01_echo-1_part-phase_MEGRE.json").unlink()
    with pytest.raises(InputError, match="no subject passed validation"):
        run_bids_app(bids, tmp_path / "out", "participant", config=fast_config(), steps=light_steps)
    with pytest.raises(InputError, match="unknown level"):
        run_bids_app(bids, tmp_path / "out", "everything", config=fast_config())
    with pytest.raises(InputError, match="must not be the BIDS folder"):
        run_bids_app(bids, bids, config=fast_config())


def test_a_longitudinal_dataset_is_processed_per_session_and_each_session_analysed(tmp_path, light_steps,
                                                                                   tiny_subject):
    """Two sessions of six participants (one scan invalid): derivatives per session, a regions table
    with a session column, the real statistics once per session, ages taken from sessions.tsv."""
    bids = tmp_path / "bids"
    groups = {"01": "MOH", "02": "MOH", "03": "MOH", "04": "CM", "05": "CM", "06": "CM"}
    for index, label in enumerate(groups):
        for session in ("1", "2"):
            tiny_subject(bids, label, seed=10 * index + int(session), session=session)
        (bids / f"sub-{label}" / f"sub-{label}_sessions.tsv").write_text(
            f"session_id\tage\nses-1\t{40 + index}\nses-2\t{41 + index}.5\n")
    (bids / "participants.tsv").write_text("participant_id\tgroup\tage\n" + "".join(
        f"sub-{label}\t{group}\t{40 + i}\n" for i, (label, group) in enumerate(groups.items())))
    (bids / "sub-06" / "ses-2" / "anat" / "sub-06_ses-2_echo-2_part-phase_MEGRE.nii.gz").unlink()

    lines = []
    result = run_bids_app(bids, tmp_path / "out", config=fast_config(), steps=light_steps, echo=lines.append)
    root = tmp_path / "out" / "qsmiron"
    assert (root / "sub-01" / "ses-2" / "anat" / "sub-01_ses-2_measure.tsv").exists()
    status = read_status(root)
    assert len(status) == 12
    invalid = status[status.status == "invalid"]
    assert invalid[["participant_id", "session"]].values.tolist() == [["sub-06", "ses-2"]]
    regions = pd.read_csv(root / "regions.tsv", sep="\t")
    assert regions.groupby("session").participant_id.nunique().to_dict() == {"ses-1": 6, "ses-2": 5}

    group = root / "group"
    assert result.report == group / "report.html"
    listing = pd.read_csv(group / "sessions.tsv", sep="\t")
    assert listing[["session", "n_participants", "status"]].values.tolist() == [["ses-1", 6, "analysed"],
                                                                             ["ses-2", 5, "analysed"]]
    for session, n_moh, n_cm, ages in (("ses-1", 3, 3, [40, 41, 42, 43, 44, 45]),
                                       ("ses-2", 3, 2, [41.5, 42.5, 43.5, 44.5, 45.5])):
        record = StudyRecord.read(group / session / "results.json")
        assert record.settings.session == session
        assert record.settings.n_participants.per_group == {"MOH": n_moh, "CM": n_cm}
        table1 = pd.read_csv(group / session / "table1.tsv", sep="\t").set_index("variable")
        # Table 1 reports each group's age at that visit (independent reference: the sessions tables).
        age_row = table1.loc["age"]
        summary = age_row.summary_a if age_row.group_a == "MOH" else age_row.summary_b
        # Mean ± SD or median [IQR] by normality; MOH's three ages are evenly spaced, so both start alike.
        assert summary.startswith(f"{np.mean(ages[:3]):.1f} "), summary
    report = (group / "ses-2" / "report.html").read_text()
    assert "sub-06 ses-2" in report  # the invalid scan is named with its session
    assert any("left out: sub-06 ses-2" in line for line in lines)
    assert [item for item in result.left_out if item.participant_id == "sub-06"][0].session == "ses-2"


# --------------------------------------------------------------------------------------------
# End to end with the real steps


ABSOLUTE_MARKERS = ("/tmp", "/work", ".venv", "site-packages", "file://")


def check_bids_derivatives(bids: Path, root: Path, good: list[str]) -> None:
    """The official validator finds no error and no warning in the derivative dataset (its
    settings name two authors; without them the one warning is TOO_FEW_AUTHORS), pybids indexes
    it and finds every Chimap and regional table, and no JSON file of the run holds an absolute path."""
    from validator_helper import describe, validate

    home = str(Path.home())
    for path in root.rglob("*.json"):
        text = path.read_text()
        found = [m for m in (*ABSOLUTE_MARKERS, str(bids.resolve()), str(root.resolve()), home) if m in text]
        assert not found, f"{path.relative_to(root)} holds {found}"
    errors, warnings = validate(root)
    assert not errors, describe(errors)
    assert not warnings, describe(warnings)
    # Authors only ever come from the settings: left out, the validator's hint is the one warning.
    description_path = root / "dataset_description.json"
    description = json.loads(description_path.read_text())
    assert len(description.pop("Authors")) >= 2
    description_path.write_text(json.dumps(description))
    errors, warnings = validate(root)
    assert not errors and [w["code"] for w in warnings] == ["TOO_FEW_AUTHORS"], describe(errors + warnings)

    try:
        import bids as pybids
    except ImportError:  # a test dependency; CI (QSMIRON_REQUIRE_BIDS_VALIDATOR=1) insists on it
        if os.environ.get("QSMIRON_REQUIRE_BIDS_VALIDATOR") == "1":
            pytest.fail("QSMIRON_REQUIRE_BIDS_VALIDATOR=1 but pybids is not installed (pip install pybids)")
        pytest.skip("pybids is not installed")
    layout = pybids.BIDSLayout(bids, derivatives=root, validate=False)
    for participant_id in good:
        subject = participant_id[4:]
        native = layout.get(scope="qsmiron", subject=subject, suffix="Chimap", space=None, desc=None,
                            extension=".nii.gz")
        assert [f.filename for f in native] == [f"{participant_id}_Chimap.nii.gz"]
        assert native[0].get_metadata()["Units"] == "ppm"
        template = layout.get(scope="qsmiron", subject=subject, suffix="Chimap", space="MNI152NLin2009cAsym",
                              extension=".nii.gz")
        assert len(template) == 1 and template[0].get_metadata()["SkullStripped"] is True
        tables = layout.get(scope="qsmiron", subject=subject, suffix="regions", atlas="cit168", extension=".tsv")
        assert [f.filename for f in tables] == [f"{participant_id}_atlas-cit168_regions.tsv"]
        labels = layout.get(scope="qsmiron", subject=subject, suffix="dseg", atlas="cit168")
        assert sorted(f.entities["extension"] for f in labels) == [".json", ".nii.gz", ".tsv"]
        image = next(f for f in labels if f.entities["extension"] == ".nii.gz")
        assert image.get_metadata()["SpatialReference"] == native[0].get_metadata()["SpatialReference"]
        assert (root / participant_id / "figures").is_dir()


def test_end_to_end_run_with_a_corrupt_phase_and_a_deleted_echo(cohort_copy, simulated_cohort, fast_e2e_config,
                                                               e2e_chisep, tmp_path, monkeypatch):
    """The good subjects finish; the corrupt one fails at recon, the one missing an echo at validation;
    the group level runs on the others and names the two it left out. The derivatives pass the BIDS
    validator and pybids, and every temporary file went to the work folder."""
    import tempfile

    import nibabel as nib
    import numpy as np

    bids = cohort_copy()
    participants = pd.read_csv(bids / "participants.tsv", sep="\t")
    moh = participants[participants.group == "MOH"].participant_id.tolist()
    cm = participants[participants.group == "CM"].participant_id.tolist()
    corrupt, missing = moh[-1], cm[-1]
    phase = bids / corrupt / "anat" / f"{corrupt}_echo-2_part-phase_MEGRE.nii.gz"
    phase.write_bytes(phase.read_bytes()[: phase.stat().st_size // 2])
    for part in ("mag", "phase"):
        for suffix in (".nii.gz", ".json"):
            (bids / missing / "anat" / f"{missing}_echo-2_part-{part}_MEGRE{suffix}").unlink()

    lines = []
    # Headers only at validation, so the corrupt voxel data are met by the reconstruction itself;
    # chi-separation on, so that every measure reaches the regions table and the statistics.
    # Two authors (placeholders of a test, not people): BIDS recommends the key and the validator
    # hints when it has fewer than two entries.
    config = fast_e2e_config(n_procs=2, validate_image_data=False, recon={"chisep": e2e_chisep},
                             authors=["Test Author One", "Test Author Two"])
    # The system's temporary folder is a sentinel: a file made (even removed) there changes its mtime.
    sentinel, work = tmp_path / "system_tmp", tmp_path / "work"
    sentinel.mkdir()
    work.mkdir()
    monkeypatch.setenv("TMPDIR", str(sentinel))
    monkeypatch.setattr(tempfile, "tempdir", None)
    untouched, work_before = sentinel.stat().st_mtime_ns, work.stat().st_mtime_ns
    result = run_bids_app(bids, tmp_path / "out", config=config, echo=lines.append, work_dir=work)
    assert sentinel.stat().st_mtime_ns == untouched and not list(sentinel.iterdir())
    assert work.stat().st_mtime_ns != work_before  # the registrations' scratch folders came and went there
    root = tmp_path / "out" / "qsmiron"

    by_id = {s.participant_id: s for s in result.statuses}
    assert (by_id[corrupt].status, by_id[corrupt].step) == ("failed", "recon")
    assert phase.name in by_id[corrupt].reason
    assert (by_id[missing].status, by_id[missing].step) == ("invalid", "validation")
    assert "echo 2 missing" in by_id[missing].reason
    good = sorted(set(participants.participant_id) - {corrupt, missing})
    assert sorted(pid for pid, s in by_id.items() if s.status == "done") == good

    # BIDS derivatives of a good subject, the iron-specific maps with their sidecars.
    anat = root / good[0] / "anat"
    for name in ("Chimap.nii.gz", "Chimap.json", "desc-qsm_mask.nii.gz", "desc-total_fieldmap.nii.gz",
                 "localfield.nii.gz", "desc-recon_qsm.json", "atlas-cit168_regions.tsv",
                 "atlas-cit168_desc-regions_qsm.json", "atlas-cit168_dseg.nii.gz", "atlas-cit168_dseg.tsv",
                 "from-MEGRE_to-MNI152NLin2009cAsym_mode-image_xfm.mat",
                 "R2starmap.nii.gz", "R2starmap.json", "T2starmap.nii.gz", "S0map.nii.gz", "desc-r2star_mask.nii.gz",
                 "desc-paramagnetic_Chimap.nii.gz", "desc-diamagnetic_Chimap.json"):
        assert (anat / f"{good[0]}_{name}").exists(), name
    assert json.loads((anat / f"{good[0]}_Chimap.json").read_text())["Units"] == "ppm"
    r2star_sidecar = json.loads((anat / f"{good[0]}_R2starmap.json").read_text())
    assert r2star_sidecar["Units"] == "s^-1" and r2star_sidecar["MethodName"] == "nlls"
    assert r2star_sidecar["Sources"][0].startswith(f"bids:raw:{good[0]}/anat/")
    para = json.loads((anat / f"{good[0]}_desc-paramagnetic_Chimap.json").read_text())
    assert para["Units"] == "ppm" and para["Approximation"] is True and "5.25" in para["ApproximationDescription"]
    # Every image on the scan's own grid names the raw image it is aligned with: the first echo's
    # magnitude, the file the reconstruction's record says it read.
    first_magnitude = f"bids:raw:{good[0]}/anat/{good[0]}_echo-1_part-mag_MEGRE.nii.gz"
    assert json.loads((anat / f"{good[0]}_desc-recon_qsm.json").read_text())["inputs"]["magnitude"][0] == first_magnitude
    for name in ("Chimap", "desc-qsm_mask", "desc-r2star_mask", "R2starmap", "desc-diamagnetic_Chimap",
                 "atlas-cit168_dseg"):
        assert json.loads((anat / f"{good[0]}_{name}.json").read_text())["SpatialReference"] == first_magnitude, name
    r2star_mask = json.loads((anat / f"{good[0]}_desc-r2star_mask.json").read_text())
    assert r2star_mask["Type"] == "Brain" and "valid R2* fit" in r2star_mask["Description"]
    labels = json.loads((anat / f"{good[0]}_atlas-cit168_dseg.json").read_text())
    assert "warped from MNI152NLin2009cAsym to this scan's own grid" in labels["Description"]
    assert labels["Sources"] == [f"bids::{good[0]}/anat/{good[0]}_from-MEGRE_to-MNI152NLin2009cAsym_mode-image_xfm.mat",
                                 f"bids::{good[0]}/anat/{good[0]}_Chimap.nii.gz"]
    assert sorted(p.name for p in (root / good[0] / "figures").glob("*.png")) == [
        f"{good[0]}_atlas-cit168_desc-regions_qc.png", f"{good[0]}_desc-chimap_qc.png", f"{good[0]}_desc-fields_qc.png",
        f"{good[0]}_space-MNI152NLin2009cAsym_desc-registration_qc.png"]
    assert (root / "logs" / f"{corrupt}.log").read_text().count("Traceback") >= 1

    # One tidy table: chi under the whole-brain and ventricle-CSF references, R2*, chi+ and chi-.
    regions = pd.read_csv(root / "regions.tsv", sep="\t", keep_default_na=False, na_values=["n/a"])
    assert sorted(regions.participant_id.unique()) == good
    assert set(regions.measure) == {"chi", "r2star", "chi_para", "chi_dia"}
    assert set(regions.loc[regions.measure == "chi", "reference"]) == {"whole_brain", "csf"}
    assert regions.loc[regions.measure != "chi", "reference"].isna().all()
    # The regional means track the truth across regions (coarse 3 mm scans and TKD, which
    # underestimates: a loose but real check; r = 0.48-0.87 seen while writing it).
    truth = pd.read_csv(simulated_cohort / "derivatives" / "truth" / "regions_truth.tsv", sep="\t")
    chi = regions[(regions.measure == "chi") & (regions.reference == "whole_brain")]
    merged = chi.merge(truth, on=["participant_id", "region", "hemisphere"], suffixes=("", "_truth"))
    big = merged[merged.n_voxels_truth >= 20]
    assert len(big) >= len(good) * 10
    for participant_id, rows in big.groupby("participant_id"):
        r = np.corrcoef(rows["mean"], rows.mean_ppm_grid)[0, 1]
        assert r > 0.3, f"{participant_id}: measured vs true regional means, r = {r:.2f}"
    # Regional R2* against the R2* the magnitude was simulated with (SNR 40, 3 mm voxels).
    r2star = regions[regions.measure == "r2star"].merge(truth, on=["participant_id", "region", "hemisphere"],
                                                        suffixes=("", "_truth"))
    r2star = r2star[r2star.n_voxels_truth >= 20]
    error = (r2star["mean"] - r2star.r2star_per_s_grid).abs()
    print(f"regional R2* error through the pipeline: median {error.median():.2f}, max {error.max():.2f} s^-1")
    assert error.median() < 2.0
    chi = nib.load(str(anat / f"{good[0]}_Chimap.nii.gz"))
    assert np.isfinite(chi.get_fdata()).all()

    # The roi step also wrote chi on the template grid, where qsmiron voxelwise finds it, and the
    # done-marker lists it (a deleted map makes the subject run again).
    from qsmiron.pipeline.cache import read_marker
    from qsmiron.stats.voxelwise_maps import find_template_maps

    found = find_template_maps(root, "MNI152NLin2009cAsym")
    assert sorted(found.participant_id) == good
    template_chi = nib.load(str(anat / f"{good[0]}_space-MNI152NLin2009cAsym_Chimap.nii.gz"))
    assert template_chi.shape == (193, 229, 193) and 0.05 < np.isfinite(template_chi.get_fdata()).mean() < 0.5
    marker = read_marker(anat)
    assert marker.outputs["template_chimap"].file == f"{good[0]}_space-MNI152NLin2009cAsym_Chimap.nii.gz"
    assert "template_chimap_json" in marker.outputs
    # R2* (5 echoes) goes to the template grid the same way, in s^-1.
    template_r2star = nib.load(str(anat / f"{good[0]}_space-MNI152NLin2009cAsym_R2starmap.nii.gz"))
    r2star_values = template_r2star.get_fdata()[np.isfinite(template_r2star.get_fdata())]
    assert template_r2star.shape == (193, 229, 193) and 10 < np.median(r2star_values) < 60
    assert marker.outputs["template_r2starmap"].file == f"{good[0]}_space-MNI152NLin2009cAsym_R2starmap.nii.gz"
    # The QC images in sub-X/figures/ are the subject's outputs too (a deleted one makes it run again).
    assert marker.outputs["qc_atlas"].file == f"../figures/{good[0]}_atlas-cit168_desc-regions_qc.png"

    # Group level on the good subjects, saying who was left out.
    group = root / "group"
    for name in ("group_comparison.tsv", "table1.tsv", "results.json", "report.html"):
        assert (group / name).exists(), name
    # The study analysed every measure of the table, chi under the whole-brain reference.
    comparison = pd.read_csv(group / "group_comparison.tsv", sep="\t")
    assert list(dict.fromkeys(comparison.measure)) == ["chi", "r2star", "chi_para", "chi_dia"]
    assert StudyRecord.read(group / "results.json").settings.measures == ["chi", "r2star", "chi_para", "chi_dia"]
    assert result.report == group / "report.html"
    assert {item.participant_id: item.step for item in result.left_out} == {corrupt: "recon",
                                                                                 missing: "validation"}
    assert any(f"left out: {corrupt} (failed at recon" in line for line in lines)
    assert f"qsmiron: group level on {len(good)} participant(s)" in lines  # one scan each, no sessions
    report = result.report.read_text()
    assert corrupt in report and missing in report
    # Each included subject's reconstruction and registration records and QC images reach the report.
    assert "No reconstruction records" not in report and "No regional-measurement records" not in report
    assert f"Of {len(good) + 2} subjects" in report
    assert all(f'href="qc/{pid}_qc.html"' in report for pid in good) and 'id="qc-table"' in report
    for pid in good:  # each included subject's QC page shows its four QC figures
        page = (group / "qc" / f"{pid}_qc.html").read_text()
        assert page.count('src="data:image/png;base64,') == 4 and "Not available" not in page
    check_bids_derivatives(bids, root, good)


def test_the_group_level_says_a_processed_participant_missing_from_participants_tsv_is_left_out(
        tiny_bids, light_steps, tmp_path, captured_group):
    """The statistics leave such a participant out; the group level's lines did not say so."""
    bids = tiny_bids(labels=("01", "02", "03"))
    (bids / "participants.tsv").write_text("participant_id\tgroup\nsub-01\tCM\n03\tCM\n")
    lines = []
    result = run_bids_app(bids, tmp_path / "out", config=fast_config(), steps=light_steps, echo=lines.append)
    assert "  left out: sub-02 (not in participants.tsv, which gives the group and clinical values)" in lines
    assert [item.participant_id for item in result.left_out] == ["sub-02"]
    (call,) = captured_group
    assert [item.participant_id for item in call["provenance"].pipeline.excluded] == ["sub-02"]
