"""How well the segmentation network fits its own kind of training image: Dice over the 12 target structures,
pooled over synthetic patches drawn from the 15 training label maps with the training recipe's draws, and with
parts of the augmentation turned off. Set beside `segment_accuracy` (new brains): a network that scores no
higher here underfits its training distribution rather than failing to generalise.

    python benchmarks/segment_fit.py [--weights W] [--patches 30] [--side 128]
    # writes the `segment_fit` section of docs/benchmarks.md
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import SHARED_DATA, machine, markdown_table, write_section  # noqa: E402

from brainkit.runtime import configure  # noqa: E402
from brainkit.synth import SynthEngine  # noqa: E402
from brainkit.tasks import segment  # noqa: E402

SETTINGS = {
    "training recipe": {},
    "no thick slices": {"thick_prob": 0.0},
    "no spatial augmentation, no thick slices, centre within 10 mm": {
        "thick_prob": 0.0, "rotation_deg": 0.0, "scaling": 0.0, "shear": 0.0, "deform_std": 0.0, "translation": 10.0},
}
SEED = 123


def pooled_dice(model: torch.nn.Module, engine: SynthEngine, patches: int) -> np.ndarray:
    """Dice per target structure, intersections and sizes summed over `patches` patches."""
    lookup = torch.from_numpy(segment.class_lookup(engine.bank.values))
    target = [segment.ASEG_LABELS.index(label) for label in segment.TARGET]
    overlap, size = np.zeros(len(target)), np.zeros(len(target))
    for _ in range(patches):
        result = engine.generate(1)
        with torch.no_grad():
            predicted = model(result.image).argmax(1)[0].numpy()
        truth = lookup[result.labels][0, 0].numpy()
        for i, index in enumerate(target):
            overlap[i] += 2 * np.count_nonzero((predicted == index) & (truth == index))
            size[i] += np.count_nonzero(predicted == index) + np.count_nonzero(truth == index)
    return overlap / np.maximum(size, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", type=Path, default=segment.WEIGHTS)
    parser.add_argument("--patches", type=int, default=30, help="patches per setting")
    parser.add_argument("--side", type=int, default=segment.PATCH[0], help="patch side in mm (inference: 128)")
    args = parser.parse_args()
    configure(threads=2)
    model = segment.load_model(args.weights).eval()
    bank = segment.training_bank(SHARED_DATA)
    table = []
    for name, changes in SETTINGS.items():
        config = dataclasses.replace(segment.training_config(args.side), **changes)
        dice = pooled_dice(model, SynthEngine(bank, config, seed=SEED), args.patches)
        table.append([name, f"{dice.mean():.3f}", f"{dice.min():.2f}"])
        print(table[-1], flush=True)
    body = (f"## segment fit\n\nWeights `{args.weights.name}`, {args.patches} synthetic patches of {args.side}^3 per "
            f"row from the 15 training label maps (seed {SEED}), one pass, no mirrored read; {machine()}. Dice over "
            f"the 12 target structures, pooled over the patches. `python benchmarks/segment_fit.py`.\n\n"
            + markdown_table(["patches", "mean Dice (12)", "lowest"], table))
    write_section("segment_fit", body)


if __name__ == "__main__":
    main()
