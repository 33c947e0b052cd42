"""`brainkit info`: what each scan is (shape, voxel size, orientation, type, range, problems)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from brainkit.batch import BatchOutcome, run_over_inputs
from brainkit.io.scan import Scan
from brainkit.spatial import Grid

INFO_COLUMNS = ["file", "shape", "voxel_mm", "orientation", "dtype", "min", "max", "problems"]


def describe(scan: Scan) -> dict[str, str]:
    """One info row for a loaded scan."""
    grid = Grid(scan.shape, scan.affine)
    return {
        "file": str(scan.source if scan.source.is_file() else scan.source / scan.stem),
        "shape": "x".join(str(n) for n in scan.shape),
        "voxel_mm": "x".join(f"{s:.3g}" for s in scan.spacing),
        "orientation": grid.axcodes,
        "dtype": scan.disk_dtype,
        "min": f"{float(np.min(scan.data)):.4g}",
        "max": f"{float(np.max(scan.data)):.4g}",
        "problems": "; ".join(scan.warnings),
    }


def info(inputs: list[str | Path], quiet: bool = True, verbose: bool = False) -> BatchOutcome[dict[str, str]]:
    """Describe every scan found under `inputs`; broken ones are in `.failures` with their reason."""
    return run_over_inputs(inputs, describe, "reading scans", quiet=quiet, verbose=verbose)
