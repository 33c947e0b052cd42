"""DICOM conversion: every series of the shared dcm2niix validation suites compared with dcm2niix's own output
(the suite's `Ref/` NIfTI where one matches, else the `dcm2niix` PyPI build run here), and the wall time of
converting a 3D T1 series with brainkit and with dcm2niix, side by side.

    python benchmarks/dicom_conformance.py     # writes docs/dicom_conformance.md and the `dicom` section of
                                               # docs/benchmarks.md
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import DOCS, SHARED_DATA, machine, markdown_table, write_section  # noqa: E402

from brainkit.io.dicom.conformance import compare_folder, dcm2niix_executable  # noqa: E402
from brainkit.io.discover import discover  # noqa: E402


def conformance_rows() -> list[list[str]]:
    rows = []
    for suite in sorted((SHARED_DATA / "dicom").glob("neurolabusc__dcm_qa*")):
        for item in discover([suite / "In"]):
            if item.kind != "dicom":
                continue
            for result in compare_folder(item.path, suite / "Ref"):
                where = item.path.relative_to(SHARED_DATA / "dicom").as_posix()
                error = "" if result.affine_error_mm is None else f"{result.affine_error_mm:.1e}"
                rows.append([where, result.series, result.status, result.reference, error, result.detail])
    return rows


def write_t1_series(folder: Path, volume: np.ndarray, spacing: float = 1.0) -> None:
    """A classic single-frame MR series (sagittal slices) made from a real T1 volume, one file per slice."""
    folder.mkdir(parents=True, exist_ok=True)
    series = generate_uid()
    pixels = np.clip(volume / volume.max() * 4000, 0, 4095).astype(np.uint16)
    for k in range(pixels.shape[2]):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = MRImageStorage
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = FileDataset(str(folder / f"{k:04d}.dcm"), {}, file_meta=meta, preamble=b"\0" * 128)
        ds.SOPClassUID, ds.SOPInstanceUID = MRImageStorage, meta.MediaStorageSOPInstanceUID
        ds.SeriesInstanceUID, ds.SeriesNumber, ds.ProtocolName, ds.Modality = series, 2, "T1_MPRAGE", "MR"
        ds.MRAcquisitionType = "3D"
        ds.InstanceNumber = k + 1
        ds.ImageOrientationPatient = [0, 1, 0, 0, 0, -1]
        ds.ImagePositionPatient = [-90 + k * spacing, -120.0, 100.0]
        ds.PixelSpacing = [spacing, spacing]
        ds.SliceThickness = spacing
        ds.Rows, ds.Columns = pixels.shape[1], pixels.shape[0]
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
        ds.PixelData = np.ascontiguousarray(pixels[:, :, k].T).tobytes()
        ds.save_as(str(folder / f"{k:04d}.dcm"), enforce_file_format=True)


def seconds(command: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True)
    return time.perf_counter() - start


def speed_rows(work: Path) -> list[list[str]]:
    t1 = nib.load(str(SHARED_DATA / "t1_depression" / "sub-01_T1w.nii.gz"))
    folder = work / "t1_dicom"
    write_t1_series(folder, np.asarray(t1.dataobj, dtype=np.float32))
    n_files = len(list(folder.glob("*.dcm")))
    brainkit = [sys.executable, "-m", "brainkit.cli", "convert", str(folder), "-o", str(work / "bk"), "--quiet"]
    dcm2niix = [dcm2niix_executable(), "-z", "y", "-o", str(work / "dn"), str(folder)]
    (work / "dn").mkdir()
    rows = []
    for repeat in range(3):
        ours, theirs = seconds(brainkit), seconds(dcm2niix)
        rows.append([f"run {repeat + 1}", str(n_files), f"{ours:.2f}", f"{theirs:.2f}", f"{ours / theirs:.2f}x"])
    return rows


def main() -> None:
    rows = conformance_rows()
    counts = {status: sum(row[2] == status for row in rows) for status in ("match", "same world", "refused")}
    table = markdown_table(["folder", "series", "status", "compared with", "affine error (mm)", "detail"], rows)
    (DOCS.parent / "dicom_conformance.md").write_text(
        "# DICOM conformance with dcm2niix\n\nWritten by `python benchmarks/dicom_conformance.py`. Every series of "
        "the shared dcm2niix validation suites, converted by brainkit and compared with the suite's `Ref/` NIfTI "
        "(dcm2niix's output) where one matches, else with the `dcm2niix` PyPI build run on the same folder. "
        "`match`: same shape, affine within 1e-3 mm and voxel values within rescale rounding. `same world`: the "
        "same image in world space with the voxel axes stored in another order. `refused`: brainkit refuses and "
        "says why; the detail says what dcm2niix does with it.\n\n"
        f"Totals: {counts['match']} match, {counts['same world']} same world, {counts['refused']} refused, "
        f"{len(rows) - sum(counts.values())} other.\n\n{table}\n")
    with tempfile.TemporaryDirectory() as tmp:
        speed = speed_rows(Path(tmp))
    speed_table = markdown_table(["run", "DICOM files", "brainkit convert (s)", "dcm2niix (s)", "ratio"], speed)
    write_section("dicom", "## DICOM to NIfTI (`python benchmarks/dicom_conformance.py`)\n\n"
                           f"{machine()}. A 3D T1 series (one classic file per slice, 256x256, made from "
                           "t1_depression/sub-01) converted by `brainkit convert` and by `dcm2niix -z y`, each "
                           "as a command (process start included), alternating.\n\n"
                           f"{speed_table}\n\nConformance over the shared suites: {counts['match']} match, "
                           f"{counts['same world']} same world, {counts['refused']} refused "
                           "(see `docs/dicom_conformance.md`).\n")
    print(table)
    print(speed_table)


if __name__ == "__main__":
    main()
