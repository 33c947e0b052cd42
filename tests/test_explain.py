"""Grad-CAM: the evidence for either side of a single-logit decision."""

from __future__ import annotations

import gc

import numpy as np
import torch
from monai.visualize.class_activation_maps import ModelWithHooks

from brainkit.explain.gradcam import gradcam


def small_scorer() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv3d(1, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool3d(1),
                               torch.nn.Flatten(), torch.nn.Linear(4, 1))


def test_evidence_for_and_against_never_overlap():
    model = small_scorer()
    image = torch.rand(1, 1, 8, 8, 8)
    for_score = gradcam(model, image, "1", sign=1.0, normalise=False)
    against = gradcam(model, image, "1", sign=-1.0, normalise=False)
    assert for_score.shape == (8, 8, 8)
    assert (for_score > 0).any() and (against > 0).any()
    assert not ((for_score > 1e-6) & (against > 1e-6)).any()  # ReLU(z) and ReLU(-z)


def test_normalised_map_spans_zero_to_one():
    heat = gradcam(small_scorer(), torch.rand(1, 1, 8, 8, 8), "1")
    assert np.isclose(heat.min(), 0.0) and np.isclose(heat.max(), 1.0)


def test_repeated_calls_leave_nothing_behind_on_a_loaded_model():
    model, image = small_scorer(), torch.rand(1, 1, 8, 8, 8)
    first = gradcam(model, image, "1")
    for _ in range(2):
        assert np.allclose(gradcam(model, image, "1"), first)
    assert all(not layer._forward_hooks and not layer._backward_hooks for layer in model.modules())
    gc.collect()
    assert not [o for o in gc.get_objects() if type(o) is ModelWithHooks]  # nor their activations and graphs
