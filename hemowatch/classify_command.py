"""`hemowatch classify`: analyse scans from the command line, as a table or as JSON lines."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any, TextIO

from core.settings import Settings
from hemowatch.builders import analyzer_from_settings
from inference.errors import InputError

log = logging.getLogger(__name__)

VERDICT_WORDS = {
    "hemorrhage": "haemorrhage suspected",
    "no_hemorrhage": "no haemorrhage suspected",
    "not_assessable": "not assessable",
}
_COLUMNS = ("input", "series", "verdict", "probability", "top slice", "assessable", "time", "note")


def run_classify(args: argparse.Namespace, settings: Settings) -> int:
    """Analyse every path; 0 when all could be read, 1 when any failed, 2 for a usage error."""
    if args.threshold is not None and not 0.0 <= args.threshold <= 1.0:
        print("hemowatch classify: --threshold must be between 0 and 1", file=sys.stderr)
        return 2
    model_path = args.model or settings.hemowatch_model
    if not model_path.is_file() or not model_path.with_suffix(".json").is_file():
        print(f"hemowatch classify: model or its card not found: {model_path}", file=sys.stderr)
        return 2
    analyzer = analyzer_from_settings(settings, model_path=model_path, threshold=args.threshold)
    if args.overlay_dir:
        args.overlay_dir.mkdir(parents=True, exist_ok=True)
    progress = _ProgressBar(len(args.paths)) if len(args.paths) > 1 and sys.stderr.isatty() else None
    rows: list[dict[str, Any]] = []
    failed = False
    for position, path in enumerate(args.paths, start=1):
        if progress:
            progress.show(path)
        try:
            results = analyzer.analyze_path(path)
        except InputError as error:
            failed = True
            rows.append({"input": str(path), "error": str(error)})
        except Exception:  # a fault on one input must not stop the others
            log.exception("analysis of input %d failed", position)
            failed = True
            rows.append({"input": str(path), "error": "Unexpected error while analysing this input."})
        else:
            for number, result in enumerate(results, start=1):
                row = result.to_json_dict(str(path))
                if args.overlay_dir and result.overlay_png:
                    suffix = f"-{number}" if len(results) > 1 else ""
                    overlay = args.overlay_dir / f"{path.stem or path.name}{suffix}.png"
                    overlay.write_bytes(result.overlay_png)
                    row["overlay"] = str(overlay)
                rows.append(row)
        if args.json:
            for row in rows:
                print(json.dumps(row), flush=True)
            rows.clear()
    if progress:
        progress.done()
    if not args.json:
        _print_table(rows, sys.stdout)
    return 1 if failed else 0


def _print_table(rows: list[dict[str, Any]], out: TextIO) -> None:
    lines = [dict(zip(_COLUMNS, _COLUMNS, strict=True)), *(_cells(row) for row in rows)]  # heading first
    widths = [max(len(line[column]) for line in lines) for column in _COLUMNS]
    for line in lines:
        print("  ".join(line[column].ljust(width) for column, width in zip(_COLUMNS, widths, strict=True)).rstrip(),
              file=out)


def _cells(row: dict[str, Any]) -> dict[str, str]:
    if "error" in row:
        return {column: "" for column in _COLUMNS} | {"input": row["input"], "verdict": "error", "note": row["error"]}
    top = row["top_slice"]
    note = row["reason"] or "; ".join(row["warnings"])
    return {
        "input": row["input"],
        "series": row["series"],
        "verdict": VERDICT_WORDS[row["verdict"]] + (f" ({row['suspected_type']})" if row["suspected_type"] else ""),
        "probability": "-" if row["probability"] is None else f"{row['probability']:.2f} (≥{row['threshold']:.2f})",
        "top slice": "-" if top is None else f"{top['index']} of {row['n_slices']}",
        "assessable": f"{row['n_assessable']}/{row['n_slices']}",
        "time": f"{row['elapsed_ms']:.0f} ms",
        "note": note,
    }


class _ProgressBar:
    """A one-line progress bar on stderr, for a terminal."""

    WIDTH = 30

    def __init__(self, total: int) -> None:
        self.total = total
        self.done_count = 0

    def show(self, path: Path) -> None:
        filled = self.WIDTH * self.done_count // self.total
        bar = "#" * filled + "." * (self.WIDTH - filled)
        sys.stderr.write(f"\r[{bar}] {self.done_count}/{self.total} {path.name[:40]:<40}")
        sys.stderr.flush()
        self.done_count += 1

    def done(self) -> None:
        sys.stderr.write(f"\r[{'#' * self.WIDTH}] {self.total}/{self.total}{' ' * 41}\n")
        sys.stderr.flush()
