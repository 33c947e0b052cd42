"""Loading, discovery, atomic writes and one test per bad-input class (built from a real scan)."""

from __future__ import annotations

import gzip
import hashlib
import os
import stat
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid

from brainkit import discover, load
from brainkit.batch import run_over_inputs
from brainkit.errors import BadInputError, BrainkitError
from brainkit.io.discover import load_item, names_below_shared_folder
from brainkit.io.info import info
from brainkit.io.table import read_table
from brainkit.io.write import atomic_path, write_nifti
from tests.conftest import blob_volume, save_nifti


@pytest.fixture
def real_image(real_t1) -> nib.Nifti1Image:
    return nib.load(str(real_t1))


def test_load_gives_float32_3d_scan_with_affine_and_relative_path(tmp_path):
    affine = np.diag([2.0, 2.0, 3.0, 1.0])
    path = save_nifti(tmp_path / "sub-01" / "anat" / "T1w.nii.gz", blob_volume().astype(np.int16), affine)
    scan = load(path)
    assert scan.data.dtype == np.float32 and scan.shape == (24, 28, 20)
    assert np.allclose(scan.affine, affine)
    assert scan.stem == "T1w"
    assert scan.disk_dtype == "int16"
    assert scan.output_path("out", "_seg") == Path("out/T1w_seg.nii.gz")


def test_folder_inputs_keep_relative_paths_so_equal_names_never_collide(tmp_path):
    for subject in ("sub-01", "sub-02"):
        save_nifti(tmp_path / "bids" / subject / "anat" / "T1w.nii.gz", blob_volume())
    items = discover([tmp_path / "bids"])
    assert [str(item.rel_path) for item in items] == ["sub-01/anat/T1w", "sub-02/anat/T1w"]
    outputs = {load(item.path).output_path("o").name for item in items}
    assert outputs == {"T1w.nii.gz"}
    assert len({str(item.rel_path) for item in items}) == 2


def test_mgz_is_read_with_its_affine(tmp_path):
    affine = np.array([[-1, 0, 0, 128], [0, 0, 1, -128], [0, -1, 0, 128], [0, 0, 0, 1]], float)
    path = tmp_path / "norm.mgz"
    nib.save(nib.MGHImage(blob_volume().astype(np.float32), affine), str(path))
    scan = load(path)
    assert np.allclose(scan.affine, affine)


def test_atomic_write_leaves_nothing_when_the_writer_fails(tmp_path):
    target = tmp_path / "out.nii.gz"
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_bytes(b"partial")
        raise RuntimeError("crash mid-write")
    assert not target.exists()
    assert list(tmp_path.iterdir()) == []
    write_nifti(target, blob_volume(), np.eye(4))
    assert target.exists() and list(tmp_path.iterdir()) == [target]




def rel_paths(inputs) -> list[str]:
    return [item.rel_path.as_posix() for item in discover(inputs)]


def test_inputs_of_one_name_in_different_folders_keep_their_folders(tmp_path, monkeypatch):
    for site in ("a", "b"):
        save_nifti(tmp_path / site / "T1.nii.gz", blob_volume())
    monkeypatch.chdir(tmp_path)
    assert rel_paths(["a/T1.nii.gz"]) == ["T1"]  # one input: below its own folder, as before
    assert rel_paths(["a/T1.nii.gz", "b/T1.nii.gz"]) == ["a/T1", "b/T1"]
    assert rel_paths(["a/T1.nii.gz", str(tmp_path / "b" / "T1.nii.gz")]) == ["a/T1", "b/T1"]  # typed either way
    assert rel_paths(["a", "b"]) == ["a/T1", "b/T1"]  # folders too
    assert [item.path for item in discover(["a/T1.nii.gz", "b/T1.nii.gz"])] == [Path("a/T1.nii.gz"),
                                                                                 Path("b/T1.nii.gz")]


