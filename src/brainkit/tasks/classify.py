"""Scan classification for the user's own labelled scans (seed 004, done right).

Two preprocessings, recorded in the model folder so `brainkit classify` repeats them exactly:
- "volume" (default; NIfTI/MGZ or DICOM): the shared geometry code (RAS, resample, box on the head), intensities
  to [0, 1];
- "seed" (DICOM folders): the seed's stack, option for option, bugs fixed: `pydicom.dcmread`, slices ordered by
  position along the slice normal, VOI LUT windowing, MONOCHROME1 inverted, aspect-preserving resize to 256
  with zero padding, per-slice min-max, 64 slices centred on the slice with the largest brain area.
Network: MONAI resnet10 (3D, one channel per sequence), BCE-with-logits (cross-entropy for more than two
classes), Adam, MultiStepLR, through the shared training loop. `brainkit train classify` runs subject-wise
stratified k-fold cross-validation (AUROC with a bootstrap 95% CI, ROC curve, calibration), then trains the
model it keeps on every subject, and writes the model folder with its own model card.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from brainkit.batch import describe_error, print_failures, progress_bar, run_over_inputs
from brainkit.errors import BadInputError, BrainkitError
from brainkit.io import Scan
from brainkit.io.discover import discover, load_item, names_below_shared_folder
from brainkit.io.table import read_table
from brainkit.io.write import write_csv, write_metrics, write_nifti, write_with
from brainkit.runtime import console, resolve_device
from brainkit.spatial import Geometry, Grid, foreground_bbox
from brainkit.tasks import Task
from brainkit.train.recipe import add_train_options, train_and_save
from brainkit.weights import FOLDER, load_weights

CONFIG = "config.json"
WEIGHTS = "classify.pt"
OUTPUT_IMAGES = ("*_gradcam.nii.gz",)  # written below -o with --explain, never read back as input (`discover`)
CAM_LAYER = "layer3"  # finer than layer4, whose map is 2^3 voxels for a 48^3 input


# ---- what a model folder records --------------------------------------------------------------------------------

@dataclass
class Preprocessing:
    """How an input becomes the network's (C, D, H, W) tensor (saved in the model folder)."""

    mode: str = "volume"  # "volume" (any input, shared geometry) or "seed" (DICOM slices, seed 004)
    spacing: float = 3.0  # volume: mm
    shape: tuple[int, int, int] = (64, 64, 64)  # volume: voxels
    depth: int = 64  # seed: slices in the stack
    size: int = 256  # seed: in-plane pixels
    sequences: tuple[str, ...] = ()  # sub-folders of a subject folder used as channels (RSNA layout)

    @property
    def channels(self) -> int:
        return max(1, len(self.sequences))


@dataclass
class ModelConfig:
    """Everything `brainkit classify` needs besides the weights."""

    classes: list[str]
    preprocessing: Preprocessing = field(default_factory=Preprocessing)
    width: float = 0.5

    def save(self, folder: Path) -> Path:
        return write_with(folder / CONFIG, lambda tmp: tmp.write_text(json.dumps(asdict(self), indent=2)))

    @classmethod
    def load(cls, folder: Path) -> ModelConfig:
        path = folder / CONFIG
        if not path.exists():
            raise BrainkitError(folder, f"not a classify model folder ({CONFIG} missing): train one with "
                                        "`brainkit train classify`")
        raw = json.loads(path.read_text())
        prep = raw.pop("preprocessing")
        prep["shape"], prep["sequences"] = tuple(prep["shape"]), tuple(prep["sequences"])
        return cls(preprocessing=Preprocessing(**prep), **raw)


def model_folder(name: str | Path) -> Path:
    """A model folder by path, or a bundled example model by name (e.g. `classify_sex_t1`)."""
    path = Path(name)
    if path.is_dir():
        return path
    if (FOLDER / str(name) / CONFIG).exists():
        return FOLDER / str(name)
    bundled = sorted(p.parent.name for p in FOLDER.glob(f"*/{CONFIG}"))
    raise BrainkitError(name, f"no such model folder; train one with `brainkit train classify` or use a bundled "
                              f"model: {', '.join(bundled)}")


