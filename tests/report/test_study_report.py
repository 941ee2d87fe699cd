"""The report of a real study analysis: it opens with the answers, shows every measure and every
optional section, offers each table as TSV and the methods as Markdown with references."""

from __future__ import annotations

import re
import urllib.parse

from markupsafe import escape

from qsmiron.report.html import OPTIONAL_SECTION_IDS, SECTION_IDS
from qsmiron.report.names import region_name


def _section(text: str, section_id: str) -> str:
    start = text.index(f'<section id="{section_id}"')
    return text[start:text.index("</section>", start)]


def test_sections_appear_in_page_order_with_the_answers_first(study_report):
    _, text, _ = study_report
    order = [text.index(f'id="{section}"') for section in SECTION_IDS[:-1]]
    assert order == sorted(order)
    for section in OPTIONAL_SECTION_IDS:
        assert f'<section id="{section}"' in text, section
    # The appendix of settings comes last and speaks plain words, not configuration keys.
    settings = _section(text, "settings")
    assert text.index('<section id="settings"') > text.index('<section id="methods"')
    assert "groups.group_a" not in text and "relapse.min_epv" not in settings
    assert "Primary regions (confirmatory family)" in settings and "ventral pallidum (VeP)" in settings


def test_answers_give_effect_size_ci_family_and_minimal_detectable_effect(study_report):
    _, text, results = study_report
    answers = _section(text, "answers")
    group = results.answers.group_difference
    assert group.confirmatory and 'id="fig-forest-group"' in answers
    assert "Confirmatory: the primary regions ventral pallidum (VeP), putamen (Pu)" in answers
    first = group.cohen_d[0]
    assert f"Cohen&#39;s d {first.estimate:.2f} (" in answers
    assert f"the smallest |d| detectable with 80 % power at two-sided \u03b1 0.05 is {group.min_detectable_d:.2f}" \
        in answers
    assert 'id="fig-forest-association"' in answers and "sds" in answers
    relapse = results.answers.relapse
    assert "cross-validated sensitivity" in answers or all(a.cutoff_ppm is None for a in relapse.auc)
    if relapse.too_few_events:
        assert "Too few events" in answers
    for figure_id in ("fig-forest-group", "fig-forest-association"):
        figure = answers[answers.index(f'id="{figure_id}"'):]
        assert "<figcaption>" in figure[:figure.index("</figure>")]


def test_associations_show_a_heatmap_with_the_table_folded_below(study_report):
    _, text, results = study_report
    section = _section(text, "associations")
    heatmap, fold = section.index('id="fig-heatmap"'), section.index("<details")
    assert heatmap < fold < section.index('id="associations-table"')
    chi = results.associations[results.associations["measure"] == "chi"]
    assert f"Table of all {len(chi)} associations" in section


def test_r2star_has_its_own_compact_results_in_its_unit(study_report):
    _, text, results = study_report
    section = _section(text, "measures")
    assert "R2* (s\u207b\u00b9)" in section and 'id="group-comparison-r2star-table"' in section
    rows = results.group_comparison[results.group_comparison["measure"] == "r2star"]
    first = rows.iloc[0]
    # The difference is shown in s^-1, the unit of the table's diff columns; R2* has no ppb columns.
    assert first[["diff_ppb", "diff_ci_low_ppb", "diff_ci_high_ppb"]].isna().all()
    low, high = first["diff_ci_low"], first["diff_ci_high"]
    joint = " to " if min(low, high) < 0 else "\u2013"
    assert f"{first['diff']:.2f} ({low:.2f}{joint}{high:.2f})" in section
    # The main sections show chi only.
    assert "s\u207b\u00b9" not in _section(text, "group-comparison")


def test_optional_sections_show_site_effects_slopes_outliers_and_clusters(study_report):
    _, text, _ = study_report
    harmonisation = _section(text, "harmonisation")
    assert "F before" in harmonisation and "0.006" in harmonisation and "0.890" in harmonisation
    longitudinal = _section(text, "longitudinal")
    assert "slope difference (ppb per unit of months)" in longitudinal and "0.40" in longitudinal
    normative = _section(text, "normative")
    assert "not a population norm" in normative and "sub-03" in normative and "-3.10" in normative
    voxelwise = _section(text, "voxelwise")
    assert "-12, 4, -8" in voxelwise and "VeP_LH" in voxelwise
    assert 'id="fig-voxelwise-group-MOHvsCM"' in voxelwise and 'src="data:image/png;base64,' in voxelwise


def test_every_table_with_rows_offers_its_data_as_tsv(study_report):
    _, text, results = study_report
    links = dict(re.findall(r'href="(data:text/tab-separated-values;charset=utf-8,[^"]*)" download="([^"]+)"', text))
    names = set(links.values())
    for name in ("table1.tsv", "group_comparison.tsv", "associations.tsv", "relapse.tsv",
                 "harmonise_site_effects.tsv", "longitudinal.tsv", "voxelwise_clusters.tsv"):
        assert name in names, name
    uri = next(uri for uri, name in links.items() if name == "relapse.tsv")
    tsv = urllib.parse.unquote(uri.split(",", 1)[1])
    header = tsv.splitlines()[0].split("\t")
    assert {"sensitivity_cv", "specificity_cv", "auc_corrected", "logistic_model"} <= set(header)
    assert len(tsv.splitlines()) == 1 + int((results.relapse["measure"] == "chi").sum())


def test_methods_cite_what_ran_with_dois_and_copy_as_markdown(study_report):
    _, text, results = study_report
    methods = _section(text, "methods")
    references = methods[methods.index('<ol class="references">'):methods.index("</ol>")]
    for doi in ("10.2307/2531595", "10.1002/mrm.30006", "10.1093/biostatistics/kxj037",
                "10.1016/j.neuroimage.2008.03.061", "10.1109/TSMC.1979.4310076"):
        assert doi in references, doi
    firth = results.relapse["logistic_model"].astype(str).str.contains("Firth", case=False).any()
    assert ("10.1093/biomet/80.1.27" in references) == firth
    assert "QSM consensus reporting checklist" in methods and 'id="checklist-table"' in methods
    markdown = methods[methods.index('<pre id="methods-markdown">'):]
    assert "## Methods" in markdown and "### References" in markdown
    assert 'download="methods.md"' in methods
    assert str(escape(region_name("VeP"))) in text
