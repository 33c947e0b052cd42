"""Seconds per volume for `brainkit translate` (2 threads); the measurement is
`benchmarks/jobs.py`'s, for this job alone.

    python benchmarks/translate.py        # writes the `translate` section of docs/benchmarks.md
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from jobs import main  # noqa: E402

if __name__ == "__main__":
    main(("translate",))
