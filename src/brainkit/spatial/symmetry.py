"""Finding a head's mid-sagittal plane without registration: the pose that makes it most mirror-symmetric.

Used to put heads in a standard pose before left-right questions, so a model sees the anatomy's own left and
right along array axis 0, whatever the head's yaw and roll in the scanner. Not exported from `spatial` so
that importing geometry does not import torch.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

SEARCH_SIZE = 48  # voxels per axis of the pooled silhouette the search runs on


def _rotation(yaw_deg: torch.Tensor, roll_deg: torch.Tensor) -> torch.Tensor:
    """(N, 3, 3) rotations: yaw about axis 2 (superior), then roll about axis 1 (anterior)."""
    yaw, roll = torch.deg2rad(yaw_deg), torch.deg2rad(roll_deg)
    cy, sy, cr, sr = torch.cos(yaw), torch.sin(yaw), torch.cos(roll), torch.sin(roll)
    zero, one = torch.zeros_like(yaw), torch.ones_like(yaw)
    rz = torch.stack([cy, -sy, zero, sy, cy, zero, zero, zero, one], 1).view(-1, 3, 3)
    ry = torch.stack([cr, zero, sr, zero, one, zero, -sr, zero, cr], 1).view(-1, 3, 3)
    return ry @ rz


def _voxel_maps(shape, centre: np.ndarray, yaw, roll, shift) -> torch.Tensor:
    """(N, 4, 4) output-voxel -> input-voxel maps: output centre -> input `centre` + shift along axis 0."""
    rotation = _rotation(yaw, roll)
    out_centre = (torch.tensor(shape, dtype=torch.float32) - 1) / 2
    maps = torch.eye(4).repeat(len(yaw), 1, 1)
    maps[:, :3, :3] = rotation
    offset = torch.tensor(centre, dtype=torch.float32) + torch.stack([shift, 0 * shift, 0 * shift], 1)
    maps[:, :3, 3] = offset - (rotation @ out_centre)
    return maps


def _symmetry_scores(volume: torch.Tensor, maps: torch.Tensor) -> torch.Tensor:
    """Correlation between each realignment of `volume` (1, 1, X, Y, Z) and its mirror along axis 0: (N,)."""
    shape = tuple(volume.shape[2:])
    axes = [torch.arange(n, dtype=torch.float32) for n in shape]
    q = torch.stack(torch.meshgrid(*axes, indexing="ij")).reshape(3, -1)
    p = maps[:, :3, :3] @ q + maps[:, :3, 3:]
    size = torch.tensor(shape, dtype=torch.float32).view(1, 3, 1)
    grid = (2 * p / (size - 1) - 1).view(len(maps), 3, *shape).permute(0, 2, 3, 4, 1).flip(-1)
    sampled = F.grid_sample(volume.expand(len(maps), 1, *shape), grid, align_corners=True).flatten(1)
    mirrored = sampled.view(len(maps), *shape).flip(1).flatten(1)
    a = sampled - sampled.mean(1, keepdim=True)
    b = mirrored - mirrored.mean(1, keepdim=True)
    return (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1)).clamp(min=1e-6)


def midplane_voxel_map(volume: np.ndarray, max_yaw: float = 30.0, max_roll: float = 20.0) -> np.ndarray:
    """4x4 output-voxel -> input-voxel map (same grid shape) that makes `volume` most left-right symmetric.

    `volume` is a head in RAS voxel order (axis 0 left-right). The search uses the head's silhouette (voxels
    above a tenth of the bright range), so a lesion on one side does not pull the plane, pooled to at most
    SEARCH_SIZE voxels per axis: centre on the silhouette's centroid, a coarse grid over yaw and roll, then a
    finer one that also shifts along axis 0.
    """
    low, high = np.percentile(volume, [1, 99])
    silhouette = (volume > low + 0.1 * (high - low)).astype(np.float32)
    factor = max(2, math.ceil(max(volume.shape) / SEARCH_SIZE))
    small = F.avg_pool3d(torch.from_numpy(silhouette)[None, None], factor, ceil_mode=True)[0, 0]
    weights = small
    axes = torch.meshgrid(*[torch.arange(n, dtype=torch.float32) for n in small.shape], indexing="ij")
    centre = np.array([float((weights * axis).sum() / weights.sum().clamp(min=1e-6)) for axis in axes])
    small = small[None, None]
    best = (0.0, 0.0, 0.0)
    stages = ((5.0, max_yaw, max_roll, (0.0,)), (1.25, 2.5, 2.5, (-1.0, -0.5, 0.0, 0.5, 1.0)))
    for step, yaw_span, roll_span, shifts in stages:
        yaws = best[0] + torch.arange(-yaw_span, yaw_span + 1e-6, step)
        rolls = best[1] + torch.arange(-roll_span, roll_span + 1e-6, step)
        grid = torch.cartesian_prod(yaws, rolls, torch.tensor(shifts) + best[2])
        scores = _symmetry_scores(small, _voxel_maps(small.shape[2:], centre, grid[:, 0], grid[:, 1], grid[:, 2]))
        best = tuple(float(v) for v in grid[int(scores.argmax())])
    full = _voxel_maps(volume.shape, centre * factor + (factor - 1) / 2, torch.tensor([best[0]]),
                       torch.tensor([best[1]]), torch.tensor([best[2] * factor]))
    return full[0].double().numpy()
