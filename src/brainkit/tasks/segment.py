"""Contrast-agnostic whole-brain and subcortical segmentation (SynthSeg-style, trained on synthetic images).

load -> RAS, 1 mm, box on the head (recorded geometry) -> intensities to [0, 1] -> 3D UNet with MONAI's
sliding-window inference on 128^3 windows -> labels back on the input's own grid (nearest) -> `<stem>_seg.nii.gz`
in FreeSurfer aseg numbering, and `volumes.csv` (mm^3 per label).
"""

from __future__ import annotations

import argparse
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
import torch
from monai.inferers import sliding_window_inference
from monai.losses import DiceCELoss
from monai.networks.nets import UNet

from brainkit.batch import print_failures, run_over_inputs
from brainkit.errors import BadInputError, BrainkitError
from brainkit.io import Scan, load
from brainkit.io.write import write_csv, write_nifti
from brainkit.metrics.grids import on_truth_grid
from brainkit.nets.layout import channels_last_top_block
from brainkit.nets.pointwise import PointwiseConv3d
from brainkit.report.figures import save_overlay
from brainkit.runtime import bf16_autocast, console, native_bf16, resolve_device
from brainkit.spatial import NEAREST, Geometry, Grid, box_slices, cut_faces, face_names, foreground_mask, mask_bbox
from brainkit.spatial.symmetry import midplane_voxel_map
from brainkit.synth import LabelBank, SynthConfig, SynthEngine, label_map_files, shared_label_maps
from brainkit.synth.intensity import bias_field, gamma_and_noise, normalise
from brainkit.synth.labels import LEFT_RIGHT_PAIRS, RIGHT_TO_LEFT
from brainkit.tasks import Task
from brainkit.train import on_device
from brainkit.train.recipe import add_train_options, distributed_device, train_and_save
from brainkit.weights import FOLDER, load_weights

# SynthSeg's whole-brain label set (FreeSurfer aseg numbers); index 0 is background.
ASEG_LABELS = (0, 2, 3, 4, 5, 7, 8, 10, 11, 12, 13, 14, 15, 16, 17, 18, 24, 26, 28,
               41, 42, 43, 44, 46, 47, 49, 50, 51, 52, 53, 54, 58, 60)
SUBCORTICAL = (10, 11, 12, 13, 17, 18, 26, 49, 50, 51, 52, 53, 54, 58)
TARGET_LEFT = (10, 11, 12, 13, 17, 18)  # the 12 structures the accuracy target is stated for, with their right twins
TARGET = TARGET_LEFT + tuple(LEFT_RIGHT_PAIRS[label] for label in TARGET_LEFT)
STRUCTURES = {10: "thalamus", 11: "caudate", 12: "putamen", 13: "pallidum", 17: "hippocampus", 18: "amygdala",
              26: "accumbens", 4: "lateral ventricle"}
VOLUME_COLUMNS = ["input", *[str(label) for label in ASEG_LABELS[1:]], "brain"]
PATCH = (128, 128, 128)
OVERLAP = 0.25
SPACING = 1.0
# mm of the head's box kept below its top: the most that two windows of PATCH cover at OVERLAP, and room for a
# brain tilted 30 degrees (about 200 mm high); a neck and shoulders below it would cost a third row of windows
HEAD_HEIGHT = 224
WEIGHTS = FOLDER / "segment.pt"
OUTPUT_IMAGES = ("*_seg.nii.gz", "*_seg_1mm.nii.gz")  # what a run writes below -o, never read back as input
TRAINING_BOX = (176, 208, 176)  # 1 mm grid the training label maps are put on


def build_model() -> torch.nn.Module:
    """MONAI 3D UNet (channels 16-128) ending in 16 features per voxel, then a 1x1x1 convolution to one output
    per aseg label (0.6 M parameters). Keeping the full-resolution layers 16 wide instead of 33 makes a
    training step 2.4x faster on a CPU."""
    features = 16
    return torch.nn.Sequential(
        UNet(spatial_dims=3, in_channels=1, out_channels=features, channels=(16, 32, 64, 128), strides=(2, 2, 2),
             num_res_units=1),
        torch.nn.PReLU(),
        PointwiseConv3d(features, len(ASEG_LABELS)))


def load_model(path: Path = WEIGHTS, device: torch.device | str = "cpu") -> torch.nn.Module:
    """The bundled segmentation network (fp16 weights, run in fp32) for inference; a training checkpoint works too.
    On a CPU that runs it in float32 (no native bfloat16) its full-resolution block runs channels-last
    (`nets.layout`: the same outputs, 15-25% faster there; not measured on bfloat16 CPUs, so not used on them)."""
    model = load_weights(build_model(), path, "segment", device)
    if torch.device(device).type == "cpu" and not native_bf16(device):
        channels_last_top_block(model[0])
    return model


