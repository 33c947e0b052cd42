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

from brainkit.io.convert import convert  # noqa: E402
from brainkit.io.dicom import Repairs, assemble_folder  # noqa: E402
from brainkit.io.dicom.conformance import compare_folder, dcm2niix_executable, run_dcm2niix, world_agreement  # noqa: E402
from brainkit.io.discover import discover  # noqa: E402


def conformance_rows() -> tuple[list[list[str]], list[list[str]]]:
    """One row per series; and, for refused ones, what the opt-in repairs give against dcm2niix's own repair."""
    rows, repaired = [], []
    for suite in sorted((SHARED_DATA / "dicom").glob("neurolabusc__dcm_qa*")):
        for item in discover([suite / "In"]):
            if item.kind != "dicom":
                continue
            where = item.path.relative_to(SHARED_DATA / "dicom").as_posix()
            results = compare_folder(item.path, suite / "Ref")
            for result in results:
                error = "" if result.affine_error_mm is None else f"{result.affine_error_mm:.1e}"
                rows.append([where, result.series, result.status, result.reference, error, result.detail])
            if any(result.status == "refused" for result in results):
                repaired += repair_rows(item.path, where)
    return rows, repaired


def repair_rows(folder: Path, where: str) -> list[list[str]]:
    """Refused series converted with --tilt-correct --even-slices, compared in world space with dcm2niix's
    resampled output (its `_Tilt` / `_Eq` files)."""
    volumes, _ = assemble_folder(folder, Repairs(tilt=True, uneven_spacing=True))
    with tempfile.TemporaryDirectory() as tmp:
        theirs = [p for p in run_dcm2niix(folder, Path(tmp))[0] if "_Tilt" in p.name or "_Eq" in p.name]
        return [[where, volume.name, "; ".join(volume.notes), theirs[0].name if theirs else "none",
                 f"{world_agreement(volume, theirs[0]):.4f}" if theirs else ""]
                for volume in volumes if not isinstance(volume, Exception)]


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


def in_process_seconds(folder: Path, out_dir: Path) -> float:
    """brainkit's conversion alone (reading, assembling, writing), without Python's and the libraries' start-up."""
    start = time.perf_counter()
    convert([folder], out_dir)
    return time.perf_counter() - start


def speed_rows(work: Path) -> list[list[str]]:
    """One T1 series three times, then four subjects' T1 series in one command (a study-sized batch)."""
    subjects = sorted((SHARED_DATA / "t1_depression").glob("sub-*_T1w.nii.gz"))[:4]
    batch = work / "batch"
    for subject in subjects:
        write_t1_series(batch / subject.name[:6], np.asarray(nib.load(str(subject)).dataobj, dtype=np.float32))
    single = batch / subjects[0].name[:6]
    n_files = len(list(single.glob("*.dcm")))
    rows = []
    for repeat in range(3):
        ours = seconds(brainkit_command(single, work / f"bk{repeat}"))
        theirs = seconds(dcm2niix_command(single, work / f"dn{repeat}"))
        inside = in_process_seconds(single, work / f"in{repeat}")
        rows.append([f"1 series, run {repeat + 1}", str(n_files), f"{ours:.2f}", f"{inside:.2f}", f"{theirs:.2f}",
                     f"{ours / theirs:.1f}x", f"{inside / theirs:.1f}x"])
    ours = seconds(brainkit_command(batch, work / "bk_batch"))
    theirs = seconds(dcm2niix_command(batch, work / "dn_batch"))
    inside = in_process_seconds(batch, work / "in_batch")
    n_files = len(list(batch.rglob("*.dcm")))
    rows.append([f"{len(subjects)} series in one command", str(n_files), f"{ours:.2f}", f"{inside:.2f}",
                 f"{theirs:.2f}", f"{ours / theirs:.1f}x", f"{inside / theirs:.1f}x"])
    return rows


def brainkit_command(folder: Path, out_dir: Path) -> list[str]:
    return [sys.executable, "-m", "brainkit.cli", "convert", str(folder), "-o", str(out_dir), "--quiet"]


def dcm2niix_command(folder: Path, out_dir: Path) -> list[str]:
    out_dir.mkdir(parents=True, exist_ok=True)
    return [dcm2niix_executable(), "-z", "y", "-o", str(out_dir), str(folder)]


def main() -> None:
    rows, repaired = conformance_rows()
    counts = {status: sum(row[2] == status for row in rows) for status in ("match", "same world", "refused")}
    table = markdown_table(["folder", "series", "status", "compared with", "affine error (mm)", "detail"], rows)
    repair_table = markdown_table(["folder", "series", "brainkit --tilt-correct --even-slices", "dcm2niix file",
                                   "correlation in world space (head)"], repaired)
    (DOCS.parent / "dicom_conformance.md").write_text(
        "# DICOM conformance with dcm2niix\n\nWritten by `python benchmarks/dicom_conformance.py`. Every series of "
        "the shared dcm2niix validation suites, converted by brainkit and compared with the suite's `Ref/` NIfTI "
        "(dcm2niix's output) where one matches, else with the `dcm2niix` PyPI build run on the same folder. "
        "`match`: same shape, affine within 1e-3 mm and voxel values within rescale rounding. `same world`: the "
        "same image in world space with the voxel axes stored in another order. `refused`: brainkit refuses and "
        "says why; the detail says what dcm2niix does with it.\n\n"
        f"Totals: {counts['match']} match, {counts['same world']} same world, {counts['refused']} refused, "
        f"{len(rows) - sum(counts.values())} other.\n\n{table}\n\n"
        "## Refused series, repaired on request\n\nThe same series converted with `brainkit convert "
        "--tilt-correct --even-slices`, against the file dcm2niix writes after its own tilt correction and "
        "equidistant resampling. The two converters choose different grids, so the comparison is in world space: "
        "the correlation of voxel values where both images are inside the head (above -1000).\n\n"
        f"{repair_table}\n")
    with tempfile.TemporaryDirectory() as tmp:
        speed = speed_rows(Path(tmp))
    speed_table = markdown_table(["run", "DICOM files", "brainkit convert command (s)", "brainkit in-process (s)",
                                  "dcm2niix command (s)", "ratio (commands)", "ratio (in-process)"], speed)
    write_section("dicom", "## DICOM to NIfTI (`python benchmarks/dicom_conformance.py`)\n\n"
                           f"{machine()}. A 3D T1 series (MRAcquisitionType 3D, one classic sagittal file per "
                           "slice, made from t1_depression/sub-01) converted by `brainkit convert` and by "
                           "`dcm2niix -z y`, each as a command (process start included), alternating; "
                           "`in-process` times `brainkit.io.convert.convert` alone (no Python or library "
                           "start-up, about 0.35 s here, which alone is more than dcm2niix's whole run). Last "
                           "row: four subjects' series in one command, as when a study is converted.\n\n"
                           f"{speed_table}\n\nConformance over the shared suites: {counts['match']} match, "
                           f"{counts['same world']} same world, {counts['refused']} refused "
                           "(see `docs/dicom_conformance.md`).\n")
    print(table)
    print(speed_table)


if __name__ == "__main__":
    main()
