"""The `brainkit` command: core commands (info, demo) plus one subcommand per job in `tasks/`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rich.table import Table

from brainkit import __version__
from brainkit.batch import print_failures
from brainkit.io.info import INFO_COLUMNS, info
from brainkit.io.write import write_csv
from brainkit.runtime import configure, console
from brainkit.tasks import all_tasks


def common_options() -> argparse.ArgumentParser:
    """Options every command takes (INTERFACE.md general rules)."""
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto", help="compute device")
    parent.add_argument("--threads", type=int, default=None, help="CPU threads for torch (default: torch's)")
    parent.add_argument("--seed", type=int, default=0, help="seed for every random generator")
    noise = parent.add_mutually_exclusive_group()
    noise.add_argument("-q", "--quiet", action="store_true", help="no progress bars or notes")
    noise.add_argument("-v", "--verbose", action="store_true", help="tracebacks for unexpected errors")
    return parent


def run_info(args: argparse.Namespace) -> int:
    outcome = info(args.inputs, quiet=args.quiet, verbose=args.verbose)
    table = Table(show_lines=False)
    for column in INFO_COLUMNS:
        table.add_column(column, overflow="fold")
    for row in outcome.results:
        table.add_row(*(row[c] for c in INFO_COLUMNS))
    for failure in outcome.failures:
        table.add_row(failure.source, *[""] * (len(INFO_COLUMNS) - 2), f"[red]{failure.message}[/red]")
    from rich.console import Console

    Console(width=max(160, console.width)).print(table)
    if args.output:
        rows = outcome.results + [{"file": f.source, "problems": f.message} for f in outcome.failures]
        write_csv(Path(args.output) / "info.csv", rows, INFO_COLUMNS)
    print_failures(outcome.failures)
    return outcome.exit_code


def run_demo(args: argparse.Namespace) -> int:
    from brainkit.demo import run_demo as demo

    demo(Path(args.output))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="brainkit", description="Deep learning on brain MRI, on a CPU.")
    parser.add_argument("--version", action="version", version=f"brainkit {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    parent = common_options()

    info_parser = commands.add_parser("info", parents=[parent], help="describe scans: shape, voxels, problems")
    info_parser.add_argument("inputs", nargs="+", metavar="INPUT", help="NIfTI/MGZ files, DICOM or BIDS folders")
    info_parser.add_argument("-o", "--output", help="also write DIR/info.csv")
    info_parser.set_defaults(handler=run_info)

    demo_parser = commands.add_parser("demo", parents=[parent], help="run every job on bundled example data")
    demo_parser.add_argument("-o", "--output", default="brainkit_demo", help="output folder")
    demo_parser.set_defaults(handler=run_demo)

    from brainkit.io.convert import COMMAND as CONVERT
    from brainkit.synth.command import COMMAND as SYNTH

    tasks = all_tasks()
    for task in [CONVERT, SYNTH, *tasks]:
        task_parser = commands.add_parser(task.name, parents=[parent], help=task.help)
        task.add_arguments(task_parser)
        task_parser.set_defaults(handler=task.run)
    for verb, help_text in (("train", "train a job's model"), ("evaluate", "measure a job's model or outputs")):
        verb_parser = commands.add_parser(verb, help=help_text)
        jobs = verb_parser.add_subparsers(dest="job", required=True, metavar="JOB")
        for task in tasks:
            if getattr(task, verb) is not None:
                add_arguments, handler = getattr(task, verb)
                job_parser = jobs.add_parser(task.name, parents=[parent])
                add_arguments(job_parser)
                job_parser.set_defaults(handler=handler)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `brainkit` console script."""
    args = build_parser().parse_args(argv)
    configure(threads=args.threads, seed=args.seed)
    try:
        return args.handler(args)
    except KeyboardInterrupt:
        console.print("interrupted")
        return 130


if __name__ == "__main__":
    sys.exit(main())
