"""Voxel-wise inference end to end on a toy template, atlas and cohort (small grid, few permutations)."""

import json

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from scipy import ndimage

from qsmiron.errors import InputError
from qsmiron.records.extensions import VoxelwiseRecord
from qsmiron.stats.voxelwise import CLUSTER_COLUMNS, run_voxelwise
from qsmiron.stats.voxelwise_maps import find_template_maps

SPACE = "MNI152NLin2009cAsym"
SHAPE = (24, 20, 16)
AFFINE = np.array([[2.0, 0, 0, -24], [0, 2.0, 0, -20], [0, 0, 2.0, -16], [0, 0, 0, 1]])


def _toy_space(root):
    """A brain-shaped template and an atlas of two regions per hemisphere on a 2 mm grid."""
    grid = np.indices(SHAPE)
    centre = (np.asarray(SHAPE) - 1) / 2
    brain = (((grid - centre[:, None, None, None]) / (centre[:, None, None, None] - 1)) ** 2).sum(0) <= 1
    labels = np.zeros(SHAPE, np.int16)
    labels[6:9, 8:12, 6:10] = 1        # "Pu" left (x < 0)
    labels[15:18, 8:12, 6:10] = 101    # "Pu" right
    labels[9:11, 10:12, 5:7] = 12      # "VeP" left
    labels[13:15, 10:12, 5:7] = 112    # "VeP" right
    template = root / f"tpl-{SPACE}_res-toy_T1w.nii.gz"
    atlas = root / f"tpl-{SPACE}_atlas-toy_dseg.nii.gz"
    nib.save(nib.Nifti1Image(brain.astype(np.float32) * 100, AFFINE), template)
    nib.save(nib.Nifti1Image(labels, AFFINE), atlas)
    table = root / "toy_labels.tsv"
    pd.DataFrame({"index": [1, 101, 12, 112], "name": ["Pu_L", "Pu_R", "VeP_L", "VeP_R"]}).to_csv(
        table, sep="\t", index=False)
    return template, atlas, table, labels


