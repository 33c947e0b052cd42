"""Dice and HD95 of `brainkit segment` on every labelled brain in shared/ and on fixed-contrast renderings of a
label map that training never saw.

Test inputs (written to --work, so each row can be re-scored with `brainkit evaluate segment --pred --truth`):
- `niivue_norm`: FreeSurfer's norm.mgz and its aparc.a2009s+aseg.mgz (real T1).
- `voxelmorph`: voxelmorph's test scan (real skull-stripped T1) and its aseg. The file has no affine; its axes
  are L, I, A (read off the labels: right thalamus at lower axis-0, brain stem below the thalamus at higher
  axis-1, caudate in front of the thalamus at higher axis-2), written here as a 1 mm LIA NIfTI.
- both of them again under a strong smooth bias field (`with_bias_field`: 1.5-1.7 times brighter at one side of
  the brain than at the other, as on uncorrected scans from multi-channel head coils): the test scans were
  bias-corrected, so these rows show what the intensity step does when a scan is not.
- both of them again with 5 mm axial slices (`with_thick_slices`: each 5 slices averaged into one, as a clinical
  2D acquisition samples the head), segmented on that grid and scored as `brainkit evaluate segment` scores it,
  the labels resampled (nearest) onto the 1 mm truth: what a user gets from such a scan, the lost resolution
  included.
- both of them again cut to a 40 mm axial slab through the deep grey structures (`as_slab`; the truth cut
  alike), as a partial field of view leaves them: the network's windows reach beyond such a slab.
- Colin27 (one person's T1 averaged over 27 scans; the skull-stripped brain and the head) against the AAL atlas
  drawn on it: real T1s labelled by another protocol than FreeSurfer's (AAL's hippocampus, amygdala and thalamus
  are drawn differently), so their Dice compares models with each other, not with FreeSurfer's numbers.
- `voxelmorph` label map rendered as T1, T2, FLAIR and low-contrast T1 (`brainkit.synth.contrasts`). Training
  draws from the 15 SynthSeg label maps only, so this subject's anatomy is held back.
- real T2 and FLAIR without labels: two MS patients' T1, T2 and FLAIR, co-registered in MNI space
  (`pairs_open_ms_mni`), each scored against the labels this model gives the same patient's T1. Not accuracy but
  agreement across contrasts on real scans: what a contrast-agnostic model must keep.
- the same label map drawn like a training image by the synth engine (random per-label contrast, blur, bias,
  gamma, noise; no spatial augmentation, no thick slices), seeds 0-3: how the network does on its own kind of
  image of an unseen brain, against the fixed renderings above.

    python benchmarks/segment_accuracy.py [--weights W] [--window 128 --overlap 0.25] [--no-refine]
    # writes the `segment_accuracy` section of docs/benchmarks.md
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

import nibabel as nib
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import SHARED_DATA, machine, markdown_table, write_section  # noqa: E402

from brainkit.io import Scan, load  # noqa: E402
from brainkit.io.write import write_nifti  # noqa: E402
from brainkit.metrics.grids import on_truth_grid  # noqa: E402
from brainkit.runtime import configure  # noqa: E402
from brainkit.spatial import NEAREST  # noqa: E402
from brainkit.synth.contrasts import CONTRASTS, render_contrast  # noqa: E402
from brainkit.synth.engine import SynthConfig, SynthEngine  # noqa: E402
from brainkit.synth.labels import LEFT_RIGHT_PAIRS, LabelBank  # noqa: E402
from brainkit.tasks import segment  # noqa: E402

LIA_1MM = np.array([[-1.0, 0, 0, 80], [0, 0, 1, -112], [0, -1, 0, 96], [0, 0, 0, 1]])
SYNTH_BOX = segment.TRAINING_BOX
SYNTH_SEEDS = range(4)
BIAS_STRENGTH = 1.0
THICK_SLICE_MM = 5
SLAB_MM = 40
AAL_TO_ASEG = {77: 10, 78: 49, 71: 11, 72: 50, 73: 12, 74: 51, 75: 13, 76: 52, 37: 17, 38: 53, 41: 18, 42: 54}


def synth_renderings(truth: Path, work: Path) -> list[tuple[str, str, Path, Path]]:
    """The label map drawn by the synth engine like a training image, without spatial augmentation or thick
    slices: (source, contrast, image, labels) per seed, both on the engine's 1 mm RAS grid."""
    bank = LabelBank.from_files([truth], shape=SYNTH_BOX)
    config = SynthConfig(shape=SYNTH_BOX, rotation_deg=0, scaling=0, shear=0, translation=0, deform_std=0,
                         thick_prob=0)
    rows = []
    for seed in SYNTH_SEEDS:
        result = SynthEngine(bank, config, seed=seed).generate(1)
        image, labels = work / f"voxelmorph_synth{seed}.nii.gz", work / f"voxelmorph_synth{seed}_aseg.nii.gz"
        nib.save(nib.Nifti1Image(result.image[0, 0].numpy(), bank.affine), image)
        nib.save(nib.Nifti1Image(bank.values[result.labels[0, 0].numpy()].astype(np.int16), bank.affine), labels)
        rows.append(("voxelmorph label map (synth engine)", f"random, seed {seed}", image, labels))
    return rows


