"""The self-contained HTML report: Jinja2 template, images embedded as PNG data, readable offline."""

from __future__ import annotations

import base64
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, select_autoescape

from brainkit.io.write import write_with

TEMPLATES = Path(__file__).resolve().parent / "templates"


def embed_png(path: str | Path | None) -> str | None:
    """A PNG file as a `data:` URI (None when there is no picture)."""
    if path is None or not Path(path).exists():
        return None
    return "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode("ascii")


def render_report(target: str | Path, **context: object) -> Path:
    """Render `report.html` with the given context and write it atomically."""
    environment = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(["html"]))
    environment.filters["png"] = embed_png
    html = environment.get_template("report.html").render(**context)
    return write_with(target, lambda tmp: tmp.write_text(html, encoding="utf-8"))