def test_an_image_found_twice_is_kept_once_and_an_output_name_clash_is_a_clear_error(tmp_path):
    save_nifti(tmp_path / "a" / "T1.nii.gz", blob_volume())
    assert rel_paths([tmp_path / "a", tmp_path / "a" / "T1.nii.gz", tmp_path / "a" / "T1.nii.gz"]) == ["T1"]
    save_nifti(tmp_path / "a" / "T1.nii", blob_volume())
    first, second = discover([tmp_path / "a"])
    assert first.kind == "volume" and second.kind == "clash"
    with pytest.raises(BadInputError, match=r"T1.nii.gz: its outputs would overwrite those of .*T1.nii: rename"):
        load_item(second)

@pytest.mark.parametrize("umask", [0o022, 0o027], ids=["umask022", "umask027"])
def test_written_files_get_the_permissions_the_umask_gives_new_files(tmp_path, umask):
    old = os.umask(umask)
    try:
        target = write_nifti(tmp_path / "out.nii.gz", blob_volume(), np.eye(4))
    finally:
        os.umask(old)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~umask  # group can read a colleague's results

# ---- one test per bad-input class, built from a real scan ---------------------------------------------


def expect_bad(path: Path, fragment: str) -> None:
    with pytest.raises(BadInputError) as caught:
        load(path)
    assert fragment in str(caught.value)
    assert str(path) in str(caught.value)
    assert "\n" not in str(caught.value)


def test_empty_file(tmp_path):
    path = tmp_path / "empty.nii.gz"
    path.touch()
    expect_bad(path, "empty file")


