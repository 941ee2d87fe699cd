"""QSM quality control: per-scan pages and the cohort QC table (strip plots, outlier flags)."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from qsmiron.io.derivatives import qc_figure_paths, study_paths
from qsmiron.records.cohort import Provenance
from qsmiron.report import qc_figures
from qsmiron.report.qc_pages import qc_section_html, robust_z, write_qc_pages
from qsmiron.roi.qc import CHI_WINDOW_PPM, atlas_overlay_png, labels_centre_mm, registration_png, save_png


class _Figures(HTMLParser):
    """Every <img> with its alt text and whether the <figure> around it has a <figcaption>."""

    def __init__(self) -> None:
        super().__init__()
        self.images, self._open = [], None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "figure":
            self._open = {"alt": None, "caption": False}
        elif tag == "img":
            self.images.append(self._open if self._open is not None else {"caption": False})
            self.images[-1]["alt"] = attrs.get("alt")
        elif tag == "figcaption" and self._open is not None:
            self._open["caption"] = True

    def handle_endtag(self, tag):
        if tag == "figure":
            self._open = None


def _images(html: str) -> list[dict]:
    parser = _Figures()
    parser.feed(html)
    return parser.images


def _head(shape=(32, 36, 30)):
    x, y, z = np.ogrid[:shape[0], :shape[1], :shape[2]]
    centre = np.array(shape) / 2
    mask = ((x - centre[0]) / 13) ** 2 + ((y - centre[1]) / 15) ** 2 + ((z - centre[2]) / 12) ** 2 < 1
    return mask


def _cohort(provenance: Provenance, tmp_path: Path, n: int = 10) -> Provenance:
    """``n`` scans from the hand-built records: similar measures, with sub-07's registration NMI far
    below the others and sub-03's inversion not converged; each with a mask and QC figures."""
    mask = _head()
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    affine[:3, 3] = (-30.0, -40.0, -25.0)
    scans = []
    for i in range(n):
        scan = provenance.scans[i % len(provenance.scans)].model_copy(deep=True)
        label = f"sub-{i + 1:02d}"
        scan.participant_id = label
        inversion = scan.recon.step("inversion")
        inversion.notes.update(iterations=100 + i, converged=i != 2, relative_change=1e-3 * (1 + 0.05 * i))
        scan.recon.step("reference").notes["plausibility"] = {  # sub-05 streaks
            "share_beyond_limit": 0.0034 if i == 4 else 0.0, "limit_ppm": 0.5, "abs_chi_p99_9_ppm": 0.2}
        from qsmiron.records.regions import SignCheckInfo

        scan.regions.sign_check = SignCheckInfo(checked=True, regions=["GPe", "GPi", "RN", "SNr"],
                                                mean_ppm=-0.11 if i == 8 else 0.12)  # sub-09 inverted
        if i == 3:  # sub-04: a bipolar readout, found and corrected
            from qsmiron.records.acquisition import ReadoutInfo

            scan.recon.readout = ReadoutInfo(polarity="bipolar", largest_rad=0.84)
        quality = scan.regions.registration.quality
        quality.nmi = 1.20 + 0.004 * (i % 5) if i != 6 else 1.07
        quality.brain_dice = 0.93 + 0.002 * (i % 4)
        quality.core_correlation = 0.60 + 0.01 * (i % 3)
        folder = tmp_path / label
        folder.mkdir()
        from qsmiron.io.nifti import save_nifti

        save_nifti(folder / "mask.nii.gz", mask.astype(np.uint8), affine)
        chi = np.where(mask, 0.05 * np.sin(np.arange(mask.size).reshape(mask.shape) / 50.0), 0.0)
        field = np.where(mask, 30.0 * np.linspace(-1, 1, mask.shape[2])[None, None, :], 0.0)
        save_nifti(folder / "chi.nii.gz", chi.astype(np.float32), affine)
        save_nifti(folder / "total.nii.gz", field.astype(np.float32), affine)
        save_nifti(folder / "local.nii.gz", (field / 3000).astype(np.float32), affine)
        maps = {"chimap": folder / "chi.nii.gz", "mask": folder / "mask.nii.gz", "fieldmap": folder / "total.nii.gz",
                "localfield": folder / "local.nii.gz"}
        figures = qc_figures.write_recon_qc_figures(maps, qc_figure_paths(folder, label), label) if i < 2 else {}
        scan.outputs = {"mask": str(folder / "mask.nii.gz"), **{role: str(p) for role, p in figures.items()}}
        scans.append(scan)
    return Provenance(scans=scans)


