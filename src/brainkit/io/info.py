"""`brainkit info`: what each scan is (shape, voxel size, orientation, type, range, problems)."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from brainkit.batch import BatchOutcome, print_failures, run_over_inputs
from brainkit.io.scan import Scan
from brainkit.io.write import write_csv
from brainkit.spatial import Grid
from brainkit.tasks import Task

INFO_COLUMNS = ["file", "shape", "voxel_mm", "orientation", "dtype", "min", "max", "problems"]


def describe(scan: Scan) -> dict[str, str]:
    """One info row for a loaded scan."""
    grid = Grid(scan.shape, scan.affine)
    return {
        "file": scan.label,
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


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="NIfTI/MGZ files, DICOM or BIDS folders")
    parser.add_argument("-o", "--output", help="also write DIR/info.csv")


def run(args: argparse.Namespace) -> int:
    outcome = info(args.inputs, quiet=args.quiet, verbose=args.verbose)
    table = Table()
    for column in INFO_COLUMNS:
        table.add_column(column, overflow="fold")
    for row in outcome.results:
        table.add_row(*(row[c] for c in INFO_COLUMNS))
    for failure in outcome.failures:
        table.add_row(failure.source, *[""] * (len(INFO_COLUMNS) - 2), f"[red]{failure.message}[/red]")
    Console(width=160).print(table)
    if args.output:
        rows = outcome.results + [{"file": f.source, "problems": f.message} for f in outcome.failures]
        write_csv(Path(args.output) / "info.csv", rows, INFO_COLUMNS)
    print_failures(outcome.failures)
    return outcome.exit_code


COMMAND = Task("info", "describe scans: shape, voxel size, orientation, type, range, problems", add_arguments, run)