def class_lookup(values: np.ndarray) -> np.ndarray:
    """Map label numbers (e.g. a bank's `values`) to class indices; labels outside the set -> background."""
    index = {label: i for i, label in enumerate(ASEG_LABELS)}
    return np.array([index.get(int(v), 0) for v in values], dtype=np.int64)


@cache
def class_of_every_label() -> np.ndarray:
    """`class_lookup` of every label number a label map can hold (0 to 65535): index it with a map."""
    return class_lookup(np.arange(2**16))


def lateralise(labels: np.ndarray) -> np.ndarray:
    """Give right-hemisphere voxels their right-side aseg number where a map uses left labels on both sides.

    `labels` is in RAS voxel order (axis 0 left to right). The mid-sagittal plane comes from the brain's own
    mirror symmetry (no atlas): voxels on its right with a left label get the homologous right label.
    """
    if any(right in labels for right in LEFT_RIGHT_PAIRS.values()):
        return labels
    brain = np.isin(labels, list(LEFT_RIGHT_PAIRS) + [14, 15, 16, 24]).astype(np.float32)
    matrix = midplane_voxel_map(brain)
    inverse = np.linalg.inv(matrix)
    grid = np.stack(np.meshgrid(*[np.arange(n) for n in labels.shape], indexing="ij"), axis=0).reshape(3, -1)
    aligned_x = (inverse[0, :3] @ grid + inverse[0, 3]).reshape(labels.shape)
    right = aligned_x > (labels.shape[0] - 1) / 2
    out = labels.copy()
    for left, right_label in LEFT_RIGHT_PAIRS.items():
        out[(labels == left) & right] = right_label
    return out


def prepare(scan: Scan) -> tuple[torch.Tensor, Geometry]:
    """(1, 1, X, Y, Z) image at 1 mm in RAS, cropped to the head (at least one patch, at most HEAD_HEIGHT mm below
    its top), scaled to [0, 1]. Where the patch is wider than a slab of a scan, the anatomy is mirrored across the
    faces that cut through it rather than ending in black, which the network never saw in training (40 mm slabs
    of the two FreeSurfer-labelled T1s: mean Dice 0.811 / 0.813 -> 0.837 / 0.833; model card)."""
    geometry = Geometry(Grid(scan.shape, scan.affine)).to_ras().resample(SPACING)
    volume = geometry.apply(scan.data)
    head = foreground_mask(volume)
    start, stop = mask_bbox(head, margin=4)
    start[2] = max(start[2], stop[2] - HEAD_HEIGHT)
    shape = np.maximum(stop - start, PATCH)
    geometry.crop_centred((start + stop) / 2, shape)
    box = geometry.steps[-1].apply(volume, fill=float(volume.min()), mirrored=cut_faces(head))
    return normalise(torch.from_numpy(np.ascontiguousarray(box, dtype=np.float32))[None, None]), geometry


def cut_note(labels: np.ndarray, axcodes: str) -> str | None:
    """What a user should know of a scan whose field of view cuts through the brain, found from its labels (on its
    grid of `axcodes`): the faces a quarter of the brain's largest cross-section or more crosses (`cut_faces`; a
    neck below a whole brain is no cut). None where the brain is whole."""
    faces = face_names(cut_faces(labels > 0), axcodes)
    if not faces:
        return None
    return (f"its field of view cuts through the brain at its {' and '.join(faces)} edge{'s' * (len(faces) > 1)}: "
            "labels near there are less sure, and its volumes count only the part of each structure it holds")


def mirrored_classes() -> list[int]:
    """Class index order that swaps every left label with its right homologue (for a left-right mirrored input)."""
    index = {label: i for i, label in enumerate(ASEG_LABELS)}
    swapped = {**LEFT_RIGHT_PAIRS, **RIGHT_TO_LEFT}
    return [index[swapped.get(label, label)] for label in ASEG_LABELS]


def predict(scan: Scan, model: torch.nn.Module, device: torch.device | str = "cpu", window: int = PATCH[0],
            overlap: float = OVERLAP, refine: bool = True) -> np.ndarray:
    """Aseg label map on the scan's own grid (int16): `box_labels` of the prepared scan, taken back to its grid."""
    return label_scan(scan, model, device, window, overlap, refine).on_input_grid()


@dataclass
class ScanLabels:
    """A scan's aseg labels on the 1 mm box they were made on (`box_labels`), and the geometry of that box."""

    box: np.ndarray
    geometry: Geometry

    def on_input_grid(self) -> np.ndarray:
        """The labels on the scan's own grid (nearest)."""
        return self.geometry.to_input_grid(self.box, NEAREST)

    def at_1mm(self) -> tuple[np.ndarray, np.ndarray]:
        """The labels as made, on the 1 mm RAS grid over the scan's whole field of view (background outside the
        head's box), and that grid's affine: sharper than the scan's own grid where its slices are thick."""
        crop = self.geometry.steps[-1]
        return crop.invert(self.box), crop.source.affine


