"""The methods paragraph says what the records hold, summarises across scans, and never invents."""

import pytest

from qsmiron.records.cohort import Provenance
from qsmiron.report.describe import describe_values
from qsmiron.report.methods import methods_paragraph
from qsmiron.stats.methods_text import STATISTICS_METHODS


@pytest.fixture()
def full(provenance, study_results):
    return methods_paragraph(provenance, study_results.settings, results=study_results, n_qc_images=2)


def _with_acquisition(provenance, index, **changes):
    """A copy of the provenance whose scan ``index`` has acquisition fields changed."""
    scans = list(provenance.scans)
    recon = scans[index].recon
    scans[index] = scans[index].model_copy(update={
        "recon": recon.model_copy(update={"acquisition": recon.acquisition.model_copy(update=changes)})})
    return provenance.model_copy(update={"scans": scans})


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


def test_paragraph_lists_every_step_with_its_declared_method_and_parameters_in_order(full):
    order = ["phase scaling to radians", "brain masking", "phase unwrapping: ROMEO", "echo combination",
             "mask refinement", "background field removal: V-SHARP", "dipole inversion: total-variation",
             "susceptibility referencing"]
    positions = [full.index(step) for step in order]
    assert positions == sorted(positions)
    assert "radii_mm = [12, 2] mm" in full and "max_iter = 250" in full
    # The regularisation weight was chosen per scan (0.0002, 0.00031, 0.00026): reported as a range.
    assert "alpha = 0.0002\u20130.00031 (varying across scans, median 0.00026)" in full
    assert "iterations = 120\u2013122 (varying across scans, median 121)" in full
    assert "detected_scaling = levels" in full
    assert "n_voxels" not in full  # bookkeeping notes are not methods


def test_paragraph_cites_the_declared_references_of_the_methods_that_ran(full):
    from qsmiron.recon.stages import stage
    from qsmiron.register.normalise import METHOD

    for step, method in (("unwrap", "romeo"), ("background", "vsharp"), ("inversion", "tv")):
        assert stage(step).method(method).reference in full
    assert METHOD.reference in full
    assert stage("background").method("ismv").reference not in full  # not run