def build_model(config: ModelConfig) -> torch.nn.Module:
    """MONAI resnet10 (3D); one logit for two classes, one per class otherwise."""
    from monai.networks.nets import resnet10

    outputs = 1 if len(config.classes) == 2 else len(config.classes)
    return resnet10(spatial_dims=3, n_input_channels=config.preprocessing.channels, num_classes=outputs,
                    widen_factor=config.width)


# ---- preprocessing ----------------------------------------------------------------------------------------------

def unit_range(array: np.ndarray) -> np.ndarray:
    """Min-max to [0, 1] (zeros when constant), float32."""
    low, high = float(array.min()), float(array.max())
    return ((array - low) / (high - low) if high > low else np.zeros_like(array)).astype(np.float32)


def first_volume(path: Path) -> Scan:
    """The first volume a path holds (file, DICOM folder); a clear error when it holds none."""
    items = discover([path])
    scans = [s for item in items for s in load_item(item)]
    for scan in scans:
        if isinstance(scan, Scan):
            return scan
    if scans:
        raise scans[0]
    raise BadInputError(path, "no image found: give a NIfTI/MGZ file or a folder of one DICOM series")


def volume_channel(source: Path | Scan, prep: Preprocessing) -> tuple[np.ndarray, Scan, Geometry]:
    """RAS, `spacing` mm, a `shape` box centred on the head, [0, 1] (0.5-99.5 percentiles)."""
    scan = source if isinstance(source, Scan) else first_volume(source)
    geometry = Geometry(Grid(scan.shape, scan.affine)).to_ras().resample(prep.spacing)
    volume = geometry.apply(scan.data)
    start, stop = foreground_bbox(volume)
    geometry.crop_centred((start + stop) / 2, prep.shape)
    box = geometry.steps[-1].apply(volume, fill=float(volume.min()))
    low, high = np.percentile(box, [0.5, 99.5])
    return np.clip((box - low) / max(high - low, 1e-6), 0, 1).astype(np.float32), scan, geometry


def windowed_slice(ds) -> np.ndarray:
    """The seed's slice: VOI LUT windowing, MONOCHROME1 inverted, min-max to [0, 1]."""
    from pydicom.pixels import apply_voi_lut

    pixels = apply_voi_lut(ds.pixel_array, ds).astype(np.float32)
    if ds.get("PhotometricInterpretation", "") == "MONOCHROME1":
        pixels = pixels.max() - pixels
    return unit_range(pixels)


def fit_square(image: np.ndarray, size: int) -> np.ndarray:
    """Resize keeping the aspect ratio so the longer side is `size`, then zero-pad to size x size (centred)."""
    from skimage.transform import resize

    scale = size / max(image.shape)
    shape = tuple(max(1, round(n * scale)) for n in image.shape)
    resized = resize(image, shape, order=1, anti_aliasing=scale < 1, preserve_range=True)
    out = np.zeros((size, size), np.float32)
    top, left = (size - shape[0]) // 2, (size - shape[1]) // 2
    out[top:top + shape[0], left:left + shape[1]] = resized
    return out


def position_along_normal(ds) -> float:
    """Where a slice sits along its own normal (ImagePositionPatient projected on row x column)."""
    orientation = np.asarray(ds.ImageOrientationPatient, float)
    return float(np.dot(np.cross(orientation[:3], orientation[3:]), np.asarray(ds.ImagePositionPatient, float)))


def centred_stack(slices: list[np.ndarray], depth: int) -> np.ndarray:
    """`depth` slices centred on the one with the largest brain (non-zero) area, zero-padded past the ends."""
    areas = [int((s > 0).sum()) for s in slices]
    start = int(np.argmax(areas)) - depth // 2
    stack = np.zeros((depth, *slices[0].shape), np.float32)
    for i in range(depth):
        if 0 <= start + i < len(slices):
            stack[i] = slices[start + i]
    return stack


