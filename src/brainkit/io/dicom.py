"""DICOM series reading on pydicom: grouping, slice sorting in space, affine, pixel scaling.

Geometry follows the DICOM standard (C.7.6.2.1.1): voxel (i, j, k) with i along a row (column index),
j down the columns (row index) and k along the slice normal maps to LPS world coordinates through
ImageOrientationPatient, PixelSpacing and ImagePositionPatient; NIfTI wants RAS, so x and y are negated.
"""

from __future__ import annotations

import gzip
import io
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pydicom
from pydicom.errors import InvalidDicomError

from brainkit.errors import BadInputError
from brainkit.io.checks import check_geometry, check_values
from brainkit.io.scan import Scan

NON_DICOM_SUFFIXES = {
    ".json", ".txt", ".md", ".tsv", ".csv", ".npz", ".npy", ".py", ".png", ".jpg", ".bval", ".bvec",
    ".html", ".pdf", ".xml", ".sh", ".zip", ".toml", ".yaml", ".yml", ".cfg", ".gitignore",
}
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


def _open(path: Path) -> object:
    """Return a readable source for a DICOM file, unwrapping `.dcm.gz`."""
    if path.name.lower().endswith(".gz"):
        with gzip.open(path, "rb") as handle:
            return io.BytesIO(handle.read())
    return str(path)


def looks_like_dicom(path: Path) -> bool:
    """True if a file is DICOM: the `DICM` preamble, or a file-meta-less dataset pydicom can parse."""
    name = path.name.lower()
    if path.suffix.lower() in NON_DICOM_SUFFIXES or name.endswith((".nii", ".nii.gz", ".mgz", ".mgh")):
        return False
    try:
        if name.endswith(".gz"):
            with gzip.open(path, "rb") as handle:
                head = handle.read(132)
        else:
            with open(path, "rb") as handle:
                head = handle.read(132)
    except (OSError, EOFError):
        return False
    if head[128:132] == b"DICM":
        return True
    if len(head) < 8:
        return False
    try:
        dataset = pydicom.dcmread(_open(path), force=True, stop_before_pixels=True, specific_tags=["SOPClassUID"])
    except Exception:  # noqa: BLE001 - any parse failure means "not DICOM"
        return False
    return "SOPClassUID" in dataset


def _read_header(path: Path) -> tuple[Path, pydicom.Dataset | None, str | None]:
    try:
        return path, pydicom.dcmread(_open(path), force=True, stop_before_pixels=True), None
    except (InvalidDicomError, OSError, EOFError, ValueError, AttributeError) as err:
        return path, None, f"{path.name}: unreadable DICOM ({err})"


def _series_key(ds: pydicom.Dataset) -> tuple:
    orientation = tuple(np.round(np.asarray(ds.get("ImageOrientationPatient", [0] * 6), float), 3))
    echo = ds.get("EchoNumbers", None)
    return (str(ds.get("SeriesInstanceUID", "")), str(echo), orientation)


def _series_stem(ds: pydicom.Dataset) -> str:
    number = ds.get("SeriesNumber", "")
    description = str(ds.get("SeriesDescription", "") or ds.get("ProtocolName", "") or "series")
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in description).strip("_") or "series"
    return f"{safe}_{number}" if number != "" else safe


def _pixels(path: Path) -> np.ndarray:
    """Decoded, rescaled pixel data of one single-frame file, as (columns, rows) float32."""
    ds = pydicom.dcmread(_open(path), force=True)
    array = ds.pixel_array.astype(np.float32)
    slope = float(ds.get("RescaleSlope", 1) or 1)
    intercept = float(ds.get("RescaleIntercept", 0) or 0)
    array = array * slope + intercept
    if str(ds.get("PhotometricInterpretation", "")) == "MONOCHROME1":
        array = array.max() + array.min() - array
    return array.T


