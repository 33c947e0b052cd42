"""Finding and opening DICOM files: the `DICM` preamble, gzip-wrapped `.dcm.gz`, files without file meta."""

from __future__ import annotations

import gzip
import io
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pydicom

NON_DICOM_SUFFIXES = {
    ".json", ".txt", ".md", ".tsv", ".csv", ".npz", ".npy", ".py", ".png", ".jpg", ".bval", ".bvec", ".html",
    ".pdf", ".xml", ".sh", ".zip", ".toml", ".yaml", ".yml", ".cfg", ".nii", ".mgz", ".mgh", ".log",
}


PIXEL_KEYWORDS = {"PixelData", "FloatPixelData", "DoubleFloatPixelData"}


def open_source(path: Path) -> str | io.BytesIO:
    """A source pydicom can read: the path, or the unzipped bytes of a `.gz` file."""
    if path.name.lower().endswith(".gz"):
        with gzip.open(path, "rb") as handle:
            return io.BytesIO(handle.read())
    return str(path)


def _head(path: Path) -> bytes:
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    try:
        with opener(path, "rb") as handle:
            return handle.read(132)
    except (OSError, EOFError):
        return b""


def looks_like_dicom(path: Path) -> bool:
    """True for a DICOM file: the `DICM` preamble, or a dataset without file meta that pydicom parses."""
    name = path.name.lower()
    if name.endswith(".nii.gz") or path.suffix.lower() in NON_DICOM_SUFFIXES:
        return False
    head = _head(path)
    if head[128:132] == b"DICM":
        return True
    if len(head) < 8 or head[:2] not in (b"\x08\x00", b"\x00\x08"):  # no meta: must start with group 0008
        return False
    try:
        dataset = pydicom.dcmread(open_source(path), force=True, stop_before_pixels=True,
                                  specific_tags=["SOPClassUID"])
    except Exception:  # noqa: BLE001 - any parse failure means "not DICOM"
        return False
    return "SOPClassUID" in dataset


def missing_pixel_bytes(ds: pydicom.Dataset) -> int:
    """How many bytes of uncompressed pixel data a file lacks (0 when complete or compressed)."""
    syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    if "PixelData" not in ds or (syntax is not None and syntax.is_compressed):
        return 0
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    expected = (int(ds.get("Rows", 0)) * int(ds.get("Columns", 0)) * frames * int(ds.get("SamplesPerPixel", 1))
                * int(ds.get("BitsAllocated", 16)) // 8)
    return max(0, expected - len(ds.PixelData))


def read_dataset(path: Path) -> tuple[Path, pydicom.Dataset | None, str | None]:
    """Read a whole file once (pixels are decoded later, once); an unreadable file gives its reason."""
    try:
        dataset = pydicom.dcmread(open_source(path), force=True)
    except Exception as err:  # noqa: BLE001 - the reason is reported per file
        return path, None, f"{path.name}: unreadable DICOM ({type(err).__name__}: {err})"
    missing = missing_pixel_bytes(dataset)
    if missing:
        return path, None, f"{path.name}: unreadable DICOM (truncated: {missing} bytes of pixel data missing)"
    if "Rows" in dataset and not any(keyword in dataset for keyword in PIXEL_KEYWORDS):
        return path, None, f"{path.name}: unreadable DICOM (an image without pixel data: cut short before them?)"
    return path, dataset, None


def read_datasets(paths: list[Path], workers: int = 4) -> list[tuple[Path, pydicom.Dataset | None, str | None]]:
    """Read files in parallel threads (I/O and parsing overlap), in the given order."""
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(read_dataset, paths))
