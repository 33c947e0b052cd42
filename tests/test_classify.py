"""Classification: seed preprocessing pieces, folds, statistics, label reading, CLI end to end (RSNA and BIDS)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from brainkit.errors import BrainkitError
from brainkit.tasks import classify
from tests.conftest import blob_volume, save_nifti


def test_fit_square_keeps_the_aspect_ratio_and_pads_with_zeros():
    image = np.ones((20, 10), np.float32)
    square = classify.fit_square(image, 40)
    assert square.shape == (40, 40)
    assert square[:, 10:30].min() == pytest.approx(1.0) and not square[:, :10].any() and not square[:, 30:].any()


def test_centred_stack_centres_on_the_largest_slice_and_zero_pads():
    slices = [np.zeros((4, 4), np.float32) for _ in range(5)]
    slices[1][:3, :3] = 1  # the largest brain area
    stack = classify.centred_stack(slices, depth=6)
    assert stack.shape == (6, 4, 4)
    assert stack[3].sum() == 9  # the largest slice sits at depth // 2
    assert not stack[:1].any()  # before the first slice: zeros


def test_subject_folds_keep_subjects_together_and_balance_classes():
    examples = [classify.Example(Path(f"s{i}_{run}"), "a" if i % 2 else "b", f"s{i}") for i in range(12)
                for run in range(2)]
    folds = classify.subject_folds(examples, 3, seed=1)
    for subject in {e.subject for e in examples}:
        assert len({f for e, f in zip(examples, folds) if e.subject == subject}) == 1
    for fold in range(3):
        labels = [e.label for e, f in zip(examples, folds) if f == fold]
        assert labels.count("a") == labels.count("b") == 4
    assert folds == classify.subject_folds(examples, 3, seed=1)


def test_bootstrap_auroc_interval_contains_the_estimate_and_is_wide_for_few_subjects():
    rng = np.random.default_rng(0)
    truth = np.array([True, False] * 10)
    scores = truth * 0.3 + rng.random(20)
    value, low, high = classify.bootstrap_auroc(scores, truth, [str(i) for i in range(20)], resamples=500)
    assert low <= value <= high and high - low > 0.1
    assert classify.fast_auroc(scores, truth) == pytest.approx(value)


def test_roc_points_and_calibration_of_a_perfect_ranking():
    truth = np.array([True, True, False, False])
    fpr, tpr = classify.roc_points(np.array([0.9, 0.8, 0.2, 0.1]), truth)
    assert tpr[2] == 1 and fpr[2] == 0 and fpr[-1] == tpr[-1] == 1
    table, brier = classify.calibration(np.array([1.0, 1.0, 0.0, 0.0]), truth)
    assert brier == 0 and sum(row["cases"] for row in table) == 4


def test_labels_csv_needs_a_label_on_every_row_and_two_classes(tmp_path):
    table = tmp_path / "labels.csv"
    table.write_text("input,label\na.nii.gz,1\nb.nii.gz,\n")
    with pytest.raises(BrainkitError, match="row 3 lacks"):
        classify.read_examples(tmp_path, table, None, ())
    table.write_text("input,label\na.nii.gz,1\nb.nii.gz,1\n")
    with pytest.raises(BrainkitError, match="two classes"):
        classify.read_examples(tmp_path, table, None, ())


def bids_tree(root: Path, count: int = 6) -> Path:
    """Small BIDS-like tree whose two classes differ in head size (learnable in a few steps)."""
    lines = ["participant_id\tsex"]
    for i in range(count):
        sex = "m" if i % 2 else "f"
        volume = blob_volume((24 + 6 * (i % 2),) * 3, seed=i)
        save_nifti(root / f"sub-{i:02d}_T1w.nii.gz", volume, np.diag([4.0, 4.0, 4.0, 1.0]))
        lines.append(f"sub-{i:02d}\t{sex}")
    (root / "participants.tsv").write_text("\n".join(lines) + "\n")
    return root


def test_train_and_classify_on_a_bids_tree_with_cross_validation(tmp_path):
    from tests.test_cli import brainkit

    data = bids_tree(tmp_path / "bids")
    model = tmp_path / "model"
    result = brainkit("train", "classify", "--data", str(data), "--labels", str(data / "participants.tsv"),
                      "--label-column", "sex", "--folds", "2", "--steps", "3", "--width", "0.125", "--box", "32",
                      "--spacing", "4", "-o", str(model), "--seed", "1")
    assert result.returncode == 0, result.stderr + result.stdout
    for name in ("classify.pt", "config.json", "MODEL_CARD.md", "cv_predictions.csv", "roc.png", "calibration.png"):
        assert (model / name).exists(), name
    assert "auroc_ci_low" in (model / "MODEL_CARD.md").read_text()
    with open(model / "cv_predictions.csv") as handle:
        assert len(list(csv.DictReader(handle))) == 6
    broken = tmp_path / "broken.nii.gz"
    broken.write_bytes(b"nope")
    result = brainkit("classify", str(data / "sub-00_T1w.nii.gz"), str(broken), "--model", str(model), "--explain",
                      "-o", str(tmp_path / "out"))
    assert result.returncode == 1 and "broken.nii.gz" in result.stdout + result.stderr
    rows = (tmp_path / "out" / "predictions.csv").read_text().splitlines()
    assert rows[0] == "input,p_f,p_m,prediction" and len(rows) == 2
    # named by the path below the inputs' shared folder (tmp_path), as every per-input output is
    assert (tmp_path / "out" / "bids" / "sub-00_T1w_gradcam.nii.gz").exists()
    assert (tmp_path / "out" / "bids" / "sub-00_T1w_gradcam.png").exists()
    # a folder gives a row per scan in it, as every command's folder input does (not its first scan alone)
    result = brainkit("classify", str(data), "--model", str(model), "-o", str(tmp_path / "folder"))
    with open(tmp_path / "folder" / "predictions.csv") as handle:
        names = [Path(row["input"]).name for row in csv.DictReader(handle)]
    assert result.returncode == 0 and names == sorted(p.name for p in data.glob("sub-*_T1w.nii.gz"))


def test_rsna_layout_trains_and_classifies_in_seed_mode(tmp_path, shared_data):
    from tests.test_cli import brainkit

    series = [shared_data / "dicom" / "neurolabusc__dcm_qa_nih" / "In" / "20180918GE" / f"mr_000{n}" for n in (4, 5)]
    if not all(s.is_dir() for s in series):
        pytest.skip("GE DICOM series absent")
    root = tmp_path / "rsna"
    lines = ["BraTS21ID,MGMT_value"]
    for subject in range(4):
        (root / "train" / f"{subject:05d}").mkdir(parents=True)
        (root / "train" / f"{subject:05d}" / "FLAIR").symlink_to(series[subject % 2])
        lines.append(f"{subject},{subject % 2}")
    (root / "train" / "00004").mkdir()  # a subject without its FLAIR: reported, the rest goes on
    lines.append("4,1")
    (root / "train_labels.csv").write_text("\n".join(lines) + "\n")
    model = tmp_path / "model"
    result = brainkit("train", "classify", "--data", str(root), "--mode", "seed", "--depth", "8", "--size", "32",
                      "--folds", "2", "--steps", "2", "--width", "0.125", "-o", str(model))
    assert result.returncode == 0, result.stderr + result.stdout
    output = result.stdout + result.stderr
    assert "00004" in output and "lacks FLAIR" in output
    result = brainkit("classify", str(root / "train" / "00000"), str(root / "train" / "00001"), "--model", str(model),
                      "-o", str(tmp_path / "out"))
    assert result.returncode == 0, result.stderr + result.stdout
    rows = (tmp_path / "out" / "predictions.csv").read_text().splitlines()
    assert rows[0] == "input,p_0,p_1,prediction" and len(rows) == 3


def test_seed_channel_orders_slices_by_position_not_file_name(tmp_path, shared_data):
    import pydicom

    folder = shared_data / "dicom" / "neurolabusc__dcm_qa_nih" / "In" / "20180918GE" / "mr_0004"
    if not folder.is_dir():
        pytest.skip("GE DICOM series absent")
    by_position = {}
    for path in sorted(folder.iterdir()):
        if path.suffix != ".txt":
            by_position.setdefault(classify.position_along_normal(pydicom.dcmread(path)), path)
    files = [by_position[k] for k in sorted(by_position)][:12]
    prep = classify.Preprocessing(mode="seed", depth=12, size=16)
    stacks = []
    for name, order in (("forward", files), ("backward", files[::-1])):
        (tmp_path / name).mkdir()
        for number, path in enumerate(order):
            (tmp_path / name / f"{number:03d}.dcm").symlink_to(path)
        stacks.append(classify.seed_channel(tmp_path / name, prep))
    assert stacks[0].shape == (12, 16, 16) and np.array_equal(stacks[0], stacks[1])
    assert not np.array_equal(stacks[0], stacks[0][::-1])  # the order matters, and file names did not set it


def test_bundled_example_model_classifies_a_real_t1(shared_data, tmp_path):
    scan = shared_data / "t1_depression" / "sub-01_T1w.nii.gz"
    if not scan.exists():
        pytest.skip(f"{scan} is absent")
    rows, failures = classify.classify([scan], "classify_sex_t1", tmp_path)
    assert failures == [] and rows[0]["prediction"] in ("f", "m")
    assert rows[0]["p_f"] + rows[0]["p_m"] == pytest.approx(1.0, abs=1e-3)
    with pytest.raises(BrainkitError, match="classify_sex_t1"):
        classify.model_folder("no_such_model")
