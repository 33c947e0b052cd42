"""Grad-CAM through MONAI, for any brainkit network that ends in a score."""

from __future__ import annotations

import numpy as np
import torch
from monai.visualize import GradCAM


def gradcam(model: torch.nn.Module, image: torch.Tensor, layer: str) -> np.ndarray:
    """Grad-CAM of `model`'s score for `image` (1, C, X, Y, Z) at `layer`, upsampled to (X, Y, Z), in [0, 1]."""
    was_training = model.training
    model.eval()
    cam = GradCAM(nn_module=model, target_layers=layer)
    with torch.enable_grad():
        heat = cam(x=image.clone().requires_grad_(True), class_idx=0)
    model.train(was_training)
    heat = heat[0, 0].detach().cpu().numpy().astype(np.float32)
    span = float(heat.max() - heat.min())
    return (heat - heat.min()) / span if span > 0 else np.zeros_like(heat)
