"""The derivative dataset's own files: its description, README and the dseg sidecar."""

from __future__ import annotations

import json

from qsmiron.io.derivative_dataset import (RunSummary, derivative_description, labels_sidecar, readme_text,
                                           write_dataset_files)
from qsmiron.io.derivatives import cohort_paths


def summary(**changes) -> RunSummary:
    values = dict(version="0.1.0", raw="../bids", recon_methods=(("dipole inversion", "tkd", "TKD"),),
                  registration="ANTs rigid + affine to MNI152NLin2009cAsym", atlas="cit168",
                  template="MNI152NLin2009cAsym", label_interpolation="genericLabel", template_maps=False,
                  r2star=False, chi_separation=False)
    return RunSummary(**{**values, **changes})


def test_readme_lists_only_the_files_the_settings_make():
    plain = readme_text(summary())
    assert "dipole inversion: `tkd`, TKD" in plain and "`../bids`" in plain and "`config.json`" in plain
    for absent in ("R2starmap", "desc-paramagnetic_Chimap", "space-MNI152NLin2009cAsym_Chimap"):
        assert absent not in plain, absent
    full = readme_text(summary(template_maps=True, r2star=True, chi_separation=True))
    for present in ("X_desc-r2star_mask.nii.gz", "X_desc-paramagnetic_Chimap.nii.gz",
                    "X_space-MNI152NLin2009cAsym_Chimap.nii.gz", "X_space-MNI152NLin2009cAsym_R2starmap.nii.gz"):
        assert present in full, present


def test_description_links_the_raw_dataset_relatively_and_takes_authors_only_as_given(tmp_path):
    bids, root = tmp_path / "bids", tmp_path / "out" / "qsmiron"
    bids.mkdir()
    (bids / "dataset_description.json").write_text(json.dumps({"Name": "raw", "DatasetDOI": "10.1/x"}))
    plain = derivative_description(bids, root)
    assert plain["DatasetLinks"] == {"raw": "../../bids"} and plain["SourceDatasets"] == [
        {"URL": "../../bids", "DOI": "10.1/x"}]
    assert "Authors" not in plain
    assert derivative_description(bids, root, authors=["A One", "B Two"])["Authors"] == ["A One", "B Two"]

    paths = cohort_paths(root)
    root.mkdir(parents=True)
    write_dataset_files(paths, bids, authors=[], readme="# readme\n")
    assert paths.readme.read_text() == "# readme\n" and "/logs" in paths.bidsignore.read_text().splitlines()
    assert json.loads(paths.dataset_description.read_text()) == plain
    assert sorted(p.name for p in root.iterdir()) == [".bidsignore", "README", "dataset_description.json"]


def test_description_takes_a_doi_only_when_the_raw_description_gives_one_as_text(tmp_path):
    bids, root = tmp_path / "bids", tmp_path / "out" / "qsmiron"
    bids.mkdir()
    assert derivative_description(bids, root)["SourceDatasets"] == [{"URL": "../../bids"}]
    for doi in (None, 7, "  "):
        (bids / "dataset_description.json").write_text(json.dumps({"Name": "raw", "DatasetDOI": doi}))
        assert derivative_description(bids, root)["SourceDatasets"] == [{"URL": "../../bids"}], doi


def test_labels_sidecar_says_where_the_labels_come_from_and_names_the_grid_only_when_known():
    sidecar = labels_sidecar(atlas="cit168", template="MNI152NLin2009cAsym", transforms=["rigid", "affine", "SyN"],
                             interpolation="genericLabel", spatial_reference="bids:raw:sub-01/anat/m.nii.gz",
                             sources=["bids::sub-01/anat/x.mat"])
    assert sidecar["SpatialReference"] == "bids:raw:sub-01/anat/m.nii.gz"
    assert "rigid + affine + SyN" in sidecar["Description"] and "genericLabel" in sidecar["Description"]
    assert "SpatialReference" not in labels_sidecar(atlas="a", template="t", transforms=["rigid"],
                                                    interpolation="nearestNeighbor", spatial_reference=None,
                                                    sources=[])
