"""A job's recorded geometry: the chain of steps from the input grid to the model's grid, and back."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from brainkit.spatial.grid import LINEAR, CropPad, Grid, Realign, Reorient, Resample, Step


@dataclass
class Geometry:
    """Steps recorded from an input grid; `apply` runs them, `to_input_grid` undoes them.

    Example:
        geometry = Geometry(Grid(scan.shape, scan.affine)).to_ras().resample(2.0).crop_foreground(image)
        model_input = geometry.apply(scan.data)
        labels = geometry.to_input_grid(prediction, order=NEAREST)  # same shape as scan.data
    """

    input_grid: Grid
    steps: list[Step] = field(default_factory=list)

    @property
    def grid(self) -> Grid:
        """The grid after every recorded step."""
        return self.steps[-1].target if self.steps else self.input_grid

    def then(self, step: Step) -> Geometry:
        """Append a step (its source must be the current grid)."""
        assert step.source.shape == self.grid.shape, "a step must start on the current grid"
        self.steps.append(step)
        return self

    def to_ras(self) -> Geometry:
        return self.then(Reorient.to_ras(self.grid))

    def resample(self, spacing: float | tuple[float, float, float]) -> Geometry:
        return self.then(Resample.to_spacing(self.grid, spacing))

    def crop(self, start, shape) -> Geometry:
        return self.then(CropPad.box(self.grid, start, shape))

    def crop_centred(self, centre, shape) -> Geometry:
        return self.then(CropPad.centred(self.grid, centre, shape))

    def realign(self, matrix: np.ndarray) -> Geometry:
        return self.then(Realign.voxel_map(self.grid, matrix))

    def apply(self, data: np.ndarray, order: int = LINEAR) -> np.ndarray:
        """Run every step on `data` (spatial axes last, on the input grid)."""
        assert data.shape[-3:] == self.input_grid.shape, "data must be on the input grid"
        for step in self.steps:
            data = step.apply(data, order)
        return data

    def to_input_grid(self, data: np.ndarray, order: int = LINEAR) -> np.ndarray:
        """Put a result on this geometry's final grid back onto the input's own grid.

        Every job writes its images through this one function, so outputs share the input's shape
        and affine. Use ``order=NEAREST`` for label maps (exact where no resampling happened).
        """
        assert data.shape[-3:] == self.grid.shape, "data must be on the geometry's final grid"
        for step in reversed(self.steps):
            data = step.invert(data, order)
        return data


def foreground_mask(data: np.ndarray, fraction: float = 0.1) -> np.ndarray:
    """Voxels brighter than `fraction` of the way from the 1st to the 99th percentile."""
    low, high = np.percentile(data, [1, 99])
    return data > low + fraction * (high - low)


def foreground_bbox(data: np.ndarray, margin: int = 0, fraction: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
    """Bounding box (start, stop) of voxels brighter than `fraction` of the 99th percentile (`mask_bbox` of the
    `foreground_mask`)."""
    return mask_bbox(foreground_mask(data, fraction), margin)


def mask_bbox(mask: np.ndarray, margin: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Bounding box (start, stop) of a mask, `margin` voxels wider (within the grid).

    Rows/columns holding fewer than 0.1% of the foreground are ignored so isolated noise does not
    stretch the box. Returns the whole grid if the mask is empty.
    """
    start, stop = np.zeros(3, int), np.asarray(mask.shape, int)
    total = mask.sum()
    if total == 0:
        return start, stop
    for axis, counts in enumerate(cross_sections(mask)):
        kept = np.flatnonzero(counts > 0.001 * total)
        if kept.size:
            start[axis], stop[axis] = kept[0], kept[-1] + 1
    start = np.maximum(start - margin, 0)
    stop = np.minimum(stop + margin, mask.shape)
    return start, stop


def cross_sections(mask: np.ndarray) -> list[np.ndarray]:
    """Voxels of the mask in each slice, along each of the three axes."""
    return [mask.sum(axis=tuple(a for a in range(3) if a != axis)) for axis in range(3)]


def cut_faces(mask: np.ndarray, share: float = 0.25) -> np.ndarray:
    """Which faces of the grid (3 x 2 bool: axis, low / high side) cut through the anatomy in `mask` (e.g. a
    `foreground_mask`): where it covers at least `share` of its largest cross-section along that axis on the face's
    slice, as on a slab of a scan. A head or brain inside the field of view touches its faces with scalp, a brainstem
    or nothing."""
    cut = np.zeros((3, 2), bool)
    for axis, areas in enumerate(cross_sections(mask)):
        if areas.max() > 0:
            cut[axis] = areas[[0, -1]] >= share * areas.max()
    return cut


FACE_NAMES = {"R": "right", "L": "left", "A": "anterior", "P": "posterior", "S": "superior", "I": "inferior"}
OPPOSITE = {"R": "L", "L": "R", "A": "P", "P": "A", "S": "I", "I": "S"}


def face_names(faces: np.ndarray, axcodes: str) -> list[str]:
    """The anatomical names ("inferior", "superior", ...) of the faces marked in `faces` (3 x 2 bool: axis, low /
    high side, as `cut_faces` gives them) of a grid whose axes point as `axcodes` says (e.g. "LIA")."""
    return [FACE_NAMES[code if side else OPPOSITE[code]]
            for code, sides in zip(axcodes, faces, strict=True) for side in (0, 1) if sides[side]]


def box_slices(start: np.ndarray, stop: np.ndarray) -> tuple[slice, ...]:
    """The index of the box from voxel `start` to `stop` (a `foreground_bbox`'s), to cut an array with."""
    return tuple(slice(int(a), int(b)) for a, b in zip(start, stop, strict=True))


def resample_to_grid(data: np.ndarray, source: Grid, target: Grid, order: int = LINEAR,
                     fill: float = 0.0) -> np.ndarray:
    """Resample `data` (spatial axes last, on `source`) onto `target` through world coordinates.

    For images that share a world but not a grid (a moving image onto a fixed one); a job's own
    prepared grid goes back through `Geometry.to_input_grid` instead.
    """
    from scipy import ndimage  # imported here: scipy costs 0.3 s at start-up and few commands resample this way

    voxel_map = np.linalg.inv(source.affine) @ target.affine
    flat = data.reshape(-1, *data.shape[-3:])
    out = [ndimage.affine_transform(channel, voxel_map[:3, :3], voxel_map[:3, 3], output_shape=target.shape,
                                    order=order, cval=fill, prefilter=False) for channel in flat]
    return np.stack(out).reshape(*data.shape[:-3], *target.shape)
