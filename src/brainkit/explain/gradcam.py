"""Grad-CAM through MONAI, for any brainkit network that ends in a score."""

from __future__ import annotations

import numpy as np
import torch
from monai.visualize import GradCAM


class SignedScore(torch.nn.Module):
    """`sign` times a network's score: Grad-CAM of -score shows the evidence against the class, i.e. for the
    other side of a single-logit decision."""

    def __init__(self, model: torch.nn.Module, sign: float):
        super().__init__()
        self.model, self.sign = model, sign

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.sign * self.model(x)


def gradcam(model: torch.nn.Module, image: torch.Tensor, layer: str, sign: float = 1.0,
            normalise: bool = True) -> np.ndarray:
    """Grad-CAM of `sign` x `model`'s score for `image` (1, C, X, Y, Z) at `layer`, upsampled to (X, Y, Z); in
    [0, 1] when `normalise`, else raw (maps of several reads can then be summed before one normalisation)."""
    was_training = model.training
    model.eval()
    cam = GradCAM(nn_module=SignedScore(model, sign), target_layers=f"model.{layer}",
                  postprocessing=lambda heat: heat)
    with torch.enable_grad():
        heat = cam(x=image.clone().requires_grad_(True), class_idx=0)
    model.train(was_training)
    heat = heat[0, 0].detach().cpu().numpy().astype(np.float32)
    if not normalise:
        return heat
    span = float(heat.max() - heat.min())
    return (heat - heat.min()) / span if span > 0 else np.zeros_like(heat)
