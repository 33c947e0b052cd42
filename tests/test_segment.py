"""Segmentation job: label bookkeeping, hemisphere split, volumes, metrics, preparation (no weights needed)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from brainkit.io import Scan
from brainkit.tasks import segment
from tests.conftest import blob_volume, save_nifti

CLASS_OF = {label: i for i, label in enumerate(segment.ASEG_LABELS)}  # aseg number -> class index


def test_class_lookup_maps_aseg_numbers_and_sends_the_rest_to_background():
    lookup = segment.class_lookup(np.array([0, 17, 53, 258, 999]))
    assert lookup[0] == 0 and lookup[3] == 0 and lookup[4] == 0
    assert segment.ASEG_LABELS[lookup[1]] == 17 and segment.ASEG_LABELS[lookup[2]] == 53


def test_lateralise_gives_right_hemisphere_voxels_right_labels():
    labels = np.zeros((40, 30, 30), np.int32)
    labels[6:34, 5:25, 5:25] = 2  # white matter, labelled 'left' on both sides
    labels[10:16, 12:18, 12:18] = 17  # a 'left hippocampus' on the patient's left (low x in RAS)
    labels[24:30, 12:18, 12:18] = 17  # and its mirror on the right, labelled left too
    out = segment.lateralise(labels)
    assert set(np.unique(out[:19])) <= {0, 2, 17}
    assert set(np.unique(out[21:])) <= {0, 41, 53}
    assert (out == 53).sum() == (labels[24:30] == 17).sum()
    already = out.copy()
    assert np.array_equal(segment.lateralise(already), already)  # maps with right labels are left alone


def test_mirrored_classes_swap_left_and_right_labels_only():
    order = segment.mirrored_classes()
    labels = np.asarray(segment.ASEG_LABELS)
    assert sorted(order) == list(range(len(labels)))
    assert labels[order[list(labels).index(17)]] == 53 and labels[order[list(labels).index(53)]] == 17
    assert labels[order[list(labels).index(16)]] == 16 and labels[order[0]] == 0


def test_add_mirrored_flips_back_swaps_left_and_right_and_adds_in_place():
    classes = len(segment.ASEG_LABELS)
    mirrored, plain = torch.rand(classes, 4, 3, 2), torch.rand(classes, 4, 3, 2).half()
    expected = mirrored[segment.mirrored_classes()].flip(1) + plain.float()
    pointer = mirrored.data_ptr()
    segment.add_mirrored(mirrored, plain)
    assert mirrored.data_ptr() == pointer
    assert torch.allclose(mirrored, expected)


def test_softmax_in_place_matches_torch_and_reuses_the_logits_memory():
    logits = torch.randn(1, 5, 4, 3, 2) * 20
    expected = torch.softmax(logits, dim=1)
    result = segment.softmax_in_place(logits)
    assert result.data_ptr() == logits.data_ptr()
    assert torch.allclose(result, expected, atol=1e-6)


def test_class_labels_give_aseg_numbers_and_the_first_of_tied_classes():
    probabilities = torch.zeros(len(segment.ASEG_LABELS), 2, 2, 2)
    probabilities[CLASS_OF[17], 0] = 0.6
    probabilities[CLASS_OF[53], 0] = 0.6  # a tie: the lower class index wins, as argmax picks
    probabilities[CLASS_OF[10], 1] = 0.9
    labels = segment.class_labels(probabilities)
    assert labels.dtype == np.int16
    assert (labels[0] == 17).all() and (labels[1] == 10).all()


def test_largest_components_drop_islands_of_deep_grey_structures_only():
    labels = np.zeros((30, 30, 30), np.int16)
    labels[2:10, 2:10, 2:10] = 17  # the hippocampus, and an island of it
    labels[20:22, 20:22, 20:22] = 17
    labels[12:14, 2:4, 2:4], labels[25:27, 2:4, 2:4] = 10, 10  # two equal pieces: the first in scan order stays
    labels[0, 0, 0], labels[29, 29, 29] = 2, 2  # white matter is not a deep grey structure: both pieces stay
    out = segment.largest_components(labels)
    assert (out[2:10, 2:10, 2:10] == 17).all() and (out[20:22, 20:22, 20:22] == 0).all()
    assert (out[12:14, 2:4, 2:4] == 10).all() and (out[25:27, 2:4, 2:4] == 0).all()
    assert out[0, 0, 0] == 2 and out[29, 29, 29] == 2
    assert (labels[20:22, 20:22, 20:22] == 17).all()  # the input is not modified


def test_window_count_follows_monai_tiling():
    assert segment.window_count((181, 211, 172), 128, 0.25) == 8  # Colin27's head box
    assert segment.window_count((221, 256, 211), 128, 0.25) == 12
    assert segment.window_count((100, 128, 224), 128, 0.25) == 2


def test_mirrored_pass_covers_the_brain_only_where_that_saves_windows():
    first = torch.zeros(2, 60, 60, 60)
    first[0] = 1.0  # background everywhere but a 16-voxel cube of brain
    first[0, 20:36, 22:38, 24:40], first[1, 20:36, 22:38, 24:40] = 0.0, 1.0
    box = segment.brain_box(first, window=16, overlap=0.25, margin=4)
    assert [(b.start, b.stop) for b in box] == [(16, 40), (18, 42), (20, 44)]  # the cube and its margin
    assert segment.brain_box(first, window=16, overlap=0.25, margin=19) is None  # 125 windows either way


def test_volumes_count_voxels_times_voxel_size():
    labels = np.zeros((10, 10, 10), np.int16)
    labels[:2, :5, :5] = 17
    volumes = segment.label_volumes(labels, np.diag([2.0, 1.0, 1.5, 1.0]))
    assert volumes["17"] == pytest.approx(50 * 3.0)
    assert volumes["brain"] == volumes["17"] and volumes["53"] == 0


def test_dice_and_hd95_on_known_shapes():
    truth = np.zeros((30, 30, 30), int)
    truth[10:20, 10:20, 10:20] = 17
    shifted = np.roll(truth, 2, axis=0)
    rows = segment.dice_and_hd95(shifted, truth, np.ones(3), labels=(17,))
    assert rows[0]["dice"] == pytest.approx(0.8)
    assert rows[0]["hd95_mm"] == pytest.approx(2.0)
    assert segment.dice_and_hd95(truth, truth, np.ones(3), labels=(17,))[0]["dice"] == 1.0


def test_intensity_step_moves_a_misplaced_border_to_where_the_contrast_is():
    rng = np.random.default_rng(0)
    image = np.full((30, 12, 12), 0.3, np.float32)
    image[15:] = 0.7  # the dark structure ends at x = 15
    image += rng.normal(0, 0.02, image.shape).astype(np.float32)
    prior = np.zeros((4, *image.shape), np.float32)  # background, dark, bright, and a label the network never gives
    prior[0] = 0.05
    prior[1, :18], prior[2, :18] = 0.6, 0.35  # the network puts the border 3 voxels too far, without confidence
    prior[1, 18:], prior[2, 18:] = 0.02, 0.93
    before = prior.argmax(0)
    scores = segment.refine_with_intensities(torch.from_numpy(image), torch.from_numpy(prior.copy()))
    after = scores.argmax(0).numpy()
    assert (before[15:18] == 1).all() and (after[15:18] == 2).mean() > 0.95  # a few noise outliers may stay
    assert (after[:15] == 1).all() and (after[18:] == 2).mean() > 0.95
    assert torch.equal(scores[3], torch.zeros(image.shape))  # an absent label stays absent


def test_prepare_gives_a_1mm_ras_box_of_at_least_one_patch():
    affine = np.diag([-2.0, 2.0, 2.0, 1.0])
    scan = Scan(blob_volume((40, 50, 30), noise=0.0), affine, None, segment.Path("x.nii.gz"), segment.Path("x"))
    tensor, geometry = segment.prepare(scan)
    assert tensor.shape[:2] == (1, 1) and all(n >= segment.PATCH[0] for n in tensor.shape[2:])
    assert geometry.grid.axcodes == "RAS" and np.allclose(geometry.grid.spacing, 1.0)


def test_prepare_keeps_the_top_of_a_tall_head_only():
    data = np.zeros((40, 40, 300), np.float32)
    data[5:35, 5:35, 10:290] = 100.0  # a head with a long neck: 280 mm of foreground
    data[10:30, 10:30, 286:290] = 200.0  # the top of the head, brightest
    scan = Scan(data, np.eye(4), None, segment.Path("x.nii.gz"), segment.Path("x"))
    tensor, geometry = segment.prepare(scan)
    assert tensor.shape[-1] == segment.HEAD_HEIGHT
    top = geometry.to_input_grid(np.ones(tuple(tensor.shape[2:]), np.int16), segment.NEAREST)
    assert top[20, 20, 280:294].all() and not top[20, 20, :60].any()  # the neck's lowest part is left out


def test_prepare_continues_a_slab_across_its_cut_faces_instead_of_with_background():
    scan = Scan(blob_volume((60, 60, 60), noise=0.0)[:, :, 24:36], np.eye(4), None, segment.Path("x.nii.gz"),
                segment.Path("x"))  # 12 mm axial slab through a brain
    tensor, geometry = segment.prepare(scan)
    box = tensor[0, 0].numpy()
    inside = geometry.to_input_grid(np.ones(box.shape, np.float32), segment.NEAREST).astype(bool)
    assert inside.all()
    x, y, z = -np.asarray(geometry.steps[-1].start) + [30, 30, 0]  # the slab's centre line starts at box z
    assert box.shape[2] == segment.PATCH[2] and 12 <= z <= box.shape[2] - 24
    assert np.allclose(box[:, :, z - 12:z], box[:, :, z:z + 12][:, :, ::-1])  # mirrored below it
    assert box[x, y, 0] > 0.5 * box[x, y, z]  # the brain goes on to the box's edge, not into black


def test_as_slab_keeps_a_slab_and_mirrors_it_beyond_with_left_and_right_swapped_across_x():
    side = 12
    grid = torch.stack(torch.meshgrid(*[torch.arange(side)] * 3, indexing="ij"))  # (3, X, Y, Z) voxel positions
    image = (grid[0] * side**2 + grid[1] * side + grid[2]).float()[None]  # each voxel's value names its position
    classes = torch.full((1, side, side, side), CLASS_OF[10])
    axes = set()
    for seed in range(16):
        cut, cut_classes = segment.as_slab(image, classes, torch.Generator().manual_seed(seed), thinnest=3)
        value = cut[0].long()
        source = torch.stack([value // side**2, value // side % side, value % side])  # where each voxel came from
        moved = [axis for axis in range(3) if not torch.equal(source[axis], grid[axis])]
        assert len(moved) == 1  # one axis is cut
        axis = moved[0]
        axes.add(axis)
        line = source[axis].movedim(axis, 0)[:, 0, 0]  # along the cut axis
        kept = torch.nonzero(line == torch.arange(side)).flatten()
        assert kept.numel() >= 3 and torch.equal(kept, torch.arange(int(kept[0]), int(kept[-1]) + 1))  # one slab
        assert line.min() >= kept[0] and line.max() <= kept[-1]  # everything beyond is drawn from the slab
        start, stop = int(kept[0]), int(kept[-1]) + 1
        assert torch.equal(line[stop:stop + 2], line[max(stop - 2, start):stop].flip(0)[: line[stop:stop + 2].numel()])
        labels = cut_classes[0].select(axis, start)
        assert (labels == CLASS_OF[10]).all()  # the slab keeps its labels
        beyond = [p for p in (start - 1, stop) if 0 <= p < side]
        expected = CLASS_OF[49] if axis == 0 else CLASS_OF[10]  # mirrored across x, the left side becomes right
        assert all((cut_classes[0].select(axis, p) == expected).all() for p in beyond)
    assert axes == {0, 1, 2}


def test_evaluate_cli_on_identical_maps(tmp_path):
    from tests.test_cli import brainkit

    labels = np.zeros((20, 20, 20), np.int16)
    labels[5:12, 5:12, 5:12] = 10
    labels[12:18, 5:12, 5:12] = 49
    path = save_nifti(tmp_path / "seg.nii.gz", labels)
    result = brainkit("evaluate", "segment", "--pred", str(path), "--truth", str(path), "-o", str(tmp_path))
    assert result.returncode == 0, result.stderr
    rows = (tmp_path / "segment_evaluation.csv").read_text().splitlines()
    assert "10,1.0,0.0" in rows and "49,1.0,0.0" in rows
    assert "mean Dice 1.000, lowest 1.000" in result.stderr


def test_evaluate_cli_puts_the_prediction_on_the_truths_grid_and_refuses_a_map_without_the_structures(tmp_path):
    from tests.test_cli import brainkit

    labels = np.zeros((20, 22, 24), np.int16)
    labels[5:12, 5:12, 5:12] = 10
    labels[12:18, 5:12, 5:12] = 49
    pred = save_nifti(tmp_path / "seg.nii.gz", labels)
    # the same labels in LIA voxel order, as FreeSurfer's aseg.mgz stores them: voxel for voxel they all differ
    lia = nib.as_closest_canonical(nib.load(pred)).as_reoriented(nib.orientations.axcodes2ornt("LIA"))
    truth = tmp_path / "aseg_lia.nii.gz"
    nib.save(lia, truth)
    result = brainkit("evaluate", "segment", "--pred", str(pred), "--truth", str(truth))
    assert result.returncode == 0, result.stderr
    assert "resampled onto the grid of" in result.stderr and "mean Dice 1.000, lowest 1.000" in result.stderr
    mask = save_nifti(tmp_path / "mask.nii.gz", (labels > 0).astype(np.int16))
    result = brainkit("evaluate", "segment", "--pred", str(mask), "--truth", str(truth))
    assert result.returncode != 0 and "mask.nii.gz: holds none of the 12 structures" in result.stderr


def test_summary_covers_the_12_target_structures_only():
    rows = [{"label": label, "dice": 0.5, "hd95_mm": 4.0} for label in segment.TARGET]
    rows += [{"label": 26, "dice": 0.0, "hd95_mm": 40.0}, {"label": 58, "dice": 0.0, "hd95_mm": 40.0}]
    rows[0] = {"label": segment.TARGET[0], "dice": 0.9, "hd95_mm": 1.0}
    summary = segment.summarise(rows)
    assert len(segment.TARGET) == 12 and summary["lowest"] == 0.5 and summary["hd95"] == 4.0
    assert summary["mean"] == pytest.approx((0.9 + 11 * 0.5) / 12)


def test_segment_cli_end_to_end_with_given_weights(tmp_path):
    from brainkit.weights import save_weights
    from tests.test_cli import brainkit

    weights = save_weights(segment.build_model(), tmp_path / "w.pt")
    head = blob_volume((30, 34, 26))
    save_nifti(tmp_path / "in" / "sub-01_T1w.nii.gz", head, np.diag([1.5, 1.5, 1.5, 1.0]))
    save_nifti(tmp_path / "in" / "slab.nii.gz", head[:, :, 9:17], np.diag([1.5, 1.5, 1.5, 1.0]))
    (tmp_path / "in" / "empty.nii.gz").write_bytes(b"")
    result = brainkit("segment", str(tmp_path / "in"), "--weights", str(weights), "--qc", "-o", str(tmp_path / "out"))
    assert result.returncode != 0 and "empty.nii.gz" in result.stdout + result.stderr
    labels = segment.load(tmp_path / "out" / "sub-01_T1w_seg.nii.gz")
    assert labels.shape == (30, 34, 26) and set(np.unique(labels.data)) <= set(segment.ASEG_LABELS)
    rows = (tmp_path / "out" / "volumes.csv").read_text().splitlines()
    assert rows[0].startswith("input,2,3,4") and len(rows) == 3
    assert (tmp_path / "out" / "sub-01_T1w_seg.png").exists()



def test_segment_cli_keeps_two_inputs_of_one_name_apart(tmp_path):
    from brainkit.weights import save_weights
    from tests.test_cli import brainkit

    weights = save_weights(segment.build_model(), tmp_path / "w.pt")
    inputs = [save_nifti(tmp_path / site / "T1.nii.gz", blob_volume((24, 28, 20), seed=i)) for i, site in
              enumerate(("a", "b"))]
    result = brainkit("segment", *map(str, inputs), "--weights", str(weights), "-o", str(tmp_path / "out"))
    assert result.returncode == 0, result.stderr
    assert {path.relative_to(tmp_path / "out").as_posix() for path in (tmp_path / "out").rglob("*_seg.nii.gz")} == {
        "a/T1_seg.nii.gz", "b/T1_seg.nii.gz"}
    assert len((tmp_path / "out" / "volumes.csv").read_text().splitlines()) == 3


def test_segment_cli_run_again_into_a_folder_inside_its_input_does_not_take_its_outputs_for_inputs(tmp_path):
    from brainkit.weights import save_weights
    from tests.test_cli import brainkit

    weights = save_weights(segment.build_model(), tmp_path / "w.pt")
    save_nifti(tmp_path / "data" / "T1.nii.gz", blob_volume((24, 28, 20)))
    for _ in range(2):
        result = brainkit("segment", str(tmp_path / "data"), "--weights", str(weights), "-o",
                          str(tmp_path / "data" / "out"))
        assert result.returncode == 0, result.stdout + result.stderr
    assert len((tmp_path / "data" / "out" / "volumes.csv").read_text().splitlines()) == 2
    assert sorted(p.name for p in (tmp_path / "data" / "out").rglob("*.nii.gz")) == ["T1_seg.nii.gz"]


def test_segment_cli_run_again_into_its_input_folder_leaves_its_earlier_labels_alone(tmp_path):
    from brainkit.weights import save_weights
    from tests.test_cli import brainkit

    weights = save_weights(segment.build_model(), tmp_path / "w.pt")
    save_nifti(tmp_path / "data" / "T1.nii.gz", blob_volume((24, 28, 20)))
    for _ in range(2):  # the second run used to refuse T1_seg.nii.gz as a label map and exit 1
        result = brainkit("segment", str(tmp_path / "data"), "--weights", str(weights), "--1mm", "-o",
                          str(tmp_path / "data"))
        assert result.returncode == 0, result.stdout + result.stderr
    assert len((tmp_path / "data" / "volumes.csv").read_text().splitlines()) == 2
    assert sorted(p.name for p in (tmp_path / "data").rglob("*.nii.gz")) == ["T1.nii.gz", "T1_seg.nii.gz",
                                                                            "T1_seg_1mm.nii.gz"]


def test_segment_cli_1mm_writes_the_labels_as_made_over_the_inputs_field_of_view(tmp_path):
    from brainkit.weights import save_weights
    from tests.test_cli import brainkit

    weights = save_weights(segment.build_model(), tmp_path / "w.pt")
    thick = np.diag([-1.5, 1.5, 5.0, 1.0])  # LAS, 5 mm slices
    save_nifti(tmp_path / "in" / "T1.nii.gz", blob_volume((30, 34, 9)), thick)
    result = brainkit("segment", str(tmp_path / "in"), "--weights", str(weights), "--1mm", "-o", str(tmp_path / "out"))
    assert result.returncode == 0, result.stdout + result.stderr
    on_input = nib.load(tmp_path / "out" / "T1_seg.nii.gz")
    fine = nib.load(tmp_path / "out" / "T1_seg_1mm.nii.gz")
    assert fine.shape == (45, 51, 45) and nib.aff2axcodes(fine.affine) == ("R", "A", "S")
    assert np.allclose(fine.header.get_zooms(), 1.0) and fine.get_data_dtype() == np.int16
    # the input grid's labels are the 1 mm labels at its voxel centres (5 mm slices: each centre is a 1 mm one)
    centres = nib.affines.apply_affine(np.linalg.inv(fine.affine) @ thick, np.indices(on_input.shape).reshape(3, -1).T)
    sampled = np.asarray(fine.dataobj)[tuple(np.rint(centres).astype(int).T)]
    assert np.array_equal(sampled, np.asarray(on_input.dataobj).ravel())
    assert len(np.unique(sampled)) > 1

def test_bundled_model_on_a_real_labelled_t1(shared_data):
    folder = shared_data / "seg_freesurfer" / "niivue_norm"
    scan, truth = segment.load(folder / "norm.mgz"), segment.load(folder / "aparc.a2009s+aseg.mgz")
    model = segment.load_model()
    labels = segment.predict(scan, model)
    assert labels.shape == scan.shape
    reference = np.rint(truth.data).astype(int)
    summary = segment.summarise(segment.dice_and_hd95(labels, reference, truth.spacing))
    assert summary["mean"] > 0.75 and summary["lowest"] > 0.6  # measured 0.844 / 0.80; see weights/segment.md
    network_alone = segment.predict(scan, model, refine=False)
    assert segment.summarise(segment.dice_and_hd95(network_alone, reference, truth.spacing))["mean"] < summary["mean"]
    for label in (4, 43):  # lateral ventricles: the dark background around a stripped brain is not ventricle
        assert 0.67 < (labels == label).sum() / (reference == label).sum() < 1.5


def test_bundled_model_on_a_slab_of_a_real_t1_continues_it_by_mirroring_and_says_it_is_cut(shared_data, monkeypatch):
    folder = shared_data / "seg_freesurfer" / "niivue_norm"
    scan, truth = segment.load(folder / "norm.mgz"), segment.load(folder / "aparc.a2009s+aseg.mgz")
    slab = (slice(None), slice(110, 150), slice(None))  # 40 mm of the LIA grid's inferior-superior axis
    affine = scan.affine.copy()
    affine[:3, 3] += affine[:3, 1] * 110  # the slab's first voxel
    scan = replace(scan, data=scan.data[slab], affine=affine)
    reference = np.rint(truth.data[slab]).astype(int)
    model = segment.load_model()
    mirrored = segment.predict(scan, model)
    note = segment.cut_note(mirrored, "LIA")
    assert note is not None and "superior and inferior edges" in note
    monkeypatch.setattr(segment, "cut_faces", lambda volume: np.zeros((3, 2), bool))
    in_black = segment.predict(scan, model)
    scores = [segment.summarise(segment.dice_and_hd95(labels, reference, truth.spacing))["mean"]
              for labels in (mirrored, in_black)]
    assert scores[0] > scores[1] + 0.02  # measured 0.820 against 0.776; weights/segment.md


def test_cut_note_names_the_faces_the_brain_crosses_and_not_a_neck_below_a_whole_brain():
    labels = np.zeros((40, 40, 60), np.int16)
    labels[8:32, 6:34, 20:50] = 2  # a brain
    labels[18:22, 18:22, 0:20] = 16  # its brain stem, down to the bottom of the field of view
    assert segment.cut_note(labels, "RAS") is None
    assert "its inferior edge:" in segment.cut_note(labels[:, :, 30:], "RAS")  # cut above its base
    note = segment.cut_note(labels[:, 10:30, 25:45], "LIA")
    assert "superior and inferior and posterior and anterior edges" in note and "volumes" in note


def toy_label_maps(folder):
    """Two small label maps in aseg numbers, as `training_batches` finds them (`<data>/synthseg_label_maps`)."""
    labels = np.zeros((40, 40, 40), np.int16)
    labels[8:20, 8:32, 8:32], labels[20:32, 8:32, 8:32] = 2, 41
    labels[12:16, 14:18, 14:18], labels[24:28, 14:18, 14:18] = 10, 49
    for name, array in (("a", labels), ("b", np.flip(labels, 1).copy())):
        save_nifti(folder / "synthseg_label_maps" / f"{name}.nii.gz", array)
    return folder


def test_training_patches_take_every_given_side_and_class_indices(tmp_path):
    batch_for = segment.training_batches(toy_label_maps(tmp_path), batch=1, patches=(16, 24))
    generator = torch.Generator().manual_seed(0)
    sides = set()
    for step in range(8):
        image, classes = batch_for(step, generator)
        sides.add(image.shape[-1])
        assert image.shape == classes.shape == (1, 1, *(image.shape[-1],) * 3)
        assert classes.min() >= 0 and classes.max() < len(segment.ASEG_LABELS)
    assert sides == {16, 24}


def test_mirrored_training_patches_are_flipped_with_left_and_right_labels_swapped(tmp_path):
    data = toy_label_maps(tmp_path)
    plain_image, plain_classes = segment.training_batches(data, 2, (24,))(0, torch.Generator().manual_seed(1))
    image, classes = segment.training_batches(data, 2, (24,), mirror=1.0)(0, torch.Generator().manual_seed(1))
    assert torch.equal(image, plain_image.flip(2))
    for left, right in ((2, 41), (10, 49)):
        assert torch.equal(classes == CLASS_OF[right], (plain_classes == CLASS_OF[left]).flip(2))
    assert (classes == CLASS_OF[2]).any() and (classes == CLASS_OF[41]).any()  # both sides are in the patch


def toy_real_pair(width: int = 20) -> tuple[torch.Tensor, torch.Tensor]:
    """A self-labelled 'real' scan: left thalamus (class of aseg 10) dark on the left (low x, RAS), right
    thalamus (49) bright on the right."""
    classes = torch.full((width,) * 3, CLASS_OF[10], dtype=torch.uint8)
    classes[width // 2:] = CLASS_OF[49]
    return torch.where(classes == CLASS_OF[10], 0.2, 0.8), classes


def test_real_patches_are_crops_mirrored_with_left_and_right_labels_swapped():
    left_brighter = []
    for seed in range(12):
        image, classes = segment.real_patch([toy_real_pair()], 16, torch.Generator().manual_seed(seed))
        assert image.shape == classes.shape == (1, 1, 16, 16, 16)
        left, right = (classes[0, 0] == CLASS_OF[10]).nonzero()[:, 0], (classes[0, 0] == CLASS_OF[49]).nonzero()[:, 0]
        assert left.max() < right.min()  # left labels stay on the left, mirrored or not
        left_brighter.append(bool(image[classes == CLASS_OF[10]].mean() > image[classes == CLASS_OF[49]].mean()))
    assert any(left_brighter) and not all(left_brighter)  # some patches were mirrored (image with labels), some not


def test_label_maps_join_the_shared_ones_in_the_training_bank(tmp_path):
    extra = np.zeros((40, 40, 40), np.int16)
    extra[8:20, 8:32, 8:32], extra[20:32, 8:32, 8:32], extra[12:16, 14:18, 14:18] = 2, 41, 17  # a left hippocampus
    path = save_nifti(tmp_path / "fused" / "scan_seg.nii.gz", extra)
    shared = segment.training_bank(toy_label_maps(tmp_path))
    bank = segment.training_bank(tmp_path, [path])
    assert len(bank.maps) == len(shared.maps) + 1 and 17 not in shared.values
    labels_of = [set(bank.values[np.unique(m.numpy())].tolist()) for m in bank.maps]
    assert 17 in labels_of[-1] and not any(17 in labels for labels in labels_of[:-1])  # shared maps first


def test_training_batches_add_the_real_patches_to_each_step(tmp_path):
    batch_for = segment.training_batches(toy_label_maps(tmp_path), batch=1, patches=(16,), real=[toy_real_pair()],
                                         real_per_step=2)
    image, classes = batch_for(0, torch.Generator().manual_seed(0))
    assert image.shape == classes.shape == (3, 1, 16, 16, 16)
    assert torch.isin(classes[1:], torch.tensor([CLASS_OF[10], CLASS_OF[49]])).all()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_training_batches_draw_the_real_patches_on_the_gpu(tmp_path):
    batch_for = segment.training_batches(toy_label_maps(tmp_path), batch=1, patches=(16,), device="cuda",
                                         real=[toy_real_pair()], real_per_step=2)
    image, classes = batch_for(0, torch.Generator().manual_seed(0))
    assert image.device.type == classes.device.type == "cuda" and image.shape == (3, 1, 16, 16, 16)
    assert torch.isin(classes[1:], torch.tensor([CLASS_OF[10], CLASS_OF[49]], device="cuda")).all()


def test_real_labels_are_taken_from_the_given_folder_onto_the_training_box(tmp_path):
    scan = save_nifti(tmp_path / "real" / "scan.nii.gz", blob_volume())
    save_nifti(tmp_path / "real" / "unlabelled.nii.gz", blob_volume(seed=1))
    aseg = np.zeros(blob_volume().shape, np.int16)
    aseg[:12], aseg[12:] = 10, 49  # left / right thalamus (RAS: low x is left), 1 mm: the box keeps the grid
    save_nifti(tmp_path / "labels" / "scan_seg.nii.gz", aseg)
    pairs = segment.self_labelled([str(scan.parent)], model=None, quiet=True, labels=tmp_path / "labels")
    assert len(pairs) == 1  # the scan without a label map is reported and left out
    image, classes = pairs[0]
    assert image.shape == classes.shape == segment.PATCH  # the 1 mm head box, padded to one window
    assert set(torch.unique(classes).tolist()) == {0, CLASS_OF[10], CLASS_OF[49]}  # padding is background
    left, right = (classes == CLASS_OF[10]).nonzero()[:, 0], (classes == CLASS_OF[49]).nonzero()[:, 0]
    assert left.max() < right.min() and (classes == CLASS_OF[10]).sum() == 12 * 28 * 20


def test_train_cli_writes_weights_that_segment_reads(tmp_path):
    from tests.test_cli import brainkit

    data = toy_label_maps(tmp_path / "data")
    real = save_nifti(tmp_path / "real" / "scan.nii.gz", blob_volume())
    (tmp_path / "real" / "broken.nii.gz").write_bytes(b"not a nifti")
    result = brainkit("train", "segment", "--data", str(data), "--steps", "2", "--patch", "16", "24", "--batch", "1",
                      "--threads", "1", "--seed", "0", "-q", "-o", str(tmp_path / "run"), "--real", str(real.parent),
                      "--lr", "0")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "broken.nii.gz" in result.stdout + result.stderr  # one unreadable scan is reported, training goes on
    trained, bundled = segment.load_model(tmp_path / "run" / "segment.pt"), segment.load_model()
    # without --init, self-training starts from the bundled weights that labelled the scans (lr 0: unchanged)
    for (name, value), expected in zip(trained.state_dict().items(), bundled.state_dict().values(), strict=True):
        assert torch.equal(value, expected), name


@pytest.mark.parametrize("bf16", [False, True])
def test_load_model_runs_the_top_block_channels_last_only_where_inference_is_float32(monkeypatch, bf16):
    from brainkit.nets.layout import ChannelsLastInstanceNorm3d

    monkeypatch.setattr(segment, "native_bf16", lambda device: bf16)
    model = segment.load_model()
    converted = any(isinstance(module, ChannelsLastInstanceNorm3d) for module in model.modules())
    assert converted is not bf16


def test_each_series_of_a_dicom_folder_gets_its_own_volumes_row_name(tmp_path, monkeypatch):
    from brainkit.io.discover import discover, load_item
    from tests.test_io import dicom_slice

    for number, uid in ((3, "1.2.3.3"), (4, "1.2.3.4")):  # two series in one folder, as scanners export them
        for k in range(4):
            dicom_slice(tmp_path / f"s{number}_{k}.dcm", np.full((6, 6), 50 + k), 2.0 * k, SeriesInstanceUID=uid,
                        SeriesNumber=number)
    monkeypatch.setattr(segment, "label_scan", lambda scan, model, device: segment.ScanLabels(
        np.zeros(scan.shape, np.int16), segment.Geometry(segment.Grid(scan.shape, scan.affine))))
    (item,) = discover([tmp_path])
    rows = [segment.process(scan, None, tmp_path / "out") for scan in load_item(item)]
    assert [Path(row["input"]).name for row in rows] == ["3_t1_mprage", "4_t1_mprage"]  # not the folder twice
