"""The command line under faults of the machine: full disks, read-only folders, closed pipes.

Each must end as one line on stderr naming the path, exit code 2, no traceback, and no
partial output; where the fault can be seen before heavy work, it is reported before it.
The faults are injected at the system-call boundary (``OSError`` with the errno the kernel
gives) because a real full or read-only file system cannot be mounted in a test.
"""

import errno
import json
import subprocess
import sys

import nibabel as nib
import numpy as np
import pytest

from qsmiron import __version__
from qsmiron.cli import main

TES = [0.004, 0.008, 0.012, 0.016]


def _small_gre(folder, shape=(32, 32, 32)):
    """A smooth field in an ellipsoid of signal: a recon runs on it in a few seconds."""
    grid = np.stack(np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij"))
    inside = (grid ** 2).sum(axis=0) < 0.7
    rng = np.random.default_rng(0)
    field_hz = 60.0 * grid[0] + 20.0 * grid[1] * grid[2]  # wraps: phase spans the circle
    magnitude = np.stack([np.where(inside, 1000.0 * np.exp(-te * 30), 5.0) for te in TES], -1)
    magnitude = magnitude + rng.normal(0, 2, magnitude.shape)
    phase = np.stack([np.angle(np.exp(2j * np.pi * field_hz * te)) for te in TES], -1)
    sidecar = {"EchoTime": TES, "MagneticFieldStrength": 3.0}
    paths = []
    for name, data in (("mag", np.abs(magnitude)), ("phase", phase)):
        path = folder / f"{name}.nii.gz"
        nib.save(nib.Nifti1Image(data.astype(np.float32), np.eye(4)), str(path))
        (folder / f"{name}.json").write_text(json.dumps(sidecar))
        paths.append(path)
    return paths


def _one_line(capsys):
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def test_a_full_disk_while_recon_writes_is_one_line_and_leaves_no_partial_output(
        tmp_path, capsys, monkeypatch):
    inputs = tmp_path / "in"
    inputs.mkdir()
    mag, phase = _small_gre(inputs)
    out_dir = tmp_path / "out"
    import qsmiron.io.nifti as nifti

    real_write, calls = nifti.write_image_file, []

    def write_until_the_disk_fills(image, filename, *, gzipped):
        calls.append(filename)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, "No space left on device", str(filename))
        real_write(image, filename, gzipped=gzipped)

    monkeypatch.setattr(nifti, "write_image_file", write_until_the_disk_fills)
    code = main(["recon", "--magnitude", str(mag), "--phase", str(phase), "-o", str(out_dir)])
    line = _one_line(capsys)
    assert code == 2 and len(calls) >= 2  # the maps are written two at a time
    assert "the disk is full" in line and str(tmp_path) in line
    leftovers = [p for p in tmp_path.rglob("*") if p.is_file() and p.parent != inputs]
    assert leftovers == []


@pytest.mark.parametrize("command", ["roi", "stats", "run"])
def test_a_read_only_output_folder_is_refused_before_any_work(command, tmp_path, capsys,
                                                                monkeypatch):
    import qsmiron.io.atomic as atomic
    import qsmiron.register.normalise as normalise

    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system", kwargs.get("dir"))

    def no_registration(*args, **kwargs):
        raise AssertionError("registration started before the output folder was checked")

    monkeypatch.setattr(atomic.tempfile, "mkstemp", read_only)
    monkeypatch.setattr(normalise, "register_to_template", no_registration)
    inputs = tmp_path / "in"
    inputs.mkdir()
    out = tmp_path / "out"
    nifti = inputs / "x.nii.gz"
    nib.save(nib.Nifti1Image(np.ones((16, 16, 16), np.float32), np.eye(4)), str(nifti))
    (inputs / "participants.tsv").write_text("participant_id\tgroup\nsub-01\tA\n")
    (inputs / "regions.tsv").write_text("participant_id\tregion\themisphere\tmean_ppm\n")
    (inputs / "sub-01").mkdir()
    args = {
        "roi": ["roi", "--chi", str(nifti), "--magnitude", str(nifti), "-o", str(out / "r.tsv")],
        "stats": ["stats", str(inputs / "regions.tsv"), str(inputs / "participants.tsv"),
                  "-o", str(out)],
        "run": ["run", str(inputs), str(out), "participant"],
    }[command]
    code = main(args)
    line = _one_line(capsys)
    assert code == 2
    assert "read-only" in line and str(out) in line
    assert not out.exists()


