"""Seconds per pair for `brainkit regqc` (load both, resample through the headers, all slices, decision),
2 threads, on real pairs from the shared data.

    python benchmarks/regqc.py        # writes the `regqc` section of docs/benchmarks.md
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import SHARED_DATA, machine, markdown_table, write_section  # noqa: E402

from brainkit.io import load  # noqa: E402
from brainkit.runtime import configure  # noqa: E402
from brainkit.tasks import regqc  # noqa: E402


def main() -> None:
    configure(threads=2)  # the commands' own settings
    model = regqc.load_model()
    rows = []
    for fixed_path, moving_path, correction in regqc.real_test_pairs(SHARED_DATA)[::3]:
        start = time.perf_counter()
        fixed, moving = load(fixed_path), load(moving_path)
        moving.affine = correction @ moving.affine
        result = regqc.predict_pair(fixed, moving, model)
        seconds = time.perf_counter() - start
        rows.append([moving_path.name[:28], fixed_path.name[:28], "x".join(map(str, moving.shape)),
                     str(len(result.slices)), f"{seconds:.2f}"])
        print(rows[-1], flush=True)
    table = markdown_table(["moving", "fixed", "moving shape", "slices judged", "seconds"], rows)
    write_section("regqc", f"## Registration QC (`python benchmarks/regqc.py`)\n\n{machine()}. Seconds per pair, "
                           f"load to decision (both images read, moving resampled onto the fixed 1 mm box through "
                           f"the headers, every informative slice on three axes judged).\n\n{table}\n")
    print(table)


if __name__ == "__main__":
    main()
