"""A kit for `brainkit train segment --real` on a machine without `../shared` (a lent GPU; docs/segment_experiments.md,
"The next run"), small enough to travel beside the repo (64 MiB in all).

It holds the real scans cut to their nonzero box and stored in 8 bits (a scale factor in the header keeps their
intensities), their label maps cut to the same box, the SynthSeg label maps, all uncompressed in one xz archive (xz
packs a label map about 5 times tighter than its gzip), and the wheels of the packages that machine lacks.

    python tools/segment_gpu_kit.py ../shared/data/t1_depression --labels runs/atlas_labels -o runs/gpu_kit
    # there: bash tools/segment_gpu_run.sh runs/gpu_kit SECONDS
"""

from __future__ import annotations

import argparse
import importlib.metadata
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import nibabel as nib
import numpy as np

from brainkit.io import discover

WHEELS = ("monai", "nibabel", "pydicom")  # brainkit's needs that the GPU machine's image lacks (device KINDS.md)
TOP_PERCENTILE = 99.9  # of the nonzero voxels: the top of the 8-bit range, so a few bright vessels don't take it
MARGIN = 2  # voxels kept around the nonzero box


def nonzero_box(volume: np.ndarray) -> tuple[slice, ...]:
    """The box of `volume`'s nonzero voxels, `MARGIN` voxels wider on each side (within the array)."""
    corners = np.argwhere(volume != 0)
    low = np.maximum(corners.min(axis=0) - MARGIN, 0)
    high = np.minimum(corners.max(axis=0) + 1 + MARGIN, volume.shape)
    return tuple(slice(int(a), int(b)) for a, b in zip(low, high, strict=True))


def cut(image: nib.Nifti1Image, box: tuple[slice, ...], data: np.ndarray) -> nib.Nifti1Image:
    """`data[box]` as an image whose affine places it where it was in `image`."""
    affine = image.affine.copy()
    affine[:3, 3] = image.affine[:3, :3] @ np.array([s.start for s in box]) + image.affine[:3, 3]
    return nib.Nifti1Image(data[box], affine)


def eight_bit(image: nib.Nifti1Image) -> nib.Nifti1Image:
    """`image` in uint8, clipped at `TOP_PERCENTILE` of its nonzero voxels, with the scale factor in its header."""
    data = image.get_fdata(dtype=np.float32)
    scale = float(np.percentile(data[data > 0], TOP_PERCENTILE)) / 255
    packed = nib.Nifti1Image(np.rint(np.clip(data / scale, 0, 255)).astype(np.uint8), image.affine)
    packed.header.set_slope_inter(scale, 0)
    return packed


def compact_labels(label_map: nib.Nifti1Image) -> np.ndarray:
    """The label numbers of `label_map` in uint8 where they fit (aseg's do), else int16."""
    labels = np.asarray(label_map.dataobj)
    return labels.astype(np.uint8) if labels.min() >= 0 and labels.max() < 256 else labels.astype(np.int16)


def add_scan(scan: Path, labels: Path, staging: Path) -> None:
    """The scan cut to its nonzero box in 8 bits as `t1/<stem>.nii`, its label map cut alike as
    `labels/<stem>_seg.nii` (gzipped there: `--real-labels` reads `<stem>_seg.nii.gz`)."""
    stem = scan.name.removesuffix(".gz").removesuffix(".nii")
    image, aseg = nib.load(scan), nib.load(labels / f"{stem}_seg.nii.gz")
    if aseg.shape != image.shape:
        raise SystemExit(f"{labels / f'{stem}_seg.nii.gz'}: not on {scan}'s grid")
    box = nonzero_box(np.asarray(image.dataobj))
    nib.save(eight_bit(cut(image, box, image.get_fdata(dtype=np.float32))), staging / "t1" / f"{stem}.nii")
    nib.save(cut(aseg, box, compact_labels(aseg)), staging / "labels" / f"{stem}_seg.nii")


def add_label_maps(data: Path, staging: Path) -> None:
    """`<data>/synthseg_label_maps`, uncompressed, as `synthseg_label_maps/` (brainkit's `--data` layout)."""
    target = staging / "synthseg_label_maps"
    for path in sorted((data / "synthseg_label_maps").glob("*.nii.gz")):
        label_map = nib.load(path)
        nib.save(nib.Nifti1Image(compact_labels(label_map), label_map.affine), target / path.name.removesuffix(".gz"))


def download_wheels(folder: Path) -> None:
    """Wheels (Python 3.12, manylinux x86-64) of `WHEELS` at the versions installed here."""
    pins = [f"{name}=={importlib.metadata.version(name)}" for name in WHEELS]
    subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
                    "--python-version", "3.12", "--implementation", "cp", "--platform", "manylinux_2_28_x86_64",
                    "--platform", "manylinux2014_x86_64", "-d", str(folder), *pins], check=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("scans", nargs="+", help="the --real scans (files or folders)")
    parser.add_argument("--labels", required=True, help="their label maps (<stem>_seg.nii.gz, on each scan's grid)")
    parser.add_argument("--data", default="../shared/data", help="folder holding synthseg_label_maps/")
    parser.add_argument("-o", "--output", required=True, help="the kit's folder")
    args = parser.parse_args()
    kit = Path(args.output)
    with tempfile.TemporaryDirectory() as temporary:
        staging = Path(temporary)
        for folder in ("t1", "labels", "synthseg_label_maps"):
            (staging / folder).mkdir()
        for scan in (item.path for item in discover(args.scans)):
            add_scan(scan, Path(args.labels), staging)
        add_label_maps(Path(args.data), staging)
        kit.mkdir(parents=True, exist_ok=True)
        with tarfile.open(kit / "data.tar.xz", "w:xz", preset=9) as archive:
            archive.add(staging, arcname=".")
    download_wheels(kit / "whl")
    size = sum(path.stat().st_size for path in kit.rglob("*") if path.is_file())
    print(f"wrote {kit}: {size / 2**20:.1f} MiB")


if __name__ == "__main__":
    main()
