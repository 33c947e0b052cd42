"""Helpers for benchmark scripts: timing and writing their table into docs/benchmarks.md."""

from __future__ import annotations

import platform
import re
import time
from collections.abc import Callable
from pathlib import Path

import torch

from brainkit.runtime import native_bf16

DOCS = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def seconds_per_call(work: Callable[[], object], repeats: int, warmup: int = 1) -> float:
    """Median wall time of `work()` over `repeats` calls after `warmup` calls."""
    for _ in range(warmup):
        work()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def markdown_table(header: list[str], rows: list[list[object]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def cpu_model() -> str:
    """The CPU's model name (Linux), else the machine type."""
    cpuinfo = Path("/proc/cpuinfo")
    names = re.findall(r"^model name\s*:\s*(.+)$", cpuinfo.read_text(), re.M) if cpuinfo.exists() else []
    return names[0].strip() if names else platform.processor() or platform.machine()


def machine() -> str:
    """The CPU, whether it does bfloat16 natively (brainkit's inference runs in bfloat16 only where it does, in
    float32 elsewhere), torch's version and thread count."""
    bf16 = "native bfloat16" if native_bf16("cpu") else "no native bfloat16"
    return f"{cpu_model()} ({bf16}), torch {torch.__version__}, {torch.get_num_threads()} threads"


def write_section(name: str, body: str) -> None:
    """Replace (or append) the section `name` of docs/benchmarks.md, between HTML comment markers."""
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    text = DOCS.read_text() if DOCS.exists() else "# Benchmarks\n\nWritten by the scripts in `benchmarks/`.\n"
    block = f"{start}\n{body.strip()}\n{end}"
    pattern = re.compile(re.escape(start) + ".*?" + re.escape(end), re.S)
    text = pattern.sub(lambda _: block, text) if pattern.search(text) else text.rstrip() + "\n\n" + block + "\n"
    DOCS.parent.mkdir(exist_ok=True)
    DOCS.write_text(text)
