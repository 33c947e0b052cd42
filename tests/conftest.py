"""Shared fixtures: the real data folder (skipped cleanly when absent) and small synthetic volumes."""

from __future__ import annotations

import os
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

SHARED_DATA = Path(os.environ.get("BRAINKIT_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """`../shared/data` beside the repository; tests using it skip when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data folder {SHARED_DATA} is absent (set BRAINKIT_SHARED_DATA to use real scans)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def real_t1(shared_data: Path) -> Path:
    """A small real T1 head (2 mm) to build broken files from."""
    path = shared_data / "heads" / "allineate_T1w2mm.nii.gz"
    if not path.exists():
        pytest.skip(f"{path} is absent")
    return path


def blob_volume(shape=(24, 28, 20), seed: int = 0, noise: float = 1.0) -> np.ndarray:
    """A smooth positive blob with noise: a stand-in for a brain in unit tests."""
    rng = np.random.default_rng(seed)
    grid = np.stack(np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij"))
    radius = np.sqrt((grid**2).sum(axis=0))
    return (np.clip(1.0 - radius, 0, None) * 100 + rng.normal(0, noise, shape)).astype(np.float32)


def save_nifti(path: Path, data: np.ndarray, affine: np.ndarray | None = None) -> Path:
    """Save `data` as NIfTI (identity affine by default) and return the path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(data, np.eye(4) if affine is None else affine), str(path))
    return path


def toy_bank():
    """A 40^3 LabelBank of two maps: background 0, a left (2) and right (41) hemisphere, a 'thalamus' pair
    (10/49) and a marker cube (99); the second map is the first flipped along axis 1."""
    from brainkit.synth import LabelBank  # imported here: most tests never touch torch

    labels = np.zeros((40, 40, 40), np.int32)
    labels[8:20, 8:32, 8:32] = 2
    labels[20:32, 8:32, 8:32] = 41
    labels[12:16, 14:18, 14:18] = 10
    labels[24:28, 14:18, 14:18] = 49
    labels[17:20, 25:28, 10:13] = 99
    return LabelBank.from_arrays([labels, np.flip(labels, 1).copy()])
