"""Reading the tables users give (pairs, labels, participants): CSV or TSV, as spreadsheets save them."""

from __future__ import annotations

import csv
from pathlib import Path

from brainkit.errors import BrainkitError


def read_table(path: Path, required: tuple[str, ...], delimiter: str = ",") -> list[dict[str, str]]:
    """The rows of a CSV or TSV, column names and cells stripped of spaces (a spreadsheet's byte-order mark
    allowed); a one-line error when it cannot be read, has no rows, or lacks a `required` column."""
    kind = "TSV" if delimiter == "\t" else "CSV"
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle, delimiter=delimiter)
            rows = list(reader)
    except UnicodeDecodeError as err:
        raise BrainkitError(path, f"cannot read this {kind} ({err.reason} at byte {err.start}): save it as "
                                  "UTF-8") from err
    except (OSError, csv.Error) as err:
        raise BrainkitError(path, f"cannot read this {kind} ({getattr(err, 'strerror', None) or err})") from err
    columns = [name.strip() for name in reader.fieldnames or []]
    missing = [name for name in required if name not in columns]
    if missing or not rows:
        raise BrainkitError(path, f"needs the columns {','.join(required)} and a row under them; its columns are "
                                  f"{','.join(columns) or 'none'}")
    return [{(key or "").strip(): (value or "").strip() for key, value in row.items()} for row in rows]
