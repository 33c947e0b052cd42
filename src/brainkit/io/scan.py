"""The one small value every job works on: a 3D scan with its geometry and where it came from."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

IMAGE_SUFFIXES = (".nii.gz", ".nii", ".mgz", ".mgh", ".hdr")  # .hdr: a NIfTI pair or ANALYZE 7.5 (with its .img)


def strip_image_suffix(name: str) -> str:
    """Return a file name without its image extension (`.nii.gz`, `.nii`, `.mgz`, `.mgh`, `.hdr`)."""
    lower = name.lower()
    for suffix in IMAGE_SUFFIXES:
        if lower.endswith(suffix):
            return name[: -len(suffix)]
    return name


@dataclass
class Scan:
    """A 3D scan.

    Attributes:
        data: float32 array of shape (X, Y, Z) in the file's own voxel order.
        affine: 4x4 voxel-to-world (RAS+ mm) matrix, as in NIfTI.
        header: the source header (nibabel header, or a dict of DICOM attributes).
        source: the file or DICOM folder it was read from.
        rel_path: path of the output stem relative to the input root, without extension,
            e.g. ``sub-01/anat/sub-01_T1w``; outputs keep it so equal names never collide.
        warnings: problems that did not stop loading (e.g. a 4D file of which volume 0 is used).
        disk_dtype: the stored data type before conversion to float32 (e.g. 'int16').
    """

    data: np.ndarray
    affine: np.ndarray
    header: object
    source: Path
    rel_path: Path
    warnings: list[str] = field(default_factory=list)
    disk_dtype: str = "float32"

    @property
    def stem(self) -> str:
        """File name without extension: `sub-01_T1w` for `sub-01_T1w.nii.gz`."""
        return self.rel_path.name

    @property
    def label(self) -> str:
        """How to name the scan to a user: its file, or `<DICOM folder>/<series>` for a DICOM series."""
        return str(self.source if self.source.is_file() else self.source / self.stem)

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(int(n) for n in self.data.shape)  # type: ignore[return-value]

    @property
    def spacing(self) -> np.ndarray:
        """Voxel size in mm along each array axis."""
        return np.sqrt((self.affine[:3, :3] ** 2).sum(axis=0))

    def output_path(self, out_dir: str | Path, suffix: str = "", ext: str = ".nii.gz") -> Path:
        """Where a per-input output goes: ``out_dir/<rel dir>/<stem><suffix><ext>``."""
        return Path(out_dir) / self.rel_path.parent / f"{self.stem}{suffix}{ext}"
