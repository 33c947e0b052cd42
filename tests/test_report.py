"""Figures: where overlays cut a volume."""

from __future__ import annotations

import numpy as np

from brainkit.report.figures import fullest_planes, head_box, save_overlay


def test_a_label_maps_sagittal_cut_goes_through_a_structure_not_the_empty_midline():
    labels = np.zeros((31, 20, 20), np.int16)
    labels[4:8, 8:12, 8:12] = 12  # a left and a right structure, the midline (x = 15) empty between them
    labels[23:28, 8:12, 6:14] = 51
    cut = fullest_planes(labels)
    assert labels[cut[0]].any() and labels[:, cut[1]].any() and labels[:, :, cut[2]].any()
    assert 23 <= cut[0] < 28  # the right structure's planes hold more voxels than the left's


def test_a_label_map_overlay_is_written_as_a_png(tmp_path):
    labels = np.zeros((31, 20, 20), np.int16)
    labels[4:8, 8:12, 8:12] = 12
    target = save_overlay(np.random.default_rng(0).random(labels.shape), labels, np.eye(4), tmp_path / "o.png",
                          cmap="tab20", label_map=True)
    assert target.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_pictures_show_the_heads_box_not_the_empty_field_of_view():
    volume = np.zeros((60, 70, 50), np.float32)
    volume[20:40, 25:45, 10:30] = 1.0
    box = head_box(volume, margin=2)
    assert [(s.start, s.stop) for s in box] == [(18, 42), (23, 47), (8, 32)]
