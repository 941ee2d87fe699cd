"""The methods paragraph says what the records hold, summarises across scans, and never invents."""

import copy

import pytest

from qsmiron.report.methods import describe_values, methods_paragraph


@pytest.fixture()
def full(provenance, study_results):
    return methods_paragraph(provenance, study_results.settings, results=study_results, n_qc_images=2)


def test_paragraph_carries_every_acquisition_item_the_records_hold(full):
    for text in ("3 T", "Siemens Prisma", "receive coil HeadNeck_64", "5 echoes", "TE1 = 4.00 ms",
                 "\u0394TE = 4.00 ms", "last TE = 20.00 ms", "TR = 28.00 ms", "flip angle 15\u00b0",
                 "voxel size 1.00 \u00d7 1.00 \u00d7 1.00 mm", "matrix 192 \u00d7 224 \u00d7 160",
                 "field of view 192 \u00d7 224 \u00d7 160 mm", "in-plane parallel imaging factor 2",
                 "no partial Fourier", "oblique to the scanner axes by up to 8.5\u00b0"):
        assert text in full, text
    # Checklist items no record holds are called unknown, not filled in.
    unknown = full.split("hence unknown:")[1].split(".")[0]
    for item in ("scanner software version", "2D or 3D acquisition", "readout polarity", "flow compensation"):
        assert item in unknown
    assert "monopolar" not in full and "bipolar" not in full


def test_paragraph_lists_every_step_with_method_and_parameters_in_order(full):
    order = ["phase scaling to radians", "brain masking", "phase unwrapping: ROMEO", "echo combination",
             "background field removal: V-SHARP", "dipole inversion: total-variation", "susceptibility referencing"]
    positions = [full.index(step) for step in order]
    assert positions == sorted(positions)
    assert "max_radius_mm = 12 mm" in full
    # The regularisation weight was set per scan (0.0002, 0.00031, 0.00026): reported as a range.
    assert "lambda = 0.0002\u20130.00031 (set per scan, median 0.00026)" in full
    assert "max_iterations = 250" in full
    assert "iterations = 120\u2013122 (varying across scans, median 121)" in full
    assert "n_voxels" not in full  # bookkeeping notes are not methods


def test_paragraph_gives_units_reference_registration_statistics_qc_and_software(full):
    for text in ("Susceptibility is given in ppm", "referenced to the mean susceptibility of the whole brain mask",
                 "MNI152NLin2009cAsym template with ANTs rigid + affine + SyN", "CIT168 labels",
                 "native space", "brain_dice 0.910\u20130.930",
                 "Groups MOH and CM", "adjusting for age and sex", "ANCOVA",
                 "with sds and hit6 were tested within group MOH (Spearman, controlling for age and sex)",
                 "Cox proportional hazards", "count 'relapse_count' with exposure 'followup_months'",
                 "Benjamini-Hochberg", "FDR-adjusted p < 0.05",
                 "Of 25 subjects, 1 subject failed processing (sub-25: registration, brain Dice 0.62 below 0.85)",
                 "1 participant from group_comparison (missing age)",
                 "2 quality-control images", "last echo 20.0 ms shorter than the T2* of deep grey matter (1 scan)",
                 "qsmiron 0.1.0", "antspyx 0.5.4", "numpy 2.3.5", "statsmodels 0.15.0"):
        assert text in full, text


def test_without_records_everything_is_unknown_and_nothing_is_invented():
    text = methods_paragraph(None, {})
    assert "unknown" in text
    for invented in ("3 T", "Siemens", "ROMEO", "V-SHARP", "MNI152", "CIT168", "ppm", "ANCOVA", "echoes"):
        assert invented not in text, invented


def test_missing_acquisition_fields_are_named_unknown_while_others_are_kept(provenance, study_results):
    partial = copy.deepcopy(provenance)
    for record in partial["recon"]:
        for key in ("receive_coil", "repetition_time_s", "manufacturer", "partial_fourier"):
            record["acquisition"].pop(key)
    text = methods_paragraph(partial, study_results.settings)
    unknown = text.split("hence unknown:")[1].split(".")[0]
    for item in ("vendor", "receive coil", "TR", "partial Fourier"):
        assert item in unknown
    assert "Prisma" in text and "TR =" not in text and "HeadNeck" not in text


