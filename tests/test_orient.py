"""Orientation job: preparation from world axes, exact antisymmetry, decisions, fix, and the bundled model."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from brainkit.io import Scan, load
from brainkit.nets.mirror import mirror_classifier
from brainkit.tasks import orient
from tests.conftest import blob_volume, toy_bank


def lopsided_head(affine: np.ndarray) -> Scan:
    """A blob with a bright lump on the patient's left (world x < 0), in the voxel order `affine` implies."""
    data = blob_volume((60, 60, 60), noise=0.0)
    world = np.stack(np.meshgrid(*[np.arange(60)] * 3, indexing="ij"), -1) @ affine[:3, :3].T + affine[:3, 3]
    data[(world[..., 0] < -15) & (np.abs(world[..., 1]) < 10) & (np.abs(world[..., 2]) < 10)] += 200
    return Scan(data=data, affine=affine, header=None, source=orient.Path("x.nii.gz"), rel_path=orient.Path("x"))


def test_prepare_works_from_world_axes_not_voxel_order():
    ras = np.diag([3.0, 3.0, 3.0, 1.0])
    ras[:3, 3] = -88.5
    las = ras.copy()
    las[0, 0], las[0, 3] = -3.0, 88.5
    first, geometry = orient.prepare(lopsided_head(ras))
    second, _ = orient.prepare(lopsided_head(las))
    assert first.shape == (1, 1, 64, 64, 64) and geometry.grid.axcodes == "RAS"
    assert torch.allclose(first, second, atol=1e-5)  # same anatomy, different voxel order: same model input
    assert float(first.min()) >= 0 and float(first.max()) <= 1


def test_model_is_exactly_antisymmetric_under_mirroring():
    torch.manual_seed(0)
    model = mirror_classifier((32, 32, 32), channels=(4, 8)).eval()
    x = torch.rand(3, 1, 32, 32, 32)
    with torch.no_grad():
        assert torch.allclose(model(x), -model(x.flip(2)), atol=1e-5)


def test_decisions_and_uncertain_band():
    low, high = orient.UNCERTAIN_BAND
    assert orient.decide(0.01) == "ok" and orient.decide(low) == "ok"
    assert orient.decide(0.99) == "flipped" and orient.decide(high) == "flipped"
    assert orient.decide(0.5) == "uncertain"


def test_corrected_copy_mirrors_the_world_x_axis_whatever_the_voxel_order():
    affine = np.array([[0, 0, -1.0, 0], [1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 0, 1]])  # voxel axis 2 -> world x
    scan = lopsided_head(affine)
    fixed = orient.corrected_copy(scan)
    assert np.array_equal(fixed, scan.data[:, :, ::-1])


def test_orient_with_missing_weights_fails_with_a_clear_line(tmp_path):
    from tests.conftest import save_nifti
    from tests.test_cli import brainkit

    image = save_nifti(tmp_path / "t1.nii.gz", blob_volume())
    result = brainkit("orient", str(image), "--weights", str(tmp_path / "none.pt"), "-o", str(tmp_path / "out"))
    assert result.returncode != 0
    assert "orient weights are missing" in result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr


def test_bundled_model_gives_opposite_decisions_for_a_real_head_and_its_mirror(shared_data):
    path = shared_data / "heads" / "seg3d_T1_head.nii.gz"  # a validation scan (never trained on)
    if not path.exists():
        pytest.skip(f"{path} is absent (shared data not beside the repository)")
    scan = load(path)
    mirrored = Scan(data=orient.corrected_copy(scan), affine=scan.affine, header=scan.header, source=scan.source,
                    rel_path=scan.rel_path)
    model = orient.load_model()
    as_acquired = orient.p_flipped(orient.prepare(scan)[0], model)
    flipped = orient.p_flipped(orient.prepare(mirrored)[0], model)
    assert orient.decide(as_acquired) == "ok" and orient.decide(flipped) == "flipped"
    assert as_acquired + flipped == pytest.approx(1.0, abs=0.02)  # same head read from the other side


def test_evaluation_metrics_on_known_cases():
    rows = [{"mirrored": False, "p_flipped": 0.1, "decision": "ok", "correct": True},
            {"mirrored": True, "p_flipped": 0.9, "decision": "flipped", "correct": True},
            {"mirrored": False, "p_flipped": 0.6, "decision": "uncertain", "correct": False},
            {"mirrored": True, "p_flipped": 0.4, "decision": "uncertain", "correct": False}]
    metrics = orient.orient_metrics(rows)
    assert metrics["accuracy"] == 0.5 and metrics["accuracy_at_0.5"] == 0.5
    assert metrics["uncertain_rate"] == 0.5 and metrics["confidently_wrong"] == 0
    assert metrics["band_half_width_needed"] == pytest.approx(0.1)
    assert metrics["auroc"] == pytest.approx(0.75)