def test_config_piped_into_a_reader_that_closes_early_exits_quietly(tmp_path):
    # `qsmiron config | head -1`: the closed pipe is not an error of ours.
    script = ("import subprocess, sys; "
              "p = subprocess.Popen([sys.executable, '-m', 'qsmiron', 'config'], "
              "stdout=subprocess.PIPE, stderr=subprocess.PIPE); "
              "p.stdout.readline(); p.stdout.close(); err = p.stderr.read(); "
              "sys.stdout.write(str(p.wait()) + '|' + err.decode())")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            timeout=120)
    code, _, err = result.stdout.partition("|")
    assert "Traceback" not in err and "BrokenPipe" not in err, err
    assert code == "0"


def test_roi_passes_the_iron_maps_and_a_reference_mask_to_the_api(monkeypatch, tmp_path):
    """``qsmiron roi --r2star ... --reference-mask ...`` reaches ``roi_from_files`` as typed inputs."""
    import qsmiron.roi.api

    calls = []
    monkeypatch.setattr(qsmiron.roi.api, "roi_from_files", lambda **kwargs: calls.append(kwargs))
    code = main(["roi", "--chi", "chi.nii.gz", "--magnitude", "mag.nii.gz", "-o", str(tmp_path / "r.tsv"),
                 "--r2star", "R2starmap.nii.gz", "--r2star-mask", "desc-r2star_mask.nii.gz",
                 "--paramagnetic", "para.nii.gz", "--diamagnetic", "dia.nii.gz", "--reference-mask", "ref.nii.gz",
                 "--mask", "mask.nii.gz", "--brain-mask", "fieldmap.nii.gz"])
    assert code == 0
    (kwargs,) = calls
    assert kwargs["iron"].given() == {"r2star": "R2starmap.nii.gz", "r2star_mask": "desc-r2star_mask.nii.gz",
                                      "paramagnetic": "para.nii.gz", "diamagnetic": "dia.nii.gz"}
    assert kwargs["reference_mask"] == "ref.nii.gz" and kwargs["mask"] == "mask.nii.gz"
    assert kwargs["brain_mask"] == "fieldmap.nii.gz"


