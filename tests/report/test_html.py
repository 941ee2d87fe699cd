"""The HTML report: self-contained, every section present, numbers formatted, significance marked."""

import base64
import os
import re
from html.parser import HTMLParser

import pandas as pd
import pytest
from markupsafe import escape

from qsmiron.report import html as report_html
from qsmiron.report.formatting import format_mean_sd, format_p
from qsmiron.report.html import SECTION_IDS, build_context, render_context, render_report, write_report
from qsmiron.report.names import region_label, region_name
from qsmiron.stats.results import StudyResults


class _Collector(HTMLParser):
    """Every element as (tag, attrs) plus the text of each element with an id."""

    def __init__(self):
        super().__init__()
        self.elements = []
        self.rows = []  # (class, [cell texts]) for table rows
        self._row = None
        self._cell = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.elements.append((tag, attrs))
        if tag == "tr":
            self._row = (attrs.get("class", ""), [])
        elif tag in ("td", "th") and self._row is not None:
            self._cell = []

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._row is not None and self._cell is not None:
            self._row[1].append("".join(self._cell).strip())
            self._cell = None
        elif tag == "tr" and self._row is not None:
            self.rows.append(self._row)
            self._row = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def parse(text):
    collector = _Collector()
    collector.feed(text)
    return collector


def test_report_is_written_atomically_with_every_section(report):
    path, text = report
    assert path.name == "report.html" and path.exists()
    assert [p.name for p in path.parent.iterdir()] == ["report.html"]  # no temporary left over
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask  # readable like any new file, not private
    ids = [attrs.get("id") for _, attrs in parse(text).elements if attrs.get("id")]
    for section in SECTION_IDS:
        assert section in ids, section
    assert len(ids) == len(set(ids)), "ids must be unique"
    for figure_id in ("fig-groups", "fig-associations", "fig-roc", "fig-km"):
        assert figure_id in ids
    links = [attrs["href"][1:] for _, attrs in parse(text).elements if attrs.get("href", "").startswith("#")]
    assert set(links) <= set(ids), "every in-page link has its target"
    assert "truth" not in links  # data not simulated: no simulation-truth section, no link to one


def test_report_is_self_contained(report):
    _, text = report
    elements = parse(text).elements
    tags = {tag for tag, _ in elements}
    assert "script" not in tags and "link" not in tags and "iframe" not in tags
    for tag, attrs in elements:
        for name in ("src", "href", "data", "poster", "srcset"):
            value = attrs.get(name)
            if value is not None:
                # Everything is embedded; the only links out are the scans' QC pages written beside it.
                qc_page = tag == "a" and name == "href" and re.fullmatch(r"qc/sub-[A-Za-z0-9]+_qc\.html", value)
                assert value.startswith(("data:", "#")) or qc_page, (tag, name, value[:60])
    style = text[text.index("<style>"):text.index("</style>")]
    assert "@import" not in style and "url(" not in style and "@font-face" not in style
    images = [attrs["src"] for tag, attrs in elements if tag == "img"]
    assert len(images) == 7  # 4 figures + the QC strip plots + 2 QC images
    for src in images:
        header, payload = src.split(",", 1)
        data = base64.b64decode(payload)
        assert (header == "data:image/png;base64" and data.startswith(b"\x89PNG")) or \
               (header == "data:image/svg+xml;base64" and b"<svg" in data)


def test_significant_rows_and_only_those_are_marked(report, study_results):
    _, text = report
    rows = parse(text).rows
    gc = study_results.group_comparison
    expected = gc[gc["p_fdr"] < 0.05]
    assert len(expected) >= 1, "the fixture plants a VeP difference"
    names = {region_name(r): r for r in gc["region"]}
    header = next(cells for cls, cells in rows if "MOH mean \u00b1 SD (ppm)" in cells)
    marked = [cells for cls, cells in rows if cls == "sig" and cells[1] in names and len(cells) == len(header)]
    assert sorted((names[c[1]], c[2]) for c in marked) == sorted(zip(expected["region"], expected["hemisphere"]))
    assert all(c[0] == "*" for c in marked)
    for _, row in expected.iterrows():
        cells = next(c for c in marked if (names[c[1]], c[2]) == (row["region"], row["hemisphere"]))
        assert cells[header.index("MOH mean \u00b1 SD (ppm)")] == format_mean_sd(row["mean_a"], row["sd_a"])
        assert cells[header.index("p FDR")] == format_p(row["p_fdr"])
    # Columns with one value in every row are said once, in the caption.
    assert "n MOH / CM" not in header and "In every row: n MOH / CM 12 / 12." in text
    # The list of significant results names the same rows, regions spelled out.
    for _, row in expected.iterrows():
        assert str(escape(f"{region_label(row['region'], row['hemisphere'])}: MOH vs CM")) in text


