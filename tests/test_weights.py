"""The bundled weights: loadable on a machine without a GPU, within the size limits, each with a model card."""

from __future__ import annotations

import pytest
import torch

from brainkit.weights import FOLDER

BUNDLED = sorted(FOLDER.rglob("*.pt"))


def test_weights_are_bundled():
    assert {path.stem for path in BUNDLED} >= {"orient", "regqc", "segment", "translate_T2", "translate_FLAIR"}


@pytest.mark.parametrize("path", BUNDLED, ids=lambda path: path.name)
def test_bundled_weights_load_on_the_cpu_without_a_map_location(path):
    """A file saved from a GPU model holds CUDA storages, and plain `torch.load` refuses it on a CPU machine."""
    state = torch.load(path, weights_only=True)
    tensors = [value for value in state.get("model", state).values() if isinstance(value, torch.Tensor)]
    assert tensors and all(tensor.device.type == "cpu" for tensor in tensors)


def test_bundled_weights_fit_the_size_limits_and_have_model_cards():
    assert all(path.stat().st_size < 10 * 2**20 for path in BUNDLED)
    assert sum(path.stat().st_size for path in BUNDLED) < 50 * 2**20
    for path in BUNDLED:
        cards = [path.with_suffix(".md"), path.parent / "MODEL_CARD.md", FOLDER / f"{path.stem.split('_')[0]}.md"]
        assert any(card.exists() for card in cards), f"no model card for {path.name}"
