"""NIfTI and FreeSurfer MGH/MGZ reading through nibabel, with clear errors for broken files."""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import nibabel as nib
import numpy as np

from brainkit.errors import BadInputError
from brainkit.io.checks import check_geometry, check_values, to_3d
from brainkit.io.scan import Scan


def load_volume(path: Path, rel_path: Path, check: bool = True) -> Scan:
    """Read a NIfTI/MGZ file as a 3D float32 Scan; raise BadInputError with advice if unusable."""
    if not path.exists():
        raise BadInputError(path, "file not found: check the path")
    if path.stat().st_size == 0:
        raise BadInputError(path, "empty file (0 bytes): copy or export it again")
    try:
        image = nib.load(str(path))
        raw = np.asanyarray(image.dataobj)
    except (EOFError, zlib.error, gzip.BadGzipFile) as err:
        raise BadInputError(path, f"truncated or corrupt compressed file ({err}): copy or export it again") from err
    except nib.filebasedimages.ImageFileError as err:
        raise BadInputError(path, f"not a NIfTI/MGZ image nibabel can read ({err})") from err
    except (OSError, ValueError) as err:
        raise BadInputError(path, f"unreadable image ({err}): copy or export it again") from err
    data, warnings = to_3d(np.asarray(raw, dtype=np.float32), path)
    affine = np.asarray(image.affine, dtype=np.float64)
    if check:
        check_geometry(affine, path)
        check_values(data, path)
    return Scan(data=data, affine=affine, header=image.header, source=path, rel_path=rel_path,
                warnings=warnings, disk_dtype=str(image.get_data_dtype()))
