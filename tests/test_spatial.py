"""Geometry round trips: exact for labels under reorient and crop/pad, close for intensities."""

from __future__ import annotations

import itertools

import nibabel as nib
import numpy as np
import pytest

from brainkit.spatial import LINEAR, NEAREST, CropPad, Geometry, Grid, foreground_bbox, resample_to_grid
from brainkit.spatial.geometry import cut_faces, face_names, foreground_mask, mask_bbox
from tests.conftest import blob_volume


def permuted_affine(perm, flips, spacing=(1.0, 1.5, 2.0)) -> np.ndarray:
    affine = np.zeros((4, 4))
    for axis, (world, flip) in enumerate(zip(perm, flips)):
        affine[world, axis] = flip * spacing[axis]
    affine[:3, 3] = [10.0, -20.0, 5.0]
    affine[3, 3] = 1
    return affine


@pytest.mark.parametrize("perm,flips", [((0, 1, 2), (1, 1, 1)), ((2, 0, 1), (-1, 1, -1)), ((1, 2, 0), (1, -1, -1))])
def test_reorient_to_ras_keeps_world_positions_and_round_trips(perm, flips):
    labels = np.random.default_rng(1).integers(0, 5, size=(6, 7, 8)).astype(np.int16)
    affine = permuted_affine(perm, flips)
    geometry = Geometry(Grid(labels.shape, affine)).to_ras()
    ras = geometry.apply(labels, NEAREST)
    assert nib.aff2axcodes(geometry.grid.affine) == ("R", "A", "S")
    for voxel in [(0, 0, 0), (5, 6, 7), (2, 3, 4)]:
        world = affine @ [*voxel, 1]
        ras_voxel = np.round(np.linalg.inv(geometry.grid.affine) @ world).astype(int)[:3]
        assert ras[tuple(ras_voxel)] == labels[voxel]
    assert np.array_equal(geometry.to_input_grid(ras, NEAREST), labels)


def test_crop_pad_round_trip_is_exact_inside_the_box_and_zero_outside():
    labels = np.random.default_rng(2).integers(1, 9, size=(10, 12, 14))
    step = CropPad.box(Grid(labels.shape, np.eye(4)), start=(-3, 2, 4), shape=(8, 16, 6))
    cropped = step.apply(labels)
    assert cropped.shape == (8, 16, 6)
    assert np.all(cropped[:3] == 0)
    back = step.invert(cropped)
    inside = (slice(0, 5), slice(2, 12), slice(4, 10))
    assert np.array_equal(back[inside], labels[inside])
    assert back[6:].sum() == 0
    assert np.allclose(step.target.affine[:3, 3], [-3, 2, 4])


def test_resample_finer_and_back_is_exact_for_labels_and_close_for_intensities():
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 4, size=(8, 10, 12)).astype(np.float32)
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    geometry = Geometry(Grid(labels.shape, affine)).resample(1.0)
    assert geometry.grid.shape == (16, 20, 24)
    assert np.allclose(geometry.grid.spacing, 1.0)
    assert np.array_equal(geometry.to_input_grid(geometry.apply(labels, NEAREST), NEAREST), labels)
    image = blob_volume((16, 20, 24), noise=0.0)
    coarse = Geometry(Grid(image.shape, np.eye(4))).resample(2.0)
    back = coarse.to_input_grid(coarse.apply(image, LINEAR), LINEAR)
    assert back.shape == image.shape
    assert np.abs(back - image).mean() < 0.02 * image.max()


def test_resampled_grid_places_voxel_centres_in_the_same_world():
    image = blob_volume((20, 20, 20))
    geometry = Geometry(Grid(image.shape, np.eye(4))).resample(2.0)
    # the first coarse voxel covers fine voxels 0 and 1: its centre is at world 0.5
    assert np.allclose(geometry.grid.affine[:3, 3], 0.5)


def test_resample_to_grid_matches_an_integer_shift():
    image = blob_volume((12, 12, 12))
    source = Grid(image.shape, np.eye(4))
    shifted = np.eye(4)
    shifted[0, 3] = 2.0
    out = resample_to_grid(image, source, Grid(image.shape, shifted), order=LINEAR)
    assert np.allclose(out[:-2], image[2:], atol=1e-4)
    assert np.all(out[-2:] == 0)