def _cohort(root, labels, *, n=16, effect=0.0, seed=0, effect_label=12, sessions=False):
    """Maps: smooth noise, group MOH lower by ``effect`` ppm in one region; participants table."""
    rng = np.random.default_rng(seed)
    derivatives = root / "derivatives"
    ids = [f"sub-{i:02d}" for i in range(1, n + 1)]
    group = np.array(["MOH", "CM"] * (n // 2))
    for pid, label in zip(ids, group):
        chi = 0.05 + 0.02 * ndimage.gaussian_filter(rng.normal(size=SHAPE), 1.0) / 0.2
        if label == "MOH":
            chi[labels == effect_label] -= effect
        parts = [pid] + (["ses-1"] if sessions else [])
        folder = derivatives.joinpath(*parts, "anat")
        folder.mkdir(parents=True, exist_ok=True)
        nib.save(nib.Nifti1Image(chi.astype(np.float32), AFFINE),
                 folder / f"{'_'.join(parts)}_space-{SPACE}_Chimap.nii.gz")
    participants = root / "participants.tsv"
    pd.DataFrame({"participant_id": ids, "group": group, "age": rng.normal(42, 9, n).round(1),
                  "sex": np.where(rng.random(n) < 0.5, "M", "F"),
                  "sds": rng.normal(5, 2, n).round(1)}).to_csv(participants, sep="\t", index=False)
    return derivatives, participants


def _study(root, text='[groups]\ncompare = ["MOH", "CM"]\n[associations]\nvariables = ["sds"]\n'
                      '[voxelwise]\nn_permutations = 40\nseed = 3\n'):
    path = root / "study.toml"
    path.write_text(text)
    return path


@pytest.fixture
def toy(tmp_path):
    return (tmp_path, *_toy_space(tmp_path))


def test_voxelwise_finds_a_planted_regional_effect_and_labels_its_cluster(toy):
    root, template, atlas, table, labels = toy
    derivatives, participants = _cohort(root, labels, effect=0.05)
    out = root / "out"
    results = run_voxelwise(derivatives, participants, out, study_path=_study(root), atlas=str(atlas),
                            atlas_labels=table, template=template)
    assert pd.read_csv(out / "voxelwise_contrasts.tsv", sep="\t")["figure"].isna().all()  # the report draws them
    from qsmiron.report.voxelwise_figures import add_contrast_figures

    drawn = add_contrast_figures(results, out, atlas=str(atlas), atlas_labels=table, template=template)
    assert len(drawn) == 2
    clusters = pd.read_csv(out / "voxelwise_clusters.tsv", sep="\t")
    assert list(clusters.columns) == CLUSTER_COLUMNS
    group = clusters[clusters["contrast"] == "MOH - CM"]
    assert len(group) >= 1
    top = group.iloc[0]
    assert top["label"] == "VeP L" and top["peak_t"] < 0 and top["p_fwe"] < 0.05
    # the peak lies in the planted region (VeP L spans x = -6..-4, y = 0..2, z = -6..-4 mm)
    assert -8 <= top["peak_x_mm"] <= -2 and -2 <= top["peak_y_mm"] <= 4 and -8 <= top["peak_z_mm"] <= -2
    contrasts = pd.read_csv(out / "voxelwise_contrasts.tsv", sep="\t")
    assert set(contrasts["contrast"]) == {"MOH - CM", "sds (MOH)"}
    t_img = nib.load(out / contrasts.loc[0, "t_map"])
    assert t_img.shape == SHAPE and np.allclose(t_img.affine, AFFINE)
    assert (out / contrasts.loc[0, "figure"]).stat().st_size > 10_000
    record = VoxelwiseRecord.read(out / "voxelwise.json")
    assert record == results.record
    assert record.settings.n_permutations == 40 and "permutation" in record.methods
    assert record.n_voxels == int(nib.load(out / "voxelwise_mask.nii.gz").get_fdata().sum())
    pd.testing.assert_frame_equal(pd.DataFrame([c.model_dump() for c in record.clusters]), clusters, rtol=1e-9)
    assert record.contrasts[0].t_map == contrasts.loc[0, "t_map"] and record.contrasts[0].covariates == ["age", "sex[M]"]
    assert all((out / name).exists() for name in record.files.values())
    assert record.files["t_map:group-MOHvsCM"] == contrasts.loc[0, "t_map"]


def test_voxelwise_on_a_null_cohort_reports_no_cluster(toy):
    root, template, atlas, table, labels = toy
    derivatives, participants = _cohort(root, labels, effect=0.0, seed=5)
    study = _study(root, '[voxelwise]\nn_permutations = 40\nmask = "brain"\n[associations]\nvariables = []\n')
    results = run_voxelwise(derivatives, participants, root / "out", study_path=study, atlas=str(atlas),
                            atlas_labels=table, template=template)
    assert results.clusters.empty
    assert results.contrasts.loc[0, "min_p_fwe"] > 0.05


def test_a_map_on_another_grid_is_a_one_line_error_naming_it(toy):
    root, template, atlas, table, labels = toy
    derivatives, participants = _cohort(root, labels)
    bad = derivatives / "sub-03" / "anat" / f"sub-03_space-{SPACE}_Chimap.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((10, 10, 10), np.float32), AFFINE), bad)
    with pytest.raises(InputError, match="another grid") as error:
        run_voxelwise(derivatives, participants, root / "out", study_path=_study(root), atlas=str(atlas),
                      atlas_labels=table, template=template)
    assert error.value.path == str(bad) and "\n" not in str(error.value)


def test_a_map_whose_sidecar_names_another_space_is_refused(toy):
    root, template, atlas, table, labels = toy
    derivatives, participants = _cohort(root, labels)
    sidecar = derivatives / "sub-02" / "anat" / f"sub-02_space-{SPACE}_Chimap.json"
    sidecar.write_text(json.dumps({"SpatialReference": "MNI152NLin6Asym"}))
    with pytest.raises(InputError, match="MNI152NLin6Asym"):
        run_voxelwise(derivatives, participants, root / "out", study_path=_study(root), atlas=str(atlas),
                      atlas_labels=table, template=template)


def test_participants_without_maps_are_named_in_one_line(toy):
    root, template, atlas, table, labels = toy
    derivatives, participants = _cohort(root, labels)
    for path in (derivatives / "sub-04" / "anat").iterdir():
        path.rename(path.with_name(path.name.replace(SPACE, "MNI152NLin6Asym")))
    with pytest.raises(InputError, match="sub-04.*MNI152NLin6Asym") as error:
        run_voxelwise(derivatives, participants, root / "out", study_path=_study(root), atlas=str(atlas),
                      atlas_labels=table, template=template)
    assert error.value.path == str(participants)
    results = run_voxelwise(derivatives, participants, root / "out", study_path=_study(root), atlas=str(atlas),
                            atlas_labels=table, template=template, missing_maps="exclude")
    assert [e.participant_id for e in results.record.exclusions] == ["sub-04"]
    assert results.record.exclusions[0].reason == f"no space-{SPACE} chi map"
    assert results.contrasts.loc[0, "n"] == 15


def test_find_template_maps_reads_sessions_from_the_folders(tmp_path):
    root, template, atlas, table, labels = (tmp_path, *_toy_space(tmp_path))
    derivatives, _ = _cohort(root, labels, n=4, sessions=True)
    found = find_template_maps(derivatives, SPACE)
    assert list(found["session"]) == ["ses-1"] * 4
    assert list(found["participant_id"]) == ["sub-01", "sub-02", "sub-03", "sub-04"]


def test_voxelwise_command_errors_are_one_line_with_exit_code_2(tmp_path, capsys):
    from qsmiron.cli import main

    participants = tmp_path / "participants.tsv"
    participants.write_text("participant_id\tgroup\nsub-01\tA\nsub-02\tB\n")
    code = main(["voxelwise", str(tmp_path / "missing"), str(participants), "-o", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "derivatives folder not found" in err and len(err.splitlines()) == 1


def test_cluster_table_splits_signs_and_labels_by_the_region_holding_most_voxels():
    from qsmiron.stats.voxelwise import OUTSIDE_ATLAS, cluster_table

    shape = (12, 6, 6)
    t, logp = np.zeros(shape), np.zeros(shape)
    labels = np.zeros(shape, int)
    labels[0:3, 0:3, 0:3] = 12
    t[0:3, 0:3, 0:3], logp[0:3, 0:3, 0:3] = -4.0, 2.0     # 27 voxels in region 12, negative
    t[1, 1, 1] = -6.0
    t[6:9, 0:2, 0:2], logp[6:9, 0:2, 0:2] = 3.0, 1.5      # 12 voxels, 4 of them in region 101
    labels[6, 0:2, 0:2] = 101
    t[10, 5, 5], logp[10, 5, 5] = 5.0, 1.0               # p = 0.1: not reported
    rows = cluster_table("c", t, logp, np.ones(shape, bool), labels, {12: "VeP L", 101: "Pu R"},
                         np.diag([2.0, 2.0, 2.0, 1.0]), 0.05)
    assert [(r["cluster_id"], r["n_voxels"], r["label"]) for r in rows] == [(1, 27, "VeP L"), (2, 12, OUTSIDE_ATLAS)]
    assert rows[0]["peak_t"] == -6.0 and (rows[0]["peak_x_mm"], rows[0]["peak_y_mm"]) == (2.0, 2.0)
    assert rows[0]["p_fwe"] == pytest.approx(0.01)


def test_the_study_rule_on_flagged_registrations_leaves_their_maps_out(toy):
    """``exclude_flagged = ["flag_registration"]``: a participant whose registration qsmiron roi flagged
    (the cohort's regions.tsv beside the maps) is left out of the voxel-wise contrasts, and named."""
    root, template, atlas, table, labels = toy
    derivatives, participants = _cohort(root, labels, effect=0.0, seed=5)
    ids = [f"sub-{i:02d}" for i in range(1, 17)]
    pd.DataFrame({"participant_id": ids, "region": "Pu", "hemisphere": "L", "measure": "chi",
                  "reference": "whole_brain", "mean": 0.05,
                  "flag_registration": [pid in ("sub-01", "sub-02") for pid in ids]}).to_csv(
        derivatives / "regions.tsv", sep="\t", index=False)
    body = '[groups]\ncompare = ["MOH", "CM"]\n[associations]\nvariables = []\n[voxelwise]\nn_permutations = 20\n'
    kept = run_voxelwise(derivatives, participants, root / "all", study_path=_study(root, body),
                         atlas=str(atlas), atlas_labels=table, template=template)
    assert (kept.record.contrasts[0].n_a, kept.record.contrasts[0].n_b) == (8, 8)
    ruled = run_voxelwise(derivatives, participants, root / "rule",
                          study_path=_study(root, 'exclude_flagged = ["flag_registration"]\n' + body),
                          atlas=str(atlas), atlas_labels=table, template=template)
    assert (ruled.record.contrasts[0].n_a, ruled.record.contrasts[0].n_b) == (7, 7)  # sub-01 MOH, sub-02 CM
    named = {e.participant_id: e.reason for e in ruled.record.exclusions}
    assert set(named) == {"sub-01", "sub-02"}
    assert named["sub-01"] == "map through a registration flagged as an outlier (flag_registration)"
    from qsmiron.stats.regions import read_regions

    regions = read_regions(derivatives / "regions.tsv")
    (derivatives / "regions.tsv").unlink()
    given = run_voxelwise(derivatives, participants, root / "given",  # the group level's own table
                          study_path=_study(root, 'exclude_flagged = ["flag_registration"]\n' + body),
                          atlas=str(atlas), atlas_labels=table, template=template, regions=regions)
    assert (given.record.contrasts[0].n_a, given.record.contrasts[0].n_b) == (7, 7)
    blind = run_voxelwise(derivatives, participants, root / "blind",
                          study_path=_study(root, 'exclude_flagged = ["flag_registration"]\n' + body),
                          atlas=str(atlas), atlas_labels=table, template=template)
    assert blind.record.contrasts[0].n_a == 8
    assert any("no regions table" in warning for warning in blind.record.warnings)


def test_a_study_with_primary_regions_is_analysed_voxel_wise(toy):
    """The README's study file names primary_regions; checked against no regions table, they refused it
    ('primary_regions 'VeP', 'Pu' are not among the analysed regions ()'), and a run's group level with it."""
    root, template, atlas, table, labels = toy
    derivatives, participants = _cohort(root, labels, effect=0.0, seed=5)
    study = _study(root, 'primary_regions = ["VeP", "Pu"]\nregions = ["VeP", "Pu"]\n[associations]\nvariables = []\n'
                         '[voxelwise]\nn_permutations = 20\n')
    results = run_voxelwise(derivatives, participants, root / "out", study_path=study, atlas=str(atlas),
                            atlas_labels=table, template=template)
    assert len(results.contrasts) == 1  # the group comparison; no association asked for
