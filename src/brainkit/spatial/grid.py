"""Voxel grids and the recorded, invertible steps that move an image between them.

Arrays carry their three spatial axes last, ``(..., X, Y, Z)``, so a ``(C, X, Y, Z)`` probability map or
a ``(X, Y, Z)`` label map go through the same steps. Each step knows its source and target grid, applies
itself forward and inverts itself exactly (reorient, crop/pad) or by interpolation (resample).
"""

from __future__ import annotations

from dataclasses import dataclass

import nibabel as nib
import numpy as np
from nibabel.orientations import aff2axcodes, io_orientation

NEAREST, LINEAR = 0, 1


@dataclass(frozen=True)
class Grid:
    """A voxel grid: spatial shape and 4x4 voxel-to-world (RAS mm) affine."""

    shape: tuple[int, int, int]
    affine: np.ndarray

    @property
    def spacing(self) -> np.ndarray:
        return np.sqrt((self.affine[:3, :3] ** 2).sum(axis=0))

    @property
    def axcodes(self) -> str:
        """Orientation code such as 'RAS' or 'LIA'."""
        return "".join(aff2axcodes(self.affine))

    def same_as(self, other: Grid, tolerance_mm: float = 1e-3) -> bool:
        """One grid: the same shape and, to `tolerance_mm`, the same affine."""
        return self.shape == other.shape and bool(np.allclose(self.affine, other.affine, atol=tolerance_mm))


def _translation(offset: np.ndarray) -> np.ndarray:
    matrix = np.eye(4)
    matrix[:3, 3] = offset
    return matrix


@dataclass(frozen=True)
class Reorient:
    """Permute and flip axes so the array is in RAS voxel order (closest axes to world x, y, z)."""

    source: Grid
    target: Grid
    ornt: np.ndarray  # nibabel orientation: row i = (target axis of input axis i, +1/-1)

    @classmethod
    def to_ras(cls, grid: Grid) -> Reorient:
        ornt = io_orientation(grid.affine)
        shape = tuple(int(grid.shape[int(np.flatnonzero(ornt[:, 0] == j)[0])]) for j in range(3))
        affine = grid.affine @ nib.orientations.inv_ornt_aff(ornt, grid.shape)
        return cls(grid, Grid(shape, affine), ornt)

    def apply(self, data: np.ndarray, order: int = LINEAR) -> np.ndarray:
        lead = data.ndim - 3
        for axis in np.flatnonzero(self.ornt[:, 1] < 0):
            data = np.flip(data, lead + int(axis))
        perm = np.argsort(self.ornt[:, 0])
        return np.ascontiguousarray(data.transpose(*range(lead), *(lead + perm)))

    def invert(self, data: np.ndarray, order: int = LINEAR) -> np.ndarray:
        lead = data.ndim - 3
        inverse_perm = self.ornt[:, 0].astype(int)
        data = data.transpose(*range(lead), *(lead + inverse_perm))
        for axis in np.flatnonzero(self.ornt[:, 1] < 0):
            data = np.flip(data, lead + int(axis))
        return np.ascontiguousarray(data)


def _interpolate(data: np.ndarray, shape: tuple[int, int, int], order: int) -> np.ndarray:
    """Resize the last three axes with voxel centres aligned (half-voxel convention)."""
    import torch  # imported here: geometry is also used by commands that should start without torch
    import torch.nn.functional as F

    lead_shape = data.shape[:-3]
    tensor = torch.from_numpy(np.ascontiguousarray(data, dtype=np.float32)).reshape(1, -1, *data.shape[-3:])
    mode = "trilinear" if order == LINEAR else "nearest-exact"
    kwargs = {"align_corners": False} if order == LINEAR else {}
    out = F.interpolate(tensor, size=shape, mode=mode, **kwargs)
    return out.reshape(*lead_shape, *shape).numpy().astype(data.dtype, copy=False)


@dataclass(frozen=True)
class Resample:
    """Change voxel size along the grid's own axes (field of view kept, centres aligned)."""

    source: Grid
    target: Grid

    @classmethod
    def to_spacing(cls, grid: Grid, spacing: float | tuple[float, float, float]) -> Resample:
        spacing = np.broadcast_to(np.asarray(spacing, float), (3,))
        shape = tuple(max(1, int(round(n * s / t))) for n, s, t in zip(grid.shape, grid.spacing, spacing))
        factor = np.asarray(grid.shape, float) / np.asarray(shape, float)
        scale = np.diag([*factor, 1.0])
        scale[:3, 3] = 0.5 * factor - 0.5
        return cls(grid, Grid(shape, grid.affine @ scale))

    def apply(self, data: np.ndarray, order: int = LINEAR) -> np.ndarray:
        return _interpolate(data, self.target.shape, order)

    def invert(self, data: np.ndarray, order: int = LINEAR) -> np.ndarray:
        return _interpolate(data, self.source.shape, order)


