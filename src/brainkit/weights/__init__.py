"""Bundled model weights (fp16 state dicts) and their model cards; loading and saving them."""

from __future__ import annotations

from pathlib import Path

import torch

from brainkit.errors import BrainkitError
from brainkit.io.write import write_with

FOLDER = Path(__file__).resolve().parent


def read_state(path: Path, job: str) -> dict[str, torch.Tensor]:
    """The state dict in bundled weights or a training checkpoint, with a clear error when the file is missing."""
    if not path.exists():
        raise BrainkitError(path, f"{job} weights are missing (this version may ship none): train with "
                                 f"`brainkit train {job}` and pass --weights, or reinstall brainkit")
    state = torch.load(path, map_location="cpu", weights_only=True)
    return state.get("model", state)


def load_weights(model: torch.nn.Module, path: Path, job: str, device: torch.device | str = "cpu",
                 state: dict[str, torch.Tensor] | None = None) -> torch.nn.Module:
    """Load fp16 weights (or a training checkpoint's model) into `model`, in fp32 and eval mode; `state` when
    the caller has read the file already (to choose the model from it)."""
    state = read_state(path, job) if state is None else state
    model.load_state_dict({key: value.float() for key, value in state.items()})
    return model.to(device).eval()


def save_weights(model: torch.nn.Module, path: Path) -> Path:
    """Save the model's state as fp16 (half the size; inference runs in fp32) on the CPU (a file written after GPU
    training must load where there is none), atomically."""
    state = {key: (value.half() if value.is_floating_point() else value).cpu()
             for key, value in model.state_dict().items()}
    return write_with(path, lambda tmp: torch.save(state, tmp))
