"""DICOM conversion against dcm2niix on every shared validation suite, refusals, quirks and sidecars."""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest

from brainkit.io.convert import convert
from brainkit.io.dicom import Repairs, assemble_folder
from brainkit.io.dicom.assemble import even_slices
from brainkit.io.dicom.conformance import compare_folder, dcm2niix_executable, run_dcm2niix, world_agreement
from brainkit.io.dicom.frames import decoded_pixels, mask_unused_high_bits
from brainkit.io.discover import discover

pytestmark = pytest.mark.skipif(dcm2niix_executable() is None, reason="dcm2niix (PyPI) is not installed")

def suite_folders(shared: Path) -> list[tuple[Path, Path]]:
    folders = []
    for suite in sorted((shared / "dicom").glob("neurolabusc__dcm_qa*")):
        folders += [(item.path, suite / "Ref") for item in discover([suite / "In"]) if item.kind == "dicom"]
    return folders


def test_every_series_of_the_validation_suites_matches_dcm2niix_or_is_refused_with_a_reason(shared_data):
    results = [c for folder, ref in suite_folders(shared_data) for c in compare_folder(folder, ref)]
    assert len(results) >= 40
    for result in results:
        if result.status == "refused":
            assert "spacing" in result.detail or "tilt" in result.detail, result  # the GE CT only
            assert "distance varies" in result.detail, result  # dcm2niix flags the same problem
        else:
            assert result.status == "match", result
    matched = [r for r in results if r.status == "match"]
    assert all(r.affine_error_mm <= 1e-3 for r in matched)
    assert sum(r.reference.startswith("Ref:") for r in matched) >= 30  # compared with the suites' own references


def test_a_3d_acquisition_is_stored_nearest_ras_like_dcm2niix(tmp_path):
    from tests.test_io import dicom_slice

    volume = np.random.default_rng(1).integers(0, 1000, size=(6, 5, 4))  # (rows, columns, slices)
    sagittal = (0, 1, 0, 0, 0, -1)  # rows run posterior, columns inferior: stored as 2D, that is P S R... order
    for acquisition in ("2D", "3D"):
        folder = tmp_path / acquisition
        folder.mkdir()
        for k in range(4):
            dicom_slice(folder / f"im{k}.dcm", volume[:, :, k], 2.0 * k, sagittal, MRAcquisitionType=acquisition,
                        InPlanePhaseEncodingDirection="ROW")
        (comparison,) = compare_folder(folder)
        assert comparison.status == "match", comparison  # against the dcm2niix PyPI build on the same folder
        written, _, _ = convert([folder], tmp_path / f"out{acquisition}")
        codes = "".join(nib.aff2axcodes(written[0].volume.affine))
        phase_axis = json.loads(written[0].sidecar.read_text())["PhaseEncodingAxis"]
        # the row direction (anterior-posterior) is voxel axis i in DICOM order, j once stored nearest RAS
        assert (codes, phase_axis) == (("PSR", "i") if acquisition == "2D" else ("RAS", "j")), acquisition


def test_united_imaging_mosaics_are_skipped_with_a_note_not_misread(tmp_path):
    from tests.test_io import dicom_slice

    for k in range(3):
        dicom_slice(tmp_path / f"im{k}.dcm", np.zeros((8, 8)), 0.0, Manufacturer="UIH")
        ds = pydicom.dcmread(tmp_path / f"im{k}.dcm")
        ds.add_new((0x0065, 0x1050), "DS", "4")  # NumberOfImagesInGrid: 4 tiles of 4x4 in each 8x8 image
        ds.save_as(tmp_path / f"im{k}.dcm")
    volumes, notes = assemble_folder(tmp_path)
    assert volumes == []
    assert len(notes) == 3 and "United Imaging mosaic (4 slices in one image) is not supported" in notes[0]


def test_failing_cases_get_a_clear_error_and_no_output(shared_data, tmp_path):
    failing = shared_data / "dicom" / "icometrix__dicom2nifti" / "tests" / "data" / "failing"
    written, failures, _ = convert([failing], tmp_path)
    assert written == []
    assert not list(tmp_path.rglob("*.nii*"))
    reasons = " ".join(f.message for f in failures)
    for case, words in {"gantrytilting": "gantry tilt", "notavolume": "one position", "slicecount": "only 2 slices",
                        "sliceorientation": "only 2 slices"}.items():
        assert any(case in f.source for f in failures), case
        assert words in reasons, words


