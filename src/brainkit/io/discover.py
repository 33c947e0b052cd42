"""Finding inputs: image files, DICOM folders, folders and BIDS datasets searched recursively."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from brainkit.errors import BadInputError
from brainkit.io.dicom import load_dicom_folder, looks_like_dicom
from brainkit.io.nifti import load_volume
from brainkit.io.scan import IMAGE_SUFFIXES, Scan, strip_image_suffix


@dataclass(frozen=True)
class InputItem:
    """One thing to load: an image file or a DICOM folder, with the root it was found under."""

    path: Path
    root: Path
    kind: str  # "volume", "dicom" or "missing"

    @property
    def rel_path(self) -> Path:
        """Path relative to the input root; for files without the image extension."""
        rel = self.path.relative_to(self.root) if self.path != self.root else Path(self.path.name)
        return rel.with_name(strip_image_suffix(rel.name)) if self.kind == "volume" else rel


def is_image_file(path: Path) -> bool:
    """True for NIfTI and FreeSurfer MGH/MGZ file names."""
    return path.name.lower().endswith(IMAGE_SUFFIXES)


def _walk(root: Path) -> list[InputItem]:
    items: list[InputItem] = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        here = Path(folder)
        paths = [here / name for name in sorted(files) if not name.startswith(".")]
        items += [InputItem(p, root, "volume") for p in paths if is_image_file(p)]
        if any(looks_like_dicom(p) for p in paths if not is_image_file(p)):
            items.append(InputItem(here, root, "dicom"))
    return items


def discover(inputs: list[str | Path]) -> list[InputItem]:
    """Expand command-line inputs into items, in a stable order; missing paths become failing items."""
    items: list[InputItem] = []
    for given in inputs:
        path = Path(given)
        if path.is_dir():
            items += _walk(path)
        elif path.is_file() and not is_image_file(path) and looks_like_dicom(path):
            items.append(InputItem(path.parent, path.parent.parent, "dicom"))
        elif path.is_file():
            items.append(InputItem(path, path.parent, "volume"))
        else:
            items.append(InputItem(path, path.parent, "missing"))
    return items


def load_item(item: InputItem) -> list[Scan | BadInputError]:
    """Load every scan an input item holds (one for a file, one per series for a DICOM folder).

    A series that cannot be read comes back as its error, so the other series of the folder survive;
    a file that cannot be read raises BadInputError.
    """
    if item.kind == "missing":
        raise BadInputError(item.path, "no such file or folder: check the path")
    if item.kind == "dicom":
        return load_dicom_folder(item.path, item.rel_path)
    return [load_volume(item.path, item.rel_path)]


def load(path: str | Path) -> Scan:
    """Load one scan (NIfTI, MGZ or a single-series DICOM folder); the Python API's entry point."""
    items = discover([path])
    if not items:
        raise BadInputError(path, "no image found: give a NIfTI/MGZ file or a DICOM folder")
    if len(items) > 1:
        raise BadInputError(path, f"{len(items)} images found: use brainkit.discover() for a folder")
    scans = load_item(items[0])
    if len(scans) > 1:
        raise BadInputError(path, f"{len(scans)} DICOM series in this folder: use brainkit.discover()")
    if isinstance(scans[0], BadInputError):
        raise scans[0]
    return scans[0]
