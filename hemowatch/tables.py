"""Plain-text tables for the commands' output: one heading line, columns padded to their widest cell."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TextIO


def print_table(columns: Sequence[str], rows: Sequence[dict[str, str]], out: TextIO, *, heading: bool = True) -> None:
    """Print `rows` (each a cell per column name) under the column names, trailing blanks cut."""
    lines = [dict(zip(columns, columns, strict=True))] * heading + list(rows)
    widths = [max(len(line[column]) for line in lines) for column in columns] if lines else []
    for line in lines:
        print("  ".join(line[column].ljust(width) for column, width in zip(columns, widths, strict=True)).rstrip(),
              file=out, flush=True)