def test_tilt_correct_resamples_onto_an_orthogonal_grid(shared_data, tmp_path):
    folder = shared_data / "dicom" / "icometrix__dicom2nifti" / "tests" / "data" / "failing" / "gantrytilting"
    volumes, _ = assemble_folder(folder / "001", Repairs(tilt=True))
    assert len(volumes) == 1 and not isinstance(volumes[0], Exception)
    rotation = volumes[0].affine[:3, :3] / np.linalg.norm(volumes[0].affine[:3, :3], axis=0)
    assert np.allclose(rotation.T @ rotation, np.eye(3), atol=1e-6)
    assert "tilt" in volumes[0].notes[0]


def test_uneven_slices_are_interpolated_onto_even_ones_only_when_asked():
    distances = np.array([0.0, 1.0, 2.0, 4.0, 6.0])
    data = np.broadcast_to(distances[None, None, :, None], (2, 2, 5, 1))  # each slice's value is its position
    even, spacing = even_slices(data, distances)
    assert spacing == 1.0 and even.shape == (2, 2, 7, 1)
    assert np.allclose(even[0, 0, :, 0], np.arange(7))  # linear along the stack


def test_ge_ct_with_two_slice_spacings_and_tilt_converts_when_both_repairs_are_asked(shared_data, tmp_path):
    from tests.test_cli import brainkit

    folder = shared_data / "dicom" / "neurolabusc__dcm_qa_ct" / "In" / "GE"
    refused = brainkit("convert", str(folder), "-o", str(tmp_path / "plain"), "--quiet")
    assert refused.returncode == 1 and "--even-slices" in refused.stdout + refused.stderr
    result = brainkit("convert", str(folder), "-o", str(tmp_path / "repaired"), "--quiet", "--tilt-correct",
                      "--even-slices")
    assert result.returncode == 0, result.stderr
    (written,) = (tmp_path / "repaired").rglob("*.nii.gz")
    notes = json.loads(written.with_name(written.name.replace(".nii.gz", ".json")).read_text())["ConversionNotes"]
    assert "interpolated onto 134 slices 1.08 mm apart" in notes[0] and "tilt of 18.5" in notes[1]
    (volume,), _ = assemble_folder(folder, Repairs(tilt=True, uneven_spacing=True))
    assert np.allclose(nib.load(written).affine, volume.affine, atol=1e-3)
    theirs = [p for p in run_dcm2niix(folder, tmp_path / "dcm2niix")[0] if "Tilt_Eq" in p.name]
    assert world_agreement(volume, theirs[0]) > 0.99  # dcm2niix's own tilt-corrected, equidistant output


def test_gzip_wrapped_and_transfer_syntax_variants_give_identical_volumes(shared_data, tmp_path):
    source = shared_data / "dicom" / "neurolabusc__dcm_qa_ts" / "In"
    plain = tmp_path / "plain"
    zipped = tmp_path / "zipped"
    plain.mkdir()
    zipped.mkdir()
    shutil.copy(source / "1.dcm", plain / "1.dcm")
    (zipped / "1.dcm.gz").write_bytes(gzip.compress((source / "1.dcm").read_bytes()))
    (first,), _ = assemble_folder(plain)
    (second,), _ = assemble_folder(zipped)
    assert np.array_equal(first.data, second.data) and np.allclose(first.affine, second.affine)
    variants, _ = assemble_folder(source)  # 9 transfer syntaxes of one image
    assert len(variants) == 9
    assert all(np.array_equal(v.data, variants[0].data) for v in variants)


def test_junk_high_bits_are_masked_and_signed_12_bit_is_sign_extended():
    ds = pydicom.Dataset()
    ds.BitsStored, ds.BitsAllocated, ds.PixelRepresentation = 12, 16, 0
    assert mask_unused_high_bits(np.array([0xF0FF], np.uint16), ds)[0] == 0x0FF
    ds.PixelRepresentation = 1
    assert mask_unused_high_bits(np.array([0x0FFF], np.uint16), ds)[0] == -1