def test_truncated_gzip(tmp_path, real_t1):
    raw = real_t1.read_bytes()
    path = tmp_path / "truncated.nii.gz"
    path.write_bytes(raw[: len(raw) // 2])
    expect_bad(path, "truncated or corrupt")


def test_corrupt_gzip(tmp_path, real_t1):
    raw = bytearray(real_t1.read_bytes())
    raw[len(raw) // 2: len(raw) // 2 + 64] = bytes(64)
    path = tmp_path / "corrupt.nii.gz"
    path.write_bytes(bytes(raw))
    expect_bad(path, "corrupt")


def test_not_an_image(tmp_path):
    path = tmp_path / "notes.nii"
    path.write_text("this is a text file, not an image\n" * 20)
    expect_bad(path, "not a NIfTI/MGZ image")


def test_2d_image(tmp_path, real_image):
    data = np.asarray(real_image.dataobj)[:, :, 40:41]
    expect_bad(save_nifti(tmp_path / "slice.nii.gz", data, real_image.affine), "2D image")
    slab = np.asarray(real_image.dataobj)[:, :, 40:42]
    expect_bad(save_nifti(tmp_path / "slab.nii.gz", slab, real_image.affine), "only 2 slices")


def test_label_maps_and_masks_are_told_apart_from_images():
    from brainkit.io.checks import check_not_label_map

    image = blob_volume((40, 44, 36), noise=3.0)
    shells = np.digitize(image, [10, 40, 70]).astype(np.int16)  # four labels in nested shells
    check_not_label_map(image, "t1.nii.gz")
    check_not_label_map(np.round(image * 2.5).astype(np.uint8), "t1_8bit.nii.gz")  # whole numbers, but noisy
    x, y, _ = np.indices(shells.shape)
    many_labels = shells + 4 * (x // 10) + 16 * (y // 11)  # 64 labels in blocks, as in an atlas
    for name, labels in [("mask.nii.gz", shells > 0), ("shells.nii.gz", shells), ("aseg.nii.gz", many_labels)]:
        with pytest.raises(BadInputError, match="looks like a label map or mask") as caught:
            check_not_label_map(labels, name)
        assert str(caught.value).startswith(name)


def test_4d_image_uses_volume_0_and_says_so(tmp_path, real_image):
    volume = np.asarray(real_image.dataobj, dtype=np.float32)
    path = save_nifti(tmp_path / "series.nii.gz", np.stack([volume, volume * 2], axis=-1), real_image.affine)
    scan = load(path)
    assert np.array_equal(scan.data, volume)
    assert scan.warnings == ["4D image with 2 volumes: volume 0 is used"]


def test_nan_values(tmp_path, real_image):
    data = np.asarray(real_image.dataobj, dtype=np.float32).copy()
    data[10:20, 10:20, 10:20] = np.nan
    expect_bad(save_nifti(tmp_path / "nan.nii.gz", data, real_image.affine), "NaN/Inf voxels")


def test_constant_image(tmp_path, real_image):
    data = np.full(real_image.shape[:3], 7, np.float32)
    expect_bad(save_nifti(tmp_path / "flat.nii.gz", data, real_image.affine), "constant")


def test_absurd_voxel_size(tmp_path, real_image):
    affine = real_image.affine.copy()
    affine[:3, :3] *= 1000  # metres written as millimetres times 1000
    expect_bad(save_nifti(tmp_path / "huge.nii.gz", np.asarray(real_image.dataobj), affine), "absurd voxel size")


def dicom_slice(path: Path, pixels: np.ndarray | None, position: float,
                orientation: tuple[float, ...] = (1, 0, 0, 0, 1, 0), **attributes) -> None:
    """One classic MR slice at `position` mm along the normal of `orientation`; `attributes` are set as given."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = MRImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = MRImageStorage
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.SeriesInstanceUID = "1.2.3.4"
    ds.SeriesNumber = 5
    ds.SeriesDescription = "t1 mprage"
    ds.Modality = "MR"
    if pixels is not None:
        ds.ImageOrientationPatient = list(orientation)
        normal = np.cross(orientation[:3], orientation[3:])
        ds.ImagePositionPatient = [float(v) for v in np.array([-10.0, -20.0, 0.0]) + position * normal]
        ds.PixelSpacing = [0.5, 0.8]  # row spacing, column spacing
        ds.Rows, ds.Columns = pixels.shape
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.BitsAllocated = ds.BitsStored = 16
        ds.HighBit = 15
        ds.PixelRepresentation = 0
        ds.PixelData = pixels.astype(np.uint16).tobytes()
    for keyword, value in attributes.items():
        setattr(ds, keyword, value)
    ds.save_as(str(path), enforce_file_format=True)


def test_dicom_series_geometry_follows_the_standard(tmp_path):
    volume = np.random.default_rng(0).integers(0, 1000, size=(6, 5, 4))  # (rows, columns, slices)
    folder = tmp_path / "dicom"
    folder.mkdir()
    for k in reversed(range(4)):  # file names in the reverse of spatial order: sorting must use positions
        dicom_slice(folder / f"im{3 - k}.dcm", volume[:, :, k], position=2.0 * k)
    scan = load(folder)
    assert scan.shape == (5, 6, 4)  # (columns, rows, slices)
    # dcm2niix's voxel order: i along a row, j up the columns (rows flipped), k ascending along the normal
    assert np.array_equal(scan.data, volume.transpose(1, 0, 2)[:, ::-1])
    expected = np.array([[-0.8, 0, 0, 10], [0, 0.5, 0, 17.5], [0, 0, 2, 0], [0, 0, 0, 1]])
    assert np.allclose(scan.affine, expected)
    world_of_first_pixel = scan.affine @ [0, 5, 0, 1]  # DICOM row 0, column 0 of the lowest slice
    assert np.allclose(world_of_first_pixel[:3], [10, 20, 0])  # = IPP (-10, -20, 0) in LPS
    assert scan.stem == "5_t1_mprage"


def test_dicom_folder_with_no_image(tmp_path):
    folder = tmp_path / "dicom"
    folder.mkdir()
    dicom_slice(folder / "report.dcm", None, 0.0)
    assert pydicom.dcmread(folder / "report.dcm").Modality == "MR"
    expect_bad(folder, "no DICOM image")


def test_gzip_wrapped_dicom_is_found(tmp_path):
    folder = tmp_path / "dicom"
    folder.mkdir()
    for k in range(3):
        dicom_slice(folder / f"im{k}.dcm", np.full((4, 4), k + 1), position=float(k))
        raw = (folder / f"im{k}.dcm").read_bytes()
        (folder / f"im{k}.dcm").unlink()
        (folder / f"im{k}.dcm.gz").write_bytes(gzip.compress(raw))
    assert load(folder).shape == (4, 4, 3)


def test_refused_series_sharing_a_number_are_named_apart(tmp_path):
    from brainkit.io.dicom.assemble import assemble_folder

    folder = tmp_path / "dicom"
    folder.mkdir()
    for k, uid in enumerate(["1.2.3.4", "1.2.3.5"]):  # two single-slice series, both numbered 5
        dicom_slice(folder / f"im{k}.dcm", np.full((4, 4), k + 1), position=0.0, SeriesInstanceUID=uid)
    refusals, _ = assemble_folder(folder)
    assert all(isinstance(r, BadInputError) for r in refusals)
    names = [Path(r.source).name for r in refusals]
    assert len(set(names)) == 2 and names[0] == "5_t1_mprage"


def test_one_bad_input_never_loses_the_batch_and_inputs_stay_untouched(tmp_path, real_t1):
    good = tmp_path / "in" / "good.nii.gz"
    good.parent.mkdir()
    good.write_bytes(real_t1.read_bytes())
    (tmp_path / "in" / "empty.nii.gz").touch()
    (tmp_path / "in" / "broken.nii.gz").write_bytes(real_t1.read_bytes()[:5000])
    before = {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in (tmp_path / "in").iterdir()}
    outcome = info([tmp_path / "in", tmp_path / "missing.nii.gz"])
    assert [row["file"] for row in outcome.results] == [str(good)]
    assert sorted(Path(f.source).name for f in outcome.failures) == ["broken.nii.gz", "empty.nii.gz",
                                                                      "missing.nii.gz"]
    assert outcome.exit_code == 1
    assert before == {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in (tmp_path / "in").iterdir()}


def test_itk_affine_is_read_in_ras(tmp_path):
    from brainkit.io.itk import read_itk_affine

    path = tmp_path / "t.txt"
    path.write_text("#Insight Transform File V1.0\n#Transform 0\nTransform: AffineTransform_double_3_3\n"
                    "Parameters: 1 0 0 0 1 0 0 0 1 1 2 3\nFixedParameters: 10 20 30\n")
    expected = np.eye(4)
    expected[:3, 3] = [-1, -2, 3]  # an LPS shift of (1, 2, 3) mm
    assert np.allclose(read_itk_affine(path), expected)
    (tmp_path / "bad.txt").write_text("Transform: x\n")
    with pytest.raises(BadInputError):
        read_itk_affine(tmp_path / "bad.txt")


def test_batch_commands_say_when_a_4d_series_is_cut_to_volume_0(tmp_path, capsys):
    series = save_nifti(tmp_path / "bold.nii.gz", np.stack([blob_volume(seed=s) for s in range(3)], axis=-1))
    outcome = run_over_inputs([series], lambda scan: scan.shape, quiet=False)
    assert outcome.results == [(24, 28, 20)]
    assert "bold.nii.gz: 4D image with 3 volumes: volume 0 is used" in capsys.readouterr().err
    run_over_inputs([series], lambda scan: scan.shape, quiet=True)
    assert "4D image" not in capsys.readouterr().err


def test_names_below_the_shared_folder_keep_equal_file_names_apart():
    assert names_below_shared_folder(["/d/p1/T1.nii.gz"]) == [Path("T1")]
    assert names_below_shared_folder(["/d/p1/T1.nii.gz", "/d/p2/T1.mgz", "/d/p2/sub"]) == [
        Path("p1/T1"), Path("p2/T1"), Path("p2/sub")]


def test_a_folder_without_images_is_a_failing_input_not_a_silent_success(tmp_path):
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "README.txt").write_text("no scans here")
    (item,) = discover([tmp_path / "notes"])
    with pytest.raises(BadInputError, match="no NIfTI, MGZ or DICOM image in this folder or below it"):
        load_item(item)


def test_a_file_whose_compression_disagrees_with_its_name_is_read_by_its_content(tmp_path):
    truth = save_nifti(tmp_path / "scan.nii.gz", blob_volume())
    plain_named_gz, gz_named_plain = tmp_path / "a.nii.gz", tmp_path / "b.nii"
    plain_named_gz.write_bytes(gzip.decompress(truth.read_bytes()))
    gz_named_plain.write_bytes(truth.read_bytes())
    for path, note in ((plain_named_gz, "not compressed though named .gz"),
                       (gz_named_plain, "gzip-compressed though named .nii")):
        scan = load(path)
        assert np.array_equal(scan.data, load(truth).data) and note in scan.warnings[0]
    (tmp_path / "c.nii").write_bytes(gzip.compress(b"not an image at all"))
    with pytest.raises(BadInputError, match="not a NIfTI/MGZ image nibabel can read"):
        load(tmp_path / "c.nii")


def test_a_folder_search_leaves_out_the_output_folder_inside_it(tmp_path):
    save_nifti(tmp_path / "data" / "scan.nii.gz", blob_volume())
    save_nifti(tmp_path / "data" / "out" / "scan_synthT2.nii.gz", blob_volume(seed=1))
    assert rel_paths([tmp_path / "data"]) == ["scan", "out/scan_synthT2"]  # what a rerun used to take as input
    assert [item.rel_path.as_posix() for item in discover([tmp_path / "data"], tmp_path / "data" / "out")] == ["scan"]


def test_a_search_of_the_output_folder_itself_leaves_out_only_what_the_command_writes(tmp_path):
    for name in ("a/scan", "a/scan_seg", "a/scan_brain", "converted/series"):
        save_nifti(tmp_path / f"{name}.nii.gz", blob_volume())
    found = discover([tmp_path], tmp_path, ("*_seg.nii.gz", "converted/*"))
    assert [item.rel_path.as_posix() for item in found] == ["a/scan", "a/scan_brain"]
    assert len(discover([tmp_path], tmp_path / "elsewhere", ("*_seg.nii.gz",))) == 4  # not the output folder
    assert len(discover([tmp_path / "a" / "scan_seg.nii.gz"], tmp_path, ("*_seg.nii.gz",))) == 1  # given by name


def test_a_broken_link_says_to_fetch_the_file_as_datalad_datasets_need(tmp_path):
    (tmp_path / "sub-01_T1w.nii.gz").symlink_to(tmp_path / ".git" / "annex" / "objects" / "key.nii.gz")
    (item,) = discover([tmp_path])
    with pytest.raises(BadInputError, match=r"a link to a file that is not there .*fetch it first \(`datalad get`"):
        load_item(item)


def test_a_table_saved_by_a_spreadsheet_reads_and_a_bad_one_fails_in_one_line(tmp_path):
    # Excel's "CSV UTF-8" starts with a byte-order mark; people type spaces after commas
    (tmp_path / "excel.csv").write_text("\ufeffinput , label\n a.nii.gz , MS\n", encoding="utf-8")
    assert read_table(tmp_path / "excel.csv", ("input", "label")) == [{"input": "a.nii.gz", "label": "MS"}]
    (tmp_path / "participants.tsv").write_text("participant_id\tgroup\nsub-01\tcontrol\n")
    assert read_table(tmp_path / "participants.tsv", ("participant_id",), "\t")[0]["group"] == "control"
    (tmp_path / "other.csv").write_text("a,b\n1,2\n")
    (tmp_path / "header_only.csv").write_text("input,label\n")
    (tmp_path / "latin1.csv").write_bytes("input,label\nscan\xe9.nii,MS\n".encode("latin-1"))
    for name, message in (("other.csv", "needs the columns input,label .* its columns are a,b"),
                          ("header_only.csv", "and a row under them"), ("missing.csv", "cannot read this CSV"),
                          ("latin1.csv", "cannot read this CSV")):
        with pytest.raises(BrainkitError, match=message):
            read_table(tmp_path / name, ("input", "label"))


def test_a_series_whose_last_file_was_cut_short_says_so(tmp_path):
    folder = tmp_path / "dicom"
    folder.mkdir()
    for k in range(5):
        dicom_slice(folder / f"im{k}.dcm", np.full((4, 4), 100 + k), position=2.0 * k)
    whole = (folder / "im4.dcm").read_bytes()
    (folder / "im4.dcm").write_bytes(whole[:whole.index(b"\xe0\x7f\x10\x00")])  # cut before the pixel data element
    scan = load(folder)
    assert scan.shape == (4, 4, 4)  # an end slice lost leaves no gap to detect: only the note tells
    assert any("1 file(s) of this folder could not be read (im4.dcm: unreadable DICOM (an image without pixel data"
               in warning and "the series is incomplete" in warning for warning in scan.warnings)
    (folder / "im2.dcm").write_bytes((folder / "im2.dcm").read_bytes()[:-10])  # now a gap as well
    with pytest.raises(BadInputError, match=r"2 file\(s\) of this folder could not be read \(im2.dcm: .*truncated"):
        load(folder)


def test_a_header_that_places_the_image_nowhere_says_left_right_is_a_guess(tmp_path):
    nib.save(nib.Nifti1Image(blob_volume(), None), tmp_path / "analyze_like.nii.gz")  # qform and sform codes 0
    nib.save(nib.AnalyzeImage(blob_volume(), np.eye(4)), tmp_path / "analyze.hdr")  # no orientation field at all
    for name in ("analyze_like.nii.gz", "analyze.hdr"):
        assert any("gives no orientation" in note for note in load(tmp_path / name).warnings), name
    assert load(save_nifti(tmp_path / "placed.nii.gz", blob_volume())).warnings == []


def test_a_nifti_pair_is_one_input_named_by_its_header(tmp_path):
    volume = blob_volume()
    nib.save(nib.Nifti1Pair(volume, np.diag([2.0, 2.0, 2.0, 1.0])), tmp_path / "spm_T1.hdr")  # and spm_T1.img
    (item,) = discover([tmp_path])
    scan = load_item(item)[0]
    assert scan.stem == "spm_T1" and np.allclose(scan.data, volume) and scan.spacing.tolist() == [2.0, 2.0, 2.0]
    assert scan.output_path(tmp_path / "out", "_seg") == tmp_path / "out" / "spm_T1_seg.nii.gz"


def test_a_bids_dataset_is_searched_without_its_derivatives_and_sourcedata(tmp_path):
    root = tmp_path / "ds"
    root.mkdir()
    (root / "dataset_description.json").write_text('{"Name": "x", "BIDSVersion": "1.9.0"}')
    save_nifti(root / "sub-01" / "anat" / "sub-01_T1w.nii.gz", blob_volume())
    save_nifti(root / "derivatives" / "seg" / "sub-01" / "anat" / "sub-01_dseg.nii.gz", blob_volume(seed=1))
    (root / "sourcedata" / "sub-01").mkdir(parents=True)
    dicom_slice(root / "sourcedata" / "sub-01" / "im0.dcm", np.zeros((4, 4)), 0.0)
    assert rel_paths([root]) == ["sub-01/anat/sub-01_T1w"]
    assert rel_paths([root / "derivatives"]) == ["seg/sub-01/anat/sub-01_dseg"]  # given itself, it is searched
    (root / "dataset_description.json").unlink()  # not a BIDS root: every folder is data
    assert len(rel_paths([root])) == 3
