"""The `brainkit` command: core commands plus one subcommand per job module in `tasks/`.

Only the module of the command being run is imported, so `brainkit info` or `brainkit convert` start
without loading torch; `brainkit --help` imports them all to list them.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from brainkit import __version__
from brainkit.errors import BrainkitError
from brainkit.runtime import configure, console
from brainkit.tasks import Task, task_names

CORE_COMMANDS = {"info": "brainkit.io.info", "convert": "brainkit.io.convert", "synth": "brainkit.synth.command",
                 "run": "brainkit.pipeline", "demo": "brainkit.demo"}
VERBS = {"train": "train a job's model", "evaluate": "measure a job's model or outputs"}


def command_modules() -> dict[str, str]:
    """Subcommand name -> module defining it (`COMMAND` for core commands, `TASK` for jobs)."""
    return CORE_COMMANDS | {name: f"brainkit.tasks.{name}" for name in task_names()}


def load_command(module: str) -> Task:
    loaded = importlib.import_module(module)
    return getattr(loaded, "COMMAND", None) or loaded.TASK


def positive_int(text: str) -> int:
    """An argparse type: a whole number of at least 1."""
    if not text.strip().isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of at least 1")
    return int(text)


def common_options() -> argparse.ArgumentParser:
    """Options every command takes (INTERFACE.md general rules)."""
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto", help="compute device")
    parent.add_argument("--threads", type=positive_int, default=None, help="CPU threads for torch (default: torch's)")
    parent.add_argument("--seed", type=int, default=0, help="seed for every random generator")
    noise = parent.add_mutually_exclusive_group()
    noise.add_argument("-q", "--quiet", action="store_true", help="no progress bars or notes")
    noise.add_argument("-v", "--verbose", action="store_true", help="tracebacks for unexpected errors")
    return parent


def build_parser(selected: str | None = None) -> argparse.ArgumentParser:
    """The full parser for `selected` (or for every command when None); other commands get stubs."""
    parser = argparse.ArgumentParser(prog="brainkit", description="Deep learning on brain MRI, on a CPU.")
    parser.add_argument("--version", action="version", version=f"brainkit {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    parent = common_options()
    jobs = task_names()
    for name, module in command_modules().items():
        if selected not in (None, name):
            commands.add_parser(name)
            continue
        command = load_command(module)
        sub = commands.add_parser(name, parents=[parent], help=command.help)
        command.add_arguments(sub)
        sub.set_defaults(handler=command.run)
    for verb, help_text in VERBS.items():
        verb_parser = commands.add_parser(verb, help=help_text)
        if selected not in (None, verb):
            continue
        choices = verb_parser.add_subparsers(dest="job", required=True, metavar="JOB")
        for name in jobs:
            task = load_command(f"brainkit.tasks.{name}")
            if getattr(task, verb) is not None:
                add_arguments, handler = getattr(task, verb)
                job_parser = choices.add_parser(name, parents=[parent])
                add_arguments(job_parser)
                job_parser.set_defaults(handler=handler)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `brainkit` console script."""
    argv = sys.argv[1:] if argv is None else argv
    selected = argv[0] if argv and not argv[0].startswith("-") else ("" if "--version" in argv else None)
    args = build_parser(selected).parse_args(argv)
    configure(threads=args.threads, seed=args.seed)
    try:
        if getattr(args, "output", None):  # every command's -o is a folder
            from brainkit.io.write import ensure_writable_folder

            ensure_writable_folder(args.output)
        return args.handler(args)
    except BrainkitError as err:  # a problem with the whole command (not one input): one line, no traceback
        console.print(f"brainkit {args.command}: {err}", markup=False)
        return 2
    except KeyboardInterrupt:
        console.print("interrupted")
        return 130


if __name__ == "__main__":
    sys.exit(main())
