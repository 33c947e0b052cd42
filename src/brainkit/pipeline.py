"""`brainkit run`: raw scans to a report. Convert DICOM, check every scan, run every job that applies, write
each job's files (INTERFACE.md) and one self-contained `report.html`.

Per-scan work runs in parallel processes with `--jobs N`; its result is cached under `DIR/.brainkit_run/`,
so an interrupted run over many scans continues where it stopped (`--overwrite` redoes it). A cached result is
reused only for the same input file (absolute path and size) and brainkit version.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import time
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from pathlib import Path

from brainkit import __version__
from brainkit.batch import Failure, describe_error, print_failures, progress_bar
from brainkit.errors import BrainkitError
from brainkit.io import Scan
from brainkit.io.checks import check_not_label_map
from brainkit.io.convert import convert
from brainkit.io.discover import InputItem, discover, load_item
from brainkit.io.info import describe
from brainkit.io.write import write_csv, write_json
from brainkit.report.figures import save_montage
from brainkit.report.html import render_report
from brainkit.runtime import console, release_freed_memory
from brainkit.tasks import Task

CACHE = ".brainkit_run"
CONVERTED = "converted"  # DICOM series as NIfTI, below -o
_models: dict[str, object] = {}  # per process: each job's model, loaded once


def volumes_to_process(inputs: list[str | Path], out: Path) -> tuple[list[InputItem], list[Failure]]:
    """Image files to process: NIfTI/MGZ as found, DICOM folders converted first (under DIR/converted). What an
    earlier run wrote into `out` is not searched for inputs, even when `out` is the folder given."""
    from brainkit.tasks import orient, segment, translate

    written_before = (*orient.OUTPUT_IMAGES, *segment.OUTPUT_IMAGES, *translate.OUTPUT_IMAGES, f"{CONVERTED}/*")
    items, failures = [], []
    for item in discover(inputs, out, written_before):
        if item.kind == "volume":
            items.append(item)
        elif item.kind == "dicom":
            target = out / CONVERTED / item.rel_path.parent
            written, refused, _ = convert([item.path], target)
            failures += refused
            items += [InputItem(w.nifti, out / CONVERTED, "volume") for w in written]
        else:
            failures.append(Failure(str(item.path), item.problem))
    return items, failures


def cached_model(job: str, weights: Path, load: Callable[[], object]) -> object | None:
    """A job's model, loaded once per process; None when its weights are not bundled."""
    if job not in _models:
        _models[job] = load() if weights.exists() else None
    return _models[job]


def orient_step(scan: Scan, out: Path) -> dict:
    """Left-right check with its Grad-CAM picture."""
    from brainkit.tasks import orient

    model = cached_model("orient", orient.WEIGHTS, orient.load_model)
    if model is None:
        return {"orient_note": "no bundled orientation model"}
    verdict = orient.process(scan, model, out, "cpu", want_explain=True)
    return {"orient": {"p_flipped": verdict.p_flipped, "decision": verdict.decision},
            "gradcam": str(scan.output_path(out, "_gradcam", ".png"))}


def segment_step(scan: Scan, out: Path) -> dict:
    """Labels, overlay and volumes."""
    from brainkit.tasks import segment

    model = cached_model("segment", segment.WEIGHTS, lambda: segment.load_model(segment.WEIGHTS))
    if model is None:
        return {"segment_note": "no bundled segmentation model"}
    volumes = segment.process(scan, model, out, qc=True)
    return {"segment": {"volumes": volumes, "table": segment.structure_table(volumes),
                        "overlay": str(scan.output_path(out, "_seg", ".png"))}}


def translate_step(scan: Scan, out: Path) -> dict:
    """Synthetic T2 of a T1 (by name), with its montage."""
    from brainkit.tasks import translate

    if not translate.looks_like_t1(scan.stem):
        return {}
    if not translate.looks_skull_stripped(scan.data):
        return {"translate_note": f"synthetic T2 skipped: {translate.SKULL_NOTE}"}
    weights = translate.weights_for("T2")
    model = cached_model("translate", weights, lambda: translate.load_model(weights))
    if model is None:
        return {"translate_note": "no bundled translation model"}
    return {"translate": translate.process(scan, model, out, "T2")}


