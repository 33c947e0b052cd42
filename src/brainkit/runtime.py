"""Process-wide settings every command shares: threads, device, seed, console output."""

from __future__ import annotations

import random

import numpy as np
import torch
from rich.console import Console

console = Console(stderr=True, highlight=False)


def configure(threads: int | None = None, seed: int | None = None) -> None:
    """Set torch's CPU thread count and seed every random generator brainkit uses."""
    if threads:
        torch.set_num_threads(threads)
    if seed is not None:
        random.seed(seed)
        np.random.seed(seed % 2**32)
        torch.manual_seed(seed)


def resolve_device(name: str = "auto") -> torch.device:
    """Map `auto|cpu|cuda` to a torch device; `cuda` without a GPU is a clear error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise SystemExit("brainkit: --device cuda was asked for but no CUDA GPU is visible; use --device cpu")
    return torch.device(name)
