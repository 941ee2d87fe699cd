"""``qsmiron demo``: simulate, run everything, print where the report is; re-runs reuse the work."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from qsmiron import cli
from qsmiron.config import load_config
from qsmiron.errors import InputError
from qsmiron.pipeline import demo


def test_demo_command_simulates_runs_everything_and_prints_the_report(monkeypatch, tmp_path, capsys,
                                                                     e2e_settings):
    simulation, processing = e2e_settings
    monkeypatch.setattr(demo, "DEMO_SIMULATION", simulation)
    monkeypatch.setattr(demo, "DEMO_OVERRIDES", processing)
    out = tmp_path / "demo"
    assert cli.main(["demo", str(out), "--subjects", "4", "--seed", "1", "--n-procs", "1"]) == 0
    captured = capsys.readouterr()
    report = out / "qsmiron" / "group" / "report.html"
    assert f"report: {report.resolve()}" in captured.out
    assert report.stat().st_size > 1000
    assert "simulating 4 subjects" in captured.err
    assert "qsmiron: group level on 4 participant(s)\n" in captured.err
    html = report.read_text()
    assert "No reconstruction records" not in html and "Of 4 subjects" in html
    # The QC table links a QC page per subject; the simulated truth is checked in the report and printed.
    assert 'id="qc-table"' in html and html.count('href="qc/sub-') == 4
    assert all((report.parent / "qc" / f"sub-0{n}_qc.html").is_file() for n in range(1, 5))
    assert 'id="truth"' in html and 'id="truth-regions-table"' in html and 'href="#truth"' in html
    assert "check against the planted truth" in captured.err and "planted MOH - CM" in captured.err
    assert "step recon: 4 subjects" in captured.err and "step qc: 4 subjects" in captured.err
    regions = pd.read_csv(out / "truth_regions.tsv", sep="\t")
    assert set(regions["hemisphere"]) == {"L", "R"}
    # The mammillary nuclei (3-6 voxels at 3 mm) lie on the brain's ventral surface, outside the
    # QSM mask that background removal erodes: not measured at this resolution.
    assert regions.loc[regions["region"] != "MN", "n"].between(3, 4).all()
    assert (regions.set_index("region").loc["Pu", "r"] > 0.5).all()  # the putamen follows the truth
    assert (regions.set_index("region").loc["Pu", "slope"] > 0.3).all() and "<th>slope</th>" in html
    assert "each region's interior-weighted median" in captured.err  # the summary the statistics analysed, named

    written = json.loads((out / "demo_config.json").read_text())
    assert written["demo"] == {"n_subjects": 4, "seed": 1, "n_procs": 1}
    assert written["simulation"]["voxel_size_mm"] == simulation["voxel_size_mm"]
    assert written["processing_overrides"] == processing
    config = load_config(out / "qsmiron_config.json")
    assert config.recon.inversion.method == processing["recon"]["inversion"]["method"]
    assert load_config(out / "qsmiron" / "config.json") == config
    assert (out / "bids" / "derivatives" / "truth" / "regions_truth.tsv").exists()
    regions = (out / "qsmiron" / "regions.tsv").read_text().splitlines()
    assert len({line.split("\t")[0] for line in regions[1:]}) == 4

    # Again into the same folder: the cohort and every subject are reused.
    assert cli.main(["demo", str(out), "--subjects", "4", "--seed", "1", "--n-procs", "1"]) == 0
    err = capsys.readouterr().err
    assert "already there (reused)" in err and "all 4 subject(s) already complete" in err

    # Another seed into the same folder is refused rather than mixed in.
    with pytest.raises(InputError, match="holds another simulated cohort"):
        demo.run_demo(out, n_subjects=4, seed=2)


def test_demo_settings_differ_from_the_defaults_only_where_declared():
    from qsmiron.config import QsmironConfig

    config = demo.demo_config().model_dump(mode="json")
    default = QsmironConfig().model_dump(mode="json")
    for section, overrides in demo.DEMO_OVERRIDES.items():
        for key, value in overrides.items():
            assert config[section][key] == value
            config[section][key] = default[section][key]
    assert config == default


def test_readme_names_every_file_the_demo_writes(tmp_path):
    """The README's demo and QC paragraphs name the demo's outputs as the code builds them."""
    from pathlib import Path

    from qsmiron.io.derivatives import demo_paths, qc_figure_paths, qc_page_link, study_paths

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    paths = demo_paths(tmp_path / "demo_output")
    for path in (paths.bids, paths.demo_config, paths.processing_config, paths.study, paths.truth_effects,
                 paths.truth_regions):
        assert f"`{path.name}" in readme, path.name
    report = study_paths(paths.out_dir / "qsmiron" / "group").report
    assert f"`{report.relative_to(paths.out_dir).as_posix()}`" in readme
    assert f"`{qc_page_link('sub-X')}`".replace("qc/", "group/qc/") in readme
    assert "qsmiron demo demo_output" in readme
    figures = qc_figure_paths(tmp_path, "sub-X")
    assert f"`{figures.qc_chimap.name}`" in readme and f"`{figures.qc_fields.name}`" in readme
    makefile = (Path(__file__).resolve().parents[2] / "Makefile").read_text(encoding="utf-8")
    assert "DEMO_DIR ?= demo_output" in makefile and "qsmiron demo $(DEMO_DIR)" in makefile


@pytest.mark.parametrize("args, culprit", [(["--subjects", "0"], "n_subjects"), (["--seed", "-1"], "seed"),
                                           ([], "afile")])
def test_demo_refuses_bad_arguments_or_an_unusable_folder_in_one_line_making_nothing(args, culprit, tmp_path,
                                                                                    capsys):
    (tmp_path / "afile").write_text("a file, not a folder")
    out = tmp_path / "afile" if culprit == "afile" else tmp_path / "demo"
    assert cli.main(["demo", str(out), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("qsmiron demo: error: ") and culprit in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"]


def test_demo_refuses_a_folder_whose_files_it_would_replace_before_writing_any(tmp_path, capsys):
    """The demo wrote study.toml, demo_config.json and qsmiron_config.json first: a user's study.toml in
    the folder was replaced, and an earlier demo's files too before 'holds another simulated cohort'."""
    from qsmiron.simulate.cohort import simulation_record_path

    mine = tmp_path / "project"
    mine.mkdir()
    (mine / "study.toml").write_text("covariates = []\n")
    assert cli.main(["demo", str(mine), "--subjects", "4"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"qsmiron demo: error: {mine}: is not empty and holds no earlier demo") and \
        len(err.splitlines()) == 1, err
    assert [p.name for p in mine.iterdir()] == ["study.toml"] and (mine / "study.toml").read_text() == \
        "covariates = []\n"

    earlier = tmp_path / "earlier"
    record = simulation_record_path(earlier / "bids")
    record.parent.mkdir(parents=True)
    record.write_text(json.dumps({"seed": 5, "n_subjects": 4, "settings": {}}))
    (earlier / "demo_config.json").write_text('{"demo": {"seed": 5}}')
    with pytest.raises(InputError, match="holds another simulated cohort"):
        demo.run_demo(earlier, n_subjects=4, seed=1)
    assert (earlier / "demo_config.json").read_text() == '{"demo": {"seed": 5}}'
    assert sorted(p.name for p in earlier.iterdir()) == ["bids", "demo_config.json"]
