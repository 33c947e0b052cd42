"""Contrast translation T1 -> T2 (or FLAIR), seed 003 on a CPU: a 2.5D UNet on axial slices.

load -> RAS, 1 mm, box on the brain (recorded geometry) -> intensities in the brain to [0, 1] -> each axial
slice predicted from itself and its neighbours (3 channels) -> sigmoid -> back on the input's own grid ->
scaled to the input's brain intensity range, zero where the input has no signal -> `<stem>_synth<T>.nii.gz`.
"""

from __future__ import annotations

import argparse
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from monai.losses import SSIMLoss
from monai.networks.nets import UNet

from brainkit.batch import print_failures, run_over_inputs
from brainkit.io import Scan, load
from brainkit.io.write import write_csv, write_metrics, write_nifti
from brainkit.metrics.grids import on_truth_grid
from brainkit.report.figures import save_montage
from brainkit.runtime import console, resolve_device
from brainkit.spatial import LINEAR, NEAREST, Geometry, Grid
from brainkit.synth.intensity import bias_field, gamma_and_noise, gaussian_blur, thick_slices
from brainkit.synth.spatial import compose_affine, identity_grid, mapped_points, sample, smooth_displacement, uniform
from brainkit.tasks import Task
from brainkit.train.recipe import add_train_options, train_and_save
from brainkit.weights import FOLDER, load_weights

TARGETS = ("T2", "FLAIR")
CONTEXT = 1  # neighbouring slices on each side: 3 input channels
SPACING = 1.0
MULTIPLE = 8  # the UNet halves the in-plane size three times
PATCH = (128, 128, 2 * CONTEXT + 1)
PAIRS = "pairs_open_ms_mni"
OUTPUT_IMAGES = ("*_synth*.nii.gz",)  # what a run writes below -o, never read back as input (`discover`)


def looks_like_t1(name: str) -> bool:
    """A pre-contrast T1 by its name (BIDS `_T1w`, or a `T1` token): what `brainkit run` translates. Post-contrast
    (T1wCE, T1Gd, T1c, ...) and quantitative maps (T1map) are not."""
    tokens = re.split(r"[_\-. ]+", name.lower())
    return any(token in ("t1", "t1w", "mprage") for token in tokens)


def weights_for(target: str) -> Path:
    """The bundled weights of the T1 -> `target` model."""
    return FOLDER / f"translate_{target}.pt"


def build_model() -> torch.nn.Module:
    """MONAI 2D UNet, 3 neighbouring slices in, one slice out (logits; the image is their sigmoid)."""
    return UNet(spatial_dims=2, in_channels=2 * CONTEXT + 1, out_channels=1, channels=(32, 64, 128, 256),
                strides=(2, 2, 2), num_res_units=2)


def load_model(path: Path, device: torch.device | str = "cpu") -> torch.nn.Module:
    """A translation network from fp16 weights or a training checkpoint."""
    return load_weights(build_model(), path, "translate", device)


# ---- intensities and geometry -------------------------------------------------------------------------------

def signal_mask(volume: np.ndarray) -> np.ndarray:
    """Voxels that differ from the background (the median of the volume's faces): the brain in a
    skull-stripped scan, whatever its background value (0, or a negative constant in z-scored data)."""
    faces = np.concatenate([np.moveaxis(volume, axis, 0)[[0, -1]].ravel() for axis in range(3)])
    background = float(np.median(faces))
    return np.abs(volume - background) > 1e-3 * float(volume.max() - volume.min())


SKULL_NOTE = ("this T1 has a skull, and the model was trained on skull-stripped brains: strip the skull first "
              "(e.g. SynthStrip, HD-BET) for a faithful synthetic image")


def looks_skull_stripped(volume: np.ndarray) -> bool:
    """Whether the signal fills under 30% of the field of view: skull-stripped brains measured 9-17% in the shared
    data, heads 40-99%. A heuristic, used by `brainkit run` to translate only what the model was trained on."""
    return float(signal_mask(volume).mean()) < 0.3


def brain_range(volume: np.ndarray, mask: np.ndarray) -> tuple[float, float]:
    """0.5th and 99.5th percentiles of the masked voxels: the [0, 1] range of the seed's normalisation."""
    values = volume[mask] if mask.any() else volume.ravel()
    low, high = np.percentile(values, [0.5, 99.5])
    return float(low), float(max(high, low + 1e-6))


