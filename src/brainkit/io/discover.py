"""Finding inputs: image files, DICOM folders, folders and BIDS datasets searched recursively."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from fnmatch import fnmatch
from pathlib import Path

from brainkit.errors import BadInputError
from brainkit.io.dicom import load_dicom_folder, looks_like_dicom
from brainkit.io.nifti import load_volume
from brainkit.io.scan import IMAGE_SUFFIXES, Scan, strip_image_suffix

MISSING = "no such file or folder: check the path"
NO_IMAGE = "no NIfTI, MGZ or DICOM image in this folder or below it: check the path"
# Below a BIDS dataset's root, as BIDS apps do: processed results and the raw data the dataset was made from
# (label maps and masks would fail as inputs; source DICOMs would be the dataset's scans a second time)
NOT_BIDS_DATA = ("derivatives", "sourcedata")


@dataclass(frozen=True)
class InputItem:
    """One thing to load: an image file or a DICOM folder, with the root its outputs' paths are kept below; an
    item that cannot be used says why in `problem`."""

    path: Path
    root: Path
    kind: str  # "volume", "dicom", "missing" or "clash" (its outputs would overwrite another input's)
    problem: str = ""

    @property
    def rel_path(self) -> Path:
        """Path relative to the input root (both taken as absolute paths, so either may be relative); for files
        without the image extension."""
        full, root = Path(os.path.abspath(self.path)), Path(os.path.abspath(self.root))
        rel = full.relative_to(root) if full != root else Path(full.name)
        return rel.with_name(strip_image_suffix(rel.name)) if self.kind == "volume" else rel


def is_image_file(path: Path) -> bool:
    """True for NIfTI and FreeSurfer MGH/MGZ file names."""
    return path.name.lower().endswith(IMAGE_SUFFIXES)


def earlier_output(path: Path, outputs: str, written: Sequence[str]) -> bool:
    """True for a file at or below the folder `outputs` whose path there matches one of the patterns `written`
    (fnmatch; `*` spans folders): what an earlier run of the same command wrote."""
    if not (outputs and written):
        return False
    rel = os.path.relpath(os.path.abspath(path), outputs)
    outside = rel == os.pardir or rel.startswith(os.pardir + os.sep)
    return not outside and any(fnmatch(Path(rel).as_posix(), pattern) for pattern in written)


def _walk(root: Path, skip: str, written: Sequence[str]) -> list[InputItem]:
    items: list[InputItem] = []
    for folder, dirs, files in os.walk(root):
        bids_root = "dataset_description.json" in files
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and not (bids_root and d in NOT_BIDS_DATA)
                         and os.path.abspath(os.path.join(folder, d)) != skip)
        here = Path(folder)
        paths = [here / name for name in sorted(files) if not name.startswith(".")]
        items += [InputItem(p, root, "volume") for p in paths
                  if is_image_file(p) and not earlier_output(p, skip, written)]
        if any(looks_like_dicom(p) for p in paths if not is_image_file(p)):
            items.append(InputItem(here, root, "dicom"))
    return items


def _expand(path: Path, skip: str, written: Sequence[str]) -> list[InputItem]:
    """The items one command-line input holds, rooted at the folder given, or at a file's own folder; a folder
    that holds no image is a failing item (exit 1, not a silent success). The folder `skip` is not searched, and
    where a search passes through it (it is the folder given) the files matching `written` are left out."""
    if path.is_dir():
        return _walk(path, skip, written) or [InputItem(path, path, "missing", NO_IMAGE)]
    if path.is_file() and not is_image_file(path) and looks_like_dicom(path):
        return [InputItem(path.parent, path.parent.parent, "dicom")]
    if path.is_file():
        return [InputItem(path, path.parent, "volume")]
    return [InputItem(path, path.parent, "missing", MISSING)]


def _without_clashes(items: list[InputItem]) -> list[InputItem]:
    """`items` with an image found twice kept once, and a second image of the same output name (`T1.nii` beside
    `T1.nii.gz`) turned into a "clash" item that says which input it would overwrite."""
    first_of: dict[tuple[str, Path], InputItem] = {}
    kept = []
    for item in items:
        first = first_of.setdefault((item.kind, item.rel_path), item)
        if first is item or item.problem:
            kept.append(item)
        elif os.path.abspath(first.path) != os.path.abspath(item.path):
            kept.append(replace(item, kind="clash", problem=f"its outputs would overwrite those of {first.path}: "
                                                            "rename one of them, or run them separately"))
    return kept


def discover(inputs: list[str | Path], outputs: str | Path | None = None,
             written: Sequence[str] = ()) -> list[InputItem]:
    """Expand command-line inputs into items, in a stable order; missing paths become failing items.

    Several inputs keep their paths below the folder they share (one input: below itself, or a file's folder), so
    two `T1.nii.gz` in different folders never share an output (`a/T1_seg.nii.gz`, `b/T1_seg.nii.gz`). A search
    of a folder leaves out the folder `outputs` (a command's -o) inside it: a rerun of `brainkit run . -o out`
    must not take its own results for inputs. When `outputs` is the folder searched (`brainkit segment data -o
    data`), the files there that match `written`, the command's own output names (`*_seg.nii.gz`), are left out
    for the same reason; a file given by name is always taken. Below a BIDS dataset's root, `derivatives/` and
    `sourcedata/` are not searched (give such a folder itself to process it)."""
    skip = os.path.abspath(outputs) if outputs is not None else ""
    items = [item for given in inputs for item in _expand(Path(given), skip, written)]
    if len(inputs) > 1 and items:
        shared = Path(os.path.commonpath([os.path.abspath(item.root) for item in items]))
        items = [replace(item, root=shared) for item in items]
    return _without_clashes(items)


def names_below_shared_folder(paths: list[str | Path]) -> list[Path]:
    """Each path below the folder that all of them share, without its image extension, to name outputs by:
    `p1/T1` and `p2/T1` for `/d/p1/T1.nii.gz` and `/d/p2/T1.nii.gz`; a lone path gives its stem."""
    full = [Path(os.path.abspath(path)) for path in paths]
    shared = Path(os.path.commonpath([path.parent for path in full])) if full else Path()
    return [path.relative_to(shared).with_name(strip_image_suffix(path.name)) for path in full]


def load_item(item: InputItem) -> list[Scan | BadInputError]:
    """Load every scan an input item holds (one for a file, one per series for a DICOM folder).

    A series that cannot be read comes back as its error, so the other series of the folder survive;
    a file that cannot be read raises BadInputError.
    """
    if item.problem:
        raise BadInputError(item.path, item.problem)
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