def test_relapse_tables_show_odds_auc_cross_validated_cut_off_and_hazard_ratios(report, study_results):
    _, text = report
    rows = parse(text).rows
    header = next(cells for cls, cells in rows if "OR per SD (95 % CI)" in cells)
    for column in ("AUC (95 % CI)", "cut-off (ppm)", "sensitivity (CV)", "specificity (CV)"):
        assert column in header
    first = study_results.relapse.iloc[0]
    line = next(cells for cls, cells in rows if len(cells) == len(header)
                and cells[1:3] == [region_name(first["region"]), "L"] and "0.60 (0.30\u20131.20)" in cells)
    # The fixture predates the cross-validated columns: its apparent ones are shown in their place.
    assert line[header.index("sensitivity (CV)")] == f"{first['sensitivity']:.2f}"
    survival = next(cells for cls, cells in rows if "HR per SD (95 % CI)" in cells)
    assert "log-rank p" in survival and "p FDR" in survival
    start = rows.index(next(row for row in rows if row[1] == survival))
    line = next(cells for cls, cells in rows[start:] if cells[1:3] == [region_name(first["region"]), "L"])
    assert line[survival.index("HR per SD (95 % CI)")] == "0.70 (0.40\u20131.10)"
    assert 'id="relapse-counts"' in text and "rate ratio per SD (95 % CI)" in text


def test_qc_images_embedded_and_problems_reported(report):
    _, text = report
    assert 'alt="QC: QSM sub-01"' in text and "sub-01 qc atlas" not in text
    assert 'alt="QC: overlay"' in text
    assert "Not shown (file not found)" in text and "missing.png" in text
    assert "not a PNG, JPEG, GIF or SVG image" in text
    exclusions = text[text.index('id="exclusions"'):text.index('id="methods"')]
    assert "QC image &#39;gone&#39; could not be shown" in exclusions
    for shown in ("sub-17", "missing age", "sub-25", "brain Dice 0.62 below 0.85",
                  "group CM has 11 participant(s) with age", "shorter than the T2* of deep grey matter"):
        assert shown in exclusions, shown


def test_methods_section_holds_the_generated_paragraph(report):
    _, text = report
    methods = text[text.index('id="methods"'):]
    assert methods.count("<p>") >= 4
    assert "ROMEO" in methods and "MNI152NLin2009cAsym" in methods and "Benjamini-Hochberg" in methods


def test_labels_from_the_data_are_escaped(cohort, study_results):
    regions, participants = cohort
    evil = "<script>alert(1)</script>"
    regions = regions.replace({"region": {"Pu": evil}})
    results = StudyResults(**{**study_results.__dict__,
                              "group_comparison": study_results.group_comparison.replace({"region": {"Pu": evil}}),
                              "roc_curves": {}, "km_curves": {}})
    context_text = render_report(results, regions=regions.head(0), participants=participants)
    assert evil not in context_text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in context_text


def test_report_without_optional_analyses_says_what_was_not_run(cohort, study_results):
    regions, participants = cohort
    settings = study_results.settings.model_copy(update={
        "associations": study_results.settings.associations.model_copy(update={"variables": []}),
        "relapse": study_results.settings.relapse.model_copy(update={"outcome": None, "time": None, "count": None})})
    results = StudyResults(settings=settings, table1=study_results.table1,
                           group_comparison=study_results.group_comparison,
                           associations=pd.DataFrame(), relapse=pd.DataFrame())
    context = build_context(results, regions=regions, participants=participants)
    assert [f.id for f in context.group_figures] == ["fig-groups"]
    assert context.association_figures == [] and context.relapse_figures == []
    assert context.relapse_counts is None and context.qc_images == []
    text = render_context(context)
    assert "No clinical variables were named or found" in text
    assert "No relapse outcome was named or found" in text
    assert "HR per SD" not in text
    assert "The pipeline provided no QC images" in text


