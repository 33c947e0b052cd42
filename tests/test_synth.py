"""Synthetic engine: reproducible, labels aligned with intensities, affine as returned, pair and mirror modes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from brainkit.synth import LabelBank, SynthConfig, SynthEngine, label_map_files, random_shape_labels, shared_label_maps
from brainkit.synth.spatial import control_points, dense, log_uniform, mapped_points, smooth_displacement
from tests.conftest import toy_bank

SHAPE = (40, 40, 40)
STILL = dict(rotation_deg=0.0, scaling=0.0, shear=0.0, translation=0.0, deform_std=0.0)
CLEAN = dict(label_std_max=0.0, blur_max=0.0, thick_prob=0.0, bias_std=0.0, gamma_std=0.0, noise_max=0.0)


def test_bank_gives_left_right_homologues_one_intensity_class():
    bank = toy_bank()
    cls = dict(zip(bank.values.tolist(), bank.intensity_class.tolist()))
    assert cls[2] == cls[41] and cls[10] == cls[49]
    assert len({cls[0], cls[2], cls[10], cls[99]}) == 4


def test_same_seed_same_batch_and_different_seed_differs():
    config = SynthConfig(shape=SHAPE)
    first = SynthEngine(toy_bank(), config, seed=3).generate(2)
    again = SynthEngine(toy_bank(), config, seed=3).generate(2)
    other = SynthEngine(toy_bank(), config, seed=4).generate(2)
    assert torch.equal(first.image, again.image) and torch.equal(first.labels, again.labels)
    assert not torch.equal(first.image, other.image)


def test_images_are_finite_in_unit_range_with_documented_shapes():
    batch = SynthEngine(toy_bank(), SynthConfig(shape=SHAPE), seed=0).generate(3)
    assert batch.image.shape == (3, 1, *SHAPE) and batch.labels.shape == (3, 1, *SHAPE)
    assert batch.image.dtype == torch.float32 and batch.labels.dtype == torch.int64
    assert torch.isfinite(batch.image).all()
    assert batch.image.min() >= 0 and batch.image.max() <= 1
    assert batch.affine.shape == (3, 4, 4)


def test_each_label_region_has_one_intensity_when_acquisition_effects_are_off():
    engine = SynthEngine(toy_bank(), SynthConfig(shape=SHAPE, deform_std=2.0, **CLEAN), seed=1)
    batch = engine.generate(2)
    for image, labels in zip(batch.image[:, 0], batch.labels[:, 0]):
        for index in labels.unique():
            values = image[labels == index]
            assert float(values.max() - values.min()) < 1e-5  # deformed labels and image stay aligned
        left = image[labels == int(np.flatnonzero(engine.bank.values == 10)[0])]
        right = image[labels == int(np.flatnonzero(engine.bank.values == 49)[0])]
        if len(left) and len(right):
            assert torch.allclose(left[0], right[0])


def test_returned_affine_maps_output_voxels_to_label_voxels():
    config = SynthConfig(shape=SHAPE, rotation_deg=20, scaling=0.1, translation=3, deform_std=0.0, **CLEAN)
    engine = SynthEngine(toy_bank(), config, seed=5)
    batch = engine.generate(4)
    marker = int(np.flatnonzero(engine.bank.values == 99)[0])
    for i in range(4):
        source = engine.bank.maps[int(batch.params["map_index"][i]), 0]
        where_in = torch.nonzero(source == marker).float().mean(0)
        where_out = torch.nonzero(batch.labels[i, 0] == marker).float().mean(0)
        mapped = batch.affine[i, :3, :3] @ where_out + batch.affine[i, :3, 3]
        assert torch.allclose(mapped, where_in, atol=1.0)


def test_mirrored_samples_are_exact_left_right_flips():
    config = SynthConfig(shape=SHAPE)
    plain = SynthEngine(toy_bank(), config, seed=7).generate(4)
    mirrored, flipped = SynthEngine(toy_bank(), config, seed=7).generate_mirrored(4)
    assert flipped.dtype == torch.bool
    for i in range(4):
        expected = plain.labels[i].flip(1) if flipped[i] else plain.labels[i]
        assert torch.equal(mirrored.labels[i], expected)


def test_aligned_pairs_share_labels_and_misaligned_pairs_follow_their_transform():
    engine = SynthEngine(toy_bank(), SynthConfig(shape=SHAPE, **STILL), seed=2)
    fixed, moving, relative, misaligned = engine.generate_pair(3, misaligned_prob=0.0, aligned_shift=0.0,
                                                               aligned_rotation_deg=0.0)
    assert not misaligned.any()
    assert torch.equal(fixed.labels, moving.labels)
    assert not torch.equal(fixed.image, moving.image)  # independent contrasts
    fixed, moving, relative, misaligned = engine.generate_pair(3, misaligned_prob=1.0, min_shift=3, max_shift=5,
                                                               warp_std=0.0)
    assert misaligned.all()
    for i in range(3):
        moving_labels, fixed_labels = moving.labels[i, 0], fixed.labels[i, 0]
        assert not torch.equal(moving_labels, fixed_labels)
        q = control_points(SHAPE, 1).view(1, 3, *SHAPE)
        at = mapped_points(relative[i : i + 1], q, None, SHAPE)[0].round().long().clamp(0, SHAPE[0] - 1)
        looked_up = fixed_labels[at[0], at[1], at[2]]
        foreground = moving_labels > 0
        agreement = (looked_up[foreground] == moving_labels[foreground]).float().mean()
        assert agreement > 0.9


def test_aligned_pairs_get_a_registration_residual_only_when_asked():
    def aligned_pair(residual: float):
        engine = SynthEngine(toy_bank(), SynthConfig(shape=SHAPE, **STILL), seed=5)
        fixed, moving, _, _ = engine.generate_pair(2, misaligned_prob=0.0, aligned_shift=0.0, aligned_rotation_deg=0.0,
                                                   warp_std=3.0, aligned_warp_std=residual)
        return (fixed.labels != moving.labels).float().mean()

    assert aligned_pair(0.0) == 0
    assert 0 < aligned_pair(1.5) < 0.2  # boundaries move a little; the anatomy stays in place


def test_random_shape_maps_and_engine_without_a_bank():
    generator = torch.Generator().manual_seed(0)
    labels = random_shape_labels(2, (24, 24, 24), n_labels=6, generator=generator)
    assert labels.shape == (2, 1, 24, 24, 24) and int(labels.max()) < 6 and int(labels.min()) >= 0
    assert len(labels.unique()) > 3
    batch = SynthEngine(None, SynthConfig(shape=(24, 24, 24), random_shape_labels=6), seed=0).generate(2)
    assert torch.isfinite(batch.image).all()


def test_velocity_field_integration_is_finite_and_smooth():
    generator = torch.Generator().manual_seed(0)
    field = smooth_displacement(2, SHAPE, 3.0, 8, generator, integrate_steps=5)
    assert torch.isfinite(field).all()
    full = dense(field, SHAPE)
    assert full.shape == (2, 3, *SHAPE)
    assert float(full.diff(dim=2).abs().max()) < 2.0


def test_skull_stripping_turns_non_brain_labels_into_background_and_keeps_the_brain():
    bank = toy_bank()
    marker, left = (int(np.flatnonzero(bank.values == v)[0]) for v in (99, 2))
    kept = SynthEngine(bank, SynthConfig(shape=SHAPE, **STILL), seed=0).generate(2)
    stripped = SynthEngine(bank, SynthConfig(shape=SHAPE, strip_prob=1.0, **STILL), seed=0).generate(2)
    assert (kept.labels == marker).any() and not (stripped.labels == marker).any()
    assert torch.equal(stripped.labels == left, kept.labels == left)
    assert bool(stripped.params["stripped"].all()) and not bool(kept.params["stripped"].any())


def test_ordered_contrast_puts_subcortical_grey_between_cortex_and_white_matter():
    from brainkit.synth.labels import CORTEX, SUBCORTICAL_GREY, WHITE_MATTER

    labels = np.zeros((24, 24, 24), np.int32)
    labels[2:22, 2:22, 2:22] = 3  # cortex
    labels[5:19, 5:19, 5:19] = 2  # white matter
    labels[8:12, 8:12, 8:12] = 10  # thalamus
    labels[13:16, 13:16, 13:16] = 24  # CSF: keeps its random mean
    bank = LabelBank.from_arrays([labels])
    tissue = dict(zip(bank.values.tolist(), bank.class_tissue[bank.intensity_class].tolist()))
    assert (tissue[2], tissue[3], tissue[10]) == (WHITE_MATTER, CORTEX, SUBCORTICAL_GREY)
    config = SynthConfig(shape=(24, 24, 24), ordered_contrast_prob=1.0, **STILL, **CLEAN)
    batch = SynthEngine(bank, config, seed=2).generate(8)
    at = {value: (batch.labels[:, 0] == int(np.flatnonzero(bank.values == value)[0])) for value in (2, 3, 10)}
    for index, image in enumerate(batch.image[:, 0]):
        white, cortex, thalamus = (float(image[at[value][index]].mean()) for value in (2, 3, 10))
        assert min(white, cortex) - 1e-6 <= thalamus <= max(white, cortex) + 1e-6
    unordered = SynthEngine(bank, SynthConfig(shape=(24, 24, 24), **STILL, **CLEAN), seed=2).generate(8)
    assert not torch.equal(unordered.image, batch.image)


def test_fixed_contrasts_order_tissues_as_the_named_sequence_does():
    from brainkit.synth.contrasts import render_contrast

    labels = np.zeros((30, 30, 30), np.int32)
    labels[3:27, 3:27, 3:27] = 3  # cortex
    labels[7:23, 7:23, 7:23] = 41  # right white matter
    labels[12:18, 12:18, 12:18] = 4  # ventricle
    centre = {"gm": (4, 15, 15), "wm": (9, 15, 15), "csf": (15, 15, 15)}

    def means(contrast):
        image = render_contrast(labels, contrast, seed=1)
        return {tissue: image[x - 1:x + 2, y - 1:y + 2, z - 1:z + 2].mean() for tissue, (x, y, z) in centre.items()}

    t1, t2, flair = means("t1"), means("t2"), means("flair")
    assert t1["wm"] > t1["gm"] > t1["csf"] and t2["csf"] > t2["gm"] > t2["wm"]
    assert flair["gm"] > flair["wm"] > flair["csf"]
    assert abs(render_contrast(labels, "t2", seed=1)[0, 0, 0]) < 1e-3  # background stays dark
    with pytest.raises(ValueError, match="unknown contrast"):
        render_contrast(labels, "pet")


@pytest.mark.parametrize("name", ["training_seg_01.nii.gz"])
def test_real_label_map_bank(shared_data, name):
    bank = LabelBank.from_files([shared_data / "synthseg_label_maps" / name], spacing=2.0, shape=(96, 96, 96))
    assert bank.maps.shape == (1, 1, 96, 96, 96)
    assert {17, 53}.issubset(set(bank.values.tolist()))
    assert (bank.maps > 0).float().mean() > 0.2  # the head fills the box
    batch = SynthEngine(bank, SynthConfig(shape=(96, 96, 96)), seed=0).generate(1)
    assert torch.isfinite(batch.image).all()


def test_log_uniform_sizes_stay_in_range_and_favour_small_ones():
    sizes = log_uniform(2.0, 20.0, (20000,), torch.Generator().manual_seed(0))
    assert sizes.min() >= 2.0 and sizes.max() < 20.0
    assert abs(float(sizes.log().mean()) - np.log(np.sqrt(2.0 * 20.0))) < 0.02  # geometric mean in the middle
    assert float((sizes < 4).float().mean()) == pytest.approx(np.log(2) / np.log(10), abs=0.02)  # uniform: 0.11


def test_thick_slices_keep_the_image_where_its_labels_are():
    from brainkit.synth.intensity import thick_slices

    ramp = torch.arange(48, dtype=torch.float32).view(1, 1, 1, 48, 1).expand(3, 1, 4, 48, 4).contiguous()
    thickness = torch.tensor([[1.0, 5.1, 1.0], [1.0, 4.3, 1.0], [1.0, 1.0, 1.0]])  # whole voxels not required
    assert torch.allclose(thick_slices(ramp, thickness), ramp, atol=1e-4)  # linear in, linear out: no shift
    volume = torch.rand(1, 1, 8, 40, 8, generator=torch.Generator().manual_seed(0))
    thick = thick_slices(volume, torch.tensor([[1.0, 5.0, 1.0]]))
    assert torch.allclose(thick[:, :, :, ::5], volume[:, :, :, ::5])  # acquired slices kept
    assert not torch.allclose(thick[:, :, :, 2], volume[:, :, :, 2])  # the ones between interpolated


def test_shared_label_maps_are_every_image_in_the_folder_and_none_is_a_clear_exit(tmp_path):
    with pytest.raises(SystemExit, match="no label maps in .*synthseg_label_maps: give --data"):
        shared_label_maps(tmp_path)  # no such folder
    folder = tmp_path / "synthseg_label_maps"
    folder.mkdir()
    with pytest.raises(SystemExit, match="no label maps"):
        shared_label_maps(tmp_path)
    for name in ("b.nii.gz", "a.nii", "c.mgz", "labels_table.txt"):
        (folder / name).touch()
    assert [path.name for path in shared_label_maps(tmp_path)] == ["a.nii", "b.nii.gz", "c.mgz"]


def test_label_map_files_take_files_as_given_and_search_folders(tmp_path):
    for name in ("maps/b_seg.nii.gz", "maps/sub/a_seg.mgz", "maps/notes.txt", "one.nii"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).touch()
    found = label_map_files([tmp_path / "one.nii", tmp_path / "maps"])
    assert [path.relative_to(tmp_path).as_posix() for path in found] == ["one.nii", "maps/b_seg.nii.gz",
                                                                        "maps/sub/a_seg.mgz"]
    with pytest.raises(SystemExit, match="no label maps in .*missing"):
        label_map_files([tmp_path / "missing"])
