"""Seconds and peak memory per 1 mm scan for `brainkit segment` and `brainkit translate`, 2 threads.

Each run is the whole command in a fresh process (start-up, model load, read, predict, write), so the peak
memory is the process's own maximum resident set. Speed does not depend on the weights' values: a job with no
bundled weights yet is timed with untrained weights of the same network, and the table says so.

    python benchmarks/jobs.py        # writes the `jobs` section of docs/benchmarks.md
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import SHARED_DATA, machine, markdown_table, write_section  # noqa: E402

from brainkit.runtime import configure  # noqa: E402
from brainkit.tasks import segment, translate  # noqa: E402
from brainkit.weights import save_weights  # noqa: E402

SCANS = ["t1_depression/sub-01_T1w.nii.gz", "seg_freesurfer/niivue_norm/norm.mgz",
         "pairs_open_ms_mni/patient07/T1_N4_noneck_reduced_winsor_regtoFLAIR_brain_N4_regtoMNI.nii.gz",
         "templates/colin27/ch2.nii.gz"]  # a whole head with its neck
LARGE_HEAD_SCALE = 1.25  # Colin27 with 1.25 mm voxels read as is: a head 1.25 times as large on every axis


def large_head(scratch: Path) -> Path:
    """Colin27's head and neck scaled by LARGE_HEAD_SCALE (the same voxels, larger voxel size): a 1 mm box of
    221 x 256 x 211, more sliding windows than any brain needs (segment's `brain_box`)."""
    import nibabel as nib

    image = nib.load(SHARED_DATA / SCANS[-1])
    affine = image.affine.copy()
    affine[:3, :3] *= LARGE_HEAD_SCALE
    path = scratch / "ch2_scaled_1.25.nii.gz"
    nib.save(nib.Nifti1Image(image.get_fdata().astype("float32"), affine), path)
    return path


# Runs the command, then prints its own peak resident set (kB) as the last line.
MEASURED = ("import resource, sys; from brainkit.cli import main; code = main(sys.argv[1:]); "
            "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss); sys.exit(code)")


def run_command(args: list[str]) -> tuple[float, float]:
    """Wall seconds and peak resident memory (GB) of one brainkit command in its own process."""
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", MEASURED, *args, "--threads", "2", "-q"], check=True,
                          capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "2"})
    seconds = time.perf_counter() - start
    return seconds, int(done.stdout.split()[-1]) / 1024**2


def seconds_in_process(job: str, weights: Path, extra: list[str], scan: Path, out: Path) -> float:
    """Seconds per volume once the model is loaded (a batch's per-scan cost): load, predict, write."""
    from brainkit.io import load

    configure(threads=2)  # the commands' own settings
    if job == "segment":
        model = segment.load_model(weights)
        start = time.perf_counter()
        segment.process(load(scan), model, out)
    else:
        model = translate.load_model(weights)
        start = time.perf_counter()
        translate.process(load(scan), model, out, extra[-1])
    return time.perf_counter() - start


def weights_or_untrained(path: Path, build, scratch: Path) -> tuple[Path, str]:
    """The bundled weights, or untrained ones of the same network (same speed) with a note."""
    if path.exists():
        return path, "bundled"
    return save_weights(build(), scratch / path.name), "untrained (none bundled yet)"


TITLES = {"segment": "Segmentation", "translate": "Translation"}


def main(selected: tuple[str, ...] = ("segment", "translate")) -> None:
    """Measure the selected jobs; write their section of docs/benchmarks.md (`jobs` when both)."""
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        jobs = [("segment", *weights_or_untrained(segment.WEIGHTS, segment.build_model, scratch), []),
                ("translate", *weights_or_untrained(translate.weights_for("T2"), translate.build_model, scratch),
                 ["--to", "T2"])]
        runs = [(job, weights, note, extra, SHARED_DATA / name) for job, weights, note, extra in jobs for name in SCANS
                if job in selected and (SHARED_DATA / name).exists()]
        if "segment" in selected and (SHARED_DATA / SCANS[-1]).exists():
            runs.append(("segment", *jobs[0][1:3], [], large_head(scratch)))
        # Commands first: a child's peak memory counts the parent's at fork, so the parent must stay small.
        commands = [run_command([job, str(scan), "--weights", str(weights), *extra, "-o", str(scratch / job)])
                    for job, weights, _, extra, scan in runs]
        for (job, weights, note, extra, scan), (seconds, peak) in zip(runs, commands):
            per_volume = seconds_in_process(job, weights, extra, scan, scratch / job)
            rows.append([job, scan.name[:32], f"{per_volume:.1f}", f"{seconds:.1f}", f"{peak:.2f}", note])
            print(rows[-1], flush=True)
    table = markdown_table(["job", "scan", "seconds per volume (model loaded)", "seconds (whole command)",
                            "peak memory (GB)", "weights"], rows)
    name = "jobs" if len(selected) > 1 else selected[0]
    title = " and ".join(TITLES[job] for job in selected).capitalize()
    write_section(name, f"## {title} per scan (`python benchmarks/{name}.py`)\n\n{machine()}. "
                          "Per volume: load, predict, write (and the montage for translate) with the model "
                          "already loaded, as in a batch. Whole command: one command per scan in a fresh process "
                          "(Python and torch start-up, model load, the same work). Peak memory: that process's "
                          f"largest resident set.\n\n{table}\n")
    print(table)


if __name__ == "__main__":
    main()