def seed_channel(folder: Path, prep: Preprocessing) -> np.ndarray:
    """The seed's (depth, size, size) stack from a folder of single-slice DICOM files."""
    from brainkit.io.dicom.files import looks_like_dicom, read_datasets

    files = sorted(p for p in folder.rglob("*") if p.is_file() and looks_like_dicom(p)) if folder.is_dir() else []
    read = read_datasets(files)
    datasets = [ds for _, ds, _ in read if ds is not None and "PixelData" in ds and "ImagePositionPatient" in ds]
    if not datasets:
        reasons = [why for _, _, why in read if why]
        raise BadInputError(folder, "no readable DICOM slices with positions" + (f" ({reasons[0]})" if reasons else "")
                            + ": give a folder of one DICOM series")
    datasets.sort(key=position_along_normal)
    return centred_stack([fit_square(windowed_slice(ds), prep.size) for ds in datasets], prep.depth)


def channel_paths(path: Path, prep: Preprocessing) -> list[Path]:
    """The inputs of one example: the sequence sub-folders of a subject folder, or the path itself."""
    if not prep.sequences:
        return [path]
    missing = [s for s in prep.sequences if not (path / s).exists()]
    if missing:
        raise BadInputError(path, f"subject folder lacks {', '.join(missing)}: the model needs "
                                  f"{', '.join(prep.sequences)}")
    return [path / s for s in prep.sequences]


def model_input(paths: list[Path] | list[Scan], prep: Preprocessing
                ) -> tuple[torch.Tensor, Scan | None, Geometry | None]:
    """(C, D, H, W) tensor of one example, with the first channel's scan and geometry (volume mode)."""
    if prep.mode == "seed":
        return torch.from_numpy(np.stack([seed_channel(p, prep) for p in paths])), None, None
    channels = [volume_channel(p, prep) for p in paths]
    return torch.from_numpy(np.stack([c[0] for c in channels])), channels[0][1], channels[0][2]


# ---- labelled examples ------------------------------------------------------------------------------------------

@dataclass
class Example:
    """One labelled input (a scan, or a subject folder of sequences), and the subject it belongs to (kept
    within one fold)."""

    input: Path
    label: str
    subject: str


def rsna_examples(data: Path, sequences: tuple[str, ...]) -> list[Example]:
    """RSNA-MICCAI layout: `train/<id>/<sequence>/*.dcm` with `train_labels.csv` (BraTS21ID, MGMT_value)."""
    examples = []
    for row in read_table(data / "train_labels.csv", ("BraTS21ID", "MGMT_value")):
        subject = f"{int(row['BraTS21ID']):05d}"
        examples.append(Example(data / "train" / subject, row["MGMT_value"], subject))
    return examples


def bids_examples(data: Path, table: Path, column: str) -> list[Example]:
    """BIDS participants.tsv: each participant's image files under `data`, labelled from `column`."""
    images = [item.path for item in discover([data]) if item.kind == "volume"]
    examples = []
    for row in read_table(table, ("participant_id", column), delimiter="\t"):
        subject = row["participant_id"]
        own = sorted(p for p in images if p.name.startswith(f"{subject}_") or f"/{subject}/" in p.as_posix())
        examples += [Example(p, row[column], subject) for p in own]
    return examples


def csv_examples(data: Path, table: Path) -> list[Example]:
    """`input,label[,subject]` rows; `input` relative to `data` (or absolute): a scan, or a subject folder whose
    sequence sub-folders are the channels (--sequences)."""
    examples = []
    for number, row in enumerate(read_table(table, ("input", "label")), start=2):
        if not (row["input"] and row["label"]):
            raise BrainkitError(table, f"row {number} lacks an input or a label: every row needs `input,label`")
        path = Path(row["input"]) if Path(row["input"]).is_absolute() else data / row["input"]
        examples.append(Example(path, row["label"], row.get("subject") or row["input"]))
    return examples