def label_scan(scan: Scan, model: torch.nn.Module, device: torch.device | str = "cpu", window: int = PATCH[0],
               overlap: float = OVERLAP, refine: bool = True) -> ScanLabels:
    """`box_labels` of the `prepare`d scan, with the geometry that takes them back to the scan's grid."""
    tensor, geometry = prepare(scan)
    return ScanLabels(box_labels(tensor, model, device, window, overlap, refine), geometry)


def box_labels(tensor: torch.Tensor, model: torch.nn.Module, device: torch.device | str = "cpu",
               window: int = PATCH[0], overlap: float = OVERLAP, refine: bool = True) -> np.ndarray:
    """Aseg labels (int16) of a `prepare`d image, on its 1 mm box: `two_pass_probabilities`, then (with `refine`)
    weighed against this scan's own intensities (`refine_with_intensities`); each deep grey structure keeps its
    largest connected piece.

    `window`, `overlap`: MONAI's sliding windows. The network's instance normalisation takes its statistics over
    each window, so its output depends on the window's size (see the model card before changing them)."""
    passes = two_pass_probabilities(tensor, model, device, window, overlap)
    return passes.labels(refine_with_intensities(passes.image, passes.average) if refine else passes.average)


@dataclass
class TwoPasses:
    """`two_pass_probabilities`' result: the mean class probabilities (C, X, Y, Z) over the brain's part of the box
    (`part`; None: the whole box), the image there (X, Y, Z), and, with a part, the first pass's labels of the
    whole box."""

    average: torch.Tensor
    image: torch.Tensor
    part: tuple[slice, ...] | None
    first_labels: np.ndarray | None

    def labels(self, scores: torch.Tensor) -> np.ndarray:
        """Whole-box aseg labels: the likeliest class of `scores` (on the part), the first pass's outside it."""
        labels = class_labels(scores)
        if self.part is not None:
            self.first_labels[self.part] = labels
            labels = self.first_labels
        return largest_components(labels)


def two_pass_probabilities(tensor: torch.Tensor, model: torch.nn.Module, device: torch.device | str = "cpu",
                           window: int = PATCH[0], overlap: float = OVERLAP) -> TwoPasses:
    """Class probabilities of a `prepare`d image averaged with those of the left-right mirrored input (its left
    and right labels swapped back): as in SynthSeg, this evens out the two hemispheres' errors (measured: mean
    Dice +0.01-0.02, weakest structure +0.08-0.11 on the two labelled T1s). The mirrored pass runs on the brain's
    part of the box only (`brain_box`)."""

    def probabilities(volume: torch.Tensor) -> torch.Tensor:
        return softmax_in_place(sliding_window_inference(volume, (window,) * 3, sw_batch_size=1, predictor=model,
                                                         overlap=overlap, mode="gaussian"))

    with torch.no_grad(), bf16_autocast(device):
        volume = tensor.to(device)
        first = probabilities(volume)[0]
        box = brain_box(first, window, overlap)
        first_labels = None
        if box is not None:
            first_labels = class_labels(first)  # the first pass's labels stay outside the part
            volume, first = volume[(..., *box)], first[(..., *box)]
        first = first.half()  # float16 while the second pass runs: about half a GB less
        average = probabilities(volume.flip(2))[0]
        add_mirrored(average, first)
        del first
    return TwoPasses(average.float().div_(2), volume[0, 0].float(), box, first_labels)


def class_labels(probabilities: torch.Tensor) -> np.ndarray:
    """Aseg numbers (int16) of the likeliest class of class maps (C, X, Y, Z). `max`'s indices are `argmax`'s (the
    first of tied classes), found about 4x faster on a CPU (0.45 against 2.15 s for a whole head's 33 maps)."""
    return np.asarray(ASEG_LABELS, np.int16)[probabilities.max(dim=0).indices.cpu().numpy()]


