"""Seconds per scan for `brainkit orient` end to end (load, reorient, 3 mm box, model, orientation.csv), 2 threads,
on real scans of several sizes and contrasts from the shared data.

    python benchmarks/orient.py [--weights W]   # writes the `orient` section of docs/benchmarks.md
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import SHARED_DATA, machine, markdown_table, write_section  # noqa: E402

from brainkit.io import load  # noqa: E402
from brainkit.runtime import configure  # noqa: E402
from brainkit.tasks import orient  # noqa: E402

SCANS = ["t1_depression/sub-01_T1w.nii.gz", "heads/seg3d_T1_head.nii.gz", "heads/allineate_FLAIR_MICCAI2017.nii.gz",
         "seg_freesurfer/niivue_norm/norm.mgz", "tumor_brats2013/brats_2013_pat0001_1/Flair_subtrMeanDivStd.nii.gz",
         "pairs_open_ms_raw/patient01/study1_T2W.nii.gz"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", type=Path, default=orient.WEIGHTS)
    args = parser.parse_args()
    configure(threads=2)  # the commands' own settings
    paths = [SHARED_DATA / name for name in SCANS if (SHARED_DATA / name).exists()]
    orient.orient(paths[:1], tempfile.mkdtemp(), weights=args.weights)  # warm-up: imports, first model build
    rows = []
    for path in paths:
        with tempfile.TemporaryDirectory() as out:
            start = time.perf_counter()
            outcome = orient.orient([path], out, weights=args.weights)
            seconds = time.perf_counter() - start
        result = outcome.results[0]
        rows.append([path.name[:40], "x".join(map(str, load(path).shape)), result.decision, f"{seconds:.2f}"])
        print(rows[-1], flush=True)
    table = markdown_table(["scan", "shape", "decision", "seconds"], rows)
    write_section("orient", f"## Orientation check (`python benchmarks/orient.py`)\n\n{machine()}. Seconds per scan "
                            f"through `brainkit.orient` (model loaded per call as the command does; load, reorient "
                            f"to RAS, 3 mm box, symmetric read, orientation.csv). Target: at most 2 s.\n\n{table}\n")
    print(table)


if __name__ == "__main__":
    main()