def test_chain_of_every_step_returns_to_the_input_grid():
    labels = np.zeros((30, 40, 20), np.int16)
    labels[10:20, 15:25, 5:15] = 3
    affine = permuted_affine((1, 0, 2), (-1, 1, 1), spacing=(1.0, 1.0, 1.0))
    geometry = Geometry(Grid(labels.shape, affine)).to_ras().resample(0.5)
    geometry.crop_centred(np.asarray(geometry.grid.shape) // 2, (48, 48, 48))
    result = geometry.apply(labels, NEAREST)
    assert result.shape == (48, 48, 48)
    back = geometry.to_input_grid(result, NEAREST)
    assert back.shape == labels.shape
    assert np.array_equal(back, labels)


def test_crop_pad_mirrors_the_data_across_the_faces_it_is_told_and_fills_the_rest():
    data = np.random.default_rng(3).random((6, 5, 4))
    step = CropPad.box(Grid(data.shape, np.eye(4)), start=(-4, -2, 0), shape=(14, 9, 4))  # overhangs x and y
    mirrored = np.array([[True, False], [False, True], [False, False]])  # x's low face, y's high face
    box = step.apply(data, fill=-1.0, mirrored=mirrored)
    expected = np.pad(data, ((4, 0), (0, 2), (0, 0)), mode="symmetric")  # 4 mirrored before x, 2 after y
    assert np.array_equal(box[:10, 2:9], expected)
    assert np.all(box[10:] == -1) and np.all(box[:, :2] == -1)  # overhang across the other faces: the fill
    assert np.array_equal(step.invert(box), data)  # the mirrored part is dropped on the way back
    assert np.array_equal(step.apply(data, fill=-1.0, mirrored=np.zeros((3, 2), bool)), step.apply(data, fill=-1.0))


def test_cut_faces_are_those_the_foreground_crosses_over_much_of_its_cross_section():
    inside = foreground_mask(blob_volume((40, 40, 40), noise=0.0))  # a brain well inside the field of view
    assert not cut_faces(inside).any()
    slab = inside[:, 14:26]  # a slab through its middle along y
    assert cut_faces(slab).tolist() == [[False, False], [True, True], [False, False]]
    touching = inside.copy()
    touching[20, 20, :] = True  # a thin line reaching both z faces (a brainstem, a scalp)
    assert not cut_faces(touching).any()


def test_face_names_follow_the_grids_axis_codes():
    faces = np.array([[True, False], [False, True], [True, True]])
    assert face_names(faces, "RAS") == ["left", "anterior", "inferior", "superior"]
    assert face_names(faces, "LIA") == ["right", "inferior", "posterior", "anterior"]


def test_foreground_bbox_finds_the_bright_box():
    data = np.zeros((30, 30, 30), np.float32)
    data[5:12, 8:20, 3:25] = 100
    start, stop = foreground_bbox(data)
    assert list(start) == [5, 8, 3]
    assert list(stop) == [12, 20, 25]


def test_mask_bbox_finds_the_masks_box_within_the_grid():
    mask = np.zeros((30, 30, 30), bool)
    mask[5:12, 8:20, 3:25] = True
    start, stop = mask_bbox(mask, margin=4)
    assert list(start) == [1, 4, 0] and list(stop) == [16, 24, 29]
    assert [list(corner) for corner in mask_bbox(np.zeros((4, 5, 6), bool))] == [[0, 0, 0], [4, 5, 6]]


def test_multichannel_arrays_go_through_the_same_steps():
    probs = np.random.default_rng(4).random((3, 6, 7, 8)).astype(np.float32)
    geometry = Geometry(Grid((6, 7, 8), permuted_affine((2, 1, 0), (1, -1, 1)))).to_ras()
    assert np.array_equal(geometry.to_input_grid(geometry.apply(probs)), probs)


def test_real_scan_to_ras_and_back(shared_data):
    from brainkit import load

    scan = load(shared_data / "t1_depression" / "sub-01_T1w.nii.gz")
    geometry = Geometry(Grid(scan.shape, scan.affine)).to_ras()
    assert "".join(nib.aff2axcodes(geometry.grid.affine)) == "RAS"
    assert np.array_equal(geometry.to_input_grid(geometry.apply(scan.data)), scan.data)


def test_every_axis_permutation_reaches_ras():
    for perm in itertools.permutations(range(3)):
        affine = permuted_affine(perm, (-1, 1, -1))
        assert Geometry(Grid((4, 5, 6), affine)).to_ras().grid.axcodes == "RAS"


def test_realign_round_trip_and_world_positions():
    from brainkit.spatial import Realign

    labels = np.zeros((20, 20, 20), np.float32)
    labels[8:12, 5:15, 6:14] = 1
    angle = np.deg2rad(90)
    matrix = np.eye(4)
    matrix[:2, :2] = [[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]]
    matrix[:2, 3] = [19, 0]  # a quarter turn about the grid centre keeps the grid
    step = Realign.voxel_map(Grid(labels.shape, np.eye(4)), matrix)
    turned = step.apply(labels, NEAREST)
    assert turned.sum() == labels.sum()
    assert np.array_equal(step.invert(turned, NEAREST), labels)
    q = np.array([9.0, 9.0, 9.0, 1.0])  # a voxel of the turned grid sits where the target affine says
    assert np.allclose(step.target.affine @ q, step.source.affine @ (matrix @ q))


def test_midplane_search_recovers_a_known_yaw_and_roll():
    import torch

    from brainkit.spatial.symmetry import _rotation, midplane_voxel_map

    shape = (48, 48, 48)
    grid = np.stack(np.meshgrid(*[np.arange(n) - 23.5 for n in shape], indexing="ij"))
    head = ((grid[0] / 16) ** 2 + (grid[1] / 21) ** 2 + (grid[2] / 18) ** 2 < 1).astype(np.float32)
    head[(np.abs(grid[0]) < 12) & (grid[1] > 10) & (grid[1] < 20) & (grid[2] > 5)] = 0  # asymmetric along y only
    rotation = _rotation(torch.tensor([12.0]), torch.tensor([-8.0]))[0].double().numpy()
    tilted = np.zeros_like(head)
    coords = np.einsum("ij,jxyz->ixyz", rotation.T, grid)  # sample the head at R^T q: the head turned by R
    from scipy import ndimage

    tilted = ndimage.map_coordinates(head, coords + 23.5, order=1)
    found = midplane_voxel_map(tilted)[:3, :3]
    assert np.allclose(found, rotation, atol=0.06)  # within about 3 degrees
