"""The commissioning CSV (`path,hemorrhage[,patient]`) and the cases its rows become.

Every problem is found before anything is fitted, each named by its row, so a file is fixed in one go.
"""

from __future__ import annotations

import csv
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from commissioning.fitting import Case
from inference.analyzer import Judging, ScanAnalyzer
from inference.errors import InputError

REQUIRED = ("path", "hemorrhage")


@dataclass(frozen=True)
class Row:
    number: int  # the line in the file, the header being line 1
    path: Path
    label: int
    group: str


class CasesError(ValueError):
    """Problems with the CSV or its rows, one line each."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


def read_rows(csv_path: Path) -> list[Row]:
    """The rows of the CSV, paths taken relative to the CSV's folder; raises CasesError listing every problem."""
    try:
        with csv_path.open(newline="", encoding="utf-8-sig") as file:
            reader = csv.DictReader(file)
            header = [name.strip() for name in reader.fieldnames or []]
            missing = [name for name in REQUIRED if name not in header]
            if missing:
                raise CasesError([f"{csv_path}: the header must name the columns path,hemorrhage[,patient]; "
                                  f"missing: {', '.join(missing)}"])
            raw = [({key.strip(): (value or "").strip() for key, value in row.items() if key}, reader.line_num)
                   for row in reader]
    except OSError as error:
        raise CasesError([f"{csv_path}: cannot read it ({error.strerror})"]) from error
    except (UnicodeDecodeError, csv.Error) as error:
        raise CasesError([f"{csv_path}: not a readable CSV file ({error})"]) from error
    rows, problems, seen = [], [], {}
    for values, number in raw:
        path = (csv_path.parent / values["path"]).resolve() if values["path"] else None
        label = values["hemorrhage"]
        if path is None:
            problems.append(f"row {number}: the path is empty")
        elif not path.exists():
            problems.append(f"row {number}: {values['path']} does not exist")
        elif path in seen:
            problems.append(f"row {number}: {values['path']} is listed again (first on row {seen[path]})")
        if label not in ("0", "1"):
            problems.append(f"row {number}: hemorrhage must be 0 or 1, not {label!r}")
        if path is not None:
            seen.setdefault(path, number)
        group = values.get("patient") or f"row {number}"
        if not problems:
            rows.append(Row(number, path, int(label), group))
    if problems:
        raise CasesError(problems)
    if not rows:
        raise CasesError([f"{csv_path}: no rows below the header"])
    return rows


def read_cases(
    rows: list[Row], analyzer: ScanAnalyzer, progress: Callable[[int, int, Row], None] | None = None
) -> tuple[list[Case], list[str]]:
    """Each row's pooled features and shipped probabilities, and a note for each row left out because nothing
    in it can be assessed (a picture below the skull base, say: the product gives such inputs no verdict
    either). Raises CasesError naming every row that cannot be read, or holds more than one series."""
    cases, problems, left_out = [], [], []
    for position, row in enumerate(rows, start=1):
        if progress is not None:
            progress(position, len(rows), row)
        try:
            results = analyzer.analyze_path(row.path, judging=Judging(with_features=True))
        except InputError as error:
            problems.append(f"row {row.number}: {row.path.name}: {error}")
            continue
        if len(results) != 1:
            problems.append(f"row {row.number}: {row.path.name} holds {len(results)} series; give one per row")
            continue
        result = results[0]
        if result.slice_features is None or not len(result.slice_features):
            left_out.append(f"row {row.number}: {row.path.name}: {result.reason}")
            continue
        cases.append(Case(row.group, row.label, result.slice_features, result.slice_probabilities))
    if problems:
        raise CasesError(problems)
    return cases, left_out
