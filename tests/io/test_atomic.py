import os
import stat

import pandas as pd
import pytest

from qsmiron.io.atomic import atomic_directory, atomic_path, write_json_atomic, write_tsv_atomic


def test_atomic_path_leaves_destination_untouched_when_the_writer_fails(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("previous")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert target.read_text() == "previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.txt"]


def test_atomic_outputs_get_the_permissions_a_plain_open_would_give(tmp_path):
    umask = os.umask(0o022)
    try:
        path = write_json_atomic(tmp_path / "a.json", {"x": 1})
        mode = stat.S_IMODE(path.stat().st_mode)
    finally:
        os.umask(umask)
    assert mode == 0o644


def test_tsv_writes_missing_values_as_bids_na(tmp_path):
    path = write_tsv_atomic(tmp_path / "t.tsv", pd.DataFrame({"a": [1.0, None]}))
    assert path.read_text().splitlines() == ["a", "1.0", "n/a"]


def test_atomic_directory_replaces_the_whole_set_or_nothing(tmp_path):
    target = tmp_path / "subject"
    with atomic_directory(target) as tmp:
        (tmp / "one.txt").write_text("1")
    assert (target / "one.txt").read_text() == "1"
    with pytest.raises(RuntimeError):
        with atomic_directory(target) as tmp:
            (tmp / "two.txt").write_text("2")
            raise RuntimeError("killed")
    assert sorted(p.name for p in target.iterdir()) == ["one.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["subject"]


def test_check_inputs_spared_refuses_an_input_a_hard_link_to_one_and_a_path_inside_an_input_folder(tmp_path):
    from qsmiron.errors import InputError
    from qsmiron.io.atomic import check_inputs_spared

    source = tmp_path / "dicom"
    source.mkdir()
    image = tmp_path / "a.nii.gz"
    image.write_bytes(b"data")
    os.link(image, tmp_path / "b.nii.gz")
    for output, words in ((tmp_path / "x" / ".." / "a.nii.gz", "is also an input"),
                          (tmp_path / "b.nii.gz", "is also an input"),
                          (source, "is also an input"), (source / "bids", "inside the input folder")):
        with pytest.raises(InputError, match=words) as caught:
            check_inputs_spared([tmp_path / "new.nii.gz", output], [None, image, source])
        assert caught.value.path == str(output)
    check_inputs_spared([tmp_path / "new.nii.gz", tmp_path / "bids"], [image, source, None])
