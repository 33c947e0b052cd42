"""Checks that turn unusable volumes into one clear sentence instead of a wrong result."""

from __future__ import annotations

import numpy as np

from brainkit.errors import BadInputError

MIN_VOXEL_MM = 0.05
MAX_VOXEL_MM = 20.0
MIN_SLICES = 3  # fewer along any axis is a slice or a slab, not a volume any job can use


def to_3d(data: np.ndarray, source: object) -> tuple[np.ndarray, list[str]]:
    """Reduce an array to 3D: drop trailing singleton axes, take volume 0 of a 4D series.

    Returns the 3D array and warnings; raises BadInputError for 2D or >4D data.
    """
    warnings: list[str] = []
    while data.ndim > 3 and data.shape[-1] == 1:
        data = data[..., 0]
    if data.ndim == 4:
        warnings.append(f"4D image with {data.shape[3]} volumes: volume 0 is used")
        data = data[..., 0]
    if data.ndim != 3:
        raise BadInputError(source, f"{data.ndim}D image of shape {data.shape}: brainkit needs a 3D volume")
    if min(data.shape) < MIN_SLICES:
        what = "a single slice" if min(data.shape) == 1 else f"only {min(data.shape)} slices along one axis"
        raise BadInputError(
            source, f"2D image of shape {data.shape} ({what}): brainkit needs a 3D volume (at least {MIN_SLICES} "
                    "slices along every axis)"
        )
    return data, warnings


def check_geometry(affine: np.ndarray, source: object) -> None:
    """Refuse affines that cannot place a brain in space (non-finite, singular, absurd voxel sizes)."""
    if not np.all(np.isfinite(affine)):
        raise BadInputError(source, "the header's affine has NaN/Inf entries: fix the header (sform/qform)")
    spacing = np.sqrt((affine[:3, :3] ** 2).sum(axis=0))
    if np.linalg.matrix_rank(affine[:3, :3]) < 3:
        raise BadInputError(source, "the header's affine is singular: fix the header (sform/qform)")
    if spacing.min() < MIN_VOXEL_MM or spacing.max() > MAX_VOXEL_MM:
        sizes = "x".join(f"{s:.3g}" for s in spacing)
        raise BadInputError(
            source,
            f"absurd voxel size {sizes} mm (expected {MIN_VOXEL_MM}-{MAX_VOXEL_MM} mm): "
            "check the header's pixdim/affine units",
        )


def check_values(data: np.ndarray, source: object) -> None:
    """Refuse volumes with NaN/Inf values or a single constant value."""
    finite = np.isfinite(data)
    if not finite.all():
        bad = int(data.size - np.count_nonzero(finite))
        raise BadInputError(
            source, f"{bad} NaN/Inf voxels: replace them (for example with 0) and run again"
        )
    low, high = float(data.min()), float(data.max())
    if low == high:
        raise BadInputError(source, f"image is constant (every voxel is {low:g}): nothing to analyse")


MAX_MASK_VALUES = 16  # whole-number images with this few values are masks or lesion/tumour labels
MIN_FLAT_FRACTION = 0.3  # label maps: 0.43-0.94 of foreground voxels equal their neighbours; MR images: 0.00-0.04


def check_not_label_map(data: np.ndarray, source: object) -> None:
    """Refuse a label map or mask given where an MR image is expected (a folder of scans often holds both).

    Judged on every 8th voxel (2 voxels apart on each axis): whole-number values that are either few or constant
    over most of the foreground. Measured on ../shared/data, label maps (aseg, aparc, AAL, SynthSeg's, tumour
    labels, masks) and MR images (including FreeSurfer's 8-bit norm.mgz and templates) fall far on either side.
    """
    sample = np.asarray(data[::2, ::2, ::2], dtype=np.float32)
    values, counts = np.unique(sample, return_counts=True)
    if not np.array_equal(values, np.round(values)):
        return
    background = values[np.argmax(counts)]
    centre = sample[1:, 1:, 1:]
    flat = (centre == sample[:-1, 1:, 1:]) & (centre == sample[1:, :-1, 1:]) & (centre == sample[1:, 1:, :-1])
    foreground = centre != background
    flat_fraction = float(flat[foreground].mean()) if foreground.any() else 1.0
    if len(values) <= MAX_MASK_VALUES or flat_fraction >= MIN_FLAT_FRACTION:
        raise BadInputError(source, f"looks like a label map or mask ({len(values)} whole-number values, constant "
                                    f"over {flat_fraction:.0%} of the foreground), not an MR image: give the scan "
                                    "itself")
