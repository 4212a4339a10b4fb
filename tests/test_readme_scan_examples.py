"""The README's `hemowatch classify` examples are what the command prints with the shipped model (times aside), so
their figures cannot drift from the code."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from core.settings import DEFAULT_MODEL, PROJECT_ROOT
from hemowatch.cli import main

SHARED_PREFIX = "../shared/data/"  # the README's paths, from the project folder
PHOTO = "~/Pictures/photo.jpg"


@pytest.fixture(autouse=True)
def _model() -> None:
    if not DEFAULT_MODEL.is_file():
        pytest.skip(f"the model is not at {DEFAULT_MODEL} (python -m training builds it)")


def readme_block_after(marker: str) -> list[str]:
    """The lines of the README's fenced block that holds `marker`, from `marker`'s line to the block's end."""
    text = (PROJECT_ROOT / "README.md").read_text()
    start = text.index(marker)
    return text[start : text.index("```", start)].splitlines()


def cells(row: str) -> list[str]:
    return re.split(r" {2,}", row.strip())


def local(readme_path: str, shared_data: Path, photo: Path) -> str:
    return str(photo) if readme_path == PHOTO else str(shared_data / readme_path.removeprefix(SHARED_PREFIX))


def colour_photo(path: Path) -> Path:
    rows, cols = np.mgrid[:300, :400]
    Image.fromarray(np.stack([rows * 255 / 300, cols * 255 / 400, (rows + cols) % 256], axis=2).astype(np.uint8)).save(
        path
    )
    return path


def test_the_table_example(
    head_ct_dir: Path, ge_series_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    command, heading, *rows = readme_block_after("$ hemowatch classify ")
    shared_data, photo = head_ct_dir.parent, colour_photo(tmp_path / "photo.jpg")
    paths = command.removeprefix("$ hemowatch classify ").split()
    assert main(["classify", *(local(path, shared_data, photo) for path in paths)]) == 0
    printed_heading, *printed = capsys.readouterr().out.splitlines()
    assert cells(heading) == cells(printed_heading)
    time = cells(heading).index("time")
    for shown, actual in zip(rows, printed, strict=True):
        expected, got = cells(shown), cells(actual)
        assert expected[1:time] + expected[time + 1 :] == got[1:time] + got[time + 1 :], shown


def test_the_json_example(head_ct_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (line,) = readme_block_after('{"input": "' + SHARED_PREFIX)
    shown = json.loads(line)
    assert main(["classify", "--json", local(shown["input"], head_ct_dir.parent, Path())]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert set(shown) == set(printed)
    abbreviated = shown["model"].pop("sha256").removesuffix("…")
    assert printed["model"].pop("sha256").startswith(abbreviated)
    for key in ("input", "elapsed_ms"):
        shown.pop(key), printed.pop(key)
    assert shown == printed
