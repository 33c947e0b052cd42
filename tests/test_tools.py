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


def test_the_gpu_kit_keeps_scan_and_labels_on_one_grid_and_the_intensities_to_8_bits(tmp_path):
    import nibabel as nib

    kit = tool("segment_gpu_kit")
    rng = np.random.default_rng(0)
    data = np.zeros((30, 32, 28), np.float32)
    data[5:25, 6:26, 4:24] = rng.uniform(100, 1000, (20, 20, 20))
    aseg = np.zeros(data.shape, np.int16)
    aseg[10:20, 10:20, 10:20] = 17
    affine = np.diag([0.9, 0.9, 1.1, 1.0])
    affine[:3, 3] = (-10, 20, 5)
    for folder, array, name in (("scans", data, "s.nii.gz"), ("labels", aseg, "s_seg.nii.gz")):
        (tmp_path / folder).mkdir()
        nib.save(nib.Nifti1Image(array, affine), tmp_path / folder / name)
    for folder in ("t1", "labels"):
        (tmp_path / "staging" / folder).mkdir(parents=True)
    kit.add_scan(tmp_path / "scans" / "s.nii.gz", tmp_path / "labels", tmp_path / "staging")
    scan = nib.load(tmp_path / "staging" / "t1" / "s.nii")
    labels = nib.load(tmp_path / "staging" / "labels" / "s_seg.nii")
    assert scan.shape == labels.shape == (24, 24, 24) and np.allclose(scan.affine, labels.affine)
    assert scan.get_data_dtype() == np.uint8 and labels.get_data_dtype() == np.uint8
    world = affine @ [5 - kit.MARGIN, 6 - kit.MARGIN, 4 - kit.MARGIN, 1]
    assert np.allclose(scan.affine[:3, 3], world[:3])  # the box sits where it was
    box = (slice(kit.MARGIN, kit.MARGIN + 20),) * 3  # the nonzero block, inside the margin
    scale = np.percentile(data[data > 0], kit.TOP_PERCENTILE) / 255
    inside = data[5:25, 6:26, 4:24]
    restored = scan.get_fdata()[box]
    assert np.abs(np.minimum(inside, scale * 255) - restored).max() <= scale / 2 + 1e-3
    assert (labels.get_fdata()[box] == aseg[5:25, 6:26, 4:24]).all()