SCAN_STEPS = (orient_step, segment_step, translate_step)


def cache_stamp(item: InputItem) -> dict:
    """What a cached result must match to be reused: the same input file (absolute path and size) and brainkit
    version. The path is resolved because `t1.nii.gz` run from two folders names two files, and `./t1.nii.gz` and
    `t1.nii.gz` one. Not the modification time: a DICOM series is converted again on every run."""
    return {"source": str(item.path.resolve()), "bytes": item.path.stat().st_size, "brainkit": __version__}


def cached_result(cache: Path, stamp: dict) -> dict | None:
    """The result an earlier run cached with this stamp; None when there is none, it is unreadable, or it was made
    from another file of the same name or by another brainkit version."""
    try:
        result = json.loads(cache.read_text())
    except (OSError, ValueError):
        return None
    return result if isinstance(result, dict) and result.get("stamp") == stamp else None


def process_scan(item: InputItem, out: Path, overwrite: bool) -> dict:
    """Check one scan and run the per-scan jobs; the result is cached as JSON for resumed runs."""
    cache = out / CACHE / f"{item.rel_path}.json"
    stamp = cache_stamp(item)
    if not overwrite and (result := cached_result(cache, stamp)) is not None:
        return result
    scan = load_item(item)[0]
    if isinstance(scan, Exception):
        raise scan
    check_not_label_map(scan.data, scan.source)
    result = {"name": str(item.rel_path), "source": str(item.path), "stamp": stamp, "info": describe(scan)}
    montage = save_montage([(scan.stem, scan.data, scan.affine)], scan.output_path(out, "_montage", ".png"))
    result["montage"] = str(montage)
    for step in SCAN_STEPS:
        release_freed_memory()  # what the step before freed: its pieces would not fit this step's arrays
        result.update(step(scan, out))
    write_json(cache, result)
    return result


def session_of(path: str) -> str:
    """Scans of one subject and session share alignment: BIDS sub-/ses- entities, else the parent folder."""
    entities = re.findall(r"(sub-[A-Za-z0-9]+|ses-[A-Za-z0-9]+)", path)
    return "_".join(dict.fromkeys(entities)) or str(Path(path).parent)


def reference_first(session: list[dict]) -> list[dict]:
    """A session's scans with its T1 (by name, as `translate.looks_like_t1` tells) first, the usual reference;
    else in their order."""
    from brainkit.tasks.translate import looks_like_t1

    return sorted(session, key=lambda scan: not looks_like_t1(Path(scan["source"]).name))


def check_alignment(scans: list[dict], out: Path) -> list[Failure]:
    """regqc of every other scan of a session against its reference (`reference_first`, on its grid), when the
    model exists; the pairs that could not be judged."""
    from brainkit.tasks import regqc

    groups: dict[str, list[dict]] = defaultdict(list)
    for scan in scans:
        groups[session_of(scan["source"])].append(scan)
    pairs = [(group[0], other) for group in map(reference_first, groups.values()) for other in group[1:]]
    if not regqc.WEIGHTS.exists():
        for _, moving in pairs:
            moving["regqc_note"] = "no bundled registration-QC model"
        return []
    results, failures = regqc.regqc([(f["source"], m["source"]) for f, m in pairs], out)
    by_moving = {r.moving: r for r in results}
    unjudged = iter(failures)  # one per pair without a result, in the pairs' order
    for fixed, moving in pairs:
        result = by_moving.get(moving["source"])
        if result is None:
            moving["regqc_note"] = f"not checked against {Path(fixed['source']).name}: {next(unjudged).message}"
            continue
        moving["regqc"] = {"decision": result.decision, "p_misaligned": result.p_misaligned,
                           "est_shift_mm": result.est_shift_mm, "fixed_name": Path(fixed["source"]).name}
        moving["regqc_picture"] = result.picture or None
    return failures


def anchored_path(path: Path) -> Path:
    """`path` as an absolute path: a dask worker's working folder need not be the client's."""
    return Path(os.path.abspath(path))