def _paste(data: np.ndarray, start: np.ndarray, shape: tuple[int, int, int], fill: float) -> np.ndarray:
    """Window of `shape` starting at voxel `start` (may be negative or overhang), padded with `fill`."""
    out = np.full((*data.shape[:-3], *shape), fill, dtype=data.dtype)
    src = [slice(max(0, s), min(n, s + m)) for s, n, m in zip(start, data.shape[-3:], shape)]
    dst = [slice(r.start - s, r.stop - s) for r, s in zip(src, start)]
    if all(r.stop > r.start for r in src):
        out[(..., *dst)] = data[(..., *src)]
    return out


@dataclass(frozen=True)
class CropPad:
    """Take a box of the grid (start may be negative, the box may overhang: padding)."""

    source: Grid
    target: Grid
    start: tuple[int, int, int]

    @classmethod
    def box(cls, grid: Grid, start, shape) -> CropPad:
        start = tuple(int(s) for s in start)
        shape = tuple(int(n) for n in shape)
        return cls(grid, Grid(shape, grid.affine @ _translation(np.asarray(start, float))), start)

    @classmethod
    def centred(cls, grid: Grid, centre, shape) -> CropPad:
        """A box of `shape` centred on voxel `centre`."""
        start = np.round(np.asarray(centre, float) - np.asarray(shape) / 2).astype(int)
        return cls.box(grid, start, shape)

    def apply(self, data: np.ndarray, order: int = LINEAR, fill: float = 0.0,
              mirrored: np.ndarray | None = None) -> np.ndarray:
        """The box of `data`; where it overhangs the grid, `fill`, or, across the faces `mirrored` marks (3 x 2
        bool: axis, low / high side), the data mirrored there (as np.pad's "symmetric")."""
        start = np.asarray(self.start)
        if mirrored is not None:
            overhang = np.stack([-start, start + self.target.shape - np.asarray(self.source.shape)], axis=1)
            widths = np.where(mirrored, np.maximum(overhang, 0), 0)
            if widths.any():
                pads = [(0, 0)] * (data.ndim - 3) + [tuple(int(w) for w in axis) for axis in widths]
                data, start = np.pad(data, pads, mode="symmetric"), start + widths[:, 0]
        return _paste(data, start, self.target.shape, fill)

    def invert(self, data: np.ndarray, order: int = LINEAR, fill: float = 0.0) -> np.ndarray:
        return _paste(data, -np.asarray(self.start), self.source.shape, fill)




def _affine_resample(data: np.ndarray, voxel_map: np.ndarray, shape: tuple[int, int, int], order: int) -> np.ndarray:
    """Sample `data` (spatial axes last) at input voxel `voxel_map @ q` for every output voxel q of `shape`."""
    from scipy import ndimage  # imported here: scipy is slow to import and most commands never need it

    flat = data.reshape(-1, *data.shape[-3:])
    out = [ndimage.affine_transform(channel, voxel_map[:3, :3], voxel_map[:3, 3], output_shape=shape, order=order,
                                    prefilter=False) for channel in flat]
    return np.stack(out).reshape(*data.shape[:-3], *shape).astype(data.dtype, copy=False)


@dataclass(frozen=True)
class Realign:
    """Rotate/shift the grid (same shape) so anatomy lines up with its axes; `matrix` maps output voxels to
    source voxels. The world positions of the anatomy do not change: the target grid's affine absorbs it."""

    source: Grid
    target: Grid
    matrix: np.ndarray

    @classmethod
    def voxel_map(cls, grid: Grid, matrix: np.ndarray) -> Realign:
        return cls(grid, Grid(grid.shape, grid.affine @ matrix), matrix)

    def apply(self, data: np.ndarray, order: int = LINEAR) -> np.ndarray:
        return _affine_resample(data, self.matrix, self.target.shape, order)

    def invert(self, data: np.ndarray, order: int = LINEAR) -> np.ndarray:
        return _affine_resample(data, np.linalg.inv(self.matrix), self.source.shape, order)


Step = Reorient | Resample | CropPad | Realign
