import json

import numpy as np
import pytest

from qsmiron.errors import InputError
from qsmiron.io.nifti import b0_direction_voxel, box_through_affine, load_nifti, save_nifti, voxel_size_mm


def rotation_about_x(degrees):
    t = np.deg2rad(degrees)
    return np.array([[1, 0, 0], [0, np.cos(t), -np.sin(t)], [0, np.sin(t), np.cos(t)]])


def test_b0_direction_is_z_for_an_axial_ras_affine():
    affine = np.diag([0.5, 0.5, 2.0, 1.0])
    assert np.allclose(b0_direction_voxel(affine), [0, 0, 1])


def test_b0_direction_of_lps_storage_flips_no_z_sign():
    affine = np.diag([-1.0, -1.0, 1.0, 1.0])
    assert np.allclose(b0_direction_voxel(affine), [0, 0, 1])


def test_b0_direction_for_a_20_degree_oblique_slab():
    affine = np.eye(4)
    affine[:3, :3] = rotation_about_x(20) @ np.diag([1.0, 1.0, 2.0])
    b0 = b0_direction_voxel(affine)
    # B0 (world z) seen from axes rotated by +20 degrees about x.
    assert np.allclose(b0, [0, np.sin(np.deg2rad(20)), np.cos(np.deg2rad(20))])
    assert voxel_size_mm(affine) == pytest.approx((1.0, 1.0, 2.0))


def test_save_then_load_round_trips_data_affine_and_sidecar(tmp_path):
    data = np.random.default_rng(0).normal(size=(4, 5, 6)).astype(np.float32)
    affine = np.diag([1.0, 2.0, 3.0, 1.0])
    path = save_nifti(tmp_path / "x.nii.gz", data, affine, sidecar={"EchoTime": 0.004})
    volume = load_nifti(path)
    assert np.allclose(volume.data, data)
    assert np.allclose(volume.affine, affine)
    assert volume.sidecar == {"EchoTime": 0.004}
    assert json.loads((tmp_path / "x.json").read_text()) == {"EchoTime": 0.004}
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_a_sidecar_that_cannot_be_written_leaves_the_previous_image_and_sidecar(tmp_path):
    path = tmp_path / "chi.nii.gz"
    save_nifti(path, np.ones((3, 3, 3), np.float32), np.eye(4), sidecar={"Units": "ppm", "run": 1})
    with pytest.raises(ValueError):
        save_nifti(path, np.zeros((3, 3, 3), np.float32), np.eye(4), sidecar={"bad": float("nan")})
    volume = load_nifti(path)
    assert np.all(volume.data == 1) and volume.sidecar == {"Units": "ppm", "run": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["chi.json", "chi.nii.gz"]  # no temporaries


def test_load_nifti_names_the_file_when_it_is_not_an_image(tmp_path):
    bad = tmp_path / "bad.nii.gz"
    bad.write_text("not an image")
    with pytest.raises(InputError, match="bad.nii.gz"):
        load_nifti(bad)


def _gzipped_image(tmp_path):
    path = tmp_path / "image.nii.gz"
    rng = np.random.default_rng(0)
    save_nifti(path, rng.normal(size=(20, 20, 20)).astype(np.float32), np.eye(4))
    return path


def test_a_flipped_byte_inside_the_gzip_stream_is_named_as_corruption(tmp_path):
    # nibabel alone decodes such a file into garbage voxels: the CRC is never reached.
    path = _gzipped_image(tmp_path)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x55
    path.write_bytes(bytes(data))
    with pytest.raises(InputError, match="truncated or corrupt gzip") as caught:
        load_nifti(path)
    assert caught.value.path == str(path)


def test_a_gzip_file_cut_short_is_named_as_truncated(tmp_path):
    path = _gzipped_image(tmp_path)
    path.write_bytes(path.read_bytes()[: 2 * len(path.read_bytes()) // 3])
    with pytest.raises(InputError, match="truncated or corrupt gzip"):
        load_nifti(path)


def test_an_intact_gzip_file_loads_the_same_voxels_as_nibabel(tmp_path):
    import nibabel as nib

    path = _gzipped_image(tmp_path)
    assert np.array_equal(load_nifti(path).data, nib.load(str(path)).get_fdata(dtype=np.float32))


@pytest.mark.parametrize("affine, words", [
    (np.diag([1.0, 1.0, 12.0, 1.0]), "not a plausible MRI"),
    (np.array([[1.0, 1, 0, 0], [0, 0, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]]), "singular"),
    (np.zeros((4, 4)), "zero length"),
])
def test_load_nifti_refuses_a_geometry_no_scanner_writes(tmp_path, affine, words):
    import nibabel as nib

    path = tmp_path / "bad.nii"
    header = nib.Nifti1Header()
    header.set_data_shape((4, 4, 4))
    header.set_data_dtype(np.float32)
    header["sform_code"], header["qform_code"] = 1, 0
    header["srow_x"], header["srow_y"], header["srow_z"] = affine[0], affine[1], affine[2]
    nib.save(nib.Nifti1Image(np.ones((4, 4, 4), np.float32), None, header), str(path))
    with pytest.raises(InputError, match=words) as caught:
        load_nifti(path)
    assert caught.value.path == str(path)


def test_box_through_affine_holds_every_mapped_point_of_the_box():
    """The bounds of a box mapped by a rotation, scaling and shift: every mapped point of the
    box lies inside them and some reach each face (an axis-aligned case checked exactly)."""
    rng = np.random.default_rng(3)
    angle = np.deg2rad(25.0)
    affine = np.eye(4)
    affine[:3, :3] = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0],
                               [0, 0, 1]]) @ np.diag([1.0, 1.5, 2.0])
    affine[:3, 3] = [10.0, -4.0, 7.0]
    lower, upper = np.array([-3.0, 0.0, 2.0]), np.array([5.0, 4.0, 9.0])
    first, last = box_through_affine(lower, upper, affine)
    points = lower + rng.random((20000, 3)) * (upper - lower)
    mapped = points @ affine[:3, :3].T + affine[:3, 3]
    assert np.all(mapped >= first - 1e-9) and np.all(mapped <= last + 1e-9)
    np.testing.assert_allclose(mapped.min(axis=0), first, atol=0.1)
    np.testing.assert_allclose(mapped.max(axis=0), last, atol=0.1)
    scaled = np.diag([2.0, 3.0, 4.0, 1.0])
    scaled[:3, 3] = [1.0, 2.0, 3.0]
    first, last = box_through_affine(lower, upper, scaled)
    np.testing.assert_allclose(first, [-5.0, 2.0, 11.0])
    np.testing.assert_allclose(last, [11.0, 14.0, 39.0])