def read_examples(data: Path, labels: Path | None, column: str | None, sequences: tuple[str, ...]) -> list[Example]:
    """Labelled examples from an RSNA-shaped tree, a BIDS participants.tsv or a labels CSV; at least two classes."""
    if labels is None and (data / "train_labels.csv").exists():
        examples = rsna_examples(data, sequences)
    elif labels is None:
        raise BrainkitError(data, "no labels: give --labels labels.csv (input,label rows) or an RSNA-shaped folder "
                                  "with train_labels.csv")
    elif labels.suffix == ".tsv":
        examples = bids_examples(data, labels, column or "group")
    else:
        examples = csv_examples(data, labels)
    if len({e.label for e in examples}) < 2:
        raise BrainkitError(labels or data, f"{len(examples)} examples but fewer than two classes: a classifier "
                                            "needs examples of at least two labels")
    return examples


# ---- cross-validation and statistics ----------------------------------------------------------------------------

def subject_folds(examples: list[Example], folds: int, seed: int) -> list[int]:
    """Fold index per example: subjects (never split) dealt round-robin per class after a seeded shuffle."""
    rng = np.random.default_rng(seed)
    subject_label = {e.subject: e.label for e in examples}
    fold_of: dict[str, int] = {}
    position = 0
    for label in sorted(set(subject_label.values())):
        subjects = sorted(s for s, lab in subject_label.items() if lab == label)
        for subject in rng.permutation(subjects):
            fold_of[str(subject)] = position % folds
            position += 1
    return [fold_of[e.subject] for e in examples]


def bootstrap_auroc(scores: np.ndarray, truth: np.ndarray, subjects: list[str], resamples: int = 2000,
                    seed: int = 0) -> tuple[float, float, float]:
    """AUROC and its 95% bootstrap interval, resampling subjects (so repeated scans stay together)."""
    from brainkit.metrics.classification import auroc

    names = sorted(set(subjects))
    members = {name: np.flatnonzero(np.asarray(subjects) == name) for name in names}
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(resamples):
        chosen = np.concatenate([members[names[i]] for i in rng.integers(0, len(names), len(names))])
        if truth[chosen].min() != truth[chosen].max():
            values.append(fast_auroc(scores[chosen], truth[chosen]))
    low, high = np.percentile(values, [2.5, 97.5]) if values else (float("nan"), float("nan"))
    return auroc(scores, truth), float(low), float(high)


def fast_auroc(scores: np.ndarray, truth: np.ndarray) -> float:
    """AUROC as the Mann-Whitney statistic (ties count half): what the bootstrap calls thousands of times."""
    positive, negative = scores[truth], scores[~truth]
    greater = (positive[:, None] > negative[None]).sum() + 0.5 * (positive[:, None] == negative[None]).sum()
    return float(greater / (len(positive) * len(negative)))