def test_a_warning_reaches_the_user_as_one_line_naming_the_command(tmp_path):
    """A settings file written beside earlier outputs holds the former registration.min_nmi; run as a
    user runs it (pytest records warnings itself, so the command runs in its own process)."""
    settings = tmp_path / "old.toml"
    settings.write_text("[registration]\nmin_nmi = 1.05\n")
    done = subprocess.run([sys.executable, "-m", "qsmiron", "config", str(settings)], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0
    assert done.stderr.strip().splitlines() == [
        "qsmiron config: warning: registration.min_nmi is no longer used and was ignored: a registration is "
        "flagged by its residual misalignment (registration.max_residual_shift_mm) and brain Dice; the NMI is "
        "recorded"]


def test_the_version_is_printed_without_building_the_parser():
    code = ("import sys; from qsmiron.cli import main; code = main(['--version']); "
            "print('stages imported' if 'qsmiron.recon.stages' in sys.modules else 'lean'); sys.exit(code)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.split("\n")[:2] == [f"qsmiron {__version__}", "lean"]


def test_per_echo_files_may_be_listed_after_one_option_or_given_by_repeating_it():
    """A shell glob (``--magnitude anat/*part-mag*.nii.gz``) lists the files after one option;
    before, argparse rejected all but the first as unrecognised arguments."""
    from qsmiron.cli import build_parser

    files = ["e1.nii.gz", "e2.nii.gz", "e3.nii.gz"]
    listed = build_parser().parse_args(["recon", "--magnitude", *files, "--phase", *files, "-o", "out"])
    repeated = build_parser().parse_args(["recon", *[a for f in files for a in ("--magnitude", f)],
                                          *[a for f in files for a in ("--phase", f)], "-o", "out"])
    assert listed.magnitude == repeated.magnitude == files
    assert listed.phase == repeated.phase == files


def test_recon_prints_every_warning_of_its_record_and_notes_a_map_the_data_could_not_give(
        monkeypatch, tmp_path, capsys):
    """A bipolar readout corrected, an implausible map...: in recon.json only, they went unseen."""
    from types import SimpleNamespace

    import qsmiron.pipeline.single as single
    import qsmiron.records.recon as recon_records
    from qsmiron.cli import main

    skipped = "R2* not mapped: it needs at least 3 echoes"
    record = SimpleNamespace(r2star=SimpleNamespace(skipped=skipped), chi_separation=None,
                             warnings=[skipped, "a bipolar readout; corrected (Li et al. 2015)"])
    monkeypatch.setattr(single, "reconstruct_files", lambda **kwargs: SimpleNamespace(record=tmp_path / "r.json"))
    monkeypatch.setattr(recon_records.ReconRecord, "read", classmethod(lambda cls, path: record))
    with pytest.warns(UserWarning) as caught:
        assert main(["recon", "--magnitude", "m.nii.gz", "--phase", "p.nii.gz", "-o", str(tmp_path)]) == 0
    assert [str(w.message) for w in caught] == ["a bipolar readout; corrected (Li et al. 2015)"]
    assert capsys.readouterr().err.strip() == f"qsmiron recon: note: m.nii.gz: {skipped}"


def test_invert_prints_every_warning_of_its_steps(tmp_path):
    """TFI's warning, in the sidecar only, went unseen by a user of ``qsmiron invert``."""
    from qsmiron.cli import main
    from qsmiron.recon.invert.tfi import REGIONAL_COMPRESSION_WARNING

    grid = np.indices((32, 32, 32)) - 15.5
    radius = np.sqrt((grid ** 2).sum(0))
    field = np.where(radius < 12, 0.01 * np.cos(radius / 3.0), 0).astype(np.float32)
    nib.save(nib.Nifti1Image(field, np.eye(4)), str(tmp_path / "field.nii.gz"))
    nib.save(nib.Nifti1Image((radius < 12).astype(np.uint8), np.eye(4)), str(tmp_path / "mask.nii.gz"))
    with pytest.warns(UserWarning) as caught:
        assert main(["invert", str(tmp_path / "field.nii.gz"), str(tmp_path / "mask.nii.gz"), "-o",
                     str(tmp_path / "chi.nii.gz"), "--method", "tfi"]) == 0
    assert [str(w.message) for w in caught] == [REGIONAL_COMPRESSION_WARNING]


@pytest.mark.parametrize("argv, start", [
    (["recon", "--field-strength", "three"], "qsmiron recon: error: argument --field-strength: invalid float"),
    (["run", "bids"], "qsmiron run: error: the following arguments are required"),
    (["frob"], "qsmiron: error: argument COMMAND: invalid choice: 'frob'"),
    (["invert", "--param", "threshold"], "qsmiron invert: error: argument --param: expected KEY=VALUE"),
])
def test_a_usage_error_is_one_line_naming_the_command_and_its_help(argv, start, capsys):
    with pytest.raises(SystemExit) as stopped:
        main(argv)
    err = capsys.readouterr().err
    assert stopped.value.code == 2 and err.count("\n") == 1 and err.startswith(start)
    assert err.rstrip().endswith("--help`)") and "usage:" not in err


def test_help_still_prints_the_usage(capsys):
    with pytest.raises(SystemExit) as stopped:
        main(["recon", "--help"])
    assert stopped.value.code == 0 and capsys.readouterr().out.startswith("usage: qsmiron recon")