def with_bias_field(image: Path, out: Path, strength: float = BIAS_STRENGTH) -> Path:
    """`image` times exp(`strength` * f), f a smooth field over the array scaled to |f| <= 1: a gradient along
    the second and third axes plus a bump, brightest at the centre (written to `out` with its affine)."""
    volume = nib.load(image)
    axes = [np.linspace(-1, 1, n) for n in volume.shape]
    x, y, z = np.meshgrid(*axes, indexing="ij")
    field = 0.5 * (y + z) - 0.5 * (x**2 + y**2 + z**2 - 1)
    data = np.asanyarray(volume.dataobj, dtype=np.float32) * np.exp(strength * field / np.abs(field).max())
    nib.save(nib.Nifti1Image(data.astype(np.float32), volume.affine), out)
    return out


def with_thick_slices(image: Path, out: Path, thickness: int = THICK_SLICE_MM) -> Path:
    """`image` with every `thickness` slices along its most inferior-superior axis averaged into one (the last
    incomplete group dropped), on a grid whose slices sit at the groups' centres (written to `out`)."""
    volume = nib.load(image)
    axis = int(np.argmax(np.abs(volume.affine[2, :3])))
    data = np.asanyarray(volume.dataobj, dtype=np.float32)
    count = data.shape[axis] // thickness
    kept = np.moveaxis(data, axis, 0)[: count * thickness]
    thick = np.moveaxis(kept.reshape(count, thickness, *kept.shape[1:]).mean(axis=1), 0, axis)
    affine = volume.affine.copy()
    affine[:3, 3] += affine[:3, axis] * (thickness - 1) / 2
    affine[:3, axis] *= thickness
    nib.save(nib.Nifti1Image(thick, affine), out)
    return out


def as_slab(image: Path, truth: Path, out: Path, thickness: int = SLAB_MM) -> tuple[Path, Path]:
    """`image` and `truth` cut to a slab of `thickness` slices along their most inferior-superior axis, centred on
    the 12 target structures (written as `<out>.nii.gz` and `<out>_aseg.nii.gz`)."""
    volume, labels = nib.load(image), nib.load(truth)
    axis = int(np.argmax(np.abs(volume.affine[2, :3])))
    inside = np.nonzero(np.isin(np.asanyarray(labels.dataobj), segment.TARGET))[axis]
    start = int(round(inside.mean())) - thickness // 2
    cut = tuple(slice(start, start + thickness) if a == axis else slice(None) for a in range(3))
    paths = out.with_name(f"{out.name}.nii.gz"), out.with_name(f"{out.name}_aseg.nii.gz")
    for source, path, dtype in ((volume, paths[0], np.float32), (labels, paths[1], np.int16)):
        part = source.slicer[cut]
        nib.save(nib.Nifti1Image(np.asanyarray(part.dataobj).astype(dtype), part.affine), path)
    return paths


