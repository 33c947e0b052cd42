"""Grad-CAM through MONAI, for any brainkit network that ends in a score."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

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


@contextmanager
def released_gradcam(model: torch.nn.Module, sign: float, layer: str) -> Iterator[GradCAM]:
    """MONAI's GradCAM of `sign` x `model`'s score at `layer`, with everything it leaves on `model` taken back on exit.

    MONAI registers hooks on the target layer and keeps no handle to remove them, and its hook object keeps the
    layer's output with its autograd graph, whose backward hook points back at that object: a cycle through
    torch's C++ graph that Python's garbage collector cannot see. For a model that stays loaded (a batch,
    `brainkit run`) every Grad-CAM would stay in memory, about 20 MB per scan for the orientation ensemble.
    """
    layers = list(model.modules())
    before = [(set(module._forward_hooks), set(module._backward_hooks)) for module in layers]
    cam = GradCAM(nn_module=SignedScore(model, sign), target_layers=f"model.{layer}",
                  postprocessing=lambda heat: heat)
    try:
        yield cam
    finally:
        hooked = cam.nn_module
        hooked.activations.clear()
        hooked.gradients.clear()
        hooked.score = None
        for module, (forward, backward) in zip(layers, before, strict=True):
            for key in set(module._forward_hooks) - forward:
                del module._forward_hooks[key]
            for key in set(module._backward_hooks) - backward:
                del module._backward_hooks[key]


def gradcam(model: torch.nn.Module, image: torch.Tensor, layer: str, sign: float = 1.0,
            normalise: bool = True) -> np.ndarray:
    """Grad-CAM of `sign` x `model`'s score for `image` (1, C, X, Y, Z) at `layer`, upsampled to (X, Y, Z); in
    [0, 1] when `normalise`, else raw (maps of several reads can then be summed before one normalisation)."""
    was_training = model.training
    model.eval()
    with released_gradcam(model, sign, layer) as cam, torch.enable_grad():
        heat = cam(x=image.clone().requires_grad_(True), class_idx=0)
    model.train(was_training)
    heat = heat[0, 0].detach().cpu().numpy().astype(np.float32)
    if not normalise:
        return heat
    span = float(heat.max() - heat.min())
    return (heat - heat.min()) / span if span > 0 else np.zeros_like(heat)