def test_values_that_differ_between_scans_are_given_as_ranges(provenance):
    mixed = copy.deepcopy(provenance)
    mixed["recon"][0]["acquisition"]["field_strength_t"] = 1.5
    mixed["recon"][0]["acquisition"]["echo_times_s"] = [0.0035, 0.0075, 0.0115, 0.0155, 0.0195]
    mixed["recon"][1]["acquisition"]["echo_times_s"] = [0.004, 0.007, 0.012, 0.016, 0.020]
    mixed["recon"][2]["acquisition"]["manufacturer"] = "GE"
    text = methods_paragraph(mixed, {})
    assert "1.5\u20133 T (varying across scans)" in text
    assert "TE1 = 3.50\u20134.00 ms (varying across scans)" in text
    assert "non-uniform echo spacing (3.00\u20135.00 ms) in 1 scan" in text
    assert "Siemens (2 scans); GE (1 scan)" in text


def test_statistics_follow_the_settings_and_the_analyses_that_produced_rows(study_results):
    settings = copy.deepcopy(study_results.settings)
    settings["associations"].update(method="pearson", group="all", covariates=[])
    settings["relapse"] = {"outcome": None, "time": None, "count": None}
    settings["methods"] = {"group_comparison": "type-II ANCOVA as implemented here"}
    text = methods_paragraph(None, settings)
    assert "tested in the pooled sample (Pearson, no covariates)" in text
    assert "type-II ANCOVA as implemented here" in text
    assert "Relapse" not in text and "Cox" not in text


def test_describe_values_single_range_and_counts():
    assert describe_values([3.0, 3.0], lambda v: f"{v:g}", "T") == "3 T"
    assert describe_values([None, ""]) is None
    assert describe_values(["a", "b", "a"]) == "a (2 scans); b (1 scan)"


def test_accepts_a_pydantic_study_as_settings():
    from qsmiron.stats.study import Study

    text = methods_paragraph({}, Study(covariates=["age"]))
    assert "Benjamini-Hochberg" in text


def test_registration_is_described_from_the_recorded_configuration_when_roi_records_are_absent(provenance):
    records = copy.deepcopy(provenance["recon"])
    for record in records:
        record["config"] = {"registration": {"resolution_mm": 2.0, "syn_iterations": [60, 40, 20],
                                             "label_interpolation": "genericLabel"},
                            "roi": {"atlas": "cit168", "erode_voxels": 1}}
    text = methods_paragraph({"recon": records}, {})
    assert "registered to the MNI152NLin2009cAsym template with ANTs rigid + affine + SyN" in text
    assert "resolution_mm = 2 mm" in text and "syn_iterations = [60, 40, 20]" in text
    assert "The cit168 labels were brought into each subject's native space (genericLabel interpolation)" in text
    assert "after eroding each label by 1 voxel(s)" in text
    records[0]["config"]["registration"]["syn_iterations"] = []
    text = methods_paragraph({"recon": records[:1]}, {})
    assert "rigid + affine," in text and "SyN" not in text.split("Registration parameters")[0]


def test_a_parameter_left_to_the_method_reads_as_its_default_not_as_a_unit(provenance):
    unset = copy.deepcopy(provenance)
    for record in unset["recon"]:
        record["steps"][4]["parameters"]["max_radius_mm"] = None
    text = methods_paragraph(unset, {})
    assert "max_radius_mm = method default" in text
    assert "none mm" not in text


@pytest.mark.parametrize("method, cited, not_said", [
    ("wtv_bregman", ["Bregman iterations (Osher et al., Multiscale Model Simul 2005;4:460)",
                     "Liu et al., Magn Reson Med 2011;66:777"], ["MEDI (morphology-enabled"]),
    ("wtv", ["magnitude-weighted total-variation inversion by ADMM"], ["Bregman", "MEDI (morphology-enabled"]),
    ("medi", ["recorded as 'medi'", "not Liu's MEDI algorithm"], ["Bregman"]),
    ("rts", ["Kames et al., NeuroImage 2018;167:276"], ["Liu et al."]),
])
def test_inversion_clause_names_the_algorithm_that_ran_with_its_citation(provenance, study_results, method,
                                                                         cited, not_said):
    records = copy.deepcopy(provenance)
    for recon in records["recon"]:
        for step in recon["steps"]:
            if step["step"] == "inversion":
                step["method"] = method
    text = methods_paragraph(records, study_results.settings, results=study_results)
    clause = text.split("dipole inversion: ")[1].split("; (")[0]
    for phrase in cited:
        assert phrase in clause, phrase
    for phrase in not_said:
        assert phrase not in clause, phrase
