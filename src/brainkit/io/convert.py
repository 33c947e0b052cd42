"""`brainkit convert`: DICOM folders to NIfTI + JSON sidecar per series, with dcm2niix's geometry."""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from pathlib import Path

from brainkit.batch import Failure, describe_error, print_failures, progress_bar
from brainkit.errors import BadInputError
from brainkit.io.dicom import NO_REPAIRS, DicomVolume, Repairs, assemble_folder
from brainkit.io.dicom.frames import siemens_slice_times
from brainkit.io.dicom.sidecar import sidecar
from brainkit.io.discover import InputItem, discover
from brainkit.io.write import write_json, write_nifti
from brainkit.runtime import console
from brainkit.tasks import Task


@dataclass
class Converted:
    nifti: Path
    sidecar: Path
    volume: DicomVolume


def write_volume(volume: DicomVolume, target_stem: Path) -> Converted:
    """Write one series as `<stem>.nii.gz` and `<stem>.json`, atomically."""
    nifti = write_nifti(target_stem.with_name(target_stem.name + ".nii.gz"), volume.data, volume.affine)
    meta = sidecar(volume.dataset, volume.frames[0].orientation, siemens_slice_times(volume.dataset),
                   volume.dicom_axes)
    if volume.notes:
        meta["ConversionNotes"] = volume.notes
    json_path = write_json(target_stem.with_name(target_stem.name + ".json"), meta)
    return Converted(nifti, json_path, volume)


def inputs_without_dicom(inputs: list[str | Path], items: list[InputItem]) -> list[Failure]:
    """A failure for each input that holds no DICOM (a folder of NIfTIs, say): converting nothing is no success."""
    places = [Path(os.path.abspath(item.path)) for item in items]

    def holds_dicom(given: Path) -> bool:  # a folder holds its DICOM folders; a DICOM file lies in one
        return any(place.is_relative_to(given) or given.is_relative_to(place) for place in places)

    return [Failure(str(given), "no DICOM here or below (NIfTI and MGZ need no conversion): check the path")
            for given in inputs if not holds_dicom(Path(os.path.abspath(given)))]


def convert(inputs: list[str | Path], out_dir: str | Path, repairs: Repairs = NO_REPAIRS,
            quiet: bool = True) -> tuple[list[Converted], list[Failure], list[str]]:
    """Python API of `brainkit convert`: every series of every DICOM folder under `inputs`.

    `repairs` allows resampling gantry-tilted or unevenly spaced series instead of refusing them.

    Returns what was written, the series or folders refused (with the reason), and notes on skipped files.
    """
    out = Path(out_dir)
    items = [item for item in discover(inputs) if item.kind in ("dicom", "missing")]
    written: list[Converted] = []
    failures: list[Failure] = inputs_without_dicom(inputs, items)
    notes: list[str] = []
    with progress_bar(quiet) as progress:
        task = progress.add_task("converting", total=len(items))
        for item in items:
            if item.kind == "missing":
                failures.append(Failure(str(item.path), item.problem))
                continue
            try:
                volumes, folder_notes = assemble_folder(item.path, repairs)
            except Exception as err:  # noqa: BLE001 - one bad folder must not stop the batch
                failures.append(describe_error(err, item.path))
                continue
            finally:
                progress.advance(task)
            notes += [f"{item.path}: {note}" for note in folder_notes]
            if not volumes:
                failures.append(Failure(str(item.path), "no DICOM image series in this folder"))
            for volume in volumes:
                if isinstance(volume, BadInputError):
                    failures.append(Failure(volume.source or str(item.path), volume.message))
                else:
                    written.append(write_volume(volume, out / item.rel_path / volume.name))
    return written, failures, notes


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("inputs", nargs="+", metavar="DICOM_DIR", help="DICOM folders (searched recursively)")
    parser.add_argument("-o", "--output", required=True, help="output folder")
    parser.add_argument("--tilt-correct", action="store_true",
                        help="resample gantry-tilted series onto an orthogonal grid instead of refusing them")
    parser.add_argument("--even-slices", action="store_true",
                        help="interpolate series with uneven slice gaps (e.g. CT with two slice spacings) onto "
                             "even slices as close as the closest pair, instead of refusing them")


def run(args: argparse.Namespace) -> int:
    repairs = Repairs(tilt=args.tilt_correct, uneven_spacing=args.even_slices)
    written, failures, notes = convert(args.inputs, args.output, repairs, args.quiet)
    for item in written:
        console.print(f"wrote {item.nifti} {tuple(item.volume.data.shape)}")
        for note in item.volume.notes:
            console.print(f"note: {note}")
    if args.verbose:
        for note in notes:
            console.print(f"note: {note}")
    print_failures(failures)
    return 1 if failures else 0


COMMAND = Task("convert", "DICOM folders -> NIfTI + JSON per series (dcm2niix geometry)", add_arguments, run)
