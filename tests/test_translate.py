"""Contrast translation: masks, normalisation, slice stacks, metrics, training batches, CLI end to end."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from brainkit.io import Scan
from brainkit.tasks import translate
from brainkit.weights import save_weights
from tests.conftest import blob_volume, save_nifti


def brain_like(shape=(30, 34, 26), background: float = 0.0) -> np.ndarray:
    """A blob with a sharp edge whose outside is exactly `background`, as in a skull-stripped or z-scored scan."""
    volume = blob_volume(shape, noise=0.0)
    return np.where(volume > 0, volume + 10, background).astype(np.float32)


@pytest.mark.parametrize("background", [0.0, -3.5])
def test_signal_mask_finds_the_brain_whatever_the_background_value(background):
    volume = brain_like(background=background)
    volume[15, 17, 13] = background - 5  # a ringing voxel below background must not move the background
    mask = translate.signal_mask(volume)
    assert mask[15, 17, 12] and not mask[0, 0, 0]
    assert mask.sum() == (volume != background).sum()


def test_normalise_in_mask_maps_brain_to_unit_range_and_zeroes_outside():
    volume = brain_like() * 7
    mask = translate.signal_mask(volume)
    out = translate.normalise_in_mask(volume, mask)
    assert out.dtype == np.float32 and out.min() == 0 and out.max() == 1
    assert not out[~mask].any()
    assert np.isclose(np.percentile(out[mask], 50), np.percentile((volume[mask] - volume[mask].min()), 50)
                      / np.ptp(volume[mask]), atol=0.05)


def test_slice_stacks_put_neighbours_in_channels():
    volume = torch.arange(2 * 3 * 4, dtype=torch.float32).view(2, 3, 4)
    stacks = translate.slice_stacks(volume)
    assert stacks.shape == (4, 3, 2, 3)
    assert torch.equal(stacks[1, 0], volume[:, :, 0]) and torch.equal(stacks[1, 2], volume[:, :, 2])
    assert not stacks[0, 0].any() and torch.equal(stacks[0, 1], volume[:, :, 0])


def test_image_metrics_are_perfect_for_identical_images_and_grow_with_error():
    truth = translate.normalise_in_mask(brain_like(), brain_like() > 0)
    mask = brain_like() > 0
    perfect = translate.summarise(translate.image_metrics(truth, truth, mask))
    assert perfect["slice_mae"] == 0 and perfect["volume_ssim"] == pytest.approx(1.0)
    worse = translate.summarise(translate.image_metrics(np.clip(truth + 0.1 * mask, 0, 1), truth, mask))
    assert 0.05 < worse["volume_mae"] <= 0.1 and worse["volume_ssim"] < 1
    assert worse["volume_psnr"] == pytest.approx(10 * np.log10(1 / worse["volume_mse"]), abs=0.05)


def test_prepare_gives_ras_1mm_box_with_in_plane_sizes_the_unet_can_halve():
    scan = Scan(brain_like((40, 44, 30)), np.diag([-1.5, 1.5, 2.0, 1.0]), None, Path("x.nii.gz"), Path("x"))
    prepared = translate.prepare(scan)
    assert prepared.geometry.grid.axcodes == "RAS" and np.allclose(prepared.geometry.grid.spacing, 1.0)
    assert prepared.image.shape[0] % 8 == 0 and prepared.image.shape[1] % 8 == 0
    assert prepared.image.max() == 1 and not prepared.image[~prepared.mask].any()


def test_translate_scan_stays_on_the_input_grid_with_zero_background():
    torch.manual_seed(0)
    model = translate.build_model().eval()
    data = brain_like((36, 40, 28))
    scan = Scan(data, np.diag([1.2, 1.2, 1.5, 1.0]), None, Path("x.nii.gz"), Path("x"))
    synthetic = translate.translate_scan(scan, model)
    assert synthetic.shape == data.shape and synthetic.dtype == np.float32
    assert not synthetic[data == 0].any() and synthetic[data > 0].max() > 0
    assert synthetic.max() <= np.percentile(data[data > 0], 99.5) + 1e-3


def test_training_batches_are_brain_patches_and_deterministic():
    image = translate.normalise_in_mask(brain_like((60, 64, 40)), brain_like((60, 64, 40)) > 0)
    mask = image > 0
    pair = tuple(torch.from_numpy(a)[None, None] for a in (image, image ** 2, mask))
    batch_for = translate.training_batches([pair], batch=3)
    stacks, slices = batch_for(1, torch.Generator().manual_seed(5))
    again, _ = batch_for(1, torch.Generator().manual_seed(5))
    assert stacks.shape == (3, 3, 128, 128) and slices.shape == (3, 1, 128, 128)
    assert torch.equal(stacks, again)
    assert (slices.flatten(1).amax(1) > 0).all()  # every patch is centred on brain
    assert float(stacks.min()) >= 0 and float(stacks.max()) <= 1
    loss = translate.TranslationLoss()(torch.zeros_like(slices), slices)
    assert torch.isfinite(loss) and loss > 0


def test_translate_and_evaluate_cli_end_to_end(tmp_path):
    from tests.test_cli import brainkit

    torch.manual_seed(0)
    weights = save_weights(translate.build_model(), tmp_path / "w.pt")
    t1 = save_nifti(tmp_path / "in" / "sub-01_T1w.nii.gz", brain_like((32, 36, 24)))
    result = brainkit("translate", str(tmp_path / "in"), "--to", "t2", "--weights", str(weights),  # --to in any case
                      "-o", str(tmp_path / "out"))
    assert result.returncode == 0, result.stderr
    synthetic = tmp_path / "out" / "sub-01_T1w_synthT2.nii.gz"
    assert nib.load(synthetic).shape == (32, 36, 24) and (tmp_path / "out" / "sub-01_T1w_synthT2.png").exists()
    result = brainkit("evaluate", "translate", "--pred", str(synthetic), "--truth", str(t1), "--input", str(t1),
                      "-o", str(tmp_path / "eval"))
    assert result.returncode == 0, result.stderr
    rows = (tmp_path / "eval" / "translate_evaluation.csv").read_text().splitlines()
    assert rows[0] == "slice,mae,mse,ssim,psnr" and rows[-1].startswith("volume,")
    assert (tmp_path / "eval" / "translate_evaluation.png").exists()


def test_translate_names_a_bad_input_and_goes_on(tmp_path):
    from tests.test_cli import brainkit

    weights = save_weights(translate.build_model(), tmp_path / "w.pt")
    save_nifti(tmp_path / "in" / "good.nii.gz", brain_like((32, 36, 24)))
    (tmp_path / "in" / "broken.nii.gz").write_bytes(b"not an image")
    result = brainkit("translate", str(tmp_path / "in"), "--weights", str(weights), "-o", str(tmp_path / "out"))
    assert result.returncode != 0 and "broken.nii.gz" in result.stdout + result.stderr
    assert (tmp_path / "out" / "good_synthT2.nii.gz").exists()
    assert "good.nii.gz: this T1 has a skull" in result.stderr  # the blob fills over 30% of its field of view
    save_nifti(tmp_path / "stripped" / "brain.nii.gz", np.pad(brain_like((32, 36, 24)), 12))
    result = brainkit("translate", str(tmp_path / "stripped"), "--weights", str(weights), "-o", str(tmp_path / "out"))
    assert result.returncode == 0 and "has a skull" not in result.stderr


def test_leave_one_patient_out_pairs_are_co_registered(shared_data):
    names = translate.patients(shared_data)
    if len(names) < 2:
        pytest.skip("needs two co-registered patients")
    source, target, mask = translate.patient_pairs(shared_data, "T2", names[:1])[0]
    assert source.shape == target.shape == mask.shape
    inside = mask[0, 0].numpy()
    assert 0.2 < inside.mean() < 0.9 and float(target.max()) == 1.0
    correlation = np.corrcoef(source[0, 0].numpy()[inside], target[0, 0].numpy()[inside])[0, 1]
    assert correlation < 0  # T1 and T2 contrasts are inverted in the brain: same place, other contrast


def test_train_translate_runs_under_torchrun_with_two_cpu_processes(shared_data, tmp_path):
    import subprocess
    import sys

    if len(translate.patients(shared_data)) < 1:
        pytest.skip("no co-registered patients")
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m",
               "brainkit.cli", "train", "translate", "--data", str(shared_data), "--steps", "2", "--batch", "1",
               "--threads", "1", "--device", "cpu", "-q", "-o", str(tmp_path / "run")]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "run" / "translate.pt").exists() and (tmp_path / "run" / "checkpoint.pt").exists()
    assert result.stdout.count("wrote") + result.stderr.count("wrote") <= 1  # only rank 0 writes weights


def test_skull_stripped_brains_are_told_from_heads():
    brain = np.zeros((40, 40, 40), np.float32)
    brain[12:28, 12:28, 12:28] = blob_volume((16, 16, 16), noise=0.0) + 10
    head = brain + np.random.default_rng(0).normal(5, 1, brain.shape).astype(np.float32)  # noisy air, scalp
    assert translate.looks_skull_stripped(brain) and not translate.looks_skull_stripped(head)


def test_brain_erosion_peels_input_and_target_alike():
    stacks = torch.zeros(1, 3, 32, 32)
    stacks[:, :, 8:24, 8:24] = 1.0
    slices = stacks[:, 1:2] * 0.5
    peeled = []
    for seed in range(8):
        out_stacks, out_slices = translate.erode_brain(stacks, slices, torch.Generator().manual_seed(seed))
        assert torch.equal(out_stacks[:, :1] > 0, out_slices > 0)  # the same voxels survive in both
        assert (out_stacks <= stacks).all() and out_stacks[0, 0, 15, 15] == 1
        peeled.append(int((out_slices > 0).sum()))
    assert min(peeled) < 256 == max(peeled)  # sometimes untouched, sometimes peeled
