"""The jobs brainkit does, one module each. A module joins the CLI by defining ``TASK`` (a `Task`)."""

from __future__ import annotations

import argparse
import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Task:
    """A job's command-line face.

    name: the subcommand (`brainkit <name> ...`).
    help: one line for `brainkit --help`.
    add_arguments: adds the job's own options to its subparser.
    run: runs the command from parsed arguments and returns the exit code.
    demo: optional; runs the job on the demo inputs, writing under the folder, returning what it wrote.
    train, evaluate: optional (add_arguments, run) pairs for `brainkit train <name>` / `brainkit evaluate <name>`.
    """

    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]
    demo: Callable[[list[Path], Path], list[Path]] | None = None
    train: tuple[Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]] | None = None
    evaluate: tuple[Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]] | None = None


def task_names() -> list[str]:
    """Names of the job modules in this package (without importing them)."""
    return sorted(module.name for module in pkgutil.iter_modules(__path__))


def all_tasks() -> list[Task]:
    """Every `TASK` defined by a module in this package, in module-name order."""
    tasks = [getattr(importlib.import_module(f"{__name__}.{name}"), "TASK", None) for name in task_names()]
    return [task for task in tasks if isinstance(task, Task)]
