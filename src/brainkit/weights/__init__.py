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
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - torch raises many kinds for a file that is not a state dict
        raise BrainkitError(path, f"not a weights file torch can read ({type(err).__name__}): give weights "
                                  f"written by `brainkit train {job}`") from err
    if not isinstance(state, dict):
        raise BrainkitError(path, f"holds a {type(state).__name__}, not a state dict: give weights written by "
                                  f"`brainkit train {job}`")
    return state.get("model", state)


def load_weights(model: torch.nn.Module, path: Path, job: str, device: torch.device | str = "cpu",
                 state: dict[str, torch.Tensor] | None = None) -> torch.nn.Module:
    """Load fp16 weights (or a training checkpoint's model) into `model`, in fp32 and eval mode; `state` when
    the caller has read the file already (to choose the model from it)."""
    state = read_state(path, job) if state is None else state
    try:
        model.load_state_dict({key: value.float() for key, value in state.items()})
    except (RuntimeError, AttributeError) as err:  # other layers or shapes; a value that is not a tensor
        raise BrainkitError(path, f"these are not {job} weights of this brainkit's network: give weights written "
                                  f"by `brainkit train {job}`") from err
    return model.to(device).eval()


def save_weights(model: torch.nn.Module, path: Path) -> Path:
    """Save the model's state as fp16 (half the size; inference runs in fp32) on the CPU (a file written after GPU
    training must load where there is none), atomically."""
    state = {key: (value.half() if value.is_floating_point() else value).cpu()
             for key, value in model.state_dict().items()}
    return write_with(path, lambda tmp: torch.save(state, tmp))