def colin27_inputs(work: Path) -> list[tuple[str, str, Path, Path]]:
    """Colin27's brain and head with its AAL atlas renumbered to aseg (the 12 target structures only)."""
    colin = SHARED_DATA / "templates" / "colin27"
    atlas = nib.load(colin / "aal.nii.gz")
    regions = np.asanyarray(atlas.dataobj)
    labels = np.zeros(regions.shape, np.int16)
    for region, label in AAL_TO_ASEG.items():
        labels[regions == region] = label
    truth = work / "colin27_aal_as_aseg.nii.gz"
    nib.save(nib.Nifti1Image(labels, atlas.affine), truth)
    return [("colin27 brain (real, AAL labels)", "T1", colin / "ch2bet.nii.gz", truth),
            ("colin27 head (real, AAL labels)", "T1", colin / "ch2.nii.gz", truth)]


def test_inputs(work: Path) -> list[tuple[str, str, Path, Path]]:
    """(source, contrast, image, truth) for every evaluation input, written under `work` where needed."""
    norm = SHARED_DATA / "seg_freesurfer" / "niivue_norm"
    rows = [("niivue_norm (real)", "T1", norm / "norm.mgz", norm / "aparc.a2009s+aseg.mgz")]
    scan = np.load(SHARED_DATA / "seg_freesurfer" / "voxelmorph" / "test_scan.npz")
    labels = np.rint(scan["seg"]).astype(np.int16)
    work.mkdir(parents=True, exist_ok=True)
    truth = work / "voxelmorph_aseg.nii.gz"
    nib.save(nib.Nifti1Image(labels, LIA_1MM), truth)
    image = work / "voxelmorph_T1.nii.gz"
    nib.save(nib.Nifti1Image(scan["vol"].astype(np.float32), LIA_1MM), image)
    rows.append(("voxelmorph (real)", "T1", image, truth))
    for (_, _, real, real_truth), name in zip(list(rows), ("niivue_norm", "voxelmorph")):
        biased = with_bias_field(real, work / f"{name}_bias.nii.gz")
        rows.append((f"{name}, bias field (real)", "T1", biased, real_truth))
    for (_, _, real, real_truth), name in zip(rows[:2], ("niivue_norm", "voxelmorph")):
        thick = with_thick_slices(real, work / f"{name}_thick{THICK_SLICE_MM}mm.nii.gz")
        rows.append((f"{name}, {THICK_SLICE_MM} mm axial slices (real)", "T1", thick, real_truth))
    for (_, _, real, real_truth), name in zip(rows[:2], ("niivue_norm", "voxelmorph")):
        slab, slab_truth = as_slab(real, real_truth, work / f"{name}_slab{SLAB_MM}mm")
        rows.append((f"{name}, {SLAB_MM} mm axial slab (real)", "T1", slab, slab_truth))
    rows += colin27_inputs(work)
    for contrast in CONTRASTS:
        rendered = work / f"voxelmorph_{contrast}.nii.gz"
        nib.save(nib.Nifti1Image(render_contrast(labels, contrast, seed=0), LIA_1MM), rendered)
        rows.append(("voxelmorph label map (rendered)", contrast, rendered, truth))
    return rows + synth_renderings(truth, work)


def agreement_inputs(model: torch.nn.Module, pred: Path, window: int, overlap: float,
                     refine: bool) -> list[tuple[str, str, Path, Path, Path]]:
    """(source, contrast, image, truth, prediction folder) for the T2 and FLAIR of each co-registered MS patient,
    the truth being the labels `model` gives that patient's T1. Both patients' files have the same names, so each
    patient's labels go to a folder of its own under `pred`."""
    rows = []
    for patient in sorted((SHARED_DATA / "pairs_open_ms_mni").glob("patient*")):
        t1 = load(next(patient.glob("T1_*.nii*")))
        predict_and_write(model, t1, pred / patient.name, window, overlap, refine)
        rows += [(f"{patient.name} (real MS, against its T1's labels)", contrast,
                  next(patient.glob(f"{contrast}_*.nii*")), t1.output_path(pred / patient.name, "_seg"),
                  pred / patient.name) for contrast in ("T2", "FLAIR")]
    return rows


