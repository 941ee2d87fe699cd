"""Where ``qsmiron invert`` and ``qsmiron recon`` may write: never over an input, only where a
NIfTI image can be written; a refusal is one line naming the path, exit code 2, nothing written."""

import numpy as np
import pytest
from gre_phantom import grid_affine, write_image

from qsmiron.cli import main

SHAPE = (12, 12, 10)


def _snapshot(folder):
    return {path.name: path.read_bytes() for path in sorted(folder.iterdir()) if path.is_file()}


@pytest.fixture()
def field_and_mask(tmp_path):
    """A local field (ppm) and its mask; values do not matter, nothing may run."""
    folder = tmp_path / "in"
    folder.mkdir()
    affine = grid_affine(SHAPE, (1.0, 1.0, 1.0))
    rng = np.random.default_rng(0)
    field = write_image(folder / "local.nii.gz", rng.normal(0, 0.01, SHAPE).astype(np.float32), affine)
    mask = write_image(folder / "mask.nii.gz", np.ones(SHAPE, np.uint8), affine)
    (folder / "local.json").write_text('{"Units": "ppm"}')
    return field, mask


def _refused(capsys, args, culprit):
    code = main(args)
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert len(err.splitlines()) == 1 and err.startswith(f"qsmiron {args[0]}: error: "), err
    assert culprit in err, err
    return err


# local.nii would be written with its sidecar local.json, the field's own sidecar.
@pytest.mark.parametrize("output, culprit", [("local.nii.gz", "local.nii.gz"), ("mask.nii.gz", "mask.nii.gz"),
                                             ("local.nii", "local.json")])
def test_invert_refuses_an_output_that_would_replace_an_input_or_its_sidecar(output, culprit, field_and_mask,
                                                                             capsys):
    field, mask = field_and_mask
    before = _snapshot(field.parent)
    out = field.parent / output
    err = _refused(capsys, ["invert", str(field), str(mask), "-o", str(out), "--method", "tkd"],
                   str(field.parent / culprit))
    assert "input" in err
    assert _snapshot(field.parent) == before


@pytest.mark.parametrize("given", ["mask.nii.gz", "Chimap.nii.gz"])
def test_recon_refuses_an_output_folder_where_an_output_would_replace_an_input(given, tmp_path, capsys):
    """The inputs beside the outputs, one of them named as an output (``--mask DIR/mask.nii.gz -o DIR``)."""
    affine = grid_affine(SHAPE, (1.0, 1.0, 1.0))
    rng = np.random.default_rng(0)
    mag = write_image(tmp_path / "mag.nii.gz", rng.random((*SHAPE, 3)).astype(np.float32), affine)
    phase = write_image(tmp_path / "phase.nii.gz", rng.uniform(-np.pi, np.pi, (*SHAPE, 3)).astype(np.float32), affine)
    mask = write_image(tmp_path / given, np.ones(SHAPE, np.uint8), affine)
    before = _snapshot(tmp_path)
    _refused(capsys, ["recon", "--magnitude", str(mag), "--phase", str(phase), "--mask", str(mask),
                      "--echo-times", "0.004,0.008,0.012", "--field-strength", "3", "-o", str(tmp_path)], str(mask))
    assert _snapshot(tmp_path) == before and sorted(p.name for p in tmp_path.iterdir()) == sorted(before)


@pytest.mark.parametrize("output, culprit", [("new/chi.txt", "new/chi.txt"), ("chi", "chi"),
                                             ("afile/chi.nii.gz", "afile"), ("/proc/chi.nii.gz", "/proc")])
def test_invert_refuses_an_output_it_cannot_write_as_nifti_in_one_line_leaving_nothing(output, culprit, field_and_mask,
                                                                                       tmp_path, capsys):
    field, mask = field_and_mask
    (tmp_path / "afile").write_text("a file, not a folder")
    before = sorted(tmp_path.rglob("*"))
    out = output if output.startswith("/") else str(tmp_path / output)
    where = culprit if culprit.startswith("/") else str(tmp_path / culprit)
    _refused(capsys, ["invert", str(field), str(mask), "-o", out, "--method", "tkd"], f"error: {where}: ")
    assert sorted(tmp_path.rglob("*")) == before
