"""The methods paragraph on R2*, chi-separation and the reference regions, from the typed records."""

from qsmiron.records.base import StepInfo
from qsmiron.records.regions import MeasureInfo, ReferenceRegion
from qsmiron.records.relaxometry import ChiSeparationInfo, R2starInfo
from qsmiron.report.methods import methods_paragraph

R2STAR_PARAMETERS = {"floor_factor": 3.0, "rician_correction": True, "r2star_max_per_s": 500.0, "max_iter": 20}
PSEUDO = dict(pseudo_r2_intercept_per_s=5.25, pseudo_r2_slope=0.5, pseudo_r2_model="R2 = intercept + slope x R2*",
              pseudo_r2_reference="Gelman et al., Radiology 1999;210:759")


def _iron_recon(recon, index):
    steps = list(recon.steps)
    steps.insert(2, StepInfo(step="r2star", method="nlls", parameters=R2STAR_PARAMETERS, seconds=1.0))
    steps.insert(-1, StepInfo(step="chisep", method="shin", parameters={"alpha": 0.02, "max_iter": 200}, seconds=11.0))
    r2star = R2starInfo(method="nlls", echo_times_s=recon.acquisition.echo_times_s, noise_sigma=3.0,
                        noise_estimate="air around the head (Rayleigh median)", floor_factor=3.0, n_voxels=1000,
                        n_valid=980 - index, median_r2star_per_s=21.0 + index)
    chisep = ChiSeparationInfo(method="shin", approximation=index != 0, r2_source="R2* - pseudo-R2",
                               dr_hz_per_ppm=137.0, dr_source="137 Hz/ppm at 3 T (Shin et al. 2021) x B0 / 3 T",
                               alpha=0.02, alpha_source="the weight the dipole inversion (wtv) chose",
                               **(PSEUDO if index else {}))
    return recon.model_copy(update={"steps": steps, "r2star": r2star, "chi_separation": chisep})


def _iron_regions(regions, index):
    references = [ReferenceRegion(name="whole_brain", method="whole_brain", available=True, n_voxels=900000,
                                  volume_ml=1200.0 + index, offset_ppm=0.0)]
    if index == 2:
        references.append(ReferenceRegion(name="csf", method="csf", available=False,
                                          reason="the ventricle CSF mask is empty or too small"))
    else:
        references.append(ReferenceRegion(name="csf", method="csf", available=True, n_voxels=9000,
                                          volume_ml=9.0 + index, offset_ppm=-0.01))
    measures = [MeasureInfo(measure=m, unit=u, source=f"{m}.nii.gz", mask="m")
                for m, u in (("chi", "ppm"), ("r2star", "s^-1"), ("chi_para", "ppm"), ("chi_dia", "ppm"))]
    return regions.model_copy(update={"references": references, "measures": measures})


def _paragraph(provenance, study_results):
    scans = [scan.model_copy(update={"recon": _iron_recon(scan.recon, i), "regions": _iron_regions(scan.regions, i)})
             for i, scan in enumerate(provenance.scans)]
    return methods_paragraph(provenance.model_copy(update={"scans": scans}), study_results.settings,
                             results=study_results)


def test_the_paragraph_states_r2star_chisep_constants_and_every_reference_region_with_its_size(
        provenance, study_results):
    text = _paragraph(provenance, study_results)
    from qsmiron.recon.stages import stage

    # R2*: the declared method's label and every parameter, in the order of the stages.
    label = stage("r2star").method("nlls").label
    assert text.index("brain masking") < text.index(f"R2* mapping: {label}") < text.index("phase unwrapping")
    assert "floor_factor = 3" in text and "r2star_max_per_s = 500 s^-1" in text and "max_iter = 20" in text
    assert "air around the head" in text and "median R2* 21.0\u201323.0 s^-1" in text
    # Chi-separation: Dr and its source, the measured R2 for one scan, the approximation for two.
    assert "Dr of 137 Hz/ppm" in text and "measured spin-echo R2 map for 1 scan" in text
    assert ("For 2 scans no R2 map was available and R2 was approximated from R2* as R2 = intercept + slope x "
            "R2* with intercept 5.25 s^-1 and slope 0.5") in text
    assert "are an approximation" in text
    # Reference regions: the whole brain and the ventricle CSF with their volumes, and where it failed.
    assert "relative to the mean over the whole brain mask (1200.0\u20131202.0 ml (varying across scans); 3 scans)" in text
    assert "relative to the mean over the CSF of the lateral ventricles" in text
    assert "9.0\u201310.0 ml (varying across scans); 2 scans); it could not be made for 1 scan (the ventricle CSF" in text
    assert "R2* (s^-1), paramagnetic susceptibility (chi+, ppm) and diamagnetic susceptibility" in text
    # References of what ran: chi-separation, the CSF segmentation, the consensus.
    for citation in ("10.1016/j.neuroimage.2021.118371", "10.1002/mrm.26946", "10.1002/mrm.1910340618"):
        assert citation in text


def test_without_iron_records_the_paragraph_says_nothing_of_them(provenance, study_results):
    text = methods_paragraph(provenance, study_results.settings, results=study_results)
    assert "R2*" not in text and "chi-separation" not in text and "approximation" not in text
