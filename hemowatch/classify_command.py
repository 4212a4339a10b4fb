"""`hemowatch classify`: analyse scans from the command line, as a table or as JSON lines."""

from __future__ import annotations

import argparse
import json
import logging
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.settings import ScanSettings
from hemowatch.builders import analyzer_from_settings, site_profile_from_settings
from inference.analyzer import Analyzer, Judging
from inference.errors import InputError
from inference.percent import percent
from inference.result import StudyResult

log = logging.getLogger(__name__)

Row = tuple[dict[str, Any], StudyResult | None]
"""One printed row: the JSON object, and the result it came from (None for an input that failed)."""

VERDICT_WORDS = {
    "hemorrhage": "haemorrhage suspected",
    "no_hemorrhage": "no haemorrhage suspected",
    "not_assessable": "not assessable",
}
_COLUMNS = ("input", "series", "verdict", "probability", "top slice", "assessable", "time", "note")


PICTURE_SUFFIXES = (".png", ".jpg", ".jpeg")
# Widths the table is printed with, row by row as each input finishes (so nothing is lost to Ctrl-C): wide
# enough for the usual cells; a longer cell pushes the rest of its row along.
_WIDTHS = {"series": 24, "verdict": 24, "probability": 16, "top slice": 9, "assessable": 10, "time": 7}


def run_classify(args: argparse.Namespace, settings: ScanSettings) -> int:
    """Analyse every path; 0 when all could be read, 1 when any failed, 2 for a usage error, 130 on Ctrl-C.

    Each result is printed as soon as it is ready, so an interrupted batch keeps what it printed."""
    if args.threshold is not None and not 0.0 <= args.threshold <= 1.0:
        return _usage("--threshold must be between 0 and 1")
    model_path = args.model or settings.hemowatch_model
    if not model_path.is_file() or not model_path.with_suffix(".json").is_file():
        return _usage(f"model or its card not found: {model_path}")
    if args.overlay_dir is not None:
        if args.overlay_dir.exists() and not args.overlay_dir.is_dir():
            return _usage(f"--overlay-dir names a file, not a folder: {args.overlay_dir}")
        try:
            args.overlay_dir.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            return _usage(f"cannot make the --overlay-dir folder {args.overlay_dir}: {error.strerror}")
    inputs = [study for path in args.paths for study in _studies(path, args.study)]
    columns = _COLUMNS[:-1] + ("overlay", "note") if args.overlay_dir else _COLUMNS
    out = _JsonLines() if args.json else _Table(columns, max(len(str(study.path)) for study in inputs))
    progress = _ProgressBar(len(inputs)) if len(inputs) > 1 and sys.stderr.isatty() else None
    overlays = _OverlayNames(args.overlay_dir) if args.overlay_dir else None
    failed = False
    finished = 0
    try:
        analyzer = analyzer_from_settings(settings, model_path=model_path, threshold=args.threshold)
        judging = Judging(site_profile_from_settings(settings, analyzer.model_info.sha256))
        print(f"hemowatch classify: {_site_note(judging)}", file=sys.stderr)
        for position, study in enumerate(inputs, start=1):
            if progress:
                progress.show(study.path)
            rows, ok = _classify(analyzer, study, position, overlays, judging)
            failed |= not ok
            if progress:
                progress.clear()
            for row, result in rows:
                out.print(row, result)
            finished += 1
    except KeyboardInterrupt:
        if progress:
            progress.clear()
        print(f"hemowatch classify: interrupted; {finished} of {len(inputs)} inputs done", file=sys.stderr)
        return 130
    if progress:
        progress.done()
    if overlays is not None and overlays.written:
        print(f"hemowatch classify: {overlays.written} heat-map overlay{'s' * (overlays.written > 1)} written to "
              f"{args.overlay_dir}", file=sys.stderr)
    return 1 if failed else 0


def _site_note(judging: Judging) -> str:
    if judging.profile is None:
        return "no site profile: the model has not been validated at this site (see `hemowatch site commission`)"
    return f"verdicts calibrated for this hospital on {judging.profile.n_cases} cases (site profile {judging.profile.id})"


def _usage(message: str) -> int:
    print(f"hemowatch classify: {message}", file=sys.stderr)
    return 2


@dataclass(frozen=True)
class _Study:
    """One input: a path `analyze_path` reads, or a folder of `pictures` of one scan, the lowest slice first."""

    path: Path
    pictures: list[Path] | None = None


