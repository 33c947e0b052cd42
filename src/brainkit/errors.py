"""Errors brainkit reports to users as one line naming the file and what to do."""

from __future__ import annotations

from pathlib import Path


class BrainkitError(Exception):
    """An expected failure on one input: printed as one line, never as a traceback."""

    def __init__(self, source: str | Path | None, message: str):
        self.source = str(source) if source is not None else None
        self.message = message
        super().__init__(f"{self.source}: {message}" if self.source else message)


class BadInputError(BrainkitError):
    """The input file cannot be used as a 3D scan (empty, corrupt, 2D, NaN, constant, ...)."""