def test_robust_z_is_median_centred_and_mad_scaled():
    values = [1.0, 2.0, 3.0, 4.0, 100.0]
    z = robust_z(values)
    mad = np.median(np.abs(np.array(values) - 3.0))
    assert z[2] == 0.0 and z[4] == pytest.approx(97.0 / (1.4826 * mad))
    assert robust_z([1.0, None, 1.0, 1.0]) == [0.0, None, 0.0, 0.0]
    # A cohort of near-identical mask volumes: 1 % of the median is the least scale, nothing stands out.
    volumes = robust_z([1547.0, 1548.0, 1548.0, 1549.0, 1550.0, 1554.0], min_relative_scale=0.01)
    assert volumes[-1] == pytest.approx(5.5 / 15.485) and max(abs(v) for v in volumes) < 3


def test_planted_registration_outlier_and_non_converged_inversion_are_flagged(provenance, tmp_path):
    cohort = _cohort(provenance, tmp_path)
    scans = write_qc_pages(cohort, study_paths(tmp_path / "group"))
    by_label = {scan.label: scan for scan in scans}
    outlier = by_label["sub-07"]
    assert outlier.measures["nmi"].flagged and outlier.measures["nmi"].robust_z < -3
    assert any("registration NMI 1.070" in reason for reason in outlier.reasons)
    assert any("did not converge in 102 iterations" in reason for reason in by_label["sub-03"].reasons)
    assert by_label["sub-05"].reasons == ["susceptibility not plausible for brain: 0.34 % of the mask beyond "
                                          "+-0.5 ppm (streaking?)"]
    assert by_label["sub-09"].reasons == ["iron-rich nuclei read -0.110 ppm against the whole brain (phase stored "
                                          "with the opposite sign? setting recon.phase.rescale.negate)"]
    assert by_label["sub-09"].measures["iron_nuclei_ppm"].flagged
    assert by_label["sub-08"].measures["iron_nuclei_ppm"].value == 0.12
    assert not by_label["sub-08"].measures["iron_nuclei_ppm"].flagged
    assert not by_label["sub-01"].reasons and not by_label["sub-10"].reasons
    mask_ml = by_label["sub-01"].measures["mask_volume_ml"].value
    assert mask_ml == pytest.approx(_head().sum() * 8 / 1000)

    assert by_label["sub-04"].readout == "bipolar: even-echo phase up to 0.84 rad, corrected"
    assert by_label["sub-04"].reasons == [] and by_label["sub-01"].readout is None  # records before the check
    sub_04 = (tmp_path / "group" / "qc" / "sub-04_qc.html").read_text()
    assert "readout polarity (odd/even echo phase)" in sub_04 and "up to 0.84 rad, corrected" in sub_04
    page = (tmp_path / "group" / "qc" / "sub-07_qc.html").read_text()
    assert "Flagged for review" in page and 'href="../report.html#qc"' in page
    assert re.search(r"registration NMI</td>.*?1\.070.*?-\d+\.\d.*?yes", page, re.S)


def test_a_registration_flagged_by_its_residual_shift_marks_that_measure_not_the_nmi(provenance, tmp_path):
    cohort = _cohort(provenance, tmp_path)
    quality = cohort.scans[7].regions.registration.quality
    quality.residual_shift_mm, quality.outlier = 3.2, True
    quality.outlier_reasons = ["residual misalignment (block matching) 3.2 mm > 1.4 mm"]
    scans = {scan.label: scan for scan in write_qc_pages(cohort, study_paths(tmp_path / "group"))}
    flagged = scans["sub-08"]
    assert flagged.measures["residual_shift_mm"].flagged and not flagged.measures["brain_dice"].flagged
    assert not flagged.measures["nmi"].flagged
    assert "registration: residual misalignment (block matching) 3.2 mm > 1.4 mm" in flagged.reasons
    assert not scans["sub-01"].measures["residual_shift_mm"].flagged  # 0.5 mm: below its threshold


def test_qc_page_shows_chi_at_the_fixed_window_with_alt_text_and_captions(provenance, tmp_path):
    write_qc_pages(_cohort(provenance, tmp_path), study_paths(tmp_path / "group"))
    page = (tmp_path / "group" / "qc" / "sub-01_qc.html").read_text()
    images = _images(page)
    assert len(images) == 2  # chi and fields drawn; atlas and registration listed as not available
    assert all(image["alt"] and image["caption"] for image in images)
    assert "fixed window -0.15 to +0.15 ppm, the same for every subject" in page
    assert "Scanner coordinates (mm)" in page and page.count("Not available") == 2
    assert "data:image/png;base64," in page and "<script" not in page


