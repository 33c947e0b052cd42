"""Milliseconds per synthetic volume: brainkit's engine against TorchIO's chain, in the same run.

TorchIO chain: RandomElasticDeformation + RandomLabelsToImage + RandomBlur + RandomBiasField on one label map.
brainkit: SynthEngine.generate (affine + smooth deformation, GMM, blur, thick slices, bias, gamma, noise),
batch of 2. Both on 2 threads, same label map (a SynthSeg training map, cropped to each size).

    python benchmarks/synth.py            # writes the `synth` section of docs/benchmarks.md
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import SHARED_DATA, machine, markdown_table, seconds_per_call, write_section  # noqa: E402

from brainkit.runtime import configure  # noqa: E402
from brainkit.synth import LabelBank, SynthConfig, SynthEngine  # noqa: E402

SIZES = (96, 128, 160)
BATCH = 2


def label_bank(size: int) -> LabelBank:
    path = SHARED_DATA / "synthseg_label_maps" / "training_seg_01.nii.gz"
    if path.exists():
        return LabelBank.from_files([path], spacing=1.0, shape=(size,) * 3)
    rng = np.random.default_rng(0)
    return LabelBank.from_arrays([rng.integers(0, 40, (size,) * 3)])


def brainkit_ms(bank: LabelBank, size: int) -> float:
    engine = SynthEngine(bank, SynthConfig(shape=(size,) * 3), seed=0)
    return 1000 * seconds_per_call(lambda: engine.generate(BATCH), repeats=5) / BATCH


def torchio_ms(bank: LabelBank, repeats: int) -> float:
    import torchio as tio

    labels = tio.LabelMap(tensor=bank.maps[0].to(torch.int64))
    subject = tio.Subject(label=labels)
    chain = tio.Compose([
        tio.RandomElasticDeformation(),
        tio.RandomLabelsToImage(label_key="label"),
        tio.RandomBlur(),
        tio.RandomBiasField(),
    ])
    return 1000 * seconds_per_call(lambda: chain(subject), repeats=repeats)


def main() -> None:
    configure(threads=2)  # the commands' own settings
    rows = []
    for size in SIZES:
        bank = label_bank(size)
        ours = brainkit_ms(bank, size)
        theirs = torchio_ms(bank, repeats=3 if size >= 160 else 5)
        rows.append([f"{size}^3", f"{ours:.0f}", f"{theirs:.0f}", f"{theirs / ours:.1f}x"])
        print(f"{size}^3: brainkit {ours:.0f} ms, TorchIO {theirs:.0f} ms, {theirs / ours:.1f}x", flush=True)
    table = markdown_table(["volume", "brainkit ms/volume", "TorchIO ms/volume", "speed-up"], rows)
    write_section("synth", f"## Synthetic image generation (`python benchmarks/synth.py`)\n\n"
                           f"{machine()}; median of repeated calls; brainkit batch {BATCH}; TorchIO chain "
                           f"RandomElasticDeformation + RandomLabelsToImage + RandomBlur + RandomBiasField.\n\n"
                           f"{table}\n")
    print(table)


if __name__ == "__main__":
    main()