def normalise_in_mask(volume: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Brain intensities to [0, 1] (robust min-max within the mask, clipped), zero outside it (float32)."""
    low, high = brain_range(volume, mask)
    return (np.clip((volume - low) / (high - low), 0, 1) * mask).astype(np.float32)


@dataclass
class Prepared:
    """A scan on the model's grid: normalised image, its mask, and the geometry that put it there."""

    image: np.ndarray
    mask: np.ndarray
    geometry: Geometry


def prepare(scan: Scan) -> Prepared:
    """RAS, 1 mm, cropped to the signal with in-plane sizes a multiple of 8, normalised in the mask."""
    geometry = Geometry(Grid(scan.shape, scan.affine)).to_ras().resample(SPACING)
    volume = geometry.apply(scan.data)
    mask = signal_mask(volume)
    found = np.argwhere(mask)
    start, stop = (found.min(0), found.max(0) + 1) if found.size else (np.zeros(3, int), np.array(volume.shape))
    shape = stop - start + 8
    shape[:2] = -(-shape[:2] // MULTIPLE) * MULTIPLE
    geometry.crop_centred((start + stop) / 2, shape)
    crop = geometry.steps[-1]
    box = crop.apply(volume, fill=float(volume.min()))
    box_mask = crop.apply(mask.astype(np.uint8), NEAREST, fill=0).astype(bool)
    return Prepared(normalise_in_mask(box, box_mask), box_mask, geometry)


def slice_stacks(volume: torch.Tensor) -> torch.Tensor:
    """(X, Y, Z) volume -> (Z, 3, X, Y): each axial slice with its neighbours (zeros beyond the ends)."""
    padded = F.pad(volume, (CONTEXT, CONTEXT))
    return padded.unfold(2, 2 * CONTEXT + 1, 1).permute(2, 3, 0, 1).contiguous()


def synthesise(image: np.ndarray, model: torch.nn.Module, device: torch.device | str = "cpu",
               batch: int = 16) -> np.ndarray:
    """Predicted target contrast in [0, 1] for a prepared (X, Y, Z) image."""
    stacks = slice_stacks(torch.from_numpy(image))
    with torch.no_grad():
        slices = [torch.sigmoid(model(chunk.to(device))).cpu() for chunk in stacks.split(batch)]
    return torch.cat(slices)[:, 0].permute(1, 2, 0).numpy()


def translate_scan(scan: Scan, model: torch.nn.Module, device: torch.device | str = "cpu") -> np.ndarray:
    """Synthetic target contrast on the scan's own grid, in the scan's brain intensity range (float32)."""
    prepared = prepare(scan)
    synthetic = synthesise(prepared.image, model, device) * prepared.mask
    on_input = prepared.geometry.to_input_grid(synthetic)
    input_mask = signal_mask(scan.data)
    _, high = brain_range(scan.data, input_mask)
    return (np.clip(on_input, 0, None) * high * input_mask).astype(np.float32)


def process(scan: Scan, model: torch.nn.Module, out_dir: Path, target: str = "T2",
            device: torch.device | str = "cpu") -> dict:
    """Translate one scan: `<stem>_synth<target>.nii.gz` and a montage (input beside synthetic) PNG."""
    synthetic = translate_scan(scan, model, device)
    suffix = f"_synth{target}"
    path = write_nifti(scan.output_path(out_dir, suffix), synthetic, scan.affine, scan.header)
    panels = [(f"input: {scan.label}", scan.data, scan.affine), (f"synthetic {target}", synthetic, scan.affine)]
    montage = save_montage(panels, scan.output_path(out_dir, suffix, ".png"))
    return {"input": scan.label, "output": str(path), "montage": str(montage)}


def translate(inputs: list[str | Path], out_dir: str | Path, target: str = "T2", weights: Path | None = None,
              device: str = "auto", quiet: bool = True, verbose: bool = False):
    """Python API of `brainkit translate`: `<rel>/<stem>_synth<target>.nii.gz` and a PNG montage per input."""
    torch_device = resolve_device(device)
    model = load_model(weights or weights_for(target), torch_device)
    out = Path(out_dir)

    def translate_one(scan: Scan) -> dict:
        if not quiet and not looks_skull_stripped(scan.data):
            console.print(f"note {scan.label}: {SKULL_NOTE}", markup=False)
        return process(scan, model, out, target, torch_device)

    return run_over_inputs(inputs, translate_one, f"translate -> {target}", quiet, verbose, mr_images_only=True,
                           outputs=out, written=OUTPUT_IMAGES)


# ---- metrics (the seed's: per slice and per volume, in [0, 1]) ----------------------------------------------

def image_metrics(prediction: np.ndarray, truth: np.ndarray, mask: np.ndarray, min_voxels: int = 100) -> list[dict]:
    """MAE, MSE (in the mask), SSIM (MONAI) and PSNR of [0, 1] images: one row per axial slice (axis 2) with
    at least `min_voxels` mask voxels, then a row for the whole volume."""
    from monai.metrics import SSIMMetric

    kept = [z for z in range(truth.shape[2]) if mask[:, :, z].sum() >= min_voxels]
    pair = [torch.from_numpy(np.ascontiguousarray(a[:, :, kept].transpose(2, 0, 1)))[:, None]
            for a in (prediction, truth)]
    slice_ssim = SSIMMetric(spatial_dims=2, data_range=1.0)(*pair).flatten().tolist() if kept else []
    rows = [{"slice": z, **error_metrics(prediction[:, :, z][mask[:, :, z]], truth[:, :, z][mask[:, :, z]]),
             "ssim": round(ssim, 4)} for z, ssim in zip(kept, slice_ssim)]
    volumes = [torch.from_numpy(np.ascontiguousarray(a))[None, None] for a in (prediction, truth)]
    ssim = float(SSIMMetric(spatial_dims=3, data_range=1.0)(*volumes).mean())
    rows.append({"slice": "volume", **error_metrics(prediction[mask], truth[mask]), "ssim": round(ssim, 4)})
    return rows


def error_metrics(prediction: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """MAE, MSE and PSNR (peak 1) of matching [0, 1] values."""
    difference = prediction.astype(np.float64) - truth
    mse = float(np.mean(difference**2))
    return {"mae": round(float(np.mean(np.abs(difference))), 5), "mse": round(mse, 6),
            "psnr": round(float(10 * np.log10(1 / max(mse, 1e-12))), 2)}


def summarise(rows: list[dict]) -> dict[str, float]:
    """Mean per-slice metrics and the whole-volume ones."""
    slices = [row for row in rows if row["slice"] != "volume"]
    volume = rows[-1]
    summary = {f"slice_{key}": round(float(np.mean([row[key] for row in slices])), 5)
               for key in ("mae", "mse", "ssim", "psnr")}
    summary.update({f"volume_{key}": volume[key] for key in ("mae", "mse", "ssim", "psnr")})
    return {"slices": len(slices), **summary}


def compare(prediction: np.ndarray, truth: np.ndarray, mask: np.ndarray) -> list[dict]:
    """`image_metrics` after normalising prediction and truth each to [0, 1] within `mask`."""
    return image_metrics(normalise_in_mask(prediction, mask), normalise_in_mask(truth, mask), mask)


# ---- training ---------------------------------------------------------------------------------------------------

def patient_pairs(data: Path, target: str, patients: list[str]) -> list[tuple[torch.Tensor, ...]]:
    """(T1, target, mask) of each named co-registered patient, prepared on the T1's grid, each (1, 1, X, Y, Z)."""
    pairs = []
    for name in patients:
        folder = data / PAIRS / name
        t1 = load(next(folder.glob("T1_*.nii.gz")))
        truth = load(next(folder.glob(f"{target}_*.nii.gz")))
        prepared = prepare(t1)
        target_box = prepared.geometry.apply(truth.data)
        mask = prepared.mask & signal_mask(target_box)
        arrays = (prepared.image, normalise_in_mask(target_box, mask), mask)
        pairs.append(tuple(torch.from_numpy(a)[None, None] for a in arrays))
    return pairs


def degrade_resolution(volume: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Half the time, a thick-slice acquisition (2-5 mm) along a random axis, upsampled back to 1 mm."""
    if float(torch.rand(1, generator=generator)) < 0.5:
        return volume
    thickness = torch.ones(1, 3)
    thickness[0, int(torch.randint(3, (1,), generator=generator))] = float(uniform(2, 5, (1,), generator))
    return thick_slices(gaussian_blur(volume, thickness / 2.5), thickness).clamp(0, 1)


def random_patches(source: torch.Tensor, target: torch.Tensor, brain: torch.Tensor, batch: int,
                   generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Slice stacks (B, 3, 128, 128) and target slices (B, 1, 128, 128) centred on random brain voxels
    (`brain`: (N, 3) voxel indices), under random rotation, scaling, small deformation and mirroring."""
    shape = tuple(source.shape[2:])
    centres = brain[torch.randint(len(brain), (batch,), generator=generator)].float()
    rotation = uniform(-1, 1, (batch, 3), generator) * torch.tensor([4.0, 4.0, 15.0])
    affine = compose_affine(shape, PATCH, rotation, uniform(0.9, 1.1, (batch, 3), generator),
                            uniform(-0.03, 0.03, (batch, 3), generator), centres - (torch.tensor(shape) - 1) / 2)
    displacement = smooth_displacement(batch, PATCH, 1.5, 32, generator)
    coords = mapped_points(affine, identity_grid(PATCH).unsqueeze(0), displacement, PATCH)
    stacks = sample(source.expand(batch, -1, -1, -1, -1), coords)[:, 0].permute(0, 3, 1, 2)
    slices = sample(target.expand(batch, -1, -1, -1, -1), coords[..., CONTEXT:CONTEXT + 1])[:, 0].permute(0, 3, 1, 2)
    mirror = torch.rand(batch, generator=generator) < 0.5
    stacks[mirror], slices[mirror] = stacks[mirror].flip(2), slices[mirror].flip(2)
    return erode_brain(stacks, slices, generator)


def erode_brain(stacks: torch.Tensor, slices: torch.Tensor,
                generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Peel 0-3 voxels off the brain's edge in input and target alike: skull stripping differs between tools,
    and the training brains' edges are CSF (bright on T2), which the model must not assume."""
    radius = int(torch.randint(4, (1,), generator=generator))
    if radius == 0:
        return stacks, slices
    outside = (stacks.amax(1, keepdim=True) <= 0).float()
    kept = 1 - F.max_pool2d(outside, 2 * radius + 1, stride=1, padding=radius)
    return stacks * kept, slices * kept


def vary_contrast(stacks: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Bias field, gamma and noise on the input slices; zero stays zero."""
    inside = stacks > 0
    volume = stacks.permute(0, 2, 3, 1).unsqueeze(1)  # (B, 1, X, Y, 3) for the 3D intensity tools
    volume = (volume * bias_field(tuple(volume.shape), 0.2, generator)).clamp(0, 1)
    return gamma_and_noise(volume, 0.2, 0.03, generator)[:, 0].permute(0, 3, 1, 2) * inside


def training_batches(pairs: list[tuple[torch.Tensor, ...]], batch: int):
    """`batch_for(step, generator)`: augmented slice stacks of one training patient and their target slices."""
    brains = [torch.nonzero(mask[0, 0]) for _, _, mask in pairs]

    def batch_for(step: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        index = int(torch.randint(len(pairs), (1,), generator=generator))
        source, target, _ = pairs[index]
        stacks, slices = random_patches(degrade_resolution(source, generator), target, brains[index], batch,
                                        generator)
        return vary_contrast(stacks, generator), slices

    return batch_for


class TranslationLoss(torch.nn.Module):
    """The seed's loss on sigmoid outputs: MAE + MSE + (1 - SSIM)."""

    def __init__(self):
        super().__init__()
        self.ssim = SSIMLoss(spatial_dims=2, data_range=1.0)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        image = torch.sigmoid(logits)
        return F.l1_loss(image, target) + F.mse_loss(image, target) + self.ssim(image, target)


def patients(data: Path) -> list[str]:
    """Names of the co-registered patients in the shared data."""
    return sorted(p.name for p in (data / PAIRS).glob("patient*"))


def run_train(args: argparse.Namespace) -> int:
    data = Path(args.data)
    names = patients(data)
    if not names:
        raise SystemExit(f"brainkit train translate: no co-registered patients under {data / PAIRS}")
    held_out = [args.holdout] if args.holdout else []
    training = patient_pairs(data, args.to, [n for n in names if n not in held_out])
    validation = patient_pairs(data, args.to, held_out)
    console.print(f"translate T1 -> {args.to}: training on {[n for n in names if n not in held_out]}, "
                  f"validating on {held_out or 'nothing'}")

    def validate(net: torch.nn.Module) -> dict[str, float]:
        source, target, mask = (a[0, 0].numpy() for a in validation[0])
        summary = summarise(image_metrics(synthesise(source, net) * mask, target, mask))
        return {"val_slice_mae": summary["slice_mae"], "val_slice_ssim": summary["slice_ssim"]}

    train_and_save("translate", build_model(), training_batches(training, args.batch), TranslationLoss(), args,
                   validate if validation else None, every=(50, 10, 100), best_metric="val_slice_ssim")
    return 0


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    add_train_options(parser, "translate", steps=4000, lr=1e-3)
    parser.add_argument("--to", type=str.upper, choices=TARGETS, default="T2", help="target contrast")
    parser.add_argument("--holdout", help=f"a {PAIRS} patient left out of training and used for validation")
    parser.add_argument("--batch", type=int, default=8, help="128 x 128 slice stacks per step")


# ---- evaluation -------------------------------------------------------------------------------------------------

def run_evaluate(args: argparse.Namespace) -> int:
    """Per-slice and per-volume MAE, MSE, SSIM, PSNR of a synthetic image against the true one."""
    prediction, truth = load(args.pred), load(args.truth)
    geometry = Geometry(Grid(truth.shape, truth.affine)).to_ras()
    mask_source = on_truth_grid(load(args.mask), truth, NEAREST) > 0 if args.mask else signal_mask(truth.data)
    mask = geometry.apply(mask_source.astype(np.uint8), NEAREST).astype(bool)
    rows = compare(geometry.apply(on_truth_grid(prediction, truth, LINEAR)), geometry.apply(truth.data), mask)
    summary = summarise(rows)
    console.print(" ".join(f"{key}={value}" for key, value in summary.items()))
    if args.output:
        out = Path(args.output)
        write_csv(out / "translate_evaluation.csv", rows, ["slice", "mae", "mse", "ssim", "psnr"])
        write_metrics(out / "translate_evaluation_summary.csv", summary)
        source = load(args.input) if args.input else None
        panels = [("input", source.data, source.affine)] if source else []
        panels += [("synthetic", prediction.data, prediction.affine), ("true", truth.data, truth.affine)]
        save_montage(panels, out / "translate_evaluation.png")
    return 0


def add_evaluate_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--pred", required=True, help="synthetic image (e.g. <stem>_synthT2.nii.gz)")
    parser.add_argument("--truth", required=True, help="the true image; a prediction on another grid is "
                        "resampled onto its grid")
    parser.add_argument("--mask", help="brain mask (default: the truth's non-background voxels)")
    parser.add_argument("--input", help="the source T1, shown in the montage")
    parser.add_argument("-o", "--output", help="write DIR/translate_evaluation.csv, a summary and a montage")


# ---- command line -------------------------------------------------------------------------------------------------

def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="skull-stripped T1 NIfTI/MGZ, DICOM or BIDS folders")
    parser.add_argument("--to", type=str.upper, choices=TARGETS, default="T2",
                        help="contrast to synthesise (T2 or FLAIR, any case)")
    parser.add_argument("-o", "--output", required=True, help="output folder (<stem>_synth<T>.nii.gz and .png)")
    parser.add_argument("--weights", type=Path, help="other weights (default: the bundled model for --to)")


def run(args: argparse.Namespace) -> int:
    outcome = translate(args.inputs, args.output, args.to, args.weights, args.device, args.quiet, args.verbose)
    for result in outcome.results:
        console.print(f"wrote {result['output']}")
    print_failures(outcome.failures)
    return outcome.exit_code


TASK = Task("translate", "T1 -> synthetic T2 or FLAIR -> <stem>_synthT2.nii.gz", add_arguments, run,
            train=(add_train_arguments, run_train), evaluate=(add_evaluate_arguments, run_evaluate))
