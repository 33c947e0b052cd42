"""Training labels for `brainkit train segment --real-labels`: a stronger labeller than the network alone.

Each scan is labelled by the bundled (or given) weights' two passes, multiplied by the vote of the SynthSeg
label maps registered to it, then the intensity step, as `brainkit segment` finishes. The label maps become
images for registration by painting each label with the mean intensity the network's labels have on this scan,
so the registration is within one contrast; ANTs SyN (antspyx) then warps each map onto the scan. Measured
on the two FreeSurfer-labelled T1s with 8 atlases (docs/segment_experiments.md), the fused labels beat the network
with the step by 0.006 mean Dice (`niivue_norm` 0.8427 -> 0.8488, `voxelmorph` 0.8498 -> 0.8557): labels to
self-train on, too slow for `brainkit segment` itself.

    # antspyx, this script's own dependency, beside brainkit's environment (its requirements would downgrade scipy)
    .venv/bin/python -m pip install --target runs/ants_site --no-deps antspyx==0.6.3 pandas statsmodels patsy \
        scikit-learn joblib threadpoolctl narwhals requests urllib3 idna certifi
    PYTHONPATH=runs/ants_site python tools/segment_atlas_labels.py ../shared/data/t1_depression -o runs/atlas_labels
    brainkit train segment --real ../shared/data/t1_depression --real-labels runs/atlas_labels ...

Writes `<stem>_seg.nii.gz` per scan on its own grid, laid out as `brainkit segment -o` writes them. Takes about
30 s per atlas and scan on 2 CPU cores (15 atlases: 8-10 minutes a scan).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage

from brainkit.batch import print_failures, run_over_inputs
from brainkit.io import Scan
from brainkit.io.write import write_nifti
from brainkit.runtime import configure
from brainkit.spatial import NEAREST
from brainkit.tasks import segment

ATLAS_PRIOR_POWER = 0.5  # votes to this power: 0.5 beat 1 with 8 atlases on both labelled T1s
VOTE_FLOOR = 0.1  # share of a flat prior mixed into the votes, so that no label is vetoed outright
RENDER_BLUR = 0.8  # voxels: the painted label maps get a scan-like partial volume at their borders


def painted(atlas: np.ndarray, image: torch.Tensor, labels: np.ndarray) -> np.ndarray:
    """`atlas` (aseg numbers) painted with each label's mean intensity in `image` under `labels` (0 elsewhere)."""
    means = np.zeros(int(max(atlas.max(), labels.max())) + 1, np.float32)
    values = image.numpy()
    for label in np.unique(labels[labels > 0]):
        means[label] = values[labels == label].mean()
    return ndimage.gaussian_filter(means[atlas], RENDER_BLUR)


def atlas_votes(image: torch.Tensor, labels: np.ndarray, atlases: list[np.ndarray], seed: int) -> torch.Tensor:
    """Share of `atlases` (1 mm RAS aseg maps) that give each voxel of `image` each class, after ANTs SyN."""
    import ants

    fixed = ants.from_numpy(image.numpy().astype(np.float32))
    lookup = segment.class_of_every_label()
    votes = torch.zeros((len(segment.ASEG_LABELS), *image.shape))
    for atlas in atlases:
        moving = ants.from_numpy(painted(atlas, image, labels))
        transforms = ants.registration(fixed, moving, type_of_transform="SyN", random_seed=seed)["fwdtransforms"]
        warped = ants.apply_transforms(fixed, ants.from_numpy(atlas.astype(np.float32)), transforms,
                                       interpolator="genericLabel").numpy()
        votes.scatter_add_(0, torch.from_numpy(lookup[np.rint(warped).astype(np.int64)][None]),
                           torch.ones((1, *image.shape)))
    return votes / len(atlases)


def fused_labels(scan: Scan, model: torch.nn.Module, atlases: list[np.ndarray], seed: int) -> np.ndarray:
    """Aseg labels of `scan` on its own grid: the network's two passes times the atlases' vote, then the step."""
    tensor, geometry = segment.prepare(scan)
    passes = segment.two_pass_probabilities(tensor, model)
    network_labels = segment.class_labels(segment.refine_with_intensities(passes.image, passes.average.clone()))
    votes = atlas_votes(passes.image, network_labels, atlases, seed)
    prior = passes.average * (votes * (1 - VOTE_FLOOR) + VOTE_FLOOR / len(votes)).pow(ATLAS_PRIOR_POWER)
    prior /= prior.sum(dim=0, keepdim=True)
    return geometry.to_input_grid(passes.labels(segment.refine_with_intensities(passes.image, prior)), NEAREST)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("inputs", nargs="+", help="scans or folders of scans")
    parser.add_argument("-o", "--output", required=True, help="folder for <stem>_seg.nii.gz")
    parser.add_argument("--data", default="../shared/data", help="folder holding synthseg_label_maps/")
    parser.add_argument("--atlases", type=int, default=8, help="how many of the label maps vote (the first N)")
    parser.add_argument("--weights", default=str(segment.WEIGHTS), help="network weights (default: bundled)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=1, help="ANTs' sampling seed")
    args = parser.parse_args()
    configure(threads=args.threads)
    os.environ.setdefault("ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS", str(args.threads))
    bank = segment.training_bank(Path(args.data))
    atlases = [bank.values[m.numpy()].astype(np.int16) for m in bank.maps[: args.atlases, 0]]
    model = segment.load_model(Path(args.weights))

    def label(scan: Scan) -> Path:
        labels = fused_labels(scan, model, atlases, args.seed)
        return write_nifti(scan.output_path(args.output, "_seg"), labels, scan.affine)

    print_failures(run_over_inputs(args.inputs, label, "labelling with atlases").failures)


if __name__ == "__main__":
    main()
