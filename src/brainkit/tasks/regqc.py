"""Registration quality control: are two images aligned in world space, as their headers place them?

load both -> moving resampled onto the fixed grid through the headers -> RAS, 1 mm, 96^3 box at the centre of
the fixed head -> slices on all three axes as 2-channel images -> 2D ResNet (misaligned logit, shift estimate) ->
image-wise decision from the slices -> regqc.csv, regqc_slices.csv and pictures of misaligned pairs.
Trained only on synthetic pairs (seed 001): random-shape and brain label maps, independent contrasts, known
rigid/affine misalignment. Real scans are for evaluation only.
"""

from __future__ import annotations

import argparse
import functools
import itertools
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from monai.networks.nets import resnet18

from brainkit.batch import Failure, describe_error, print_failures, progress_bar
from brainkit.errors import BrainkitError
from brainkit.io import Scan, load
from brainkit.io.discover import names_below_shared_folder
from brainkit.io.itk import read_itk_affine
from brainkit.io.scan import strip_image_suffix
from brainkit.io.table import read_table
from brainkit.io.write import write_csv, write_metrics, write_with
from brainkit.metrics import auroc, binary_scores
from brainkit.runtime import console, resolve_device
from brainkit.spatial import Geometry, Grid, foreground_bbox, resample_to_grid
from brainkit.synth import LabelBank, SynthConfig, SynthEngine, shared_label_maps
from brainkit.synth.intensity import normalise
from brainkit.synth.spatial import identity_grid
from brainkit.tasks import Task
from brainkit.train.recipe import add_train_options, train_and_save
from brainkit.weights import FOLDER, load_weights

SPACING = 1.0  # 1 mm: at 2 mm (the first models) 2-3 mm misalignments of real pairs went unseen (model card)
SHAPE = (96, 96, 96)
MIN_FOREGROUND = 0.1  # slices with less head than this (in either image) are not judged
SHIFT_UNIT_MM = 10.0  # the network's shift output is in units of 10 mm
# Aligned pairs keep up to this shift (mm) and rotation (degrees): together they move no voxel within 50 mm of
# the centre by 1 mm or more, the "under 1 mm". At 1 mm and 1 degree each they reached 2 mm, as far as the
# smallest misalignment moves, and 2 degree rotations went undetected (model card).
ALIGNED_RESIDUAL = 0.5
WEIGHTS = FOLDER / "regqc.pt"
THRESHOLD = 0.264  # image-wise p_misaligned from here on -> misaligned (chosen on synthetic validation, model card)
# Threshold-set pairs whose two images share fewer edges than this are redrawn: random contrasts can hide one
# image's edges in the other, leaving nothing to judge alignment by; real aligned pairs share 0.60-0.73 (card).
MIN_SHARED_EDGES = 0.25
COLUMNS = ["fixed", "moving", "p_misaligned", "decision", "est_shift_mm", "picture"]
SLICE_COLUMNS = ["fixed", "moving", "axis", "slice", "p_misaligned"]


class WithEdges(torch.nn.Module):
    """Feeds a network the two images and their gradient magnitudes: aligned pairs share edges whatever their
    contrasts, so edges are the cue; giving them explicitly spares the network learning them from scratch."""

    def __init__(self, body: torch.nn.Module):
        super().__init__()
        self.body = body

    @staticmethod
    def edges(images: torch.Tensor) -> torch.Tensor:
        """Central-difference gradient magnitude of each channel of (N, C, H, W), scaled to its maximum."""
        padded = F.pad(images, (1, 1, 1, 1), mode="replicate")
        dx = (padded[:, :, 2:, 1:-1] - padded[:, :, :-2, 1:-1]) / 2
        dy = (padded[:, :, 1:-1, 2:] - padded[:, :, 1:-1, :-2]) / 2
        magnitude = (dx**2 + dy**2).sqrt()
        return magnitude / magnitude.amax(dim=(2, 3), keepdim=True).clamp(min=1e-6)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.body(torch.cat([images, self.edges(images)], dim=1))


def build_model() -> torch.nn.Module:
    """2D ResNet18 (half width, 2.8 M parameters) on the 2-channel slice plus its edges -> (misaligned logit,
    shift / 10 mm). The first convolution keeps full resolution (stride 1): a 2 mm misfit is two voxels at 1 mm.
    """
    body = resnet18(spatial_dims=2, n_input_channels=4, num_classes=2, widen_factor=0.5, conv1_t_stride=1)
    return WithEdges(body)


