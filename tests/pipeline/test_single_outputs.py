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