def roc_points(scores: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """False- and true-positive rates at every threshold (from (0, 0) to (1, 1))."""
    order = np.argsort(-scores, kind="stable")
    hits = truth[order]
    tpr = np.r_[0, np.cumsum(hits) / max(hits.sum(), 1)]
    fpr = np.r_[0, np.cumsum(~hits) / max((~hits).sum(), 1)]
    return fpr, tpr


def calibration(scores: np.ndarray, truth: np.ndarray, bins: int = 5) -> tuple[list[dict], float]:
    """Reliability table (mean predicted vs observed rate per probability bin) and the Brier score."""
    edges = np.linspace(0, 1, bins + 1)
    which = np.clip(np.digitize(scores, edges[1:-1]), 0, bins - 1)
    table = [{"bin": f"{edges[b]:.1f}-{edges[b + 1]:.1f}", "cases": int((which == b).sum()),
              "mean_p": round(float(scores[which == b].mean()), 3) if (which == b).any() else None,
              "observed": round(float(truth[which == b].mean()), 3) if (which == b).any() else None}
             for b in range(bins)]
    return table, round(float(np.mean((scores - truth) ** 2)), 4)


def save_roc_and_calibration(scores: np.ndarray, truth: np.ndarray, title: str, out: Path) -> None:
    """roc.png (with the AUROC in the title) and calibration.png (reliability diagram)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fpr, tpr = roc_points(scores, truth)
    fig, ax = plt.subplots(figsize=(4, 4))
    ax.plot(fpr, tpr, drawstyle="steps-post", label="cross-validated")
    ax.plot([0, 1], [0, 1], ":", color="gray", label="chance")
    ax.set(xlabel="false-positive rate", ylabel="true-positive rate", title=title)
    ax.legend(loc="lower right")
    fig.tight_layout()
    write_with(out / "roc.png", lambda tmp: fig.savefig(tmp, dpi=90, format="png"))
    plt.close(fig)
    table, brier = calibration(scores, truth)
    fig, ax = plt.subplots(figsize=(4, 4))
    filled = [row for row in table if row["cases"]]
    ax.plot([r["mean_p"] for r in filled], [r["observed"] for r in filled], "o-", label="cross-validated")
    ax.plot([0, 1], [0, 1], ":", color="gray", label="perfect")
    ax.set(xlabel="predicted probability", ylabel="observed rate", title=f"calibration (Brier {brier})",
           xlim=(0, 1), ylim=(0, 1))
    ax.legend(loc="upper left")
    fig.tight_layout()
    write_with(out / "calibration.png", lambda tmp: fig.savefig(tmp, dpi=90, format="png"))
    plt.close(fig)


# ---- training -----------------------------------------------------------------------------------------------------

def class_targets(labels: list[str], classes: list[str]) -> torch.Tensor:
    """Binary: float (N, 1) of 'is the second class'; more classes: class indices (N,)."""
    index = torch.tensor([classes.index(label) for label in labels])
    return index.float()[:, None] if len(classes) == 2 else index


def classification_loss(classes: list[str]) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """BCE-with-logits for two classes (the seed's), cross-entropy otherwise."""
    return F.binary_cross_entropy_with_logits if len(classes) == 2 else F.cross_entropy


def augmented_batches(inputs: torch.Tensor, targets: torch.Tensor, batch: int):
    """`batch_for(step, generator)`: random examples, mirrored along the first axis half the time, shifted up to
    4 voxels, with a random gamma."""
    def batch_for(step: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        chosen = torch.randint(len(inputs), (batch,), generator=generator)
        images = inputs[chosen].clone()
        for i in range(batch):
            shifts = tuple(int(s) for s in torch.randint(-4, 5, (3,), generator=generator))
            images[i] = torch.roll(images[i], shifts, dims=(1, 2, 3))
            if float(torch.rand(1, generator=generator)) < 0.5:
                images[i] = images[i].flip(1)
        gamma = torch.exp(torch.randn(batch, 1, 1, 1, 1, generator=generator) * 0.15)
        return images.clamp(min=0) ** gamma, targets[chosen]

    return batch_for


def probabilities(model: torch.nn.Module, inputs: torch.Tensor, classes: list[str]) -> np.ndarray:
    """(N, classes) probabilities, one example at a time, on the model's device."""
    device = next(model.parameters()).device
    with torch.no_grad():
        logits = torch.cat([model(x[None].to(device)) for x in inputs]).cpu()
    if len(classes) == 2:
        p = torch.sigmoid(logits[:, 0])
        return torch.stack([1 - p, p], 1).numpy()
    return torch.softmax(logits, 1).numpy()


def fit(config: ModelConfig, inputs: torch.Tensor, labels: list[str], args: argparse.Namespace,
        output: Path) -> torch.nn.Module:
    """Train one model through the shared loop (Adam, MultiStepLR at 50% and 75% of the steps)."""
    fold_args = argparse.Namespace(**{**vars(args), "output": str(output)})
    milestones = [args.steps // 2, args.steps * 3 // 4]
    model = build_model(config)
    train_and_save("classify", model, augmented_batches(inputs, class_targets(labels, config.classes), args.batch),
                   classification_loss(config.classes), fold_args, every=(50, 10, 0),
                   scheduler_for=lambda opt: torch.optim.lr_scheduler.MultiStepLR(opt, milestones, 0.1))
    return model.eval()


def load_examples(examples: list[Example], prep: Preprocessing, quiet: bool) -> tuple[list[Example], torch.Tensor]:
    """Preprocess every example; one that cannot be read is reported and left out, never silently kept."""
    kept, tensors, failures = [], [], []
    with progress_bar(quiet) as progress:
        task = progress.add_task("preprocessing", total=len(examples))
        for example in examples:
            try:
                tensors.append(model_input(channel_paths(example.input, prep), prep)[0])
                kept.append(example)
            except Exception as err:  # noqa: BLE001 - one bad series must not lose the rest
                failures.append(describe_error(err, example.input))
            progress.advance(task)
    print_failures(failures)
    if not tensors:
        raise BrainkitError(examples[0].input if examples else "labels", "no example could be read")
    return kept, torch.stack(tensors)


def cross_validate(config: ModelConfig, examples: list[Example], inputs: torch.Tensor, args: argparse.Namespace,
                   out: Path) -> dict[str, object]:
    """Out-of-fold probabilities for every example, `cv_predictions.csv`, ROC and calibration pictures and the
    summary (AUROC with bootstrap CI, accuracy, Brier)."""
    folds = subject_folds(examples, args.folds, args.seed)
    p = np.zeros((len(examples), len(config.classes)))
    for fold in range(args.folds):
        held = np.array(folds) == fold
        if held.all() or not held.any():
            continue
        console.print(f"fold {fold + 1}/{args.folds}: {int((~held).sum())} training, {int(held.sum())} held out")
        train_labels = [e.label for e, h in zip(examples, held) if not h]
        model = fit(config, inputs[~held], train_labels, args, out / "folds" / str(fold))
        p[held] = probabilities(model, inputs[held], config.classes)
    rows = [{"input": str(e.input), "subject": e.subject, "label": e.label, "fold": f,
             **{f"p_{c}": round(float(v), 4) for c, v in zip(config.classes, probs)}}
            for e, f, probs in zip(examples, folds, p)]
    write_csv(out / "cv_predictions.csv", rows, list(rows[0]))
    truth = np.array([e.label == config.classes[-1] for e in examples])
    positive = p[:, -1]
    summary: dict[str, object] = {"folds": args.folds, "examples": len(examples),
                                  "subjects": len({e.subject for e in examples}),
                                  "accuracy": round(float(np.mean(p.argmax(1) == [config.classes.index(e.label)
                                                                                 for e in examples])), 4)}
    if len(config.classes) == 2:
        value, low, high = bootstrap_auroc(positive, truth, [e.subject for e in examples], seed=args.seed)
        _, brier = calibration(positive, truth)
        summary.update({"auroc": round(value, 4), "auroc_ci_low": round(low, 4), "auroc_ci_high": round(high, 4),
                        "brier": brier})
        save_roc_and_calibration(positive, truth, f"AUROC {value:.2f} (95% CI {low:.2f}-{high:.2f})", out)
    return summary


def write_model_card(out: Path, config: ModelConfig, examples: list[Example], summary: dict[str, object] | None,
                     parameters: int) -> Path:
    """MODEL_CARD.md in the model folder, from what this command did and measured."""
    counts = {c: sum(e.label == c for e in examples) for c in config.classes}
    prep = config.preprocessing
    lines = ["# brainkit classify model", "",
             f"- Trained with: `brainkit {' '.join(sys.argv[1:])}`",
             f"- Classes: {', '.join(f'{c} ({n} examples)' for c, n in counts.items())}; "
             f"{len({e.subject for e in examples})} subjects",
             f"- Preprocessing: {json.dumps(asdict(prep))}",
             f"- Network: MONAI resnet10, widen factor {config.width}, {parameters / 1e6:.2f} M parameters, "
             "fp16 weights", "- Augmentation: left-right mirroring, shifts up to 4 voxels, gamma", ""]
    if summary:
        lines += ["## Subject-wise stratified cross-validation (this command's own output)", "",
                  *[f"- {key}: {value}" for key, value in summary.items()], "",
                  "Per-example out-of-fold probabilities: `cv_predictions.csv`; pictures: `roc.png`, "
                  "`calibration.png`.", ""]
    lines += ["## Use", "", "A research tool. Not for diagnosis. With few subjects the interval is wide: read it, "
              "not the point estimate.", ""]
    return write_with(out / "MODEL_CARD.md", lambda tmp: tmp.write_text("\n".join(lines)))


def run_train(args: argparse.Namespace) -> int:
    data, out = Path(args.data), Path(args.output)
    sequences = tuple(args.sequences.split(",")) if args.sequences else ()
    if sequences == () and (data / "train_labels.csv").exists() and args.labels is None:
        sequences = ("FLAIR",)
    prep = Preprocessing(mode=args.mode, spacing=args.spacing, shape=(args.box,) * 3, depth=args.depth,
                         size=args.size, sequences=sequences)
    examples = read_examples(data, Path(args.labels) if args.labels else None, args.label_column, sequences)
    examples, inputs = load_examples(examples, prep, args.quiet)
    classes = sorted({e.label for e in examples})
    if len(classes) < 2:
        raise BrainkitError(data, "only one class is left after reading the inputs: a classifier needs two")
    config = ModelConfig(classes=classes, preprocessing=prep, width=args.width)
    console.print(f"classify: {len(examples)} examples, classes {classes}, input {tuple(inputs.shape[1:])}")
    summary = cross_validate(config, examples, inputs, args, out) if args.folds > 1 else None
    if summary:
        console.print(" ".join(f"{key}={value}" for key, value in summary.items()))
        write_metrics(out / "cv_summary.csv", summary)
    model = fit(config, inputs, [e.label for e in examples], args, out / "final")
    (out / "final" / "classify.pt").replace(out / WEIGHTS)
    config.save(out)
    card = write_model_card(out, config, examples, summary, sum(p.numel() for p in model.parameters()))
    console.print(f"wrote {out / WEIGHTS}, {out / CONFIG} and {card}")
    return 0


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    add_train_options(parser, "classify", steps=400, lr=1e-4)
    parser.add_argument("--labels", help="labels.csv (input,label[,subject]) or a BIDS participants.tsv "
                                         "(default: train_labels.csv of an RSNA-shaped --data)")
    parser.add_argument("--label-column", help="participants.tsv column to predict (default: group)")
    parser.add_argument("--sequences", help="comma-separated sub-folders used as channels (RSNA: FLAIR,T1w,...)")
    parser.add_argument("--mode", choices=("volume", "seed"), default="volume",
                        help="volume: shared geometry, any input; seed: seed 004's DICOM stack (64 x 256 x 256)")
    parser.add_argument("--spacing", type=float, default=3.0, help="volume mode: voxel size in mm")
    parser.add_argument("--box", type=int, default=64, help="volume mode: cube side in voxels")
    parser.add_argument("--depth", type=int, default=64, help="seed mode: slices around the largest brain slice")
    parser.add_argument("--size", type=int, default=256, help="seed mode: in-plane size after aspect-kept resize")
    parser.add_argument("--width", type=float, default=0.5, help="resnet10 widen factor (0.5: 3.6 M parameters)")
    parser.add_argument("--folds", type=int, default=5, help="subject-wise cross-validation folds (0: none)")
    parser.add_argument("--batch", type=int, default=4, help="examples per step")


# ---- prediction -------------------------------------------------------------------------------------------------

def save_cam(model: torch.nn.Module, tensor: torch.Tensor, scan: Scan | None, geometry: Geometry | None,
             target: Path) -> None:
    """Grad-CAM of the positive score: a PNG overlay, and a NIfTI on the input's grid (volume mode)."""
    from brainkit.explain.gradcam import gradcam
    from brainkit.report.figures import save_overlay

    heat = gradcam(model, tensor[None].to(next(model.parameters()).device), CAM_LAYER)
    if scan is not None and geometry is not None:
        inside = scan.data > np.percentile(scan.data, 1)  # the map outside the head says nothing to a reader
        on_input = (geometry.to_input_grid(heat) * inside).astype(np.float32)
        write_nifti(target.with_suffix(".nii.gz"), on_input, scan.affine, scan.header)
        save_overlay(scan.data, on_input * (on_input > 0.2), scan.affine, target.with_suffix(".png"), title=target.stem)
    else:
        save_overlay(tensor[0].numpy(), heat * (heat > 0.2), np.eye(4), target.with_suffix(".png"), title=target.stem)


def classify(inputs: list[str | Path], model_dir: str | Path, out_dir: str | Path, explain: bool = False,
             device: str = "auto", quiet: bool = True, verbose: bool = False) -> tuple[list[dict], list]:
    """Python API of `brainkit classify`: `predictions.csv` (input, p_<class>..., prediction). A single-channel
    volume model takes every scan a file or folder holds (every series of a DICOM folder), as the other jobs do; a
    multi-sequence or seed-mode model takes each input as one subject or series folder."""
    folder, out = model_folder(model_dir), Path(out_dir)
    config = ModelConfig.load(folder)
    prep = config.preprocessing
    model = load_weights(build_model(config), folder / WEIGHTS, "classify", resolve_device(device))

    def predict_one(name: str, output_name: Path, channels: list[Path] | list[Scan]) -> dict:
        tensor, scan, geometry = model_input(channels, prep)
        p = probabilities(model, tensor[None], config.classes)[0]
        if explain:  # named by the example's path below the inputs' shared folder: p1/T1, p2/T1
            save_cam(model, tensor, scan, geometry, out / f"{output_name.as_posix()}_gradcam")
        return {"input": name, **{f"p_{c}": round(float(v), 4) for c, v in zip(config.classes, p)},
                "prediction": config.classes[int(np.argmax(p))]}

    if prep.mode == "volume" and not prep.sequences:
        outcome = run_over_inputs(inputs, lambda scan: predict_one(scan.label, scan.rel_path, [scan]), "classify",
                                  quiet, verbose, mr_images_only=True, outputs=out, written=OUTPUT_IMAGES)
        rows, failures = outcome.results, outcome.failures
    else:
        rows, failures = [], []
        with progress_bar(quiet) as progress:
            task = progress.add_task("classify", total=len(inputs))
            for source, name in zip(map(Path, inputs), names_below_shared_folder(inputs), strict=True):
                try:
                    rows.append(predict_one(str(source), name, channel_paths(source, prep)))
                except Exception as err:  # noqa: BLE001 - one bad input must not stop the batch
                    failures.append(describe_error(err, source, verbose))
                progress.advance(task)
    write_csv(out / "predictions.csv", rows, ["input", *[f"p_{c}" for c in config.classes], "prediction"])
    return rows, failures


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("inputs", nargs="+", metavar="INPUT",
                        help="scans (NIfTI/MGZ, DICOM series folders) or subject folders for multi-sequence models")
    parser.add_argument("--model", required=True, help="model folder written by `brainkit train classify`, or a "
                                                         "bundled example: classify_sex_t1")
    parser.add_argument("-o", "--output", required=True, help="output folder (predictions.csv)")
    parser.add_argument("--explain", action="store_true", help="Grad-CAM per input (PNG, and NIfTI on its grid)")


def run(args: argparse.Namespace) -> int:
    rows, failures = classify(args.inputs, args.model, args.output, args.explain, args.device, args.quiet,
                              args.verbose)
    for row in rows:
        console.print(f"{row['prediction']:12s} {row['input']}")
    print_failures(failures)
    return 1 if failures else 0


TASK = Task("classify", "scan classification with your own model -> predictions.csv", add_arguments, run,
            train=(add_train_arguments, run_train))
