"""ANTs repeats itself exactly: one ITK thread (pinned by the recon and roi functions before any
ANTs work when ``pipeline.reproducible_registration`` is on) and a seed that reaches
antsRegistration."""

import os
import subprocess
import sys
import textwrap

import pytest

from qsmiron.config import QsmironConfig
from qsmiron.errors import InputError
from qsmiron.register.ants_backend import ANTS_SEED_ENV, ITK_THREADS_ENV, ants_random_seed


def test_the_seed_reaches_ants_inside_the_block_and_the_callers_value_comes_back(monkeypatch):
    monkeypatch.setenv(ANTS_SEED_ENV, "77")
    with ants_random_seed(1):
        assert os.environ[ANTS_SEED_ENV] == "1"
    assert os.environ[ANTS_SEED_ENV] == "77"
    monkeypatch.delenv(ANTS_SEED_ENV)
    with ants_random_seed(3):
        assert os.environ[ANTS_SEED_ENV] == "3"
    assert ANTS_SEED_ENV not in os.environ


def _config(reproducible: bool) -> QsmironConfig:
    config = QsmironConfig()
    config.pipeline.reproducible_registration = reproducible
    return config


@pytest.mark.parametrize("reproducible", [True, False])
def test_recon_and_roi_pin_itk_to_one_thread_before_reading_only_when_asked(reproducible, tmp_path, monkeypatch):
    """Pinned before the inputs are read (the missing input fails after it): ITK takes the
    variable only at its first threaded filter."""
    from qsmiron.pipeline.single import reconstruct_files
    from qsmiron.roi.api import roi_from_files

    missing = tmp_path / "missing.nii.gz"
    for call in (lambda: reconstruct_files(magnitude=[missing], phase=[missing], out_dir=tmp_path / "recon",
                                           settings=_config(reproducible)),
                 lambda: roi_from_files(missing, missing, tmp_path / "roi" / "regions.tsv",
                                        settings=_config(reproducible))):
        monkeypatch.setenv(ITK_THREADS_ENV, "2")
        with pytest.raises(InputError):
            call()
        assert os.environ[ITK_THREADS_ENV] == ("1" if reproducible else "2")


@pytest.mark.realdata
def test_the_template_brain_of_the_real_philips_scan_is_identical_run_after_run(philips_dicom_dir, tmp_path):
    """In a fresh process with ITK free to use every core, as a user's ``qsmiron recon`` starts.
    Before the pin two runs differed in 4 630 voxels of the registered brain."""
    from qsmiron.io.dicom import convert_dicom_to_bids

    convert_dicom_to_bids(philips_dicom_dir / "dicom_classic", tmp_path / "bids", subject="p")
    magnitude = sorted((tmp_path / "bids" / "sub-p" / "anat").glob("*echo-1_part-mag*.nii.gz"))[0]
    script = textwrap.dedent(f"""
        import numpy as np, nibabel as nib
        from qsmiron.pipeline.single import template_brain
        from qsmiron.recon.settings import ReconSettings
        from qsmiron.register.ants_backend import pin_itk_to_one_thread
        image = nib.load({str(magnitude)!r})
        magnitude = np.asarray(image.dataobj, np.float32)
        pin_itk_to_one_thread()
        first, info = template_brain(magnitude, image.affine, ReconSettings())
        second, _ = template_brain(magnitude, image.affine, ReconSettings())
        assert info["used"], info
        print(int((first != second).sum()), int((first >= 0.5).sum()))
    """)
    environment = {k: v for k, v in os.environ.items() if k != ITK_THREADS_ENV}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=environment,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    differing, brain_voxels = map(int, done.stdout.split())
    assert brain_voxels > 10_000
    assert differing == 0


def test_a_configuration_written_with_the_former_nmi_threshold_still_loads_with_a_warning(tmp_path):
    """Configurations are written beside every output to re-run it; one from before the residual
    shift holds ``registration.min_nmi``."""
    from qsmiron.config import load_config

    path = tmp_path / "config.toml"
    path.write_text("[registration]\nmin_nmi = 1.05\nmax_residual_shift_mm = 2.0\n")
    with pytest.warns(FutureWarning, match="min_nmi is no longer used"):
        config = load_config(path)
    assert config.registration.max_residual_shift_mm == 2.0
    assert "min_nmi" not in config.registration.model_dump()


def test_a_failed_registration_is_one_exception_with_itks_description_and_nothing_on_stderr(monkeypatch, capfd):
    """ITK wrote its exception dump (a dozen lines) on the terminal before qsmiron's own error."""
    import ants.internal

    from qsmiron.register.ants_backend import RegistrationFailed, run_ants_registration

    def failing(args):
        os.write(2, b"Exception Object caught: \n\nitk::ExceptionObject (0x1)\nLocation: \"unknown\" \n"
                    b"Description: ITK ERROR: Compute(): Total Mass of the image was zero.\n\n")
        return 1

    def succeeding(args):
        os.write(2, b"a note of ANTs\n")
        return 0

    monkeypatch.setattr(ants.internal, "get_lib_fn", lambda name: failing)
    with pytest.raises(RegistrationFailed, match="exit code 1: ITK ERROR: Compute\\(\\): Total Mass of the image "
                                                 "was zero.$"):
        run_ants_registration(["--dimensionality", "3"])
    assert capfd.readouterr().err == ""
    monkeypatch.setattr(ants.internal, "get_lib_fn", lambda name: succeeding)
    run_ants_registration(["--dimensionality", "3"])
    assert capfd.readouterr().err == "a note of ANTs\n"