def load_model(path: Path = WEIGHTS, device: torch.device | str = "cpu") -> torch.nn.Module:
    """The bundled regqc network (fp16 weights, run in fp32); a training checkpoint works too."""
    return load_weights(build_model(), path, "regqc", device)


def prepare_pair(fixed: Scan, moving: Scan) -> tuple[torch.Tensor, Geometry]:
    """(2, 96, 96, 96) fixed and moving on one 1 mm RAS box at the centre of the fixed head, each scaled to [0, 1].

    The moving image reaches the box through world coordinates (both headers), so any disagreement between
    the headers and the anatomy shows as misalignment.
    """
    geometry = Geometry(Grid(fixed.shape, fixed.affine)).to_ras().resample(SPACING)
    coarse = geometry.apply(fixed.data)
    start, stop = foreground_bbox(coarse)
    geometry.crop_centred((start + stop) / 2, SHAPE)
    fixed_box = geometry.steps[-1].apply(coarse, fill=float(coarse.min()))
    moving_box = resample_to_grid(moving.data, Grid(moving.shape, moving.affine), geometry.grid,
                                  fill=float(moving.data.min()))
    pair = torch.from_numpy(np.stack([fixed_box, moving_box]).astype(np.float32))[:, None]
    return normalise(pair)[:, 0], geometry


def foreground_fractions(volume: torch.Tensor, axis: int) -> torch.Tensor:
    """Share of voxels brighter than 0.1 in each slice along `axis` of a (X, Y, Z) [0, 1] volume."""
    mask = (volume > 0.1).float()
    other = tuple(a for a in range(3) if a != axis)
    return mask.mean(dim=other)


def slices_of(pair: torch.Tensor) -> tuple[torch.Tensor, list[tuple[int, int]]]:
    """Every slice on the three axes where both images hold enough head: (N, 2, 96, 96) and (axis, index);
    none (N = 0) when the headers place the moving image outside the fixed head's box."""
    images, where = [], []
    for axis in range(3):
        enough = torch.minimum(foreground_fractions(pair[0], axis), foreground_fractions(pair[1], axis))
        for index in torch.nonzero(enough >= MIN_FOREGROUND).flatten().tolist():
            images.append(pair.select(axis + 1, index))
            where.append((axis, index))
    if not images:
        return pair.new_zeros((0, 2, *SHAPE[:2])), []
    return torch.stack(images), where