def test_chi_window_is_the_same_for_every_subject_and_cuts_are_in_mm(monkeypatch, tmp_path):
    """Two subjects whose chi ranges differ tenfold are drawn at one window, cut at world mm."""
    seen = []
    original = qc_figures.ortho_panel

    def spy(fig, rect, image, **kwargs):
        seen.append((kwargs["vmin"], kwargs["vmax"], kwargs["cut_coords"]))
        return original(fig, rect, image, **kwargs)

    monkeypatch.setattr(qc_figures, "ortho_panel", spy)
    mask = _head()
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    affine[:3, 3] = (-30.0, -40.0, -25.0)
    for scale in (0.02, 0.2):
        qc_figures.chimap_png(np.where(mask, scale, 0.0), mask, affine, tmp_path / f"{scale}.png", title="chi")
    assert [(low, high) for low, high, _ in seen] == [CHI_WINDOW_PPM, CHI_WINDOW_PPM]
    centre_vox = np.array(np.nonzero(mask)).mean(axis=1)
    assert seen[0][2] == pytest.approx(tuple(affine[:3, :3] @ centre_vox + affine[:3, 3]))
    assert labels_centre_mm(mask, affine) == pytest.approx(seen[0][2])


def test_atlas_figure_has_a_legend_of_the_regions(tmp_path):
    mask = _head()
    labels = np.zeros(mask.shape, np.int16)
    labels[10:14, 15:20, 12:16], labels[18:22, 15:20, 12:16], labels[14:18, 22:26, 10:13] = 1, 2, 3
    regions = atlas_overlay_png(np.where(mask, 0.05, 0.0), labels, np.eye(4), tmp_path / "atlas.png",
                                region_names={1: "Pu", 2: "Pu", 3: "VeP", 4: "GPe"})
    assert regions == ["Pu", "VeP"]  # both hemispheres share an entry; absent labels are not listed
    registration_png(mask * 3.0 + 1.0, mask * 2.0, np.eye(4), tmp_path / "registration.png")
    assert (tmp_path / "registration.png").read_bytes()[:4] == b"\x89PNG"


def test_cohort_qc_table_has_strip_plots_and_links_every_page(provenance, tmp_path):
    cohort = _cohort(provenance, tmp_path)
    html = str(qc_section_html(cohort))
    assert html.count('href="qc/sub-') == 10 and 'href="qc/sub-07_qc.html"' in html
    assert html.count('<tr class="flagged">') == 4  # sub-03 (inversion), -05 (streaking), -07 (registration), -09 (sign)
    assert "did not converge for 1 of 10 scans</strong> (sub-03)" in html
    images = _images(html)
    assert len(images) == 1 and images[0]["alt"].startswith("Strip plots") and images[0]["caption"]
    assert str(qc_section_html(Provenance())) == ""


def test_strip_plot_is_a_150_dpi_png(tmp_path):
    png = qc_figures.strip_plot_png(["a", "b"], [[1.0, 2.0, 9.0], [None, 1.0, 1.0]],
                                    [[False, False, True], [False, False, False]], ["s1", "s2", "s3"],
                                    units=["u", "v"])
    path = tmp_path / "strip.png"
    path.write_bytes(png)
    from PIL import Image

    with Image.open(path) as image:
        assert image.info["dpi"][0] == pytest.approx(150, abs=1)
    assert save_png  # the QC figures share the writer


def test_mask_volume_is_read_once_per_file_version(tmp_path):
    from qsmiron.io.nifti import save_nifti
    from qsmiron.report import qc_pages

    path = tmp_path / "mask.nii.gz"
    mask = np.zeros((10, 10, 10), np.uint8)
    mask[:5] = 1
    save_nifti(path, mask, np.diag([2.0, 2.0, 2.0, 1.0]))
    before = qc_pages._mask_volume_of_file.cache_info().hits
    assert qc_pages._mask_volume_ml(str(path)) == pytest.approx(500 * 8 / 1000)
    assert qc_pages._mask_volume_ml(str(path)) == pytest.approx(4.0)
    assert qc_pages._mask_volume_of_file.cache_info().hits == before + 1
    mask[:] = 1  # a new version of the file is read again
    save_nifti(path, mask, np.diag([2.0, 2.0, 2.0, 1.0]))
    assert qc_pages._mask_volume_ml(str(path)) == pytest.approx(8.0)
