"""Label maps the synthetic engine draws from: real whole-head maps, or random shapes (seed 001).

A `LabelBank` holds N label maps on one RAS grid as a ``(N, 1, X, Y, Z)`` int16 tensor of contiguous
indices, with `values` mapping each index back to its FreeSurfer label number and `intensity_class`
giving homologous left/right structures one shared intensity class (so contrast is never a side cue).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from brainkit.io import load
from brainkit.io.discover import discover, is_image_file
from brainkit.spatial import NEAREST, Geometry, Grid, foreground_bbox

# FreeSurfer aseg left -> right homologues (labels_table.txt of SynthSeg).
LEFT_RIGHT_PAIRS = {2: 41, 3: 42, 4: 43, 5: 44, 7: 46, 8: 47, 10: 49, 11: 50, 12: 51, 13: 52, 17: 53, 18: 54,
                    26: 58, 28: 60, 30: 62, 31: 63}
RIGHT_TO_LEFT = {right: left for left, right in LEFT_RIGHT_PAIRS.items()}
# Labels a skull-stripped scan keeps: both hemispheres' structures, 3rd/4th ventricles, brain stem, CSF.
BRAIN_LABELS = frozenset(LEFT_RIGHT_PAIRS) | frozenset(LEFT_RIGHT_PAIRS.values()) | {14, 15, 16, 24}
# Tissue groups of the left-hemisphere aseg labels (right ones follow their twins), for tissue-ordered contrasts
# (`SynthConfig.ordered_contrast_prob`); every other label is OTHER_TISSUE.
OTHER_TISSUE, WHITE_MATTER, CORTEX, SUBCORTICAL_GREY, CEREBELLAR_WHITE, CEREBELLAR_CORTEX = range(6)
TISSUE_GROUP = {2: WHITE_MATTER, 3: CORTEX, 7: CEREBELLAR_WHITE, 8: CEREBELLAR_CORTEX,
                **dict.fromkeys((10, 11, 12, 13, 16, 17, 18, 26, 28), SUBCORTICAL_GREY)}


def shared_label_maps(data: Path) -> list[Path]:
    """The training label maps in `<data>/synthseg_label_maps` (NIfTI or MGZ, sorted), as `brainkit train --data`
    names them; a one-line exit when there are none."""
    folder = data / "synthseg_label_maps"
    maps = sorted(path for path in folder.glob("*") if is_image_file(path))
    if not maps:
        raise SystemExit(f"no label maps in {folder}: give --data the folder that holds synthseg_label_maps/ "
                         "(../shared/data)")
    return maps


def label_map_files(paths: list[str | Path]) -> list[Path]:
    """The label maps named by `paths` (`--label-maps`): files as given, folders searched as every command searches
    its inputs (`discover`); a one-line exit for a path that is missing or holds none."""
    found: list[Path] = []
    for path in map(Path, paths):
        maps = [item.path for item in discover([path]) if item.kind == "volume"]
        if not maps:
            raise SystemExit(f"no label maps in {path}: give NIfTI or MGZ label maps, or folders of them")
        found += maps
    return found


@dataclass
class LabelBank:
    """Label maps on one grid, ready for batched generation (see module docstring)."""

    maps: torch.Tensor  # (N, 1, X, Y, Z) int16 contiguous label indices
    values: np.ndarray  # (K,) FreeSurfer label number of each index
    intensity_class: torch.Tensor  # (K,) int64 class of each index; left/right homologues share one
    spacing: float
    affine: np.ndarray  # 4x4 voxel -> world of the maps' grid (RAS, centred on the first map's brain)

    @property
    def n_labels(self) -> int:
        return len(self.values)

    @property
    def n_classes(self) -> int:
        return int(self.intensity_class.max()) + 1

    @property
    def is_brain(self) -> torch.Tensor:
        """(K,) bool: which label indices a skull-stripped scan keeps (`BRAIN_LABELS`)."""
        return torch.from_numpy(np.isin(self.values, list(BRAIN_LABELS)))

    @property
    def class_tissue(self) -> torch.Tensor:
        """(n_classes,) `TISSUE_GROUP` code of each intensity class (left/right homologues share a class)."""
        tissue = torch.full((self.n_classes,), OTHER_TISSUE, dtype=torch.long)
        for value, intensity_class in zip(self.values.tolist(), self.intensity_class.tolist()):
            tissue[intensity_class] = TISSUE_GROUP.get(RIGHT_TO_LEFT.get(value, value), OTHER_TISSUE)
        return tissue

    @classmethod
    def from_arrays(cls, arrays: list[np.ndarray], spacing: float = 1.0, affine: np.ndarray | None = None
                    ) -> LabelBank:
        """Build a bank from integer label arrays that already share one RAS grid."""
        values = np.unique(np.concatenate([np.unique(a) for a in arrays])).astype(np.int64)
        lookup = {int(v): i for i, v in enumerate(values)}
        index_of = np.zeros(int(values.max()) + 1, np.int16)
        index_of[values] = np.arange(len(values))
        maps = torch.from_numpy(np.stack([index_of[a.astype(np.int64)] for a in arrays])[:, None])
        classes = np.arange(len(values))
        for left, right in LEFT_RIGHT_PAIRS.items():
            if left in lookup and right in lookup:
                classes[lookup[right]] = classes[lookup[left]]
        _, classes = np.unique(classes, return_inverse=True)
        affine = np.diag([spacing, spacing, spacing, 1.0]) if affine is None else affine
        return cls(maps, values, torch.from_numpy(classes.astype(np.int64)), spacing, affine)

    @classmethod
    def from_files(cls, paths: list[Path], spacing: float = 1.0, shape: tuple[int, int, int] = (160, 160, 160)
                   ) -> LabelBank:
        """Load label maps, reorient to RAS, resample to `spacing` and centre them in a box of `shape`."""
        arrays, affines = [], []
        for path in paths:
            scan = load(path)
            geometry = Geometry(Grid(scan.shape, scan.affine)).to_ras().resample(spacing)
            labels = geometry.apply(scan.data, NEAREST)
            start, stop = foreground_bbox((labels > 0).astype(np.float32))
            geometry.crop_centred((start + stop) / 2, shape)
            arrays.append(geometry.steps[-1].apply(labels, NEAREST).astype(np.int32))
            affines.append(geometry.grid.affine)
        return cls.from_arrays(arrays, spacing, affines[0])


def random_shape_labels(batch: int, shape: tuple[int, int, int], n_labels: int = 12, smoothness: int = 8,
                        generator: torch.Generator | None = None, device: str | torch.device = "cpu"
                        ) -> torch.Tensor:
    """Random-shape label maps as in seed 001: arg-max over smoothed noise channels.

    Returns ``(batch, 1, X, Y, Z)`` int64 labels in ``[0, n_labels)``; larger `smoothness` gives larger blobs.
    """
    coarse = tuple(max(2, n // smoothness) for n in shape)
    noise = torch.randn((batch, n_labels, *coarse), generator=generator, device=device)
    smooth = F.interpolate(noise, size=shape, mode="trilinear", align_corners=False)
    return smooth.max(dim=1, keepdim=True).indices  # as argmax (no ties in continuous noise), 4x faster on CPU