def test_monochrome1_is_inverted(shared_data):
    ds = pydicom.dcmread(shared_data / "dicom" / "pydicom__pydicom-data" / "data_store" / "data" / "RG3_J2KR.dcm")
    assert ds.PhotometricInterpretation == "MONOCHROME1"
    raw = ds.pixel_array.astype(np.int64)
    pixels = decoded_pixels(ds)[0].astype(np.int64)
    assert np.array_equal(pixels, raw.max() + raw.min() - raw)


def test_truncated_and_meta_less_files(shared_data, tmp_path):
    files = shared_data / "dicom" / "pydicom__pydicom" / "src" / "pydicom" / "data" / "test_files"
    folder = tmp_path / "mixed"
    folder.mkdir()
    shutil.copy(files / "MR_truncated.dcm", folder / "MR_truncated.dcm")
    shutil.copy(files / "no_meta.dcm", folder / "no_meta.dcm")
    volumes, notes = assemble_folder(folder)
    assert any("MR_truncated.dcm: unreadable DICOM" in note for note in notes)
    assert all(isinstance(v, Exception) for v in volumes)  # single slices: refused, not crashed


def test_sidecar_carries_dcm2niix_keys_with_the_same_values(shared_data, tmp_path):
    folder = shared_data / "dicom" / "neurolabusc__dcm_qa" / "In" / "Orientation" / "ax" / "axasc35"
    written, failures, _ = convert([folder], tmp_path)
    assert not failures
    ours = json.loads(written[0].sidecar.read_text())
    reference = json.loads((shared_data / "dicom" / "neurolabusc__dcm_qa" / "Ref" / "ax_asc_35sl_6.json").read_text())
    for key in ("Manufacturer", "ManufacturersModelName", "MagneticFieldStrength", "RepetitionTime", "EchoTime",
                "FlipAngle", "SliceThickness", "ProtocolName", "ImageOrientationPatientDICOM", "SliceTiming"):
        assert key in ours, key
        if isinstance(reference.get(key), float | int):
            assert ours[key] == pytest.approx(reference[key], abs=1e-3), key
        elif isinstance(reference.get(key), list):
            # SliceTiming: Siemens MosaicRefAcqTimes as stored; dcm2niix re-spaces them (up to 2.5 ms here)
            assert np.allclose(ours[key], reference[key], atol=3e-3 if key == "SliceTiming" else 1e-3), key
        elif key in reference:
            assert ours[key] == reference[key], key
    assert ours["ConversionSoftware"] == "brainkit"


def test_convert_cli_writes_nifti_and_json_per_series_under_the_relative_path(shared_data, tmp_path):
    from tests.test_cli import brainkit

    suite = shared_data / "dicom" / "neurolabusc__dcm_qa_nih" / "In"
    result = brainkit("convert", str(suite), "-o", str(tmp_path), "--quiet")
    assert result.returncode == 0, result.stderr
    outputs = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*.nii.gz"))
    assert "20180918GE/mr_0004/4_DCM2NIIX_regression_test.nii.gz" in outputs
    assert len(outputs) == 6
    assert all((tmp_path / o.replace(".nii.gz", ".json")).exists() for o in outputs)


def test_an_input_without_dicom_fails_with_its_reason_and_the_others_still_convert(shared_data, tmp_path):
    scans = tmp_path / "nifti_only"
    scans.mkdir()
    shutil.copy(shared_data / "t1_depression" / "sub-01_T1w.nii.gz", scans)
    series = shared_data / "dicom" / "neurolabusc__dcm_qa_ts" / "In"
    written, failures, _ = convert([scans, series, tmp_path / "nowhere"], tmp_path / "out")
    assert written and all(item.nifti.is_relative_to(tmp_path / "out") for item in written)
    reasons = {Path(failure.source).name: failure.message for failure in failures}
    assert set(reasons) == {"nifti_only", "nowhere"}
    assert "no DICOM here or below" in reasons["nifti_only"] and "no such file" in reasons["nowhere"]