def test_orient_cli_with_given_weights_writes_the_csv_and_explains(tmp_path):
    from brainkit.weights import save_weights
    from tests.conftest import save_nifti
    from tests.test_cli import brainkit

    weights = save_weights(orient.mirror_classifier(orient.SHAPE), tmp_path / "w.pt")
    image = save_nifti(tmp_path / "in" / "t1.nii.gz", blob_volume((40, 48, 36)), np.diag([2.0, 2.0, 2.0, 1.0]))
    result = brainkit("orient", str(image), "--weights", str(weights), "--explain", "-o", str(tmp_path / "out"))
    assert result.returncode == 0, result.stderr
    rows = (tmp_path / "out" / "orientation.csv").read_text().splitlines()
    assert rows[0] == "input,p_flipped,decision" and len(rows) == 2
    assert rows[1].split(",")[2] in ("ok", "flipped", "uncertain")
    assert (tmp_path / "out" / "t1_gradcam.nii.gz").exists() and (tmp_path / "out" / "t1_gradcam.png").exists()


def test_cross_validation_holds_out_every_scan_once_and_never_splits_a_person(shared_data):
    folds = orient.cross_validation_folds(shared_data, 5)
    held_out = [path for _, fold in folds for path in fold]
    assert sorted(held_out) == orient.real_scans(shared_data, orient.REAL_TRAIN + orient.REAL_VALIDATION)
    for train, fold in folds:
        assert {orient.subject_of(p, shared_data) for p in train}.isdisjoint(
            {orient.subject_of(p, shared_data) for p in fold})
    ms_patient = [p for p in held_out if "patient07" in str(p)]
    assert len(ms_patient) == 3 and len({orient.subject_of(p, shared_data) for p in ms_patient}) == 1


def test_an_ensemble_file_loads_as_the_mean_of_its_members(tmp_path):
    from brainkit.nets.mirror import MeanLogit
    from brainkit.weights import save_weights

    torch.manual_seed(0)
    single = [orient.mirror_classifier(orient.SHAPE).eval() for _ in range(2)]
    path = save_weights(MeanLogit(single), tmp_path / "ensemble.pt")
    loaded = orient.load_model(path)
    x = torch.rand(1, 1, *orient.SHAPE)
    assert len(orient.members(loaded)) == 2
    with torch.no_grad():
        expected = (single[0](x) + single[1](x)) / 2
        assert torch.allclose(loaded(x), expected, atol=2e-2)  # fp16 weights
        assert torch.allclose(loaded(x), -loaded(x.flip(2)), atol=1e-5)


def test_training_batches_mix_real_scans_or_take_synthetic_heads_only():
    from brainkit.synth import SynthConfig, SynthEngine

    engine = SynthEngine(toy_bank(), SynthConfig(shape=orient.SHAPE))
    real = torch.rand(3, 1, *orient.SHAPE)
    for real_per_batch in (0, 2):  # `train orient --real 0`: synthetic heads only
        batch_for = orient.training_batches(engine, 2, real_per_batch, real)
        images, flipped = batch_for(0, torch.Generator().manual_seed(0))
        assert images.shape == (2 + real_per_batch, 1, *orient.SHAPE) and flipped.shape == (2 + real_per_batch,)
        assert set(flipped.tolist()) <= {0.0, 1.0}


def test_a_mask_in_the_input_folder_gets_its_own_error_and_the_scan_is_still_checked(tmp_path):
    from brainkit.weights import save_weights
    from tests.conftest import save_nifti
    from tests.test_cli import brainkit

    weights = save_weights(orient.mirror_classifier(orient.SHAPE), tmp_path / "w.pt")
    image = blob_volume((40, 48, 36))
    save_nifti(tmp_path / "in" / "t1.nii.gz", image, np.diag([2.0, 2.0, 2.0, 1.0]))
    save_nifti(tmp_path / "in" / "t1_mask.nii.gz", (image > 30).astype(np.uint8), np.diag([2.0, 2.0, 2.0, 1.0]))
    result = brainkit("orient", str(tmp_path / "in"), "--weights", str(weights), "-o", str(tmp_path / "out"))
    assert result.returncode == 1
    assert len((tmp_path / "out" / "orientation.csv").read_text().splitlines()) == 2
    assert "t1_mask.nii.gz: looks like a label map or mask" in result.stderr
