"""NIfTI and FreeSurfer MGH/MGZ reading through nibabel, with clear errors for broken files."""

from __future__ import annotations

import gzip
import logging
import os
import zlib
from contextlib import contextmanager
from pathlib import Path

import nibabel as nib
import numpy as np

from brainkit.errors import BadInputError
from brainkit.io.checks import check_geometry, check_values, to_3d
from brainkit.io.scan import Scan

GZIP_MAGIC = b"\x1f\x8b"


@contextmanager
def nibabel_logs_silenced():
    """nibabel's logger raised to CRITICAL for the block (its own suppressor never gives the handlers back)."""
    logger = nib.imageglobals.logger
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)


def open_image(path: Path) -> tuple[nib.spatialimages.SpatialImage, list[str]]:
    """nibabel's image of `path`, and notes. A file whose compression disagrees with its name (a `.nii.gz` that
    is not gzipped, a gzipped `.nii`: renamed files) is read by its content, with a note, where nibabel would
    refuse it."""
    with open(path, "rb") as handle:
        gzipped = handle.read(2) == GZIP_MAGIC
    if gzipped == path.name.lower().endswith((".gz", ".mgz")):
        return nib.load(str(path)), []
    content = gzip.decompress(path.read_bytes()) if gzipped else path.read_bytes()
    kinds = (nib.MGHImage,) if path.name.lower().endswith((".mgz", ".mgh")) else (nib.Nifti1Image, nib.Nifti2Image)
    for kind in kinds:
        try:
            with nibabel_logs_silenced():  # it logs each header check that a wrong kind fails
                image = kind.from_bytes(content)
            break
        except (nib.spatialimages.HeaderDataError, nib.wrapstruct.WrapStructError, ValueError):
            continue
    else:
        raise nib.filebasedimages.ImageFileError(f"{'gzipped' if gzipped else 'uncompressed'} content that is not "
                                                 f"{' or '.join(kind.__name__ for kind in kinds)}")
    state = "gzip-compressed" if gzipped else "not compressed"
    return image, [f"{state} though named {path.suffix}: read by its content (rename it to match)"]


def unplaced(image: nib.spatialimages.SpatialImage) -> list[str]:
    """A note when the header places the image nowhere (an ANALYZE 7.5 header, or NIfTI qform and sform codes 0):
    nibabel then assumes ANALYZE's order (first axis stored right to left), so left and right are a guess."""
    header = image.header
    if isinstance(header, nib.Nifti1Header):
        placed = bool(header["qform_code"] or header["sform_code"])
    else:
        placed = not isinstance(header, nib.AnalyzeHeader)
    if placed:
        return []
    return ["the header gives no orientation (ANALYZE, or NIfTI qform and sform codes 0): read in ANALYZE's "
            "radiological order, so left-right is a guess (`brainkit orient` checks it)"]


def load_volume(path: Path, rel_path: Path, check: bool = True) -> Scan:
    """Read a NIfTI/MGZ file as a 3D float32 Scan; raise BadInputError with advice if unusable."""
    if path.is_symlink() and not path.exists():
        raise BadInputError(path, f"a link to a file that is not there ({os.readlink(path)}); in a DataLad or "
                                  "git-annex dataset, fetch it first (`datalad get`, `git annex get`)")
    if not path.exists():
        raise BadInputError(path, "file not found: check the path")
    if path.stat().st_size == 0:
        raise BadInputError(path, "empty file (0 bytes): copy or export it again")
    try:
        image, notes = open_image(path)
        raw = np.asanyarray(image.dataobj)
    except (EOFError, zlib.error, gzip.BadGzipFile) as err:
        raise BadInputError(path, f"truncated or corrupt compressed file ({err}): copy or export it again") from err
    except nib.filebasedimages.ImageFileError as err:
        raise BadInputError(path, f"not a NIfTI/MGZ image nibabel can read ({err})") from err
    except (OSError, ValueError) as err:
        raise BadInputError(path, f"unreadable image ({err}): copy or export it again") from err
    data, warnings = to_3d(np.asarray(raw, dtype=np.float32), path)
    warnings = notes + unplaced(image) + warnings
    affine = np.asarray(image.affine, dtype=np.float64)
    if check:
        check_geometry(affine, path)
        check_values(data, path)
    return Scan(data=data, affine=affine, header=image.header, source=path, rel_path=rel_path,
                warnings=warnings, disk_dtype=str(image.get_data_dtype()))