def test_a_failed_render_leaves_the_previous_report_untouched(cohort, study_results, tmp_path, monkeypatch):
    regions, participants = cohort
    out = tmp_path / "report.html"
    out.write_text("previous report")

    def broken(*args, **kwargs):
        raise RuntimeError("render failed")

    monkeypatch.setattr(report_html, "render_report", broken)
    with pytest.raises(RuntimeError):
        write_report(study_results, out, regions=regions, participants=participants)
    assert out.read_text() == "previous report"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.html"]


def test_report_from_run_study_on_a_synthetic_cohort(cohort, tmp_path):
    """Integration: the statistics module's own output renders with every table filled."""
    from qsmiron.stats.analysis import run_study
    from qsmiron.stats.study import study_from_dict

    regions, participants = cohort
    study = study_from_dict({"covariates": ["age", "sex"], "groups": {"column": "group", "compare": ["MOH", "CM"]},
                             "associations": {"group": "MOH", "variables": ["sds", "hit6"]},
                             "relapse": {"group": "MOH", "outcome": "relapse", "time": "time_to_relapse",
                                         "count": "relapse_count"}})
    # The report gets every measure's results, as the group level passes them, and shows chi's.
    results = run_study(regions, participants, study)
    path = write_report(results, tmp_path / "report.html", regions=regions, participants=participants)
    text = path.read_text(encoding="utf-8")
    table = text[text.index('id="group-comparison-table"'):]
    rows = parse(table[:table.index("</table>")]).rows
    gc = results.group_comparison
    assert len(rows) - 1 == len(gc) == 8
    assert sum(1 for cls, _ in rows if cls == "sig") >= int((gc["p_fdr"] < 0.05).sum()) >= 1
    for figure_id in ("fig-groups", "fig-associations", "fig-roc", "fig-km"):
        assert f'id="{figure_id}"' in text
    assert 'id="relapse-counts"' in text
    # The statistics module's own descriptions of what it ran reach the methods section.
    methods = text[text.index('id="methods"'):]
    for key in ("group_comparison", "associations", "relapse"):
        assert str(escape(getattr(results.settings.methods, key))) in methods, key


def test_findings_list_every_fdr_significant_row_of_each_analysis_most_significant_first(cohort, study_results):
    import dataclasses

    from qsmiron.report.formatting import format_number

    regions, participants = cohort
    # The fixture's associations and relapse rows are not significant: make one row of each so.
    associations, relapse = study_results.associations.copy(), study_results.relapse.copy()
    associations.loc[associations.index[1], "p_fdr"] = 0.004
    relapse.loc[relapse.index[0], "p_fdr"] = 0.03
    study_results = dataclasses.replace(study_results, associations=associations, relapse=relapse)
    context = build_context(study_results, regions=regions, participants=participants)
    expected = []
    for kind, frame in (("group comparison", study_results.group_comparison),
                        ("association", study_results.associations), ("relapse", study_results.relapse)):
        significant = frame[frame["p_fdr"] < 0.05].sort_values("p_fdr", kind="mergesort")
        expected += [(kind, row) for _, row in significant.iterrows()]
    assert [f.analysis.split(",")[0] for f in context.findings] == [kind for kind, _ in expected]
    assert len(context.findings) >= 1
    for finding, (kind, row) in zip(context.findings, expected):
        assert finding.text.startswith(region_label(row["region"], row["hemisphere"]))
        assert finding.text.endswith(f"p FDR = {format_p(row['p_fdr'])}")
        if kind == "group comparison":
            assert f"Cohen's d = {format_number(row['cohen_d'], 2)}" in finding.text
        elif kind == "association":
            assert f"with {row['variable']} ({row['group']}): r = {format_number(row['r'], 2)}" in finding.text
        else:
            assert f"AUC {format_number(row['auc'], 2)}" in finding.text and "OR per SD" in finding.text
    assert {f.analysis.split(",")[0] for f in context.findings} == {"group comparison", "association", "relapse"}


def test_the_group_figure_names_the_summary_chi_was_analysed_by_not_the_first_measures(cohort, study_results):
    # R2* first, analysed by its median; chi by its interior-weighted median.
    regions, participants = cohort
    settings = study_results.settings.model_copy(update={
        "statistic": "median", "statistic_by_measure": {"r2star": "median", "chi": "interior_median"}})
    results = StudyResults(settings=settings, table1=study_results.table1,
                           group_comparison=study_results.group_comparison,
                           associations=pd.DataFrame(), relapse=pd.DataFrame())
    (figure,) = build_context(results, regions=regions, participants=participants).group_figures
    assert "regional interior-weighted median susceptibility" in figure.caption
