"""Atomic output: every file is written under a temporary name in its folder, then renamed."""

from __future__ import annotations

import csv
import json
import os
import secrets
from collections.abc import Callable, Iterable, Mapping
from contextlib import contextmanager
from pathlib import Path

import nibabel as nib
import numpy as np

from brainkit.errors import BrainkitError


@contextmanager
def atomic_path(target: str | Path, suffix: str = ""):
    """Yield a temporary path beside `target`; rename it onto `target` only if the block succeeds. The file gets
    the permissions any new file gets under the user's umask (`mkstemp`'s 0600 would keep results from the
    user's group)."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".{target.name}.{secrets.token_hex(6)}{suffix or ''.join(target.suffixes)}"
    os.close(os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
    try:
        yield tmp
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def ensure_writable_folder(folder: str | Path) -> None:
    """Create `folder` where needed and check that a file can be made in it: a one-line error before any work
    rather than a traceback after it."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise BrainkitError(folder, "a file, not a folder: give a folder as -o (it is made if missing)")
    probe = folder / ".brainkit_write_check"
    try:
        with atomic_path(probe):  # makes the folder and a file in it, as every output will be made
            pass
        probe.unlink()
    except OSError as err:
        raise BrainkitError(folder, f"cannot write the output folder here ({err.strerror}): give another -o") from err


def write_with(target: str | Path, writer: Callable[[Path], None]) -> Path:
    """Run `writer(tmp_path)` and move the result onto `target` atomically."""
    with atomic_path(target) as tmp:
        writer(tmp)
    return Path(target)


def write_nifti(target: str | Path, data: np.ndarray, affine: np.ndarray, header: object = None) -> Path:
    """Write a NIfTI-1 image atomically; a NIfTI source header is kept (with its dtype updated)."""
    nifti_header = header.copy() if isinstance(header, nib.Nifti1Header) else None
    image = nib.Nifti1Image(data, affine, header=nifti_header)
    image.set_data_dtype(data.dtype)
    image.set_sform(affine, code=1)
    image.set_qform(affine, code=1)
    return write_with(target, lambda tmp: nib.save(image, str(tmp)))


def write_csv(target: str | Path, rows: Iterable[Mapping[str, object]], columns: list[str]) -> Path:
    """Write rows (dicts) as CSV with the given column order, atomically."""
    def writer(tmp: Path) -> None:
        with open(tmp, "w", newline="") as handle:
            out = csv.DictWriter(handle, fieldnames=columns, extrasaction="ignore")
            out.writeheader()
            out.writerows(rows)
    return write_with(target, writer)


def write_metrics(target: str | Path, summary: Mapping[str, object]) -> Path:
    """Write a summary {metric: value} as a two-column CSV (`metric`, `value`), atomically."""
    return write_csv(target, [{"metric": key, "value": value} for key, value in summary.items()], ["metric", "value"])


def write_json(target: str | Path, payload: object) -> Path:
    """Write JSON (indented, keys in given order), atomically."""
    return write_with(target, lambda tmp: tmp.write_text(json.dumps(payload, indent=2) + "\n"))