def _with_zero_pixdim(path, *, sform: bool):
    """A NIfTI whose stored pixdim is 0 (written byte by byte: nibabel's writer recomputes it)."""
    import gzip

    import nibabel as nib

    nib.save(nib.Nifti1Image(np.ones((6, 6, 6), np.float32), np.diag([1.5, 1.5, 2.0, 1.0])), str(path))
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rb") as stream:
        raw = bytearray(stream.read())
    header = nib.Nifti1Header(binaryblock=bytes(raw[:348]), check=False)
    header["pixdim"][1:4] = 0
    header["sform_code"] = 2 if sform else 0
    header["qform_code"] = 1
    raw[:348] = header.binaryblock
    with opener(path, "wb") as stream:
        stream.write(bytes(raw))
    return path


@pytest.mark.parametrize("name", ["zero.nii", "zero.nii.gz"])
def test_a_zero_pixdim_without_sform_is_refused_in_one_line_naming_the_file(tmp_path, caplog, name):
    path = _with_zero_pixdim(tmp_path / name, sform=False)
    with pytest.raises(InputError, match="pixdim") as error:
        load_nifti(path, with_sidecar=False)
    assert str(path) in str(error.value)
    assert not [r for r in caplog.records if r.name == "nibabel.global"]  # nor nibabel's own notice


@pytest.mark.parametrize("name", ["zero.nii", "zero.nii.gz"])
def test_a_zero_pixdim_beside_an_sform_reads_the_geometry_from_the_sform_silently(tmp_path, caplog, name):
    """nibabel logs its fix of the header on stderr (a second line beside our one-line errors)."""
    volume = load_nifti(_with_zero_pixdim(tmp_path / name, sform=True), with_sidecar=False)
    assert volume.voxel_size_mm == pytest.approx((1.5, 1.5, 2.0))
    assert not [r for r in caplog.records if r.name == "nibabel.global"]


def test_complex_voxels_are_refused_naming_the_file_instead_of_dropping_the_imaginary_part(tmp_path):
    import nibabel as nib

    from qsmiron.io.gre import load_gre

    path = tmp_path / "complex.nii.gz"
    nib.save(nib.Nifti1Image((np.ones((6, 6, 6, 3)) * (1 + 2j)).astype(np.complex64), np.eye(4)), str(path))
    with pytest.raises(InputError, match="complex values") as error:
        load_nifti(path)
    assert str(path) in str(error.value)
    with pytest.raises(InputError, match="complex values"):
        load_gre(path, path, echo_times_s=(0.004, 0.01, 0.016), field_strength_t=3.0)


def test_the_header_only_check_refuses_what_open_image_refuses(tmp_path):
    """``qsmiron validate`` without --check-data reads headers only (``open_header``)."""
    import nibabel as nib

    from qsmiron.io.nifti import open_header

    complex_path = tmp_path / "complex.nii.gz"
    nib.save(nib.Nifti1Image(np.ones((6, 6, 6), np.complex64), np.eye(4)), str(complex_path))
    with pytest.raises(InputError, match="complex values"):
        open_header(complex_path)
    with pytest.raises(InputError, match="pixdim"):
        open_header(_with_zero_pixdim(tmp_path / "zero.nii.gz", sform=False))
    assert open_header(_with_zero_pixdim(tmp_path / "ok.nii", sform=True)).shape == (6, 6, 6)


def test_outputs_with_sidecars_adds_the_json_beside_each_image_only(tmp_path):
    from qsmiron.io.nifti import outputs_with_sidecars

    outputs = [tmp_path / "sub-1_Chimap.nii.gz", tmp_path / "plain.nii", tmp_path / "regions.tsv"]
    assert outputs_with_sidecars(outputs) == [*outputs, tmp_path / "sub-1_Chimap.json", tmp_path / "plain.json"]
    assert outputs_with_sidecars([]) == []


def test_quiet_nibabel_restores_the_logger_level_when_two_threads_overlap():
    """Magnitude and phase are read in two threads: A enters, B enters, A leaves, B leaves. The
    logger must be quiet while either is inside and back to its level once both have left."""
    import threading

    import nibabel as nib

    from qsmiron.io.nifti import quiet_nibabel

    logger = nib.imageglobals.logger
    before = logger.level
    b_inside, a_left = threading.Event(), threading.Event()
    levels = {}

    def thread_b():
        with quiet_nibabel():
            b_inside.set()
            a_left.wait(5)
            levels["b after a left"] = logger.level

    with quiet_nibabel():
        other = threading.Thread(target=thread_b)
        other.start()
        assert b_inside.wait(5)
        levels["both inside"] = logger.level
    a_left.set()
    other.join(5)
    assert levels == {"both inside": 60, "b after a left": 60}
    assert logger.level == before
