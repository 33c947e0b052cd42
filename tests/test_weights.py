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


def test_a_file_that_is_not_this_jobs_weights_is_a_one_line_error(tmp_path):
    from brainkit.errors import BrainkitError
    from brainkit.tasks import segment
    from brainkit.weights import load_weights

    (tmp_path / "notes.pt").write_text("garbage")
    torch.save([1, 2], tmp_path / "list.pt")
    for name, message in (("notes.pt", "not a weights file torch can read"), ("list.pt", "not a state dict")):
        with pytest.raises(BrainkitError, match=message):
            load_weights(segment.build_model(), tmp_path / name, "segment")
    with pytest.raises(BrainkitError, match="these are not segment weights of this brainkit's network"):
        load_weights(segment.build_model(), FOLDER / "orient.pt", "segment")
