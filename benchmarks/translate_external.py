"""The bundled T1 -> T2 model on a patient it never saw, scanned differently: pairs_open_ms_raw/patient01.

Its native T1W (3 mm slices), T2W and FLAIR (4 mm slices) are brought into the study's common space through the ITK
registrations shipped with the data (T1W/T2W -> FLAIR -> common), skull-stripped with the shipped brain mask,
written to a folder, and then measured with the same commands a user runs:

    brainkit translate DIR/T1W_brain.nii.gz -o DIR
    brainkit evaluate translate --pred DIR/T1W_brain_synthT2.nii.gz --truth DIR/T2W_brain.nii.gz \
        --mask DIR/brainmask.nii.gz

    python benchmarks/translate_external.py [DIR]      # default DIR: runs/translate_external
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import SHARED_DATA  # noqa: E402

from brainkit.io import load  # noqa: E402
from brainkit.io.itk import read_itk_affine  # noqa: E402
from brainkit.io.write import write_nifti  # noqa: E402
from brainkit.spatial import Grid  # noqa: E402
from brainkit.spatial.geometry import resample_to_grid  # noqa: E402

PATIENT = SHARED_DATA / "pairs_open_ms_raw" / "patient01"


def to_common_space(kind: str, mask: np.ndarray, grid: Grid) -> np.ndarray:
    """study1_<kind> resampled onto the common grid (kind -> FLAIR -> common), zero outside the brain mask."""
    scan = load(PATIENT / f"study1_{kind}.nii.gz")
    world = np.linalg.inv(read_itk_affine(PATIENT / "study1_FLAIR_to_common_space.txt"))
    if kind != "FLAIR":
        world = world @ np.linalg.inv(read_itk_affine(PATIENT / f"study1_{kind}_intrastudy_to_FLAIR.txt"))
    moved = resample_to_grid(scan.data, Grid(scan.shape, world @ scan.affine), grid, order=1)
    return (moved * mask).astype(np.float32)


def main() -> None:
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else Path("runs/translate_external")
    mask_scan = load(PATIENT / "coregistered" / "brainmask.nii.gz")
    mask = mask_scan.data > 0
    grid = Grid(mask_scan.shape, mask_scan.affine)
    write_nifti(out / "brainmask.nii.gz", mask.astype(np.uint8), mask_scan.affine)
    for kind in ("T1W", "T2W", "FLAIR"):
        path = write_nifti(out / f"{kind}_brain.nii.gz", to_common_space(kind, mask, grid), mask_scan.affine)
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