def aggregate(slice_probabilities: np.ndarray) -> float:
    """Image-wise probability: mean of the upper half of slice probabilities (misalignment shows on many
    slices; the upper half keeps a local misfit from being averaged away by uninformative slices)."""
    ordered = np.sort(slice_probabilities)
    return float(ordered[len(ordered) // 2 :].mean())


@dataclass
class PairResult:
    fixed: str
    moving: str
    p_misaligned: float
    decision: str
    est_shift_mm: float
    slices: list[dict]
    pair: torch.Tensor
    worst: list[tuple[int, int]]
    picture: str = ""  # the PNG `regqc` wrote for a misaligned pair


def slice_outputs(pair: torch.Tensor, model: torch.nn.Module, device: torch.device | str = "cpu",
                  batch: int = 64) -> tuple[np.ndarray, np.ndarray, list[tuple[int, int]]]:
    """Per-slice p_misaligned and shift estimate (mm) of a prepared (2, X, Y, Z) pair, and the slices' places."""
    images, where = slices_of(pair)
    if not where:
        return np.empty(0), np.empty(0), where
    with torch.no_grad():
        outputs = torch.cat([model(images[i : i + batch].to(device)).cpu() for i in range(0, len(images), batch)])
    return torch.sigmoid(outputs[:, 0]).numpy(), outputs[:, 1].clamp(min=0).numpy() * SHIFT_UNIT_MM, where


def predict_pair(fixed: Scan, moving: Scan, model: torch.nn.Module, device: torch.device | str = "cpu",
                 names: tuple[str, str] | None = None) -> PairResult:
    """Judge one pair; slice-wise probabilities, image-wise decision and an estimate of the shift in mm.
    The rows name the images by `names` (by their files where not given)."""
    pair, _ = prepare_pair(fixed, moving)
    probabilities, shifts, where = slice_outputs(pair, model, device)
    names = names or (str(fixed.source), str(moving.source))
    if not where:
        return no_overlap_result(pair, names, fixed.source)
    p = aggregate(probabilities)
    rows = [{"fixed": names[0], "moving": names[1], "axis": "xyz"[a], "slice": k, "p_misaligned": round(float(q), 4)}
            for (a, k), q in zip(where, probabilities)]
    worst = [where[i] for i in np.argsort(-probabilities)[:3]]
    return PairResult(names[0], names[1], round(p, 4), "misaligned" if p >= THRESHOLD else "aligned",
                      round(float(np.median(shifts)), 2), rows, pair, worst)


def no_overlap_result(pair: torch.Tensor, names: tuple[str, str], fixed_source: Path | None) -> PairResult:
    """Misaligned for certain when the headers place the moving image where the fixed head is not (no slice
    holds both); an error when the fixed image itself shows no head."""
    if not any(bool((foreground_fractions(pair[0], axis) >= MIN_FOREGROUND).any()) for axis in range(3)):
        raise BrainkitError(fixed_source, "the fixed image shows no head to compare against: is it blank?")
    centre = [(axis, SHAPE[axis] // 2) for axis in range(3)]
    return PairResult(names[0], names[1], 1.0, "misaligned", float("nan"), [], pair, centre)


def shift_text(result: PairResult) -> str:
    """The shift estimate in words: 'about N mm', or 'no overlap' when the images do not meet at all."""
    return "no overlap" if np.isnan(result.est_shift_mm) else f"about {result.est_shift_mm:.1f} mm"


def save_pair_picture(result: PairResult, target: Path) -> Path:
    """The worst slices: fixed in gray with the moving image's edges in red, so a user sees the misfit."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(result.worst), figsize=(3.2 * len(result.worst), 3.4), squeeze=False)
    for ax, (axis, index) in zip(axes[0], result.worst):
        fixed, moving = (np.rot90(result.pair[c].select(axis, index).numpy()) for c in (0, 1))
        gy, gx = np.gradient(moving)
        edges = np.hypot(gx, gy)
        ax.imshow(fixed, cmap="gray")
        ax.imshow(np.ma.masked_less_equal(edges, max(np.percentile(edges, 92), 1e-6)), cmap="autumn", alpha=0.8)
        ax.set_title(f"axis {'xyz'[axis]}, slice {index}", fontsize=8)
        ax.set_axis_off()
    fig.suptitle(f"misaligned (p={result.p_misaligned:.2f}, {shift_text(result)}): "
                 f"{Path(result.moving).name} on {Path(result.fixed).name}", fontsize=8)
    fig.tight_layout()
    write_with(target, lambda tmp: fig.savefig(tmp, dpi=80, format="png"))
    plt.close(fig)
    return target


def read_pairs(path: Path) -> list[tuple[str, str]]:
    """The `fixed,moving` rows of a pairs CSV, as written; `pair_file` finds the files."""
    rows = read_table(path, ("fixed", "moving"))
    for line, row in enumerate(rows, start=2):
        if not (row["fixed"] and row["moving"]):
            raise BrainkitError(path, f"row {line} lacks a fixed or a moving image: give both on every row")
    return [(row["fixed"], row["moving"]) for row in rows]


def pair_file(name: str, folder: Path | None) -> Path:
    """The file a pairs-CSV entry names: an absolute path as it is; a relative one in the CSV's `folder` where it
    is there, else in the working folder."""
    path = Path(name)
    if folder is None or path.is_absolute() or (path.exists() and not (folder / path).exists()):
        return path
    return folder / path


def picture_names(pairs: list[tuple[Path, Path]]) -> list[str]:
    """Each pair's picture name, `<moving>_on_<fixed>.png` with the moving image's folder below the folder the
    moving images share (`p1/T2_on_T1.png`, `p2/T2_on_T1.png`), numbered (`_2`) where two pairs would still
    share one."""
    names, uses = [], Counter()
    for (fixed, _), moving in zip(pairs, names_below_shared_folder([moving for _, moving in pairs]), strict=True):
        name = f"{moving.as_posix()}_on_{strip_image_suffix(Path(fixed).name)}"
        uses[name] += 1
        names.append(f"{name}{'' if uses[name] == 1 else f'_{uses[name]}'}.png")
    return names


def regqc(pairs: list[tuple[str, str]], out_dir: str | Path, device: str = "auto", quiet: bool = True,
          verbose: bool = False, folder: Path | None = None) -> tuple[list[PairResult], list[Failure]]:
    """Python API of `brainkit regqc`: writes regqc.csv, regqc_slices.csv and PNGs of misaligned pairs. The rows
    name the images as `pairs` does; relative names are looked up as `pair_file` does (`folder`: a pairs CSV's)."""
    torch_device = resolve_device(device)
    model = load_model(device=torch_device)
    out = Path(out_dir)
    files = [(pair_file(fixed, folder), pair_file(moving, folder)) for fixed, moving in pairs]
    results, failures = [], []
    with progress_bar(quiet) as progress:
        task = progress.add_task("regqc", total=len(pairs))
        for (fixed, moving), (fixed_path, moving_path), picture in zip(pairs, files, picture_names(files), strict=True):
            try:
                result = predict_pair(load(fixed_path), load(moving_path), model, torch_device,
                                      (str(fixed), str(moving)))
                if result.decision == "misaligned":
                    result.picture = str(save_pair_picture(result, out / "regqc_pictures" / picture))
                results.append(result)
            except Exception as err:  # noqa: BLE001 - one bad pair never loses the batch
                failures.append(describe_error(err, f"{fixed_path} + {moving_path}", verbose))
            progress.advance(task)
    write_csv(out / "regqc.csv", [vars(r) for r in results], COLUMNS)
    write_csv(out / "regqc_slices.csv", [row for r in results for row in r.slices], SLICE_COLUMNS)
    return results, failures


# ---- training (synthetic pairs only) ------------------------------------------------------------------------

def displacement_mm(relative: torch.Tensor, shape: tuple[int, int, int]) -> torch.Tensor:
    """|T(q) - q| in mm for every voxel q: (B, X, Y, Z)."""
    q = identity_grid(shape).reshape(3, -1)
    offset = (relative[:, :3, :3] - torch.eye(3)) @ q + relative[:, :3, 3:]
    return (offset * offset).sum(dim=1).sqrt().view(-1, *shape) * SPACING  # 7x faster than .norm(dim=1) on CPU


def sample_slices(volumes: list[torch.Tensor], reference: torch.Tensor, per_axis: int,
                  generator: torch.Generator) -> tuple[list[torch.Tensor], torch.Tensor]:
    """The same random informative slices of several (B, C, X, Y, Z) volumes, `per_axis` per pair and axis,
    chosen where `reference` (B, X, Y, Z) holds enough head. Returns [(N, C, H, W) per volume] and the pair
    index of each slice (N,)."""
    selected: list[list[torch.Tensor]] = [[] for _ in volumes]
    owners = []
    for axis in range(3):
        fraction = torch.stack([foreground_fractions(r, axis) for r in reference])
        weights = (fraction >= MIN_FOREGROUND).float() + 1e-6
        chosen = torch.multinomial(weights, per_axis, replacement=True, generator=generator)
        for b in range(reference.shape[0]):  # a handful of pairs per step: not the hot path
            for out, volume in zip(selected, volumes):
                out.append(volume[b].index_select(axis + 1, chosen[b]).movedim(axis + 1, 0))
            owners.append(torch.full((per_axis,), b))
    return [torch.cat(out) for out in selected], torch.cat(owners)


def pair_engines(data: Path) -> list[SynthEngine]:
    """Synthetic pair sources: the brain label maps at 1 mm (the central 96 mm), and random shapes (seed 001)."""
    maps = shared_label_maps(data)
    config = SynthConfig(shape=SHAPE, rotation_deg=10, scaling=0.1, translation=4, deform_std=1.5,
                         deform_spacing=12, thick_max=6.0 / SPACING, strip_prob=0.5)
    console.print(f"regqc synthetic pairs: {len(maps)} label maps (half skull-stripped) + random shapes")
    return [SynthEngine(LabelBank.from_files(maps, spacing=SPACING, shape=SHAPE), config), SynthEngine(None, config)]


def draw_pairs(engine: SynthEngine, count: int, generator: torch.Generator, log_sizes: bool = False,
               misaligned_prob: float = 0.5) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(B, 2, X, Y, Z) fixed/moving images, their relative transforms, and whether each is misaligned
    (>= 2 mm or 2 degrees); sizes up to 20 mm / 20 degrees, uniform or (`log_sizes`) log-uniform. Aligned pairs
    carry what a good registration leaves: up to ALIGNED_RESIDUAL mm and degrees, and a warp of about 0.5 mm."""
    engine.generator = generator
    fixed, moving, relative, misaligned = engine.generate_pair(
        count, misaligned_prob=misaligned_prob, max_shift=20 / SPACING, min_shift=2 / SPACING, max_rotation_deg=20,
        min_rotation_deg=2, aligned_shift=ALIGNED_RESIDUAL / SPACING, aligned_rotation_deg=ALIGNED_RESIDUAL,
        warp_std=0.5, log_sizes=log_sizes, aligned_warp_std=0.5 / SPACING)
    return torch.cat([fixed.image, moving.image], dim=1), relative, misaligned


def training_batches(data: Path, pairs_per_step: int, slices_per_axis: int, log_sizes: bool = False):
    """`batch_for(step, generator)`: synthetic pairs (brain label maps and random shapes, alternating steps);
    targets per slice: (pair misaligned, mean displacement over the slice's head / 10 mm)."""
    engines = pair_engines(data)

    def batch_for(step: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        pair, relative, misaligned = draw_pairs(engines[step % 2], pairs_per_step, generator, log_sizes)
        head = (pair[:, 0] > 0.1).float()
        motion = torch.stack([displacement_mm(relative, SHAPE), head], dim=1)
        (images, motion_slices), owners = sample_slices([pair, motion], pair[:, 0], slices_per_axis, generator)
        area = motion_slices[:, 1].sum(dim=(1, 2)).clamp(min=1)
        shift = (motion_slices[:, 0] * motion_slices[:, 1]).sum(dim=(1, 2)) / area
        return images, torch.stack([misaligned[owners].float(), shift / SHIFT_UNIT_MM], dim=1)

    return batch_for


def choose_threshold(p: np.ndarray, truth: np.ndarray, max_false_alarms: float = 0.05) -> float:
    """The threshold with the best image-wise F1 among those with at most `max_false_alarms` on aligned pairs."""
    best, best_f1 = 0.5, -1.0
    for threshold in np.unique(np.r_[p, 0.5]):
        predicted = p >= threshold
        if np.mean(predicted[~truth]) <= max_false_alarms:
            f1 = binary_scores(predicted, truth)["f1"]
            if f1 > best_f1:
                best, best_f1 = float(threshold), f1
    return best


def loss(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """BCE on the misaligned logit plus a smooth-L1 on the shift estimate."""
    return (F.binary_cross_entropy_with_logits(outputs[:, 0], targets[:, 0])
            + 0.5 * F.smooth_l1_loss(outputs[:, 1], targets[:, 1]))


def synthetic_validation(data: Path, pairs: int = 16, seed: int = 12345) -> tuple[torch.Tensor, torch.Tensor]:
    """Fixed synthetic validation slices (random shapes and brains), drawn with seeds training never uses."""
    batch_for = training_batches(data, pairs, 4)
    parts = [batch_for(step, torch.Generator().manual_seed(seed + step)) for step in (1, 2)]
    return torch.cat([images for images, _ in parts]), torch.cat([targets for _, targets in parts])


def run_train(args: argparse.Namespace) -> int:
    data = Path(args.data)
    val_images, val_targets = synthetic_validation(data)

    def validate(net: torch.nn.Module) -> dict[str, float]:
        outputs = net(val_images)
        scores = binary_scores((outputs[:, 0] > 0).numpy(), (val_targets[:, 0] > 0.5).numpy())
        return {"val_slice_f1": scores["f1"],
                "val_shift_mae_mm": float((outputs[:, 1] - val_targets[:, 1]).abs().mean()) * SHIFT_UNIT_MM}

    batches = training_batches(data, args.pairs, args.slices, args.sizes == "log")
    train_and_save("regqc", build_model(), batches, loss, args, validate,
                   every=(25, 5, 50), best_metric="val_slice_f1")
    return 0


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    add_train_options(parser, "regqc", steps=6000, lr=3e-4)
    parser.add_argument("--pairs", type=int, default=6, help="synthetic pairs per step")
    parser.add_argument("--slices", type=int, default=3, help="slices per pair and axis")
    parser.add_argument("--sizes", choices=["uniform", "log"], default="uniform",
                        help="misalignment sizes (2-20 mm / degrees) drawn uniformly, or log-uniformly to favour "
                             "the small, hard ones")


# ---- command line -------------------------------------------------------------------------------------------

def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--fixed", help="the reference image")
    parser.add_argument("--moving", help="the image whose alignment to the fixed one is judged")
    parser.add_argument("--pairs", help="CSV with columns fixed,moving (relative paths: from the CSV's folder, "
                                        "else from the working folder)")
    parser.add_argument("-o", "--output", required=True, help="output folder")


def run(args: argparse.Namespace) -> int:
    if args.pairs:
        pairs, folder = read_pairs(Path(args.pairs)), Path(args.pairs).parent
    elif args.fixed and args.moving:
        pairs, folder = [(args.fixed, args.moving)], None
    else:
        raise SystemExit("brainkit regqc: give --fixed F --moving M, or --pairs PAIRS.csv")
    results, failures = regqc(pairs, args.output, args.device, args.quiet, args.verbose, folder)
    for result in results:
        console.print(f"{result.decision:10s} p={result.p_misaligned:.3f} {shift_text(result)}  "
                      f"{result.moving} -> {result.fixed}")
    print_failures(failures)
    return 1 if failures else 0


# ---- evaluation on real co-registered scans --------------------------------------------------------------

MOVES_MM_OR_DEG = (0.0, 1.0, 2.0, 3.0, 5.0)


def world_move(kind: str, size: float, centre: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """4x4 world transform: a `size` mm translation along a random direction, or a `size` degree rotation
    about a random axis through `centre`."""
    direction = rng.normal(size=3)
    direction /= np.linalg.norm(direction)
    move = np.eye(4)
    if kind == "shift":
        move[:3, 3] = size * direction
        return move
    angle = np.deg2rad(size)
    cross = np.array([[0, -direction[2], direction[1]], [direction[2], 0, -direction[0]],
                      [-direction[1], direction[0], 0]])
    rotation = np.eye(3) + np.sin(angle) * cross + (1 - np.cos(angle)) * cross @ cross
    move[:3, :3] = rotation
    move[:3, 3] = centre - rotation @ centre
    return move


def real_test_pairs(data: Path) -> list[tuple[Path, Path, np.ndarray]]:
    """Aligned real pairs (fixed, moving, world correction for the moving header): ordered pairs of the
    co-registered contrasts of each pairs_open_ms_mni patient (no correction), and the native thick-slice
    T1W and T2W of pairs_open_ms_raw on their FLAIR, aligned by the provided ITK registrations."""
    pairs = []
    for patient in sorted((data / "pairs_open_ms_mni").glob("patient*")):
        scans = sorted(p for p in patient.glob("*_regtoMNI.nii.gz") if not p.name.startswith("GOLD"))
        pairs += [(a, b, np.eye(4)) for a in scans for b in scans if a != b]
    for flair in sorted((data / "pairs_open_ms_raw").glob("*/study*_FLAIR.nii.gz")):
        for kind in ("T1W", "T2W"):
            moving = flair.with_name(flair.name.replace("FLAIR", kind))
            transform = flair.with_name(f"{moving.name.split('.')[0]}_intrastudy_to_FLAIR.txt")
            if moving.exists() and transform.exists():  # moving world -> FLAIR world is the inverse
                pairs.append((flair, moving, np.linalg.inv(read_itk_affine(transform))))
    return pairs


def synthetic_test_pairs(data: Path, count: int) -> list[tuple[str, torch.Tensor]]:
    """`count` aligned synthetic pairs (2, X, Y, Z) as training draws them (residual included), alternating brain
    label maps and random shapes, from seeds training never draws; named for the evaluation tables. A draw whose
    images share fewer edges than MIN_SHARED_EDGES gives its place to the next seed's: no method could judge it,
    and real pairs never look like it, yet it would set the threshold."""
    engines, seeds = pair_engines(data), itertools.count(10_000_019)
    return [(f"synthetic_{('brain', 'shapes')[index % 2]}_{index}", judgeable_pair(engines[index % 2], seeds))
            for index in range(count)]


def judgeable_pair(engine: SynthEngine, seeds: Iterator[int]) -> torch.Tensor:
    """The first aligned pair, drawn with the next of `seeds`, whose images share at least MIN_SHARED_EDGES."""
    draws = (draw_pairs(engine, 1, torch.Generator().manual_seed(seed), misaligned_prob=0.0)[0][0] for seed in seeds)
    return next(pair for pair in draws if shared_edges(pair) >= MIN_SHARED_EDGES)


def shared_edges(pair: torch.Tensor) -> float:
    """Correlation between the two images' 3D gradient magnitudes over a (2, X, Y, Z) pair's box."""
    magnitudes = torch.stack([torch.stack(torch.gradient(volume)).square().sum(dim=0).sqrt().flatten()
                              for volume in pair])
    return float(torch.corrcoef(magnitudes)[0, 1])


def moved_pair(pair: torch.Tensor, kind: str, size: float, rng: np.random.Generator) -> torch.Tensor:
    """A prepared (2, X, Y, Z) pair whose moving image is moved by `world_move` about the box centre."""
    box = Grid(tuple(pair.shape[1:]), np.diag([SPACING] * 3 + [1.0]))
    centre = box.affine @ np.r_[(np.asarray(box.shape) - 1) / 2, 1]
    moved = resample_to_grid(pair[1].numpy(), Grid(box.shape, world_move(kind, size, centre[:3], rng) @ box.affine),
                             box)
    return torch.stack([pair[0], torch.from_numpy(moved.astype(np.float32))])


def evaluation_cases(pairs: list, move_pair, on_pair, progress_label: str, quiet: bool) -> None:
    """Every aligned pair as is and moved by each rigid move of MOVES_MM_OR_DEG (shift and rotation):
    `on_pair(pair, moved, kind, size, truth)` for each case."""
    with progress_bar(quiet) as progress:
        task = progress.add_task(progress_label, total=len(pairs) * (2 * len(MOVES_MM_OR_DEG) - 1))
        for pair in pairs:
            for kind in ("shift", "rotation"):
                for size in MOVES_MM_OR_DEG:
                    if kind == "rotation" and size == 0:
                        continue
                    truth = "aligned" if size == 0 else ("misaligned" if size >= 2 else "in between")
                    on_pair(pair, move_pair(pair, kind, size), kind, size, truth)
                    progress.advance(task)


def evaluate_synthetic(args: argparse.Namespace, model: torch.nn.Module) -> int:
    """The real-pair protocol on synthetic pairs: N aligned synthetic pairs, each as is and moved by known rigid
    moves; the image-wise threshold with at most 5% false alarms is chosen here, and the same figures are
    reported as on real pairs."""
    rng = np.random.default_rng(args.seed)
    cases: list[tuple[dict, np.ndarray]] = []

    def score(named_pair, moved, kind, size, truth):
        probabilities = slice_outputs(moved, model)[0]
        cases.append(({"fixed": named_pair[0], "moving": named_pair[0], "kind": kind, "size": size, "truth": truth,
                       "p_misaligned": round(aggregate(probabilities), 4)}, probabilities))

    evaluation_cases(synthetic_test_pairs(Path(args.data), args.synthetic),
                     lambda named_pair, kind, size: moved_pair(named_pair[1], kind, size, rng), score,
                     "synthetic pairs", args.quiet)
    judged = [row for row, _ in cases if row["truth"] != "in between"]
    threshold = choose_threshold(np.array([row["p_misaligned"] for row in judged]),
                                 np.array([row["truth"] == "misaligned" for row in judged]))
    for row, _ in cases:
        row["decision"] = "misaligned" if row["p_misaligned"] >= threshold else "aligned"
    slice_rows = [(row["truth"], float(q)) for row, probabilities in cases for q in probabilities]
    rows = [row for row, _ in cases]
    summary = {"threshold": round(threshold, 4), **regqc_metrics(rows, slice_rows)}
    write_evaluation(rows, summary, args.output, "regqc_synthetic")
    return 0


def write_evaluation(rows: list[dict], summary: dict, output: str | None, name: str) -> None:
    """Print the summary; write `<name>.csv` (one row per case) and `<name>_summary.csv` when asked."""
    for key, value in summary.items():
        console.print(f"{key}: {value}")
    if output:
        out = Path(output)
        write_csv(out / f"{name}.csv", rows, list(rows[0]))
        write_metrics(out / f"{name}_summary.csv", summary)


def run_evaluate(args: argparse.Namespace) -> int:
    """Image-wise and slice-wise F1 on real co-registered pairs (the shared ones, or --pairs) moved by known rigid
    transforms (or, with --synthetic N, on synthetic validation pairs, which is where the threshold is chosen)."""
    model = load_model(Path(args.weights), device=resolve_device(args.device))
    if args.synthetic:
        return evaluate_synthetic(args, model)
    rng = np.random.default_rng(args.seed)
    rows, slice_rows = [], []
    if args.pairs:
        folder = Path(args.pairs).parent
        pairs = [(pair_file(fixed, folder), pair_file(moving, folder), np.eye(4))
                 for fixed, moving in read_pairs(Path(args.pairs))]
    else:
        pairs = real_test_pairs(Path(args.data))
    if not pairs:
        raise SystemExit(f"brainkit evaluate regqc: no co-registered pairs under {args.data}/pairs_open_ms_mni: give "
                         "--data DIR (the shared data folder) or --pairs PAIRS.csv of your own aligned pairs")

    scan_of = functools.cache(load)  # each file read once for its nine moves

    def move_pair(pair, kind, size):
        fixed_path, moving_path, correction = pair
        fixed, moving = scan_of(fixed_path), scan_of(moving_path)
        affine = correction @ moving.affine
        centre = affine @ np.r_[(np.asarray(moving.shape) - 1) / 2, 1]
        return fixed, Scan(moving.data, world_move(kind, size, centre[:3], rng) @ affine, moving.header,
                           moving.source, moving.rel_path)

    def score(pair, moved, kind, size, truth):
        result = predict_pair(*moved, model)
        decision = "misaligned" if result.p_misaligned >= args.threshold else "aligned"
        rows.append({"fixed": pair[0].name, "moving": pair[1].name, "kind": kind, "size": size, "truth": truth,
                     "p_misaligned": result.p_misaligned, "decision": decision, "est_shift_mm": result.est_shift_mm})
        slice_rows.extend((truth, row["p_misaligned"]) for row in result.slices)

    evaluation_cases(pairs, move_pair, score, "evaluating", args.quiet)
    write_evaluation(rows, regqc_metrics(rows, slice_rows), args.output, "regqc_evaluation")
    return 0


def regqc_metrics(rows: list[dict], slice_rows: list[tuple[str, float]]) -> dict[str, float]:
    """Image-wise F1/precision/recall (aligned vs >= 2 mm or degrees), false-alarm rate, AUROC of p_misaligned,
    detection rate by size and kind, and slice-wise F1 (slices inherit their pair's truth; 1 mm/1 degree pairs
    left out)."""
    judged = [r for r in rows if r["truth"] != "in between"]
    predicted = np.array([r["decision"] == "misaligned" for r in judged])
    truth = np.array([r["truth"] == "misaligned" for r in judged])
    scores = binary_scores(predicted, truth)
    aligned = [r for r in rows if r["truth"] == "aligned"]
    summary = {"pairs": len(rows), "image_f1": round(scores["f1"], 4),
               "image_precision": round(scores["precision"], 4), "image_recall": round(scores["recall"], 4),
               "false_alarm_rate": round(float(np.mean([r["decision"] == "misaligned" for r in aligned])), 4),
               "auroc": round(auroc(np.array([r["p_misaligned"] for r in judged]), truth), 4)}
    for kind in ("shift", "rotation"):
        for size in MOVES_MM_OR_DEG[1:]:
            chosen = [r for r in rows if r["kind"] == kind and r["size"] == size]
            rate = float(np.mean([r["decision"] == "misaligned" for r in chosen])) if chosen else float("nan")
            summary[f"detected_{kind}_{size:g}"] = round(rate, 4)
    labelled = [(label, p) for label, p in slice_rows if label != "in between"]
    slice_predicted = np.array([p >= 0.5 for _, p in labelled])
    slice_truth = np.array([label == "misaligned" for label, _ in labelled])
    summary["slice_f1"] = round(binary_scores(slice_predicted, slice_truth)["f1"], 4)
    return summary


def add_evaluate_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", default="../shared/data", help="the shared data folder (pairs_open_ms_mni)")
    parser.add_argument("-o", "--output", help="also write DIR/regqc_evaluation*.csv")
    parser.add_argument("--weights", default=str(WEIGHTS), help="weights to evaluate (default: the bundled ones)")
    parser.add_argument("--pairs", help="CSV (columns fixed,moving) of your own aligned pairs to evaluate instead of "
                                        "the shared ones; each is also moved by the known rigid moves")
    parser.add_argument("--synthetic", type=int, default=0, help="evaluate N synthetic validation pairs instead")
    parser.add_argument("--threshold", type=float, default=THRESHOLD,
                        help="image-wise p_misaligned from which a pair counts as misaligned (default: the bundled "
                             "model's, chosen with --synthetic; pass the one --synthetic chose for other weights)")


TASK = Task("regqc", "are two images aligned? -> regqc.csv, regqc_slices.csv", add_arguments, run,
            train=(add_train_arguments, run_train), evaluate=(add_evaluate_arguments, run_evaluate))
