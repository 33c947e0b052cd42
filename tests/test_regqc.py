"""Registration QC: pairs meet through their headers, synthetic training targets, metrics, and the CLI."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch

from brainkit.io import Scan
from brainkit.synth import SynthConfig, SynthEngine
from brainkit.synth.spatial import identity_grid
from brainkit.tasks import regqc
from tests.conftest import blob_volume, save_nifti


def scan(data: np.ndarray, affine: np.ndarray) -> Scan:
    return Scan(data=data, affine=affine, header=None, source=regqc.Path("s.nii.gz"), rel_path=regqc.Path("s"))


def test_pair_meets_through_the_headers():
    data = blob_volume((60, 60, 60), noise=0.0)
    affine = np.diag([regqc.SPACING] * 3 + [1.0])  # the blob fits in the box whatever the grid
    same, _ = regqc.prepare_pair(scan(data, affine), scan(data, affine))
    assert same.shape == (2, *regqc.SHAPE)
    assert torch.allclose(same[0], same[1], atol=1e-5)
    moved = affine.copy()
    moved[0, 3] = 10.0  # the header places the moving image 10 mm to the right
    shifted, _ = regqc.prepare_pair(scan(data, affine), scan(data, moved))
    assert float((shifted[0] - shifted[1]).abs().max()) > 0.2
    # and the world shift is what the box shows: 10 mm along axis 0
    voxels = round(10.0 / regqc.SPACING)
    assert torch.allclose(shifted[1, voxels:], shifted[0, :-voxels], atol=0.05)


def test_displacement_of_a_known_transform():
    relative = torch.eye(4).repeat(2, 1, 1)
    relative[1, 0, 3] = 2.0  # two voxels
    shift = regqc.displacement_mm(relative, (8, 8, 8))
    assert torch.allclose(shift[0], torch.zeros(8, 8, 8))
    assert torch.allclose(shift[1], torch.full((8, 8, 8), 2 * regqc.SPACING))


def test_world_move_has_the_asked_size():
    rng = np.random.default_rng(0)
    centre = np.array([10.0, -5.0, 3.0])
    rotation = regqc.world_move("rotation", 5.0, centre, rng)
    assert np.allclose(rotation @ np.r_[centre, 1], np.r_[centre, 1])
    angle = np.degrees(np.arccos((np.trace(rotation[:3, :3]) - 1) / 2))
    assert angle == pytest.approx(5.0, abs=1e-6)
    shift = regqc.world_move("shift", 3.0, centre, rng)
    assert np.linalg.norm(shift[:3, 3]) == pytest.approx(3.0)


def test_aggregate_and_metrics():
    assert regqc.aggregate(np.array([0.0, 0.1, 0.9, 1.0])) == pytest.approx(0.95)
    rows = [{"kind": "shift", "size": 0.0, "truth": "aligned", "decision": "aligned", "p_misaligned": 0.3},
            {"kind": "shift", "size": 2.0, "truth": "misaligned", "decision": "misaligned", "p_misaligned": 0.9},
            {"kind": "rotation", "size": 2.0, "truth": "misaligned", "decision": "aligned", "p_misaligned": 0.2},
            {"kind": "shift", "size": 1.0, "truth": "in between", "decision": "misaligned", "p_misaligned": 0.8}]
    metrics = regqc.regqc_metrics(rows, [("aligned", 0.1), ("misaligned", 0.9), ("misaligned", 0.2)])
    assert metrics["image_precision"] == 1.0 and metrics["image_recall"] == 0.5
    assert metrics["false_alarm_rate"] == 0.0
    assert metrics["auroc"] == 0.5  # the 2 degree pair scores below the aligned one; the 1 mm one is left out
    assert metrics["detected_shift_2"] == 1.0 and metrics["detected_rotation_2"] == 0.0
    assert metrics["slice_f1"] == pytest.approx(2 / 3, abs=1e-4)


def test_moving_image_outside_the_fixed_head_is_misaligned_for_certain(tmp_path):
    data = blob_volume((60, 60, 60), noise=0.0)
    affine = np.diag([regqc.SPACING] * 3 + [1.0])
    far = affine.copy()
    far[0, 3] = 500.0  # the header places the moving image half a metre away
    result = regqc.predict_pair(scan(data, affine), scan(data, far), regqc.build_model().eval())
    assert (result.p_misaligned, result.decision, result.slices) == (1.0, "misaligned", [])
    assert regqc.shift_text(result) == "no overlap"
    assert regqc.save_pair_picture(result, tmp_path / "far.png").stat().st_size > 0
    with pytest.raises(regqc.BrainkitError, match="blank"):
        regqc.predict_pair(scan(np.zeros_like(data), affine), scan(data, affine), regqc.build_model().eval())


def test_pairs_csv_rows_come_as_written_and_a_row_without_both_images_fails_in_one_line(tmp_path):
    (tmp_path / "pairs.csv").write_text("fixed, moving\na/t1.nii.gz, a/t2.nii.gz\n")
    assert regqc.read_pairs(tmp_path / "pairs.csv") == [("a/t1.nii.gz", "a/t2.nii.gz")]
    (tmp_path / "gap.csv").write_text("fixed,moving\na/t1.nii.gz,a/t2.nii.gz\nb/t1.nii.gz,\n")
    with pytest.raises(regqc.BrainkitError, match="row 3 lacks a fixed or a moving image"):
        regqc.read_pairs(tmp_path / "gap.csv")


def test_pair_file_looks_in_the_csv_folder_first_then_in_the_working_folder(tmp_path, monkeypatch):
    for name in ("lists/a/t1.nii.gz", "a/t1.nii.gz", "b/t2.nii.gz"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).touch()
    monkeypatch.chdir(tmp_path)
    folder = tmp_path / "lists"
    assert regqc.pair_file("a/t1.nii.gz", folder) == folder / "a/t1.nii.gz"
    assert regqc.pair_file("b/t2.nii.gz", folder) == Path("b/t2.nii.gz")
    assert regqc.pair_file("c/missing.nii.gz", folder) == folder / "c/missing.nii.gz"  # the error names the CSV's
    assert regqc.pair_file(str(tmp_path / "b/t2.nii.gz"), folder) == tmp_path / "b/t2.nii.gz"


def test_synthetic_training_batch_has_slices_and_targets(shared_data):
    batch_for = regqc.training_batches(shared_data, pairs_per_step=2, slices_per_axis=3)
    for step in (1, 2):  # brain label maps, then random shapes
        images, targets = batch_for(step, torch.Generator().manual_seed(step))
        assert images.shape == (18, 2, *regqc.SHAPE[:2])
        assert set(targets[:, 0].tolist()) <= {0.0, 1.0}
        misaligned = targets[:, 0] > 0.5
        shift_mm = targets[:, 1] * regqc.SHIFT_UNIT_MM
        # aligned pairs: the residual shift plus what the residual rotation moves the box's corners
        residual, corner_mm = regqc.ALIGNED_RESIDUAL, np.linalg.norm(regqc.SHAPE) / 2 * regqc.SPACING
        assert torch.all(shift_mm[~misaligned] < residual * regqc.SPACING + np.radians(residual) * corner_mm)
        assert torch.all(shift_mm >= 0)


def test_aligned_pairs_move_no_voxel_near_the_centre_by_a_millimetre():
    engine = SynthEngine(None, SynthConfig(shape=regqc.SHAPE))
    _, relative, misaligned = regqc.draw_pairs(engine, 6, torch.Generator().manual_seed(3), misaligned_prob=0.0)
    assert not misaligned.any()
    moved_mm = regqc.displacement_mm(relative, regqc.SHAPE)
    centre = (torch.tensor(regqc.SHAPE) - 1) / 2
    radius = (identity_grid(regqc.SHAPE) - centre.view(3, 1, 1, 1)).norm(dim=0) * regqc.SPACING
    within = moved_mm[:, radius <= 50]
    assert float(within.max()) < 1.0  # the "aligned: under 1 mm"
    assert float(within.max()) > 0.05  # yet a registration's residual, not a perfect match


def test_threshold_keeps_false_alarms_at_most_five_percent():
    p = np.array([0.1] * 18 + [0.6, 0.9] + [0.7, 0.8, 0.95, 0.4])
    truth = np.array([False] * 20 + [True] * 4)
    threshold = regqc.choose_threshold(p, truth)
    assert np.mean(p[~truth] >= threshold) <= 0.05
    assert threshold == pytest.approx(0.7)  # 0.6 would raise a false alarm on 2 of 20 aligned pairs


def test_moved_pair_moves_only_the_moving_image_by_the_asked_size():
    volume = torch.from_numpy(blob_volume((32, 32, 32), noise=0.0).astype(np.float32))
    pair = torch.stack([volume, volume])
    rng = np.random.default_rng(0)
    unmoved = regqc.moved_pair(pair, "shift", 0.0, rng)
    assert torch.allclose(unmoved, pair, atol=1e-5)
    moved = regqc.moved_pair(pair, "shift", 4.0, rng)
    assert torch.equal(moved[0], pair[0])
    # the centre of mass moves by 4 mm
    axes = torch.meshgrid(*[torch.arange(32.0)] * 3, indexing="ij")
    centre = [torch.stack([(v * a).sum() / v.sum() for a in axes]) for v in (moved[0], moved[1])]
    assert float((centre[1] - centre[0]).norm()) == pytest.approx(4.0 / regqc.SPACING, abs=0.3)


def test_evaluation_cases_cover_every_move_once():
    seen = []
    regqc.evaluation_cases(["a", "b"], lambda pair, kind, size: (pair, kind, size),
                           lambda pair, moved, kind, size, truth: seen.append((pair, kind, size, truth)), "x", True)
    assert len(seen) == 2 * (2 * len(regqc.MOVES_MM_OR_DEG) - 1)
    assert ("a", "shift", 0.0, "aligned") in seen and ("b", "rotation", 1.0, "in between") in seen
    assert ("a", "rotation", 0.0, "aligned") not in seen
    assert all(truth == "misaligned" for _, _, size, truth in seen if size >= 2)


def test_shared_edges_tells_a_contrast_that_keeps_edges_from_one_that_hides_them():
    volume = torch.from_numpy(blob_volume((32, 32, 32), noise=0.0).astype(np.float32))
    inverted = 1 - volume  # T1 vs T2: other brightness, same edges
    hidden = (volume > 0.5).float() * 0.5 + torch.rand(volume.shape, generator=torch.Generator().manual_seed(0)) * 0.5
    assert regqc.shared_edges(torch.stack([volume, inverted])) == pytest.approx(1.0)
    assert regqc.shared_edges(torch.stack([volume, torch.rand_like(volume)])) < regqc.MIN_SHARED_EDGES
    assert regqc.shared_edges(torch.stack([volume, hidden])) < regqc.shared_edges(torch.stack([volume, volume]))


def test_threshold_set_pairs_are_aligned_and_share_edges(shared_data):
    pairs = regqc.synthetic_test_pairs(shared_data, 4)
    assert [name for name, _ in pairs] == ["synthetic_brain_0", "synthetic_shapes_1", "synthetic_brain_2",
                                           "synthetic_shapes_3"]
    for _, pair in pairs:
        assert pair.shape == (2, *regqc.SHAPE)
        assert regqc.shared_edges(pair) >= regqc.MIN_SHARED_EDGES


def test_evaluate_cli_on_your_own_aligned_pairs(tmp_path):
    from tests.test_cli import brainkit

    volume = blob_volume((48, 48, 48), noise=0.0).astype(np.float32)
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    save_nifti(tmp_path / "t1.nii.gz", volume, affine)
    save_nifti(tmp_path / "t2.nii.gz", volume.max() - volume, affine)
    (tmp_path / "pairs.csv").write_text("fixed,moving\nt1.nii.gz,t2.nii.gz\n")
    result = brainkit("evaluate", "regqc", "--pairs", str(tmp_path / "pairs.csv"), "-o", str(tmp_path / "eval"))
    assert result.returncode == 0, result.stderr
    with open(tmp_path / "eval" / "regqc_evaluation.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 2 * len(regqc.MOVES_MM_OR_DEG) - 1  # as is, then each shift and rotation
    assert {row["fixed"] for row in rows} == {"t1.nii.gz"} and rows[0]["truth"] == "aligned"
    assert "image_f1" in (tmp_path / "eval" / "regqc_evaluation_summary.csv").read_text()


def test_picture_names_keep_pairs_of_equally_named_files_apart():
    assert regqc.picture_names([("/d/t1.nii.gz", "/d/t2.nii.gz")]) == ["t2_on_t1.png"]
    pairs = [("/d/p1/t1.nii.gz", "/d/p1/t2.nii.gz"), ("/d/p2/t1.nii.gz", "/d/p2/t2.nii.gz"),
             ("/d/p3/t1.nii.gz", "/d/p2/t2.nii.gz")]
    assert regqc.picture_names(pairs) == ["p1/t2_on_t1.png", "p2/t2_on_t1.png", "p2/t2_on_t1_2.png"]


def test_regqc_cli_writes_a_row_and_a_picture_per_misaligned_pair(tmp_path):
    from tests.test_cli import brainkit

    volume = blob_volume((48, 48, 48), noise=0.0).astype(np.float32)
    affine, far = np.diag([2.0, 2.0, 2.0, 1.0]), np.diag([2.0, 2.0, 2.0, 1.0])
    far[0, 3] = 500.0  # each moving image's header places it half a metre away: misaligned for certain
    lines = ["fixed,moving"]
    for patient in ("p1", "p2"):
        save_nifti(tmp_path / patient / "t1.nii.gz", volume, affine)
        save_nifti(tmp_path / patient / "t2.nii.gz", volume.max() - volume, far)
        lines.append(f"{patient}/t1.nii.gz,{patient}/t2.nii.gz")
    (tmp_path / "pairs.csv").write_text("\n".join(lines) + "\n")
    result = brainkit("regqc", "--pairs", str(tmp_path / "pairs.csv"), "-o", str(tmp_path / "qc"))
    assert result.returncode == 0, result.stderr
    with open(tmp_path / "qc" / "regqc.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["decision"] for row in rows] == ["misaligned", "misaligned"]
    as_written = [(f"{patient}/t1.nii.gz", f"{patient}/t2.nii.gz") for patient in ("p1", "p2")]
    assert [(row["fixed"], row["moving"]) for row in rows] == as_written
    pictures = [Path(row["picture"]) for row in rows]
    assert pictures == [tmp_path / "qc" / "regqc_pictures" / patient / "t2_on_t1.png" for patient in ("p1", "p2")]
    assert all(picture.stat().st_size > 0 for picture in pictures)
    assert (tmp_path / "qc" / "regqc_slices.csv").read_text().startswith("fixed,moving,axis,slice,p_misaligned")
