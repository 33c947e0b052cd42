"""`brainkit synth`: write synthetic images and their label maps from real or random-shape label maps."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from brainkit.io import discover
from brainkit.io.write import write_json, write_nifti
from brainkit.report.figures import save_slice_grid
from brainkit.runtime import console, resolve_device
from brainkit.synth.engine import SynthConfig, SynthEngine
from brainkit.synth.labels import LabelBank
from brainkit.tasks import Task


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--labels", nargs="+", metavar="L",
                        help="label map files or folders (FreeSurfer numbering); omit for random shapes (seed 001)")
    parser.add_argument("-n", type=int, default=8, help="number of images to write")
    parser.add_argument("-o", "--output", required=True, help="output folder")
    parser.add_argument("--shape", type=int, default=160, help="cubic output shape in voxels")
    parser.add_argument("--spacing", type=float, default=1.0, help="voxel size (mm) of the label grid")
    parser.add_argument("--batch", type=int, default=2, help="volumes generated per batch")


def build_engine(labels: list[str] | None, shape: int, spacing: float, seed: int, device: str) -> SynthEngine:
    """An engine over the given label maps (or random shapes) with the default ranges at `shape`."""
    config = SynthConfig(shape=(shape, shape, shape))
    bank = None
    if labels:
        paths = [item.path for item in discover(labels) if item.kind == "volume"]
        if not paths:
            raise SystemExit(f"brainkit synth: no label map (NIfTI or MGZ) in {' '.join(labels)}: check --labels")
        bank = LabelBank.from_files(paths, spacing=spacing, shape=config.shape)
    return SynthEngine(bank, config, seed=seed, device=resolve_device(device))


def run(args: argparse.Namespace) -> int:
    engine = build_engine(args.labels, args.shape, args.spacing, args.seed, args.device)
    out = Path(args.output)
    affine = engine.bank.affine if engine.bank is not None else np.diag([args.spacing] * 3 + [1.0])
    values = engine.bank.values if engine.bank is not None else np.arange(engine.n_classes)
    slices, written = [], 0
    while written < args.n:
        batch = engine.generate(min(args.batch, args.n - written))
        for i in range(batch.image.shape[0]):
            name = f"synth_{written:04d}"
            image = batch.image[i, 0].cpu().numpy()
            labels = values[batch.labels[i, 0].cpu().numpy()].astype(np.int16)
            write_nifti(out / f"{name}_image.nii.gz", image, affine)
            write_nifti(out / f"{name}_labels.nii.gz", labels, affine)
            write_json(out / f"{name}_params.json",
                       {key: value[i].cpu().tolist() for key, value in batch.params.items()}
                       | {"affine_output_to_label_voxel": batch.affine[i].cpu().tolist(), "seed": args.seed})
            slices.append((name, np.rot90(image[:, :, image.shape[2] // 2])))
            written += 1
    save_slice_grid(slices, out / "montage.png")
    console.print(f"wrote {written} images, label maps and parameters to {out}")
    return 0


COMMAND = Task("synth", "write synthetic images + label maps (SynthSeg-style engine)", add_arguments, run)
