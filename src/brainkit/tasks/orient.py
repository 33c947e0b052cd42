"""Left-right orientation check: is the image's left (per its header) the patient's left?

load -> RAS, 3 mm, 64^3 box on the head (recorded geometry) -> mirror-antisymmetric 3D CNN -> orientation.csv.
Trained on synthetic heads from the 15 real label maps (any contrast) plus augmented real scans, with
mirroring as the label. Everything is read from the header's world axes, never from voxel order.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from brainkit.batch import print_failures, run_over_inputs
from brainkit.explain.gradcam import gradcam
from brainkit.io import Scan, load
from brainkit.io.write import write_csv, write_metrics, write_nifti
from brainkit.metrics import auroc
from brainkit.nets.mirror import MeanLogit, ensemble_size, mirror_classifier
from brainkit.report.figures import save_overlay
from brainkit.runtime import console, resolve_device
from brainkit.spatial import NEAREST, Geometry, Grid, Realign, foreground_bbox
from brainkit.spatial.symmetry import midplane_voxel_map
from brainkit.synth import LabelBank, SynthConfig, SynthEngine, shared_label_maps
from brainkit.synth.intensity import bias_field, gamma_and_noise, gaussian_blur, normalise
from brainkit.synth.spatial import (
    control_points,
    dense,
    mapped_points,
    random_affine,
    sample,
    smooth_displacement,
    uniform,
)
from brainkit.tasks import Task
from brainkit.train.loop import checkpoint_step
from brainkit.train.recipe import add_train_options, train_and_save
from brainkit.weights import FOLDER, load_weights, read_state, save_weights

SPACING = 3.0
SHAPE = (64, 64, 64)
WEIGHTS = FOLDER / "orient.pt"
OUTPUT_IMAGES = ("*_gradcam.nii.gz", "*_lrfixed.nii.gz")  # written below -o, never read back as input (`discover`)
# p_flipped strictly inside -> "uncertain". Calibrated on the held-out predictions of the 5-fold cross-validation
# (model card): the narrowest band, in steps of 0.05 around 0.5, that leaves at most 5% of them confidently wrong.
UNCERTAIN_BAND = (0.05, 0.95)
COLUMNS = ["input", "p_flipped", "decision"]
CAM_LAYER = "net.layer_2"  # 8^3 feature maps (24 mm cells) of the classifier body


def prepare(scan: Scan) -> tuple[torch.Tensor, Geometry]:
    """(1, 1, 64, 64, 64) tensor of the head in RAS at 3 mm, in its most symmetric pose (mid-sagittal plane
    across axis 0), normalised to [0, 1]; and the geometry that led there from the input grid."""
    geometry = Geometry(Grid(scan.shape, scan.affine)).to_ras().resample(SPACING)
    coarse = geometry.apply(scan.data)
    coarse = np.clip(coarse - np.percentile(coarse, 1), 0, None)  # background 0 whatever the scale (z-scores)
    start, stop = foreground_bbox(coarse)
    geometry.crop_centred((start + stop) / 2, SHAPE)
    box = geometry.steps[-1].apply(coarse)
    geometry.realign(midplane_voxel_map(box))
    aligned = geometry.steps[-1].apply(box)
    return normalise(torch.from_numpy(np.ascontiguousarray(aligned, dtype=np.float32))[None, None]), geometry


def load_model(path: Path = WEIGHTS, device: torch.device | str = "cpu") -> torch.nn.Module:
    """The bundled orient network (fp16 weights, run in fp32): the ensemble of the cross-validation fold models;
    a single model's weights or training checkpoint work too."""
    state = read_state(path, "orient")
    members = ensemble_size(state)
    model = MeanLogit([mirror_classifier(SHAPE) for _ in range(members)]) if members else mirror_classifier(SHAPE)
    return load_weights(model, path, "orient", device, state)


def members(model: torch.nn.Module) -> list[torch.nn.Module]:
    """The single models inside an ensemble (or the model itself)."""
    return list(model.members) if isinstance(model, MeanLogit) else [model]


def decide(p_flipped: float, band: tuple[float, float] = UNCERTAIN_BAND) -> str:
    """ok / flipped / uncertain from the probability that left-right is mirrored."""
    if band[0] < p_flipped < band[1]:
        return "uncertain"
    return "flipped" if p_flipped >= band[1] else "ok"


@dataclass
class OrientResult:
    input: str
    p_flipped: float
    decision: str


