"""Putting a prediction on its reference's grid before the two are compared voxel by voxel."""

from __future__ import annotations

import numpy as np

from brainkit.errors import BrainkitError
from brainkit.io import Scan
from brainkit.runtime import console
from brainkit.spatial import Grid, resample_to_grid


def on_truth_grid(prediction: Scan, truth: Scan, order: int) -> np.ndarray:
    """The prediction's voxels on the truth's grid: as they are where the grids are one, else resampled through
    world coordinates (`order` 0 for label maps) with a note, as when a segmentation of the scan is compared
    with FreeSurfer's aseg.mgz on its 256^3 grid. An error when none of the prediction lands on that grid."""
    source, target = Grid(prediction.shape, prediction.affine), Grid(truth.shape, truth.affine)
    if source.same_as(target):
        return prediction.data
    moved = resample_to_grid(prediction.data, source, target, order)
    if np.any(prediction.data) and not np.any(moved):
        raise BrainkitError(prediction.source, f"it does not overlap {truth.source} in world space: give a "
                                               "prediction and a truth of one scan")
    console.print(f"note: {prediction.source} ({source.axcodes} {'x'.join(map(str, source.shape))}) resampled onto "
                  f"the grid of {truth.source} ({target.axcodes} {'x'.join(map(str, target.shape))})")
    return moved
