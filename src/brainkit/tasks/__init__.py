"""The jobs brainkit does, one module each. A module joins the CLI by defining ``TASK`` (a `Task`)."""

from __future__ import annotations

import argparse
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Task:
    """A job's command-line face.

    name: the subcommand (`brainkit <name> ...`).
    help: one line for `brainkit --help`.
    add_arguments: adds the job's own options to its subparser.
    run: runs the command from parsed arguments and returns the exit code.
    train, evaluate: optional (add_arguments, run) pairs for `brainkit train <name>` / `brainkit evaluate <name>`.
    """

    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]
    train: tuple[Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]] | None = None
    evaluate: tuple[Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]] | None = None


def task_names() -> list[str]:
    """Names of the job modules in this package (without importing them)."""
    return sorted(module.name for module in pkgutil.iter_modules(__path__))