def p_flipped(tensor: torch.Tensor, model: torch.nn.Module) -> float:
    """Probability that a prepared (1, 1, 64, 64, 64) head is mirrored."""
    with torch.no_grad():
        return float(torch.sigmoid(model(tensor))[0])


def explain(tensor: torch.Tensor, geometry: Geometry, model: torch.nn.Module, p: float) -> np.ndarray:
    """Grad-CAM of the evidence for the decision taken (flipped if p >= 0.5, else ok), on the input's own grid.

    The score is h(x) - h(mirror x) (averaged over an ensemble's members), so the evidence for "flipped" is h's
    Grad-CAM on x plus, mirrored back, the Grad-CAM of -h on mirror x; for "ok" both signs swap. The raw maps
    of every read are summed, then scaled to [0, 1] once.
    """
    sign = 1.0 if p >= 0.5 else -1.0
    heat = sum(gradcam(member.body, tensor, CAM_LAYER, sign, normalise=False)
               + gradcam(member.body, tensor.flip(2), CAM_LAYER, -sign, normalise=False)[::-1]
               for member in members(model))
    heat = np.clip(heat, 0, None) / max(float(heat.max()), 1e-6)
    return geometry.to_input_grid(np.ascontiguousarray(heat, dtype=np.float32))


def corrected_copy(scan: Scan) -> np.ndarray:
    """Voxels mirrored along the axis closest to world x; written with the input's own header, so the
    corrected copy stays on the input's grid and overlays the session's other scans."""
    x_axis = int(np.argmax(np.abs(scan.affine[0, :3])))
    return np.ascontiguousarray(np.flip(scan.data, x_axis))


def process(scan: Scan, model: torch.nn.Module, out_dir: Path, device: torch.device,
            want_explain: bool = False, want_fix: bool = False) -> OrientResult:
    """Score one scan; write its Grad-CAM (NIfTI + PNG) and corrected copy when asked."""
    tensor, geometry = prepare(scan)
    p = p_flipped(tensor.to(device), model)
    decision = decide(p)
    if want_explain:
        heat = explain(tensor.to(device), geometry, model, p)
        write_nifti(scan.output_path(out_dir, "_gradcam"), heat, scan.affine, scan.header)
        save_overlay(scan.data, heat * (heat > 0.2), scan.affine, scan.output_path(out_dir, "_gradcam", ".png"),
                     title=f"{scan.stem}: {decision} (p_flipped={p:.3f})")
    if want_fix and decision == "flipped":
        write_nifti(scan.output_path(out_dir, "_lrfixed"), corrected_copy(scan), scan.affine, scan.header)
    return OrientResult(scan.label, round(p, 4), decision)


def orient(inputs: list[str | Path], out_dir: str | Path, device: str = "auto", explain: bool = False,
           fix: bool = False, quiet: bool = True, verbose: bool = False, weights: Path = WEIGHTS):
    """Python API of `brainkit orient`: writes out_dir/orientation.csv (and Grad-CAM / fixed copies when
    asked) and returns the batch outcome."""
    torch_device = resolve_device(device)
    model = load_model(weights, device=torch_device)
    out = Path(out_dir)
    outcome = run_over_inputs(inputs, lambda scan: process(scan, model, out, torch_device, explain, fix), "orient",
                              quiet, verbose, mr_images_only=True, outputs=out, written=OUTPUT_IMAGES)
    write_csv(out / "orientation.csv", [vars(result) for result in outcome.results], COLUMNS)
    return outcome


# ---- training ----------------------------------------------------------------------------------------------

REAL_TRAIN = ["t1_depression/sub-0*_T1w.nii.gz", "t1_depression/sub-1*_T1w.nii.gz", "heads/allineate_*.nii.gz",
              "heads/nipy_anatomical_2mm.nii.gz", "pairs_open_ms_mni/patient07/[TF]*_regtoMNI.nii.gz",
              "pairs_open_ms_raw/patient01/study1_*.nii.gz", "templates/MNI152_T1_1mm_fsl_asym.nii.gz",
              "templates/colin27/ch2*.nii.gz", "seg_freesurfer/niivue_norm/norm.mgz"]
REAL_VALIDATION = ["t1_depression/sub-5*_T1w.nii.gz", "heads/seg3d_T1_head.nii.gz",
                   "pairs_open_ms_mni/patient19/[TF]*_regtoMNI.nii.gz", "tumor_brats2013/*/*_subtrMeanDivStd.nii.gz"]


