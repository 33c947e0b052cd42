"""`brainkit demo`: `brainkit run` on example data bundled with brainkit (offline).

The bundled MNI152 2009a template (`brainkit/examples`, see its NOTICE.md) is symmetric by construction: for it
and its mirror an honest left-right check can only answer 'uncertain'."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from brainkit.io import load
from brainkit.io.info import INFO_COLUMNS, info
from brainkit.io.write import write_csv, write_nifti
from brainkit.pipeline import CACHE, run_pipeline
from brainkit.report.figures import save_montage
from brainkit.runtime import console
from brainkit.tasks import Task

TEMPLATE = Path(__file__).parent / "examples" / "mni152_2009a_sym_t1.nii.gz"


def write_demo_inputs(folder: Path) -> list[Path]:
    """The bundled MNI152 2009a T1, scaled to [0, 1], and a left-right mirrored copy with the same header."""
    template = load(TEMPLATE)
    data = template.data / template.data.max()
    affine = template.affine
    mirrored = np.ascontiguousarray(data[::-1])  # voxel axis 0 maps to world x in this template
    return [write_nifti(folder / "mni152_t1.nii.gz", data, affine),
            write_nifti(folder / "mni152_t1_mirrored.nii.gz", mirrored, affine)]


def run_demo(out_dir: Path) -> list[Path]:
    """Write the demo inputs, then `brainkit run` on them: every job that applies, and the report. Every scan is
    redone, never taken from an earlier demo's cache: the demo shows what this version does and how long it takes."""
    started = time.perf_counter()
    inputs = write_demo_inputs(out_dir / "inputs")
    scans = [load(path) for path in inputs]
    panels = [(path.name, scan.data, scan.affine) for path, scan in zip(inputs, scans)]
    save_montage(panels, out_dir / "montage.png", title="brainkit demo inputs")
    write_csv(out_dir / "info.csv", info(inputs).results, INFO_COLUMNS)
    run_pipeline(inputs, out_dir, overwrite=True)
    written = sorted(path for path in out_dir.rglob("*") if path.is_file() and CACHE not in path.parts)
    console.print(f"demo finished in {time.perf_counter() - started:.1f} s; wrote {len(written)} files to {out_dir}; "
                  f"open {out_dir / 'report.html'}")
    return written


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-o", "--output", default="brainkit_demo", help="output folder")


def run(args: argparse.Namespace) -> int:
    run_demo(Path(args.output))
    return 0


COMMAND = Task("demo", "run every job on bundled example data (MNI152 template and a mirrored copy)",
               add_arguments, run)
