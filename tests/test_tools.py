"""The scripts in tools/ that make training data (their heavy dependencies are their own: tested without them)."""

import importlib.util
from pathlib import Path

import numpy as np
import torch

TOOLS = Path(__file__).resolve().parent.parent / "tools"


def tool(name: str):
    spec = importlib.util.spec_from_file_location(name, TOOLS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_atlas_maps_are_painted_with_the_scans_own_label_means():
    atlas_labels = tool("segment_atlas_labels")
    image = torch.zeros((20, 20, 20))
    image[:10], image[10:] = 0.3, 0.9
    labels = np.zeros((20, 20, 20), np.int16)
    labels[2:10], labels[10:18] = 10, 49  # the network's labels of the scan
    atlas = np.zeros((20, 20, 20), np.int16)
    atlas[:, :10], atlas[:, 10:] = 49, 10  # the atlas has them elsewhere, and a label the scan lacks
    atlas[0, 0, 0] = 3000
    painted = atlas_labels.painted(atlas, image, labels)
    assert abs(painted[10, 2, 10] - 0.9) < 0.01 and abs(painted[10, 17, 10] - 0.3) < 0.01  # 49 bright, 10 dark
    assert painted[0, 0, 0] < 0.9  # the unknown label is painted 0, then blurred