def window_count(shape: Sequence[int], window: int, overlap: float) -> int:
    """How many sliding windows MONAI's inference puts over a box of `shape`."""
    step = int(window * (1 - overlap))
    return int(np.prod([-(-max(n - window, 0) // step) + 1 for n in shape]))


def brain_box(first: torch.Tensor, window: int, overlap: float, margin: int = 8) -> tuple[slice, ...] | None:
    """The part of the head box the mirrored pass and the intensity step need: around the brain the first pass found
    (non-background, plus `margin` voxels), where that takes fewer sliding windows than the whole box (else
    None). A large head with its neck needs more windows than its brain (12 against 8 for Colin27 scaled by 1.25: a
    box of 221 x 256 x 211 mm); a skull-stripped brain or Colin27's own head needs as many, so its labels stay
    exactly what two passes over the whole box give. Outside the part, the first pass's labels are kept: scattered
    voxels of cortex, cerebellum and CSF at the far edges of the head, mostly spurious."""
    shape = first.shape[1:]
    brain = (first[0] < 0.5).cpu().numpy()
    start, stop = mask_bbox(brain, margin=margin)
    stop = np.minimum(np.maximum(stop, start + window), shape)
    start = np.maximum(np.minimum(start, stop - window), 0)
    if window_count(stop - start, window, overlap) >= window_count(shape, window, overlap):
        return None
    return box_slices(start, stop)


def add_mirrored(mirrored: torch.Tensor, plain: torch.Tensor) -> None:
    """Turn the class maps (C, X, Y, Z) of a left-right mirrored pass into the unmirrored input's frame (flipped
    back along X, left and right classes swapped) and add `plain`'s, in place, class pair by class pair: no second
    full-size array."""
    swap = mirrored_classes()
    for index, source in enumerate(swap):
        if source < index:
            continue  # done with its pair
        if source == index:
            mirrored[index] = mirrored[index].flip(0) + plain[index]
        else:
            back, twin = mirrored[source].flip(0), mirrored[index].flip(0)
            mirrored[index] = back + plain[index]
            mirrored[source] = twin + plain[source]


def softmax_in_place(logits: torch.Tensor) -> torch.Tensor:
    """Softmax over the classes (dim 1), overwriting `logits`: a whole head's 33 class maps take about 0.9 GB, and
    `torch.softmax` would hold a second copy (with both passes, peak memory went over 4 GB on a whole 1 mm head)."""
    logits -= logits.amax(dim=1, keepdim=True)
    logits.exp_()
    return logits.div_(logits.sum(dim=1, keepdim=True))


def refine_with_intensities(image: torch.Tensor, prior: torch.Tensor, core: float = 0.9, min_voxels: int = 50,
                            min_sigma: float = 0.01) -> torch.Tensor:
    """Class scores (C, X, Y, Z) = the network's probabilities `prior` times a Gaussian likelihood of each voxel's
    intensity in `image` (X, Y, Z) under each label, fitted to this scan (one Bayes step, as atlas-based EM
    segmentation does with an atlas for its prior). Each label's mean and spread come from the voxels the network
    gives it with probability above `core` (all its voxels if fewer than `min_voxels`; a label with none keeps its
    prior). Background, whose intensities are anything from air to skull, gets a flat likelihood: 1, against a
    label's exp(-z^2 / 2) / sigma. The network places structures; the scan's own contrast then settles their
    borders (caudate against ventricle, hippocampus against white matter). `prior` is overwritten."""
    confidence, hard = prior.max(dim=0)
    sure = confidence > core
    classes = prior.shape[0]
    counts = torch.bincount(hard.flatten(), minlength=classes).tolist()  # one pass, not a mask sum per class
    sure_counts = torch.bincount(hard[sure], minlength=classes).tolist()
    for index in range(1, classes):
        if counts[index] < min_voxels:
            continue
        members = hard == index
        if sure_counts[index] >= min_voxels:
            members &= sure
        values = image[members]
        mean, sigma = values.mean(), values.std().clamp(min=min_sigma)
        prior[index] *= image.sub(mean).div_(sigma).square_().mul_(-0.5).exp_().div_(sigma)  # exp(-z^2 / 2) / sigma
    return prior


def largest_components(labels: np.ndarray, structures: tuple[int, ...] = SUBCORTICAL) -> np.ndarray:
    """Keep each deep grey structure's largest connected piece (stray islands go to background)."""
    from scipy import ndimage

    out = labels.copy()
    boxes = ndimage.find_objects(labels)  # each label's bounding box, in one pass: label there, not in the whole map
    for label in structures:
        box = boxes[label - 1] if label <= len(boxes) else None
        if box is None:
            continue
        mask = labels[box] == label
        pieces, count = ndimage.label(mask)
        if count > 1:
            out[box][mask & (pieces != 1 + np.bincount(pieces.ravel())[1:].argmax())] = 0
    return out


def label_volumes(labels: np.ndarray, affine: np.ndarray) -> dict[str, float]:
    """mm^3 of every aseg label (and the whole brain) in a label map."""
    voxel = float(abs(np.linalg.det(affine[:3, :3])))
    counts = np.bincount(labels.ravel().astype(np.int64), minlength=max(ASEG_LABELS) + 1)
    volumes = {str(label): round(float(counts[label]) * voxel, 1) for label in ASEG_LABELS[1:]}
    volumes["brain"] = round(float(counts[list(ASEG_LABELS[1:])].sum()) * voxel, 1)
    return volumes


def process(scan: Scan, model: torch.nn.Module, out_dir: Path, device: torch.device | str = "cpu",
            qc: bool = False, at_1mm: bool = False, quiet: bool = True) -> dict:
    """Segment one scan: `<stem>_seg.nii.gz` (with `qc` the subcortical overlay PNG, with `at_1mm` the labels on
    their own 1 mm grid, `<stem>_seg_1mm.nii.gz`); its volumes row (from the labels on the scan's grid), with a
    `note` where its field of view cuts through the brain (`cut_note`; not a volumes.csv column), also printed
    unless `quiet`."""
    result = label_scan(scan, model, device)
    labels = result.on_input_grid()
    note = cut_note(labels, Grid(scan.shape, scan.affine).axcodes)
    if note and not quiet:
        console.print(f"note {scan.source}: {note}", markup=False)
    write_nifti(scan.output_path(out_dir, "_seg"), labels, scan.affine, scan.header)
    if at_1mm:
        write_nifti(scan.output_path(out_dir, "_seg_1mm"), *result.at_1mm())
    if qc:
        save_overlay(scan.data, labels * np.isin(labels, SUBCORTICAL), scan.affine,
                     scan.output_path(out_dir, "_seg", ".png"), title=scan.stem, cmap="tab20", label_map=True)
    row = {"input": scan.label, **label_volumes(labels, scan.affine)}
    return {**row, "note": note} if note else row


def structure_table(volumes: dict[str, float]) -> list[dict]:
    """Left and right mm^3 of the named structures (for reports), from a `label_volumes` row."""
    return [{"structure": name, "left": volumes[str(label)], "right": volumes[str(LEFT_RIGHT_PAIRS[label])]}
            for label, name in STRUCTURES.items()]


def segment(inputs: list[str | Path], out_dir: str | Path, device: str = "auto", qc: bool = False,
            quiet: bool = True, verbose: bool = False, weights: Path = WEIGHTS, at_1mm: bool = False):
    """Python API of `brainkit segment`: `<rel>/<stem>_seg.nii.gz` per input (and `<stem>_seg_1mm.nii.gz` with
    `at_1mm`) and `volumes.csv`."""
    torch_device = resolve_device(device)
    model = load_model(weights, device=torch_device)
    out = Path(out_dir)
    outcome = run_over_inputs(inputs, lambda scan: process(scan, model, out, torch_device, qc, at_1mm, quiet),
                              "segment", quiet, verbose, mr_images_only=True, outputs=out, written=OUTPUT_IMAGES)
    write_csv(out / "volumes.csv", outcome.results, VOLUME_COLUMNS)
    return outcome


# ---- training (synthetic images from the real label maps) ----------------------------------------------------

def training_bank(data: Path, extra: Sequence[Path] = ()) -> LabelBank:
    """The label maps of `<data>/synthseg_label_maps`, then the `extra` ones (`--label-maps`), at 1 mm, in aseg
    numbers, lateralised."""
    maps = shared_label_maps(data) + list(extra)
    loaded = LabelBank.from_files(maps, spacing=SPACING, shape=TRAINING_BOX)
    numbered = [lateralise(loaded.values[m.numpy()].astype(np.int32)) for m in loaded.maps[:, 0]]
    return LabelBank.from_arrays(numbered, SPACING, loaded.affine)


def training_config(side: int) -> SynthConfig:
    """The synth engine's draws for training patches of `side` mm (see `training_batches`)."""
    return SynthConfig(shape=(side,) * 3, rotation_deg=15, scaling=0.15, translation=40, deform_std=3.0,
                       deform_spacing=16, thick_max=6.0, strip_prob=0.5, ordered_contrast_prob=0.8)


def training_batches(data: Path, batch: int, patches: tuple[int, ...] = PATCH[:1], mirror: float = 0.0,
                     device: torch.device | str = "cpu", real: Sequence[tuple[torch.Tensor, torch.Tensor]] = (),
                     real_per_step: int = 0, label_maps: Sequence[Path] = (), slab: float = 0.0):
    """`batch_for(step, generator)`: synthetic cubic patches at 1 mm centred up to 40 mm (per axis) from the head's
    centre (so the brain's edges and the background are seen too, not only the deep grey nuclei), half of them
    skull-stripped, and their class maps. Each step draws its patch side from `patches`; several sides teach the
    network other window sizes' normalisation statistics (measured: it then minds its inference window less on
    synthetic images, not on real T1s; see the model card). A share `mirror` of the patches is flipped left-right
    with left and right labels swapped, as SynthSeg does: mirror images of the training brains (0: the generator's
    draws stay those of earlier runs). The engine draws on `device` (a GPU synthesises its own batches: on the CPU
    they would starve it); there each step's generator seeds a generator of that device. With `real` pairs
    (`self_labelled`), every step also takes `real_per_step` patches of them (`real_patch`), cut and augmented on
    `device` too. `label_maps` join the shared ones in the engine's bank (`training_bank`). A share `slab` of all
    patches is cut to a slab and mirrored beyond it (`as_slab`), as `prepare` fills a partial field of view."""
    smallest_box = min((min(image.shape) for image, _ in real), default=0)
    if real_per_step and max(patches) > smallest_box:
        raise SystemExit(f"brainkit train segment: with --real, patches can be at most {smallest_box} mm (the "
                         "smallest side of a real scan's head box)")
    bank = training_bank(data, label_maps)
    lookup = torch.from_numpy(class_lookup(bank.values)).to(device)
    swapped = torch.tensor(mirrored_classes(), device=device)
    engines = [SynthEngine(bank, training_config(side), device=device) for side in patches]
    real_on_device = [(image.to(device), classes.to(device)) for image, classes in real]  # no copy per step
    console.print(f"segment training: {len(bank.maps)} label maps (lateralised), {len(ASEG_LABELS)} classes, "
                  f"patches of {', '.join(map(str, patches))} mm")

    def batch_for(step: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        engine = engines[int(torch.randint(len(engines), (1,), generator=generator))] if len(engines) > 1 \
            else engines[0]  # one side: the generator's draws stay those of earlier runs
        engine.generator = on_device(generator, engine.device)
        result, flipped = engine.generate_mirrored(batch, mirror) if mirror else (engine.generate(batch), None)
        image, classes = result.image, lookup[result.labels]
        if flipped is not None:
            classes = torch.where(flipped.view(-1, 1, 1, 1, 1), swapped[classes], classes)
        if real_per_step:
            extra = [real_patch(real_on_device, engine.config.shape[0], engine.generator)
                     for _ in range(real_per_step)]
            image = torch.cat([image, *[pair[0] for pair in extra]])
            classes = torch.cat([classes, *[pair[1] for pair in extra]])
        if slab:  # no draws without it: earlier runs' batches stay as they were
            for index in range(image.shape[0]):
                if float(torch.rand((), generator=engine.generator, device=engine.device)) < slab:
                    image[index], classes[index] = as_slab(image[index], classes[index], engine.generator)
        return image, classes

    return batch_for


def as_slab(image: torch.Tensor, classes: torch.Tensor, generator: torch.Generator,
            thinnest: int = 24) -> tuple[torch.Tensor, torch.Tensor]:
    """A training patch (1, X, Y, Z) and its class map seen as a scan's slab: a random slab along a random axis
    (`thinnest` voxels to the side less `thinnest`) kept, the patch beyond it the slab mirrored across its faces,
    as `prepare` continues a partial field of view. Mirrored across a face of the left-right axis, the labels
    there swap left and right, as the anatomy does."""
    device = generator.device
    side = image.shape[1]
    axis = int(torch.randint(3, (1,), generator=generator, device=device))
    thickness = int(torch.randint(thinnest, side - thinnest + 1, (1,), generator=generator, device=device))
    start = int(torch.randint(side - thickness + 1, (1,), generator=generator, device=device))
    offset = torch.arange(side, device=image.device) - start
    folds = torch.div(offset, thickness, rounding_mode="floor")
    within = offset - folds * thickness
    index = start + torch.where(folds % 2 == 0, within, thickness - 1 - within)
    image, classes = image.index_select(axis + 1, index), classes.index_select(axis + 1, index)
    if axis == 0:
        swapped = torch.tensor(mirrored_classes(), device=classes.device)[classes]
        classes = torch.where((folds % 2 == 1).view(1, -1, 1, 1), swapped, classes)
    return image, classes


def self_labelled(inputs: list[str | Path], model: torch.nn.Module, device: torch.device | str = "cpu",
                  quiet: bool = False, labels: Path | None = None) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Unlabelled real scans as training pairs, labelled by `model` with the intensity step (self-training):
    (image (X, Y, Z) on its 1 mm RAS head box, scaled as for inference; class indices (uint8)). The step's labels
    follow the scan's own contrast better than the network's (measured on the real T1s: model card), so training
    on them teaches the network real images and borders it would not find alone. With `labels`, a folder of label
    maps of the scans instead (`<stem>_seg.nii.gz`, aseg numbers on the scan's own grid, as `brainkit segment`
    writes them: FreeSurfer's asegs, or a stronger labeller's). Inputs that fail are reported and left out."""
    lookup = class_of_every_label()

    def pair(scan: Scan) -> tuple[torch.Tensor, torch.Tensor]:
        tensor, geometry = prepare(scan)
        aseg = box_labels(tensor, model, device) if labels is None else given_labels(scan, geometry, labels)
        return tensor[0, 0], torch.from_numpy(lookup[aseg]).to(torch.uint8)

    outcome = run_over_inputs(inputs, pair, "labelling real scans for training", quiet)
    print_failures(outcome.failures)
    if not outcome.results:
        raise SystemExit("brainkit train segment: none of the --real scans could be read; see the errors above")
    return outcome.results


def given_labels(scan: Scan, geometry: Geometry, folder: Path) -> np.ndarray:
    """The label map of `scan` on its own grid, where `brainkit segment -o <folder>` would write it
    (`<folder>/<stem>_seg.nii.gz`), taken to `prepare`'s box (nearest)."""
    path = scan.output_path(folder, "_seg")
    if not path.is_file():
        raise BadInputError(scan.source, f"no label map {path} for it: give one per --real scan")
    aseg = load(path)
    if not Grid(aseg.shape, aseg.affine).same_as(Grid(scan.shape, scan.affine)):
        raise BadInputError(path, f"its grid differs from {scan.source}'s: label the scan on its own grid")
    return np.rint(geometry.apply(aseg.data, NEAREST)).astype(np.uint16)


def real_patch(pairs: list[tuple[torch.Tensor, torch.Tensor]], side: int,
               generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """A random `side`^3 crop of one of the `self_labelled` pairs, (1, 1, side^3) image and class map: mirrored
    left-right half the time (left and right labels swapped), under a random bias field, gamma and noise (milder
    than the synth engine's: the image is already real). Drawn where `generator` is, as the pairs must be."""
    device = generator.device
    image, classes = pairs[int(torch.randint(len(pairs), (1,), generator=generator, device=device))]
    start = [int(torch.randint(size - side + 1, (1,), generator=generator, device=device)) for size in image.shape]
    box = tuple(slice(first, first + side) for first in start)
    image, classes = image[box], classes[box].long()
    if float(torch.rand((), generator=generator, device=device)) < 0.5:
        image, classes = image.flip(0), torch.tensor(mirrored_classes(), device=device)[classes.flip(0)]
    image = image[None, None] * bias_field((1, 1, side, side, side), 0.3, generator, device)
    return gamma_and_noise(image.clamp(0, 1), 0.2, 0.03, generator), classes[None, None]


def run_train(args: argparse.Namespace) -> int:
    loss = DiceCELoss(to_onehot_y=True, softmax=True)
    device = distributed_device(args.device)
    real = []
    if args.real:
        args.init = args.init or str(WEIGHTS)  # self-training fine-tunes the labeller, never a fresh network
        real = self_labelled(args.real, load_model(Path(args.init), device), device, args.quiet,
                             Path(args.real_labels) if args.real_labels else None)
    batches = training_batches(Path(args.data), args.batch, tuple(args.patch), args.mirror, device, real,
                               args.real_per_step if real else 0, label_map_files(args.label_maps), args.slab)
    train_and_save("segment", build_model(), batches, loss, args, every=(25, 5, 0))
    return 0


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    add_train_options(parser, "segment", steps=20000, lr=1e-3)
    parser.add_argument("--batch", type=int, default=2, help="synthetic patches per step")
    parser.add_argument("--patch", type=int, nargs="+", default=list(PATCH[:1]),
                        help="training patch side in mm, multiples of 8 (one patch per step on 2 CPU cores: 1.9 s "
                             "at 128, 0.7 s at 96; inference stays 128^3); several sides: each step draws one")
    parser.add_argument("--mirror", type=float, default=0.0,
                        help="share of patches mirrored left-right with left and right labels swapped")
    parser.add_argument("--real", nargs="+", metavar="SCAN",
                        help="unlabelled real scans (files or folders) added to training with the labels the "
                             "starting weights give them (self-training); training starts from --init, else from "
                             "the bundled weights")
    parser.add_argument("--real-labels", metavar="FOLDER",
                        help="label maps of the --real scans (<stem>_seg.nii.gz on each scan's grid, aseg numbers, "
                             "laid out as `brainkit segment -o FOLDER` writes them): train on these instead")
    parser.add_argument("--real-per-step", type=int, default=1,
                        help="real patches added to each step's synthetic ones (with --real)")
    parser.add_argument("--slab", type=float, default=0.0,
                        help="share of patches cut to a random slab and mirrored beyond it, as `brainkit segment` "
                             "continues a scan whose field of view cuts through the brain")
    parser.add_argument("--label-maps", nargs="+", default=[], metavar="MAP",
                        help="more label maps (files or folders; aseg numbers, any grid) for the synthetic images, "
                             "beside --data's: e.g. a stronger labeller's maps of the --real scans")


# ---- evaluation -----------------------------------------------------------------------------------------------

def dice_and_hd95(prediction: np.ndarray, truth: np.ndarray, spacing: np.ndarray,
                  labels: tuple[int, ...] = SUBCORTICAL) -> list[dict]:
    """Dice and 95% Hausdorff distance (mm) per label (MONAI metrics)."""
    from monai.metrics import compute_dice, compute_hausdorff_distance

    rows = []
    for label in labels:
        pred = torch.from_numpy(prediction == label)[None, None].float()
        true = torch.from_numpy(truth == label)[None, None].float()
        both = torch.cat([1 - pred, pred], 1), torch.cat([1 - true, true], 1)
        dice = float(compute_dice(*both, include_background=False)[0, 0])
        with warnings.catch_warnings():  # MONAI warns (and returns nan/inf) when a structure is absent: we say so
            warnings.simplefilter("ignore", (UserWarning, FutureWarning))
            hd95 = float(compute_hausdorff_distance(*both, percentile=95, spacing=spacing.tolist())[0, 0])
        rows.append({"label": label, "dice": round(dice, 4), "hd95_mm": round(hd95, 2)})
    return rows


def summarise(rows: list[dict]) -> dict[str, float]:
    """Mean and lowest Dice and median HD95 over the 12 `TARGET` structures of `dice_and_hd95` rows (structures
    absent from both maps, Dice NaN, are left out)."""
    chosen = [row for row in rows if row["label"] in TARGET]
    dice = [row["dice"] for row in chosen]
    return {"mean": float(np.nanmean(dice)), "lowest": float(np.nanmin(dice)),
            "hd95": float(np.nanmedian([row["hd95_mm"] for row in chosen]))}


def run_evaluate(args: argparse.Namespace) -> int:
    prediction, truth = load(args.pred), load(args.truth)
    predicted, true = np.rint(on_truth_grid(prediction, truth, NEAREST)).astype(int), np.rint(truth.data).astype(int)
    for labels, scan in ((predicted, prediction), (true, truth)):
        if not np.isin(labels, TARGET).any():
            raise BrainkitError(scan.source, "holds none of the 12 structures' aseg numbers (10-13, 17, 18, 49-54): "
                                             "give a label map in FreeSurfer numbering")
    rows = dice_and_hd95(predicted, true, truth.spacing)
    for row in rows:
        distance = f"{row['hd95_mm']:.1f} mm" if np.isfinite(row["hd95_mm"]) else "n/a (absent from one map)"
        console.print(f"label {row['label']:3d}  Dice {row['dice']:.3f}  HD95 {distance}")
    summary = summarise(rows)
    console.print(f"mean Dice {summary['mean']:.3f}, lowest {summary['lowest']:.3f}, median HD95 "
                  f"{summary['hd95']:.1f} mm over the 12 target structures (accumbens not included)")
    if args.output:
        write_csv(Path(args.output) / "segment_evaluation.csv", rows, ["label", "dice", "hd95_mm"])
    return 0


def add_evaluate_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--pred", required=True, help="predicted label map (aseg numbers)")
    parser.add_argument("--truth", required=True, help="reference label map (aseg numbers); a prediction on "
                        "another grid is resampled onto its grid")
    parser.add_argument("-o", "--output", help="also write DIR/segment_evaluation.csv")


# ---- command line -----------------------------------------------------------------------------------------------

def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="NIfTI/MGZ files, DICOM or BIDS folders")
    parser.add_argument("-o", "--output", required=True, help="output folder (<stem>_seg.nii.gz, volumes.csv)")
    parser.add_argument("--qc", action="store_true", help="PNG overlay of the subcortical labels per input")
    parser.add_argument("--1mm", dest="at_1mm", action="store_true",
                        help="also write <stem>_seg_1mm.nii.gz: the labels on the 1 mm grid (RAS) they are made on, "
                             "over the input's field of view; sharper than the input's grid where its slices are "
                             "thick")
    parser.add_argument("--weights", type=Path, default=WEIGHTS, help="other weights (default: the bundled ones)")


def run(args: argparse.Namespace) -> int:
    outcome = segment(args.inputs, args.output, args.device, args.qc, args.quiet, args.verbose, args.weights,
                      args.at_1mm)
    print_failures(outcome.failures)
    return outcome.exit_code


TASK = Task("segment", "whole-brain + subcortical labels -> <stem>_seg.nii.gz, volumes.csv", add_arguments, run,
            train=(add_train_arguments, run_train), evaluate=(add_evaluate_arguments, run_evaluate))
