"""Bundled model weights (fp16 state dicts) and their model cards; loading and saving them."""

from __future__ import annotations

from pathlib import Path

import torch

from brainkit.errors import BrainkitError
from brainkit.io.write import write_with

FOLDER = Path(__file__).resolve().parent


def load_weights(model: torch.nn.Module, path: Path, job: str, device: torch.device | str = "cpu") -> torch.nn.Module:
    """Load fp16 weights (or a training checkpoint's model) into `model`, in fp32 and eval mode."""
    if not path.exists():
        raise BrainkitError(path, f"{job} weights are missing (this version may ship none): train with "
                                 f"`brainkit train {job}` and pass --weights, or reinstall brainkit")
    state = torch.load(path, map_location="cpu", weights_only=True)
    state = state.get("model", state)
    model.load_state_dict({key: value.float() for key, value in state.items()})
    return model.to(device).eval()


def save_weights(model: torch.nn.Module, path: Path) -> Path:
    """Save the model's state as fp16 (half the size; inference runs in fp32), atomically."""
    state = {key: value.half() if value.is_floating_point() else value for key, value in model.state_dict().items()}
    return write_with(path, lambda tmp: torch.save(state, tmp))