def predict_and_write(model: torch.nn.Module, scan: Scan, out: Path, window: int, overlap: float,
                      refine: bool) -> np.ndarray:
    """`brainkit segment`'s labels of `scan`, also written as `<out>/<stem>_seg.nii.gz`."""
    labels = segment.predict(scan, model, window=window, overlap=overlap, refine=refine)
    write_nifti(scan.output_path(out, "_seg"), labels, scan.affine, scan.header)
    return labels


def score(model: torch.nn.Module, image: Path, truth: Path, out: Path, window: int, overlap: float,
          refine: bool) -> list[dict]:
    """Segment `image` (written under `out`) and score it against `truth` like `brainkit evaluate segment`: on the
    truth's grid (the labels resampled, nearest, where the image's grid is another)."""
    scan = load(image)
    labels = predict_and_write(model, scan, out, window, overlap, refine)
    reference = load(truth)
    labels = on_truth_grid(replace(scan, data=labels), reference, NEAREST)
    return segment.dice_and_hd95(np.rint(labels).astype(int), np.rint(reference.data).astype(int), reference.spacing)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", type=Path, default=segment.WEIGHTS)
    parser.add_argument("--work", type=Path, default=Path("runs/segment_accuracy"))
    parser.add_argument("--window", type=int, default=segment.PATCH[0], help="sliding-window side (voxels)")
    parser.add_argument("--overlap", type=float, default=segment.OVERLAP, help="sliding-window overlap")
    parser.add_argument("--no-refine", dest="refine", action="store_false",
                        help="the network's labels alone, without the per-scan intensity step")
    args = parser.parse_args()
    configure(threads=2)  # the commands' own settings
    model = segment.load_model(args.weights)
    names = "structure Dice (left/right): " + ", ".join(segment.STRUCTURES[label] for label in segment.TARGET_LEFT)
    table = []
    pred = args.work / "pred"
    inputs = [(*row, pred) for row in test_inputs(args.work)]
    inputs += agreement_inputs(model, pred, args.window, args.overlap, args.refine)
    for source, contrast, image, truth, out in inputs:
        rows = {row["label"]: row for row in score(model, image, truth, out, args.window, args.overlap, args.refine)}
        summary = segment.summarise(list(rows.values()))
        pairs = [f"{rows[left]['dice']:.2f}/{rows[LEFT_RIGHT_PAIRS[left]]['dice']:.2f}" for left in segment.TARGET_LEFT]
        table.append([source, contrast, f"{summary['mean']:.3f}", f"{summary['lowest']:.2f}",
                      f"{summary['hd95']:.1f}", *pairs])
        print(table[-1], flush=True)
    header = ["input", "contrast", "mean Dice (12)", "lowest", "median HD95 mm",
              *[segment.STRUCTURES[label] for label in segment.TARGET_LEFT]]
    step = "refined with the scan's intensities" if args.refine else "without the intensity step (`--no-refine`)"
    body = (f"## segment accuracy\n\nWeights `{args.weights.name}`, windows of {args.window}^3 with overlap "
            f"{args.overlap}, {step}; {machine()}. Mean and lowest Dice over the 12 "
            f"target structures (thalamus, caudate, putamen, pallidum, hippocampus, amygdala, left and right); "
            f"{names}. `python benchmarks/segment_accuracy.py`; every row can be re-scored with "
            f"`brainkit evaluate segment --pred {pred}/<stem>_seg.nii.gz --truth <truth>` (the MS patients' under "
            f"`{pred}/<patient>/`).\n\n"
            + markdown_table(header, table))
    write_section("segment_accuracy", body)


if __name__ == "__main__":
    main()
