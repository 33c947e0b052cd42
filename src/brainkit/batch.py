"""Running one piece of work over many inputs so that one bad input never loses the batch."""

from __future__ import annotations

import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Generic, TypeVar

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from brainkit.errors import BrainkitError
from brainkit.io.checks import check_not_label_map
from brainkit.io.discover import InputItem, discover, load_item
from brainkit.io.scan import Scan
from brainkit.runtime import console

Result = TypeVar("Result")


@dataclass
class Failure:
    """One input that could not be processed, and why (one line)."""

    source: str
    message: str


@dataclass
class BatchOutcome(Generic[Result]):
    results: list[Result] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        """0 only if every input succeeded."""
        return 1 if self.failures else 0


def describe_error(err: Exception, source: object, verbose: bool = False) -> Failure:
    """Turn an exception into a one-line Failure; unexpected ones get their traceback only if verbose."""
    if isinstance(err, BrainkitError):
        return Failure(err.source or str(source), err.message)
    if verbose:
        console.print(traceback.format_exc(), markup=False)
    hint = "" if verbose else " (rerun with --verbose for the traceback)"
    return Failure(str(source), f"unexpected {type(err).__name__}: {err}{hint}")


def progress_bar(quiet: bool) -> Progress:
    """A rich progress bar on stderr, silent with --quiet."""
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                    console=console, disable=quiet, transient=True)


def run_over_inputs(inputs: Iterable[str | Path], work: Callable[[Scan], Result], description: str = "scans",
                    quiet: bool = False, verbose: bool = False, mr_images_only: bool = False,
                    outputs: str | Path | None = None, written: tuple[str, ...] = ()) -> BatchOutcome[Result]:
    """Load every input and call `work` on each scan; failures are collected, never raised. With
    `mr_images_only`, label maps and masks (often in the same folders as the scans) are refused before `work`.
    `outputs`, the command's output folder, is never searched for inputs; when it is the folder given, the images
    there named as the command names its own (`written`, e.g. `*_seg.nii.gz`) are left out (`discover`)."""
    outcome: BatchOutcome[Result] = BatchOutcome()
    items: list[InputItem] = discover(list(inputs), outputs, written)
    with progress_bar(quiet) as progress:
        task = progress.add_task(description, total=len(items))
        for item in items:
            try:
                scans = load_item(item)
            except Exception as err:  # noqa: BLE001 - one bad input must not stop the batch
                outcome.failures.append(describe_error(err, item.path, verbose))
                scans = []
            for scan in scans:
                if isinstance(scan, BrainkitError):
                    outcome.failures.append(describe_error(scan, item.path, verbose))
                    continue
                print_notes(scan, quiet)
                try:
                    if mr_images_only:
                        check_not_label_map(scan.data, scan.source)
                    outcome.results.append(work(scan))
                except Exception as err:  # noqa: BLE001
                    outcome.failures.append(describe_error(err, scan.source, verbose))
            progress.advance(task)
    return outcome


def print_notes(scan: Scan, quiet: bool) -> None:
    """Say what loading changed or doubted (e.g. volume 0 of a 4D series is used), one line each."""
    if quiet:
        return
    for warning in scan.warnings:
        console.print(f"note {scan.source}: {warning}", markup=False)


def print_failures(failures: list[Failure]) -> None:
    """Print what failed and why, one line each (easy to grep), as the batch's closing summary."""
    if not failures:
        return
    console.print(f"[bold red]{len(failures)} input(s) failed:[/bold red]")
    for failure in failures:
        console.print(f"FAILED {failure.source}: {failure.message}", markup=False)