def _studies(path: Path, pictures_as_study: bool) -> list[_Study]:
    """One study per path, except a folder of pictures (and no DICOM): each picture is a study of its own, or
    with `pictures_as_study` all of them one study, ordered by name."""
    if not path.is_dir():
        return [_Study(path)]
    files = sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith("."))
    pictures = [p for p in files if p.suffix.lower() in PICTURE_SUFFIXES]
    if pictures and not any(_starts_like_dicom(p) for p in files if p not in pictures):
        if pictures_as_study:
            return [_Study(path, sorted(pictures, key=lambda p: _name_order(p.relative_to(path))))]
        return [_Study(picture) for picture in pictures]
    return [_Study(path)]


def _name_order(path: Path) -> list[str | int]:
    """Sort key of a file name with the numbers in it compared as numbers: slice 2 before slice 10."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", path.as_posix())]


def _starts_like_dicom(path: Path) -> bool:
    with path.open("rb") as file:
        return file.read(132)[128:132] == b"DICM" or path.suffix.lower() in (".dcm", ".dicom")


def _classify(
    analyzer: Analyzer, study: _Study, position: int, overlays: _OverlayNames | None, judging: Judging
) -> tuple[list[Row], bool]:
    """The rows of one input (one per series, or its error) and whether it could be read."""
    path = study.path
    try:
        if study.pictures is None:
            results = analyzer.analyze_path(path, judging=judging)
        else:
            results = analyzer.analyze_pictures(study.pictures, judging=judging)
    except InputError as error:
        return [({"input": str(path), "error": str(error)}, None)], False
    except Exception:  # a fault on one input must not stop the others
        log.exception("analysis of input %d failed", position)
        return [({"input": str(path), "error": "Unexpected error while analysing this input."}, None)], False
    rows = []
    for number, result in enumerate(results, start=1):
        row = result.to_json_dict(str(path))
        if overlays is not None and result.overlay_png:
            row["overlay"] = str(overlays.write(path, number if len(results) > 1 else None, result.overlay_png))
        rows.append((row, result))
    return rows, True


class _OverlayNames:
    """Overlay files named after their input; inputs sharing a name (a/scan.png, b/scan.png) get -2, -3, …"""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.written = 0
        self._taken: set[str] = set()

    def write(self, path: Path, series: int | None, png: bytes) -> Path:
        base = (path.stem or path.name) + (f"-{series}" if series is not None else "")
        name, copy = base, 1
        while name in self._taken:
            copy += 1
            name = f"{base}-{copy}"
        self._taken.add(name)
        target = self.folder / f"{name}.png"
        target.write_bytes(png)
        self.written += 1
        return target


class _JsonLines:
    def print(self, row: dict[str, Any], _: StudyResult | None) -> None:
        print(json.dumps(row), flush=True)


class _Table:
    """The table, a row at a time: the heading first, then each row as its input finishes."""

    def __init__(self, columns: tuple[str, ...], input_width: int) -> None:
        self._columns = columns
        self._widths = {"input": input_width, "overlay": 12, **_WIDTHS}
        self._heading_shown = False

    def print(self, row: dict[str, Any], result: StudyResult | None) -> None:
        if not self._heading_shown:
            self._line(dict(zip(self._columns, self._columns, strict=True)))
            self._heading_shown = True
        self._line(_cells(row, result))

    def _line(self, cells: dict[str, str]) -> None:
        print("  ".join(cells.get(column, "").ljust(self._widths.get(column, 0)) for column in self._columns).rstrip(),
              flush=True)


def _cells(row: dict[str, Any], result: StudyResult | None) -> dict[str, str]:
    """The table's cells; the probability as people see it elsewhere, from the result's unrounded figures."""
    if result is None:
        return {"input": row["input"], "verdict": "error", "note": row["error"]}
    top = row["top_slice"]
    note = row["reason"] or "; ".join(row["warnings"])
    shown = "-" if result.probability is None else f"{percent(result.probability)} (≥{percent(result.threshold)})"
    return {
        "input": row["input"],
        "series": row["series"],
        "verdict": VERDICT_WORDS[row["verdict"]] + (f" ({row['suspected_type']})" if row["suspected_type"] else ""),
        "probability": shown,
        "top slice": "-" if top is None else f"{top['index']} of {row['n_slices']}",
        "assessable": f"{row['n_assessable']}/{row['n_slices']}",
        "time": f"{row['elapsed_ms']:.0f} ms",
        "overlay": Path(row["overlay"]).name if row.get("overlay") else "-",
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

    def clear(self) -> None:
        """Wipe the bar so a printed row does not land inside it; the next `show` draws it again."""
        sys.stderr.write("\r" + " " * (self.WIDTH + 50) + "\r")
        sys.stderr.flush()

    def done(self) -> None:
        sys.stderr.write(f"\r[{'#' * self.WIDTH}] {self.total}/{self.total}{' ' * 41}\n")
        sys.stderr.flush()
