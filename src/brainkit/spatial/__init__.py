"""All geometry in one place: grids, recorded invertible steps, and resampling between grids."""

from brainkit.spatial.geometry import (
    Geometry,
    box_slices,
    cut_faces,
    face_names,
    foreground_bbox,
    foreground_mask,
    mask_bbox,
    resample_to_grid,
)
from brainkit.spatial.grid import LINEAR, NEAREST, CropPad, Grid, Realign, Reorient, Resample

__all__ = ["LINEAR", "NEAREST", "CropPad", "Geometry", "Grid", "Realign", "Reorient", "Resample", "box_slices",
           "cut_faces", "face_names", "foreground_bbox", "foreground_mask",
           "mask_bbox", "resample_to_grid"]