# Smooth warp of real scans, voxels (3 mm) on a control grid every WARP_SPACING voxels. Off: with 1.0 (plus a 0.04
# shear and skull-stripping half of the synthetic heads) 5-fold cross-validation fell from 75% to 67% (model card).
REAL_WARP_STD = 0.0
WARP_SPACING = 8


def real_scans(data: Path, patterns: list[str]) -> list[Path]:
    """Real scans matching glob patterns under the data folder (subject-wise split lists above)."""
    return sorted({path for pattern in patterns for path in data.glob(pattern)})


MULTI_SCAN_FOLDERS = ("pairs_open_ms_mni", "pairs_open_ms_raw", "tumor_brats2013")  # a subfolder per person


def subject_of(path: Path, data: Path) -> str:
    """A key shared by the scans of one person: their folder where a folder holds one person's several scans."""
    relative = path.relative_to(data)
    if relative.parts[0] in MULTI_SCAN_FOLDERS or relative.parent.name == "colin27":
        return str(relative.parent)
    return "heads/allineate_T1" if relative.name.startswith("allineate_T1") else str(relative)


def cross_validation_folds(data: Path, folds: int, seed: int = 0) -> list[tuple[list[Path], list[Path]]]:
    """(training scans, held-out scans) per fold over all real scans, whole subjects held out together."""
    scans = real_scans(data, REAL_TRAIN + REAL_VALIDATION)
    subjects = sorted({subject_of(path, data) for path in scans})
    order = np.random.default_rng(seed).permutation(len(subjects))
    fold_of = {subjects[index]: rank % folds for rank, index in enumerate(order)}
    return [([path for path in scans if fold_of[subject_of(path, data)] != fold],
             [path for path in scans if fold_of[subject_of(path, data)] == fold]) for fold in range(folds)]


def prepared_stack(paths: list[Path]) -> torch.Tensor:
    """(N, 1, 64, 64, 64) prepared tensors of the given scans."""
    return torch.cat([prepare(load(path))[0] for path in paths])