def anchored(item: InputItem) -> InputItem:
    """`item` with absolute paths (its outputs' relative path unchanged), for a worker elsewhere."""
    return replace(item, path=anchored_path(item.path), root=anchored_path(item.root))


def dask_results(items: list[InputItem], out: Path, overwrite: bool, address: str):
    """Yield (item, result or exception) from a dask.distributed cluster (`pip install brainkit[cluster]`)."""
    try:
        from dask.distributed import Client
    except ImportError as err:
        raise BrainkitError("--dask", "dask.distributed is not installed: pip install 'brainkit[cluster]'") from err
    with Client(address) as client:
        futures = [(item, client.submit(process_scan, anchored(item), anchored_path(out), overwrite, pure=False))
                   for item in items]
        for item, future in futures:
            try:
                yield item, future.result()
            except Exception as err:  # noqa: BLE001 - the batch survives every bad file
                yield item, err


def scan_results(items: list[InputItem], out: Path, overwrite: bool, jobs: int, dask: str | None = None):
    """Yield (item, result or the exception it raised) in input order, in `jobs` processes or on a dask cluster."""
    if dask:
        yield from dask_results(items, out, overwrite, dask)
        return
    if jobs <= 1:
        for item in items:
            try:
                yield item, process_scan(item, out, overwrite)
            except Exception as err:  # noqa: BLE001 - the batch survives every bad file
                yield item, err
        return
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        futures = [(item, pool.submit(process_scan, item, out, overwrite)) for item in items]
        for item, future in futures:
            try:
                yield item, future.result()
            except Exception as err:  # noqa: BLE001
                yield item, err


def run_pipeline(inputs: list[str | Path], out_dir: str | Path, jobs: int = 1, overwrite: bool = False,
                 quiet: bool = True, verbose: bool = False,
                 dask: str | None = None) -> tuple[list[dict], list[Failure]]:
    """Python API of `brainkit run`: returns the per-scan results and the failures; writes the report."""
    out = Path(out_dir)
    items, failures = volumes_to_process(inputs, out)
    scans: list[dict] = []
    with progress_bar(quiet) as progress:
        task = progress.add_task("scans", total=len(items))
        for item, result in scan_results(items, out, overwrite, jobs, dask):
            if isinstance(result, Exception):
                failures.append(describe_error(result, item.path, verbose))
            else:
                scans.append(result)
            progress.advance(task)
    failures += check_alignment(scans, out)
    write_csv(out / "orientation.csv", [{"input": s["source"], **s["orient"]} for s in scans if "orient" in s],
              ["input", "p_flipped", "decision"])
    if any("segment" in s for s in scans):
        from brainkit.tasks.segment import VOLUME_COLUMNS

        write_csv(out / "volumes.csv", [s["segment"]["volumes"] for s in scans if "segment" in s], VOLUME_COLUMNS)
    columns = {job: any(job in scan for scan in scans) for job in ("orient", "segment", "regqc")}
    not_run = sorted({scan[f"{job}_note"] for scan in scans for job in columns
                      if not columns[job] and f"{job}_note" in scan})
    render_report(out / "report.html", scans=scans, failures=failures, columns=columns, not_run=not_run,
                  version=__version__,
                  created=time.strftime("%Y-%m-%d %H:%M"))
    return scans, failures


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="NIfTI/MGZ files, DICOM or BIDS folders")
    parser.add_argument("-o", "--output", required=True, help="output folder (report.html and every job's files)")
    parser.add_argument("--jobs", type=int, default=1, help="scans processed in parallel processes")
    parser.add_argument("--dask", metavar="ADDRESS", help="run scans on a dask.distributed scheduler (e.g. "
                                                          "tcp://host:8786; see docs/cluster.md)")
    parser.add_argument("--overwrite", action="store_true", help="redo scans a previous run already finished")


def run(args: argparse.Namespace) -> int:
    scans, failures = run_pipeline(args.inputs, args.output, args.jobs, args.overwrite, args.quiet, args.verbose,
                                   args.dask)
    console.print(f"{len(scans)} scan(s) done; report: {Path(args.output) / 'report.html'}")
    print_failures(failures)
    return 1 if failures else 0


COMMAND = Task("run", "everything that applies, from raw scans to report.html", add_arguments, run)
