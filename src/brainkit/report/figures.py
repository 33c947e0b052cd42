"""Pictures people would rather look at than read: orthogonal-slice montages and overlays."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from brainkit.io.write import write_with  # noqa: E402
from brainkit.spatial import Geometry, Grid, box_slices, foreground_bbox  # noqa: E402


def ras_view(data: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """The array in RAS voxel order, for display with the patient's right on the viewer's left."""
    return Geometry(Grid(data.shape, affine)).to_ras().apply(data)


def head_box(volume: np.ndarray, margin: int = 4) -> tuple[slice, ...]:
    """The box around the head or brain of a volume (its bright voxels, plus `margin`): what a picture shows, so
    that the anatomy fills the panel instead of the field of view's empty corners."""
    return box_slices(*foreground_bbox(volume, margin=margin))


def view_aspects(affine: np.ndarray, shape: tuple[int, ...]) -> list[float]:
    """Pixel aspect (height / width) of the sagittal, coronal and axial views, so thick slices look thick."""
    x, y, z = Geometry(Grid(tuple(shape[-3:]), affine)).to_ras().grid.spacing
    return [z / y, z / x, y / x]


def orthogonal_slices(volume: np.ndarray) -> list[np.ndarray]:
    """Middle sagittal, coronal and axial slices of a RAS volume, oriented for display (superior up)."""
    x, y, z = (n // 2 for n in volume.shape)
    return [np.rot90(volume[x, :, :]), np.rot90(volume[:, y, :]), np.rot90(volume[:, :, z])]


def save_montage(panels: list[tuple[str, np.ndarray, np.ndarray]], target: str | Path,
                 title: str | None = None) -> Path:
    """Save a PNG with one row per (title, data, affine): sagittal, coronal and axial slices through the middle of
    the head's box (`head_box`).

    Coronal and axial views use the radiological convention (patient's right on the image's left).
    """
    fig, axes = plt.subplots(len(panels), 3, figsize=(9, 3 * len(panels)), squeeze=False)
    volumes = [ras_view(data, affine) for _, data, affine in panels]
    first_box = head_box(volumes[0])  # rows on one grid (a scan and what was made of it) are cut alike
    for row, (name, data, affine), volume in zip(axes, panels, volumes):
        volume = volume[first_box if volume.shape == volumes[0].shape else head_box(volume)]
        low, high = np.percentile(volume, [0.5, 99.5])
        views = zip(row, orthogonal_slices(volume), view_aspects(affine, data.shape))
        for col, (ax, image, aspect) in enumerate(views):
            ax.imshow(image if col == 0 else image[:, ::-1], cmap="gray", vmin=low, vmax=high, aspect=aspect)
            ax.set_axis_off()
        row[0].set_title(name, loc="left", fontsize=9)
        row[1].text(0.02, 0.02, "R", color="yellow", transform=row[1].transAxes)
        row[2].text(0.02, 0.02, "R", color="yellow", transform=row[2].transAxes)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    write_with(target, lambda tmp: fig.savefig(tmp, dpi=80, format="png"))
    plt.close(fig)
    return Path(target)


def save_slice_grid(slices: list[tuple[str, np.ndarray]], target: str | Path, columns: int = 4) -> Path:
    """Save titled 2D slices in a grid (gray, each with its own 0.5-99.5 percentile window) as PNG."""
    rows = max(1, -(-len(slices) // columns))
    fig, axes = plt.subplots(rows, columns, figsize=(2.5 * columns, 2.5 * rows), squeeze=False)
    for ax in axes.ravel():
        ax.set_axis_off()
    for ax, (name, image) in zip(axes.ravel(), slices):
        low, high = np.percentile(image, [0.5, 99.5])
        ax.imshow(image, cmap="gray", vmin=low, vmax=high)
        ax.set_title(name, fontsize=8)
    fig.tight_layout()
    write_with(target, lambda tmp: fig.savefig(tmp, dpi=80, format="png"))
    plt.close(fig)
    return Path(target)


def fullest_planes(labels: np.ndarray) -> np.ndarray:
    """For each axis, the plane holding the most labelled voxels: a cut that shows a label map. (Its centre of mass
    would put the sagittal cut on the midline, between the left and right structures, where there are none.)"""
    labelled = labels > 0
    return np.array([int(labelled.sum(axis=tuple(a for a in range(3) if a != axis)).argmax()) for axis in range(3)])


def save_overlay(background: np.ndarray, overlay: np.ndarray, affine: np.ndarray, target: str | Path,
                 title: str = "", cmap: str = "jet", alpha: float = 0.4, label_map: bool = False) -> Path:
    """Three planes through the overlay's peak (for label maps: each plane the one that holds most labelled voxels,
    `fullest_planes`) on a gray background.

    Both arrays share one grid and `affine`; views are RAS, radiological (patient's right on the left).
    Zero overlay voxels are transparent.
    """
    volume, heat = ras_view(background, affine), ras_view(overlay.astype(np.float32), affine)
    box = head_box(volume)
    volume, heat = volume[box], heat[box]
    if label_map and heat.any():
        centre = fullest_planes(heat)
    else:
        centre = np.array(np.unravel_index(int(np.argmax(heat)), heat.shape))
    low, high = np.percentile(volume, [0.5, 99.5])
    fig, axes = plt.subplots(1, 3, figsize=(10, 3.6))
    cuts = [(volume[centre[0]], heat[centre[0]]), (volume[:, centre[1]], heat[:, centre[1]]),
            (volume[:, :, centre[2]], heat[:, :, centre[2]])]
    for col, (ax, (image, layer), aspect) in enumerate(zip(axes, cuts, view_aspects(affine, background.shape))):
        image, layer = np.rot90(image), np.rot90(layer)
        if col:
            image, layer = image[:, ::-1], layer[:, ::-1]
        ax.imshow(image, cmap="gray", vmin=low, vmax=high, aspect=aspect)
        ax.imshow(np.ma.masked_equal(layer, 0), cmap=cmap, alpha=alpha, aspect=aspect,
                  interpolation="nearest" if label_map else "bilinear")
        ax.set_axis_off()
        if col:
            ax.text(0.02, 0.02, "R", color="yellow", transform=ax.transAxes)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    write_with(target, lambda tmp: fig.savefig(tmp, dpi=80, format="png"))
    plt.close(fig)
    return Path(target)