def augment_real(volumes: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Small pose jitter (what symmetric alignment leaves), the smooth warp REAL_WARP_STD, blur, bias, gamma and
    noise, then mirror a random half; returns (images, flipped)."""
    batch = volumes.shape[0]
    affine, _ = random_affine(batch, SHAPE, SHAPE, 4.0, 0.08, 0.0, 2.0, generator)
    warp = smooth_displacement(batch, SHAPE, REAL_WARP_STD, WARP_SPACING, generator)
    coords = dense(mapped_points(affine, control_points(SHAPE, WARP_SPACING), warp, SHAPE), SHAPE)
    images = sample(volumes, coords, "bilinear")
    images = gaussian_blur(images, uniform(0, 1.2, (batch, 3), generator))
    images = images * bias_field(images.shape, 0.3, generator)
    images = gamma_and_noise(normalise(images), 0.25, 0.03, generator)
    flipped = torch.rand((batch,), generator=generator) < 0.5
    images = torch.where(flipped.view(-1, 1, 1, 1, 1), images.flip(2), images)
    return images, flipped


def symmetric_bank(bank: LabelBank) -> LabelBank:
    """The bank's label maps put in their most symmetric pose, as `prepare` does for scans."""
    aligned = []
    for labels in bank.maps[:, 0].numpy():
        head = (labels > 0).astype(np.float32)
        step = Realign.voxel_map(Grid(labels.shape, bank.affine), midplane_voxel_map(head))
        aligned.append(step.apply(labels.astype(np.float32), NEAREST).astype(np.int16))
    bank.maps = torch.from_numpy(np.stack(aligned))[:, None]
    return bank


def synthetic_heads(data: Path) -> SynthEngine:
    """The synth engine over the 15 label maps in their symmetric pose, with orient's augmentation ranges."""
    maps = shared_label_maps(data)
    bank = symmetric_bank(LabelBank.from_files(maps, spacing=SPACING, shape=SHAPE))
    config = SynthConfig(shape=SHAPE, rotation_deg=4, scaling=0.08, shear=0.0, translation=2, deform_std=0.3,
                         deform_spacing=8, thick_max=2.0, blur_max=0.8)
    return SynthEngine(bank, config)


def training_batches(engine: SynthEngine, synth_per_batch: int, real_per_batch: int, real: torch.Tensor):
    """`batch_for(step, generator)` mixing synthetic heads with augmented real scans (prepared tensors); synthetic
    heads only when `real_per_batch` is 0."""
    console.print(f"orient training: {len(engine.maps)} label maps, {len(real)} real training scans")

    def batch_for(step: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        engine.generator = generator
        synthetic, synthetic_flipped = engine.generate_mirrored(synth_per_batch)
        if not real_per_batch:  # synthetic heads only
            return synthetic.image, synthetic_flipped.float()
        chosen = torch.randint(len(real), (real_per_batch,), generator=generator)
        images, flipped = augment_real(real[chosen], generator)
        return (torch.cat([synthetic.image, images]), torch.cat([synthetic_flipped, flipped]).float())

    return batch_for


def bce(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.binary_cross_entropy_with_logits(logits, targets)


def fit(args: argparse.Namespace, engine: SynthEngine, real: torch.Tensor, validation: torch.Tensor,
        best_metric: str | None = None) -> Path:
    """Train one model on synthetic heads and the prepared real scans `real`, validating on `validation` (scans
    as acquired)."""

    def validate(net: torch.nn.Module) -> dict[str, float]:
        logits = net(validation)
        log_likelihood = -float(bce(logits, torch.zeros_like(logits)))  # every validation scan is as acquired
        return {"val_accuracy": float((logits < 0).float().mean()), "val_min_margin": float((-logits).min()),
                "val_log_likelihood": log_likelihood}

    batches = training_batches(engine, args.synth, args.real, real)
    return train_and_save("orient", mirror_classifier(SHAPE), batches, bce, args, validate, best_metric=best_metric)


def train_cross_validation(args: argparse.Namespace) -> int:
    """One model per subject-wise fold, trained to the same step (no pick by held-out score); then the held-out
    predictions of every fold are scored (`cv_evaluation*.csv`) and the fold models saved as one ensemble."""
    data, out = Path(args.data), Path(args.output)
    deadline = time.monotonic() + args.max_minutes * 60 if args.max_minutes else None
    folds = cross_validation_folds(data, args.folds)
    scans = real_scans(data, REAL_TRAIN + REAL_VALIDATION)
    tensor_of = dict(zip(scans, prepared_stack(scans)))  # each scan prepared once for every fold
    engine = None
    models, rows = [], []
    for fold, (train_paths, held_out) in enumerate(folds):
        fold_out = out / f"fold_{fold}"
        if checkpoint_step(fold_out / "checkpoint.pt") < args.steps:
            engine = engine or synthetic_heads(data)
            minutes = None if deadline is None else (deadline - time.monotonic()) / 60
            fit(argparse.Namespace(**{**vars(args), "output": str(fold_out), "max_minutes": minutes,
                                      "seed": args.seed + fold}), engine,
                torch.stack([tensor_of[path] for path in train_paths]),
                torch.stack([tensor_of[path] for path in held_out]))
            if checkpoint_step(fold_out / "checkpoint.pt") < args.steps:
                return 0  # the time limit: rerun to resume
        models.append(load_model(fold_out / "orient.pt"))
        rows += evaluation_rows([(str(path), p_flipped(tensor_of[path][None], models[-1])) for path in held_out])
    console.print(f"cross-validation over {args.folds} folds (held-out subjects):")
    report(rows, out, "cv_evaluation")
    save_weights(MeanLogit(models), out / "orient.pt")
    console.print(f"wrote {out / 'orient.pt'} (the {args.folds} fold models as one ensemble)")
    return 0


def run_train(args: argparse.Namespace) -> int:
    if args.folds:
        return train_cross_validation(args)
    data = Path(args.data)
    fit(args, synthetic_heads(data), prepared_stack(real_scans(data, REAL_TRAIN)),
        prepared_stack(real_scans(data, REAL_VALIDATION)), best_metric="val_log_likelihood")
    return 0


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    add_train_options(parser, "orient", steps=8000, lr=3e-4)
    parser.add_argument("--synth", type=int, default=4, help="synthetic heads per batch")
    parser.add_argument("--real", type=int, default=4, help="augmented real scans per batch")
    parser.add_argument("--folds", type=int, default=0,
                        help="subject-wise cross-validation over all real scans: one model per fold, held-out "
                             "scores, and the fold models bundled as one ensemble (0: the fixed split in the code)")


# ---- command line ------------------------------------------------------------------------------------------

def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="NIfTI/MGZ files, DICOM or BIDS folders")
    parser.add_argument("-o", "--output", required=True, help="output folder (orientation.csv)")
    parser.add_argument("--explain", action="store_true", help="write <stem>_gradcam.nii.gz and a PNG overlay")
    parser.add_argument("--fix", action="store_true",
                        help="for scans judged flipped, write <stem>_lrfixed.nii.gz (voxels mirrored, header kept)")
    parser.add_argument("--weights", type=Path, default=WEIGHTS, help="other weights (default: the bundled ones)")


def run(args: argparse.Namespace) -> int:
    outcome = orient(args.inputs, args.output, args.device, args.explain, args.fix, args.quiet, args.verbose,
                     args.weights)
    for result in outcome.results:
        console.print(f"{result.decision:9s} p_flipped={result.p_flipped:.3f}  {result.input}")
    print_failures(outcome.failures)
    return outcome.exit_code


def orient_metrics(rows: list[dict]) -> dict[str, float]:
    """Accuracy (uncertain counts as not correct), accuracy at p = 0.5, AUROC, uncertain rate, confident
    errors, and the narrowest symmetric band around 0.5 that would have made every error 'uncertain'."""
    p = torch.tensor([row["p_flipped"] for row in rows], dtype=torch.float64)
    truth = torch.tensor([float(row["mirrored"]) for row in rows], dtype=torch.float64)
    wrong_side = ((p >= 0.5).double() != truth).double()
    return {
        "cases": len(rows),
        "accuracy": round(float(np.mean([row["correct"] for row in rows])), 4),
        "accuracy_at_0.5": round(1 - float(wrong_side.mean()), 4),
        "auroc": round(auroc(p.numpy(), truth.numpy() > 0.5), 4),
        "uncertain_rate": round(float(np.mean([row["decision"] == "uncertain" for row in rows])), 4),
        "confidently_wrong": int(sum(not row["correct"] and row["decision"] != "uncertain" for row in rows)),
        "band_half_width_needed": round(float((p[wrong_side.bool()] - 0.5).abs().max()) if wrong_side.any() else 0.0,
                                        4),
    }


def evaluation_rows(results: list[tuple[str, float]]) -> list[dict]:
    """Each scan as acquired (truth: ok) and mirrored (truth: flipped, p = 1 - p: the model is exactly
    antisymmetric), with the decision and whether it is correct."""
    rows = []
    for source, p in results:
        for mirrored, prob in ((False, p), (True, 1 - p)):
            decision = decide(prob)
            rows.append({"input": source, "mirrored": mirrored, "p_flipped": round(prob, 4), "decision": decision,
                         "correct": decision == ("flipped" if mirrored else "ok")})
    return rows


def report(rows: list[dict], output: Path | None, name: str = "orient_evaluation") -> None:
    """Print the metrics and every case not decided correctly; write `<name>.csv` and `<name>_summary.csv`."""
    metrics = orient_metrics(rows)
    console.print(" ".join(f"{key}={value}" for key, value in metrics.items()))
    for row in rows:
        if not row["correct"]:
            console.print(f"  {row['decision']:9s} p={row['p_flipped']:.3f} mirrored={row['mirrored']} {row['input']}")
    if output:
        write_csv(output / f"{name}.csv", rows, list(rows[0]))
        write_metrics(output / f"{name}_summary.csv", metrics)


def run_evaluate(args: argparse.Namespace) -> int:
    """Each scan as is (truth: ok) and mirrored (truth: flipped): accuracy, AUROC, uncertain rate, errors."""
    model = load_model(Path(args.weights), device=resolve_device(args.device))
    outcome = run_over_inputs(args.inputs, lambda scan: (scan.label, p_flipped(prepare(scan)[0], model)),
                              "evaluating", args.quiet, args.verbose, mr_images_only=True)
    rows = evaluation_rows(outcome.results)
    if rows:
        report(rows, Path(args.output) if args.output else None)
    print_failures(outcome.failures)
    return outcome.exit_code if rows else 1


def add_evaluate_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="scans with correct headers (folders searched)")
    parser.add_argument("-o", "--output", help="also write DIR/orient_evaluation.csv and a summary")
    parser.add_argument("--weights", default=str(WEIGHTS), help="weights to evaluate (default: the bundled ones)")


TASK = Task("orient", "left-right flip check -> orientation.csv", add_arguments, run,
            train=(add_train_arguments, run_train), evaluate=(add_evaluate_arguments, run_evaluate))
