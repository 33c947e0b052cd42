"""DICOM reading on pydicom: files -> frames (vendor quirks) -> series volumes with dcm2niix's geometry."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from brainkit.errors import BadInputError
from brainkit.io.checks import check_geometry, check_values, to_3d
from brainkit.io.dicom.assemble import NO_REPAIRS, DicomVolume, Repairs, assemble_folder
from brainkit.io.dicom.files import looks_like_dicom
from brainkit.io.scan import Scan

__all__ = ["NO_REPAIRS", "DicomVolume", "Repairs", "assemble_folder", "load_dicom_folder", "looks_like_dicom",
           "volume_to_scan"]


def volume_to_scan(volume: DicomVolume, folder: Path, rel_folder: Path) -> Scan:
    """A converted series as a 3D Scan (volume 0 of a 4D series, with a warning), checked like any input."""
    where = folder / volume.name
    data, warnings = to_3d(volume.data, where)
    check_geometry(volume.affine, where)
    check_values(data, where)
    ds = volume.dataset
    sign = "int" if int(ds.get("PixelRepresentation", 0)) else "uint"
    return Scan(data=np.asarray(data, dtype=np.float32), affine=volume.affine, header=ds, source=folder,
                rel_path=rel_folder / volume.name, warnings=warnings + volume.notes,
                disk_dtype=f"{sign}{int(ds.get('BitsAllocated', 16))}")


def load_dicom_folder(folder: Path, rel_folder: Path, repairs: Repairs = NO_REPAIRS) -> list[Scan | BadInputError]:
    """Every image series in a folder (not recursive): a Scan, or the error, per series."""
    volumes, notes = assemble_folder(folder, repairs)
    if not volumes:
        detail = f" ({'; '.join(notes[:3])})" if notes else ""
        return [BadInputError(folder, f"no DICOM image series in this folder{detail}")]
    scans: list[Scan | BadInputError] = []
    for volume in volumes:
        if isinstance(volume, BadInputError):
            scans.append(volume)
            continue
        try:
            scans.append(volume_to_scan(volume, folder, rel_folder))
        except BadInputError as err:
            scans.append(err)
    return scans