def _affine(first: pydicom.Dataset, slice_step: np.ndarray) -> np.ndarray:
    orientation = np.asarray(first.ImageOrientationPatient, float)
    row_spacing, col_spacing = (float(v) for v in first.PixelSpacing)
    affine = np.eye(4)
    affine[:3, 0] = orientation[:3] * col_spacing
    affine[:3, 1] = orientation[3:] * row_spacing
    affine[:3, 2] = slice_step
    affine[:3, 3] = np.asarray(first.ImagePositionPatient, float)
    return LPS_TO_RAS @ affine


def _stack_series(folder: Path, files: list[tuple[Path, pydicom.Dataset]]) -> tuple[np.ndarray, np.ndarray]:
    """Sort single-frame slices along the normal, check spacing, and return (data, RAS affine)."""
    first = files[0][1]
    if int(first.get("NumberOfFrames", 1) or 1) > 1:
        raise BadInputError(folder, "enhanced multi-frame DICOM: not supported yet, convert it with dcm2niix first")
    if "ImageOrientationPatient" not in first or "ImagePositionPatient" not in first:
        raise BadInputError(folder, "DICOM series without ImageOrientationPatient/PositionPatient: not a volume")
    if "MOSAIC" in [str(v).upper() for v in first.get("ImageType", [])]:
        raise BadInputError(folder, "Siemens mosaic series: not supported yet, convert it with dcm2niix first")
    orientation = np.asarray(first.ImageOrientationPatient, float)
    normal = np.cross(orientation[:3], orientation[3:])
    positions = np.array([np.asarray(ds.ImagePositionPatient, float) for _, ds in files])
    order = np.argsort(positions @ normal)
    files = [files[i] for i in order]
    positions = positions[order]
    if len(files) < 2:
        raise BadInputError(folder, "a single DICOM slice is not a volume")
    steps = np.diff(positions, axis=0)
    distances = steps @ normal
    if np.any(distances < 1e-4):
        raise BadInputError(folder, "several slices share one position: mixed series or repeated acquisitions")
    if np.ptp(distances) > 0.01 * max(distances.mean(), 1e-6) + 1e-3:
        raise BadInputError(folder, "inconsistent slice spacing (missing slices?): refusing to build a volume")
    step = steps.mean(axis=0)
    if np.linalg.norm(np.cross(step / np.linalg.norm(step), normal)) > 1e-3:
        raise BadInputError(folder, "gantry tilt (slices are not stacked along their normal): not supported")
    with ThreadPoolExecutor(max_workers=4) as pool:
        slices = list(pool.map(_pixels, [path for path, _ in files]))
    if len({s.shape for s in slices}) != 1:
        raise BadInputError(folder, "slices of different sizes in one series")
    return np.stack(slices, axis=-1), _affine(files[0][1], step)


def load_dicom_folder(folder: Path, rel_folder: Path) -> list[Scan | BadInputError]:
    """Read every image series in a folder (not recursive): a Scan, or the error, per series."""
    paths = sorted(p for p in folder.iterdir() if p.is_file() and looks_like_dicom(p))
    with ThreadPoolExecutor(max_workers=4) as pool:
        headers = list(pool.map(_read_header, paths))
    groups: dict[tuple, list[tuple[Path, pydicom.Dataset]]] = defaultdict(list)
    for path, ds, _ in headers:
        if ds is not None and "Rows" in ds:
            groups[_series_key(ds)].append((path, ds))
    if not groups:
        raise BadInputError(folder, "no DICOM image in this folder: point brainkit at a folder of image slices")
    return [_load_series(folder, rel_folder, files) for files in groups.values()]


def _load_series(folder: Path, rel_folder: Path, files: list[tuple[Path, pydicom.Dataset]]) -> Scan | BadInputError:
    first = files[0][1]
    source = folder / _series_stem(first)
    try:
        data, affine = _stack_series(source, files)
        check_geometry(affine, source)
        check_values(data, source)
    except BadInputError as err:
        return err
    sign = "int" if int(first.get("PixelRepresentation", 0)) else "uint"
    return Scan(data=data, affine=affine, header=first, source=folder, rel_path=rel_folder / _series_stem(first),
                disk_dtype=f"{sign}{int(first.get('BitsAllocated', 16))}")