def test_paragraph_gives_units_reference_registration_statistics_qc_and_software(full):
    for text in ("Susceptibility is given in ppm", "referenced to the mean over the whole brain mask",
                 "MNI152NLin2009cAsym template with ANTs rigid + affine + SyN", "cit168 labels",
                 "brain: support of the chi map) was registered",
                 "Each scan had a QC page", "registration NMI, brain Dice and the head check's core correlation",
                 "exceeded 3 in magnitude", "0 of 3 scans flagged",
                 "native space", "brain Dice 0.910\u20130.930", "resolution_mm = 2 mm",
                 "residual misalignment by block matching, the median over 27 blocks of the template brain of the "
                 "shift that best matches each block: 0.5\u20130.7 mm (varying across scans)",
                 "0 scans flagged as outlier(s) (a residual shift above 1.4 mm or a brain Dice below 0.85)",
                 "syn_iterations = [60, 40, 20]",
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
    text = methods_paragraph(None, None)
    assert "unknown" in text
    for invented in ("3 T", "Siemens", "ROMEO", "V-SHARP", "MNI152", "CIT168", "ppm", "ANCOVA", "echoes"):
        assert invented not in text, invented


def test_missing_acquisition_fields_are_named_unknown_while_others_are_kept(provenance, study_results):
    partial = provenance
    for index in range(len(provenance.scans)):
        partial = _with_acquisition(partial, index, receive_coil=None, repetition_time_s=None, manufacturer=None,
                                    partial_fourier=None)
    text = methods_paragraph(partial, study_results.settings)
    unknown = text.split("hence unknown:")[1].split(".")[0]
    for item in ("vendor", "receive coil", "TR", "partial Fourier"):
        assert item in unknown
    assert "Prisma" in text and "TR =" not in text and "HeadNeck" not in text


def test_values_that_differ_between_scans_are_given_as_ranges(provenance):
    mixed = _with_acquisition(provenance, 0, field_strength_t=1.5, echo_times_s=[0.0035, 0.0075, 0.0115, 0.0155, 0.0195])
    mixed = _with_acquisition(mixed, 1, echo_times_s=[0.004, 0.007, 0.012, 0.016, 0.020])
    mixed = _with_acquisition(mixed, 2, manufacturer="GE")
    text = methods_paragraph(mixed, None)
    assert "1.5\u20133 T (varying across scans)" in text
    assert "TE1 = 3.50\u20134.00 ms (varying across scans)" in text
    assert "non-uniform echo spacing (3.00\u20135.00 ms) in 1 scan" in text
    assert "Siemens (2 scans); GE (1 scan)" in text


def test_statistics_follow_the_settings_and_the_one_methods_text(study_results):
    settings = study_results.settings.model_copy(deep=True)
    settings.associations = settings.associations.model_copy(update={"method": "pearson", "group": "all",
                                                                       "covariates": []})
    settings.relapse = settings.relapse.model_copy(update={"outcome": None, "time": None, "count": None})
    settings.methods = settings.methods.model_copy(update={"group_comparison": "type-II ANCOVA as implemented here"})
    text = methods_paragraph(None, settings)
    assert "tested in the pooled sample (Pearson, no covariates)" in text
    assert "type-II ANCOVA as implemented here" in text
    assert "Relapse" not in text and "Cox" not in text
    full = methods_paragraph(None, study_results.settings)
    for sentence in (STATISTICS_METHODS.relapse, STATISTICS_METHODS.multiple_comparisons, STATISTICS_METHODS.table1):
        assert sentence in full


def test_describe_values_single_range_and_counts():
    assert describe_values([3.0, 3.0], lambda v: f"{v:g}", "T") == "3 T"
    assert describe_values([None, ""]) is None
    assert describe_values(["a", "b", "a"]) == "a (2 scans); b (1 scan)"


def test_without_regions_records_the_registration_is_unknown_not_taken_from_the_settings(provenance):
    recon_only = Provenance(scans=[scan.model_copy(update={"regions": None}) for scan in provenance.scans])
    text = methods_paragraph(recon_only, None)
    assert "registration method, template, atlas and measurement space are unknown" in text
    assert "SyN" not in text and "MNI152" not in text


def test_a_parameter_left_to_the_method_reads_as_its_default_not_as_a_unit(provenance):
    scans = []
    for scan in provenance.scans:
        steps = [step.model_copy(update={"parameters": {**step.parameters, "radii_mm": None}})
                 if step.step == "background" else step for step in scan.recon.steps]
        scans.append(scan.model_copy(update={"recon": scan.recon.model_copy(update={"steps": steps})}))
    text = methods_paragraph(provenance.model_copy(update={"scans": scans}), None)
    assert "radii_mm = method default" in text
    assert "none mm" not in text


def test_a_note_repeating_a_parameter_is_left_out_and_a_chosen_value_is_reported(provenance):
    scans = []
    for scan in provenance.scans:
        steps = [step.model_copy(update={"notes": {"threshold": 0.05, "radius_mm": 4.0}})
                 if step.step == "background" else step for step in scan.recon.steps]
        scans.append(scan.model_copy(update={"recon": scan.recon.model_copy(update={"steps": steps})}))
    text = methods_paragraph(provenance.model_copy(update={"scans": scans}), None)
    clause = text[text.index("background field removal"):text.index("dipole inversion")]
    assert "[recorded: radius_mm = 4 mm]" in clause and clause.count("threshold = 0.05") == 1


@pytest.mark.parametrize("method, said, not_said, cited", [
    ("wtv_bregman", ["with Bregman iterations stopped by the discrepancy principle"], ["MEDI (morphology-enabled"],
     ["doi:10.1137/040605412", "doi:10.1002/mrm.22816", "doi:10.1016/j.neuroimage.2011.08.082",
      "doi:10.1002/mrm.27073"]),
    ("wtv", ["magnitude-weighted total-variation inversion by ADMM"], ["Bregman", "MEDI (morphology-enabled"],
     ["doi:10.1002/mrm.22816", "doi:10.1002/mrm.27073"]),
    # a record written when wtv was called medi: credited as what it is
    ("medi", ["magnitude-weighted total-variation inversion by ADMM"], ["Bregman", "MEDI (morphology-enabled"],
     ["doi:10.1002/mrm.22816"]),
    ("rts", ["RTS (rapid two-step)"], ["magnitude-weighted"], ["doi:10.1016/j.neuroimage.2017.11.018"]),
])
def test_inversion_clause_names_the_algorithm_that_ran_and_the_references_cite_it(provenance, method, said,
                                                                                  not_said, cited):
    scans = []
    for scan in provenance.scans:
        steps = [step.model_copy(update={"method": method}) if step.step == "inversion" else step
                 for step in scan.recon.steps]
        scans.append(scan.model_copy(update={"recon": scan.recon.model_copy(update={"steps": steps})}))
    text = methods_paragraph(provenance.model_copy(update={"scans": scans}), None)
    clause = text.split("dipole inversion: ")[1].split("; (")[0]
    references = text.split("References of the methods: ")[1]
    for phrase in said:
        assert phrase in clause, phrase
    for phrase in not_said:
        assert phrase not in clause, phrase
    for doi in cited:
        assert doi in references, doi
    if method != "rts":
        assert "doi:10.1016/j.neuroimage.2017.11.018" not in references


def test_voxels_without_field_are_counted_across_scans_with_the_test_level(provenance):
    scans = []
    for count, scan in zip((120, 40, 900, 7), provenance.scans):
        steps = []
        for step in scan.recon.steps:
            if step.step == "mask_refinement":
                step = step.model_copy(update={"notes": {**step.notes, "misfit_voxels_kept_without_field": count}})
            if step.step == "echo_fit":
                step = step.model_copy(update={"parameters": {**step.parameters, "misfit_p": 1e-4,
                                                              "misfit_tolerance_ppm": 0.005},
                                               "notes": {**step.notes, "misfit_tolerance_hz": 0.6387,
                                                         "aliasing_period_hz": 250.0}})
            steps.append(step)
        scans.append(scan.model_copy(update={"recon": scan.recon.model_copy(update={"steps": steps})}))
    assert len(scans) >= 2
    counts = sorted((120, 40, 900, 7)[:len(scans)])
    text = methods_paragraph(provenance.model_copy(update={"scans": scans}), None)
    assert "stayed in the mask but carried no field" in text
    assert "false-alarm rate 0.0001) and whose residual implied a field error above 0.005 ppm" in text
    assert "a whole aliasing period of the echo train off their neighbours" in text
    assert "two echoes" not in text                        # no scan had the dephasing rule applied
    assert f"voxels per scan, range {counts[0]}\u2013{counts[-1]})" in text  # the en dash of every range
    assert "carried no field" not in methods_paragraph(provenance, None)  # records without the count
    scans[0] = scans[0].model_copy(update={"recon": scans[0].recon.model_copy(update={"steps": [
        step.model_copy(update={"notes": {**step.notes, "dephased_voxels": 12, "dephasing_factor": 4.0}})
        if step.step == "echo_fit" else step
        for step in scans[0].recon.steps]})})
    text = methods_paragraph(provenance.model_copy(update={"scans": scans}), None)
    assert "(two echoes), also voxels whose magnitude decayed more than 4 times as fast as the mask's median" in text
    # records from before the aliasing check do not claim it
    before = [scan.model_copy(update={"recon": scan.recon.model_copy(update={"steps": [
        step.model_copy(update={"notes": {k: v for k, v in step.notes.items() if k != "aliasing_period_hz"}})
        for step in scan.recon.steps]})}) for scan in scans]
    text = methods_paragraph(provenance.model_copy(update={"scans": before}), None)
    assert "carried no field" in text and "aliasing period" not in text


def test_voxels_left_out_by_a_background_method_that_cannot_weight_are_stated(provenance):
    """A scan whose background step (iSMV) left groups of voxels without field out of its mask
    says so, with the count; the default's records (no such note) and a count of 0 do not."""
    def with_background_notes(scan, notes, method):
        steps = [step.model_copy(update={"method": method, "notes": {**step.notes, **notes}})
                 if step.step == "background" else step.model_copy(
                     update={"notes": {**step.notes, "misfit_voxels_kept_without_field": 50}})
                 if step.step == "mask_refinement" else step
                 for step in scan.recon.steps]
        return scan.model_copy(update={"recon": scan.recon.model_copy(update={"steps": steps})})

    scans = [with_background_notes(scan, {"excluded_voxels": 311, "filled_voxels": 4}, "ismv")
             for scan in provenance.scans[:1]]
    text = methods_paragraph(provenance.model_copy(update={"scans": scans}), None)
    assert ("iSMV (iterative spherical mean value), which cannot weight voxels, filled those enclosed by usable "
            "voxels from their neighbours and left those in groups reaching the mask's edge out of its mask, "
            "and so out of the susceptibility map (311 voxels).") in text
    none_left = [with_background_notes(scan, {"excluded_voxels": 0, "filled_voxels": 4}, "ismv")
                 for scan in provenance.scans[:1]]
    assert "cannot weight" not in methods_paragraph(provenance.model_copy(update={"scans": none_left}), None)
    assert "cannot weight" not in methods_paragraph(provenance, None)


def test_records_from_before_the_residual_shift_state_the_nmi_rule_they_were_flagged_by(provenance):
    from qsmiron.report.methods import registration_quality_sentence

    old = [scan.regions.registration.quality.model_copy(update={"residual_shift_mm": None, "max_residual_shift_mm": None,
                                                                "min_nmi": 1.05})
           for scan in provenance.scans]
    sentence = registration_quality_sentence(old)
    assert "block matching" not in sentence and "residual shift" not in sentence
    assert sentence.endswith("(a brain Dice below 0.85 or a mutual information below 1.05).")


def _with_readout(provenance, notes_per_scan):
    """A copy whose scans carry the readout check's finding (None: a record made before it)."""
    from qsmiron.records.acquisition import ReadoutInfo
    from qsmiron.records.base import StepInfo

    scans = list(provenance.scans)
    for index, notes in enumerate(notes_per_scan):
        if notes is None:
            continue
        recon = scans[index].recon
        step = StepInfo(step="readout", method="odd_even_linear", parameters={"detection_rad": 0.05}, notes=notes)
        scans[index] = scans[index].model_copy(update={"recon": recon.model_copy(update={
            "readout": ReadoutInfo.from_notes(notes), "steps": [*recon.steps[:2], step, *recon.steps[2:]]})})
    return provenance.model_copy(update={"scans": scans})


def test_the_readout_polarity_read_from_the_phase_is_stated_and_cited(provenance, study_results):
    from qsmiron.recon.stages import stage

    monopolar = {"readout": "monopolar", "largest_rad": 0.01, "detection_rad": 0.05}
    bipolar = {"readout": "bipolar", "largest_rad": 0.84, "detection_rad": 0.05}
    n = len(provenance.scans)
    text = methods_paragraph(_with_readout(provenance, [bipolar] + [monopolar] * (n - 1)), study_results.settings)
    sentence = text.split("Readout polarity")[1].split(".\n")[0]
    assert f"no odd/even echo phase difference of 0.05 rad or more, as with a monopolar readout, in {n - 1} scans" \
        in sentence
    assert "bipolar readout (up to 0.84 rad) in 1 scan, removed before unwrapping" in sentence
    assert "readout polarity" not in text.split("hence unknown:")[1].split(".")[0]
    assert stage("readout").method("odd_even_linear").reference in text

    # A scan whose record has no such step (made before it existed) leaves the polarity unknown.
    partly = methods_paragraph(_with_readout(provenance, [None] + [monopolar] * (n - 1)), study_results.settings)
    assert "readout polarity" in partly.split("hence unknown:")[1].split(".")[0]
    assert "no check in 1 scan" in partly


def test_the_residual_shift_is_described_where_it_was_measured(provenance, study_results):
    scans = []
    for scan in provenance.scans:
        regions = scan.regions.model_copy(deep=True)
        regions.registration.quality.residual_shift_region = "the atlas regions plus 20 mm (the SyN domain)"
        scans.append(scan.model_copy(update={"regions": regions}))
    text = methods_paragraph(provenance.model_copy(update={"scans": scans}), study_results.settings)
    assert ("the median over 27 blocks of the atlas regions plus 20 mm (the SyN domain) of the shift that best "
            "matches each block") in text


def test_a_number_recorded_per_scan_with_some_scans_without_one_reads_as_a_range():
    """A data-driven value (a weight found per scan, none where the search found none) is
    summarised by its range and median and the count without one, not listed value by value."""
    from qsmiron.report.describe import summarise_parameter

    values = [None] * 5 + [0.001, 0.0015, 0.002, 0.004]
    assert summarise_parameter("level_crossing_alpha", values, "varying across scans") == \
        "level_crossing_alpha = 0.001\u20130.004 (varying across scans, median 0.00175; none in 5 scans)"
    assert summarise_parameter("alpha", [0.001, 0.002, 0.003], "varying across scans") == \
        "alpha = 0.001\u20130.003 (varying across scans, median 0.002)"
    assert summarise_parameter("x", [None, 0.5, 0.5]) == "x = 0.5 (2 scans) or none (1 scan)"
