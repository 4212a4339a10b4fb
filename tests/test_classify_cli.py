"""`hemowatch classify`: the JSON-lines contract, the table, overlays and exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image
from test_inference_dicom import dicom_bytes, head_phantom, unknown_modality_vr

from core.settings import DEFAULT_MODEL, PROJECT_ROOT
from hemowatch.cli import main
from inference.model import ModelCard

RESULT_KEYS = {
    "input", "series", "verdict", "probability", "threshold", "n_slices", "n_assessable", "top_slice",
    "suspected_type", "reason", "warnings", "model", "site_profile", "elapsed_ms",
}  # fmt: skip


@pytest.fixture(autouse=True)
def _model() -> None:
    if not DEFAULT_MODEL.is_file():
        pytest.skip(f"the model is not at {DEFAULT_MODEL} (python -m training builds it)")


@pytest.fixture
def blank_png(tmp_path: Path) -> Path:
    path = tmp_path / "blank.png"
    Image.new("L", (200, 200), 0).save(path)
    return path


def classify_json(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, list[dict]]:
    code = main(["classify", "--json", *args])
    return code, [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def test_json_lines_one_per_input_and_exit_1_when_one_fails(
    capsys: pytest.CaptureFixture[str], head_ct_dir: Path, blank_png: Path, tmp_path: Path
) -> None:
    slice_path = head_ct_dir / "images" / "000.png"
    missing = tmp_path / "missing.zip"
    code, lines = classify_json(capsys, str(slice_path), str(missing), str(blank_png))
    assert code == 1
    assert [line["input"] for line in lines] == [str(slice_path), str(missing), str(blank_png)]
    scored, failed, blank = lines
    assert set(scored) == RESULT_KEYS
    assert scored["verdict"] in ("hemorrhage", "no_hemorrhage")
    assert scored["top_slice"] == {"index": 1, "probability": scored["probability"]}
    assert set(scored["model"]) == {"name", "version", "sha256"}
    assert scored["site_profile"] is None  # no profile in HEMOWATCH_DB
    assert failed == {"input": str(missing), "error": "No such file or folder."}
    assert blank["verdict"] == "not_assessable"
    assert blank["probability"] is None and blank["top_slice"] is None
    assert blank["reason"] == "The picture is blank."


def test_series_folder_threshold_override_and_overlays(
    capsys: pytest.CaptureFixture[str], ge_series_dir: Path, tmp_path: Path
) -> None:
    overlays = tmp_path / "overlays"
    code, (line,) = classify_json(capsys, str(ge_series_dir), "--threshold", "0", "--overlay-dir", str(overlays))
    assert code == 0
    assert line["threshold"] == 0.0 and line["verdict"] == "hemorrhage"
    assert (line["n_slices"], line["series"]) == (28, "series 2 (CT, 28 slices)")
    assert Image.open(line["overlay"]).format == "PNG"
    assert [path.name for path in overlays.iterdir()] == ["ge-head-ct.png"]


def test_table_names_each_input_and_its_verdict(
    capsys: pytest.CaptureFixture[str], head_ct_dir: Path, blank_png: Path
) -> None:
    assert main(["classify", str(head_ct_dir / "images" / "001.png"), str(blank_png)]) == 0
    header, first, second = capsys.readouterr().out.splitlines()
    assert header.split()[:3] == ["input", "series", "verdict"]
    assert "001.png" in first and "suspected" in first
    assert "not assessable" in second and "The picture is blank." in second


def test_the_table_shows_the_figure_people_see_elsewhere_and_json_keeps_the_number(
    capsys: pytest.CaptureFixture[str], head_ct_dir: Path
) -> None:
    """102.png's probability, 0.19496, is 19% in the table as in the chat and on the heat-map (not 0.20); JSON keeps
    four decimals of the probability and the threshold."""
    picture = head_ct_dir / "images" / "102.png"
    assert main(["classify", str(picture)]) == 0
    _, row = capsys.readouterr().out.splitlines()
    assert "  19% (≥15%)  " in row
    _, (line,) = classify_json(capsys, str(picture))
    assert (line["probability"], line["threshold"]) == (0.195, 0.1507)


@pytest.mark.parametrize(
    "args",
    [["classify"], ["classify", "x.png", "--threshold", "1.5"], ["classify", "x.png", "--model", "/nonexistent.onnx"]],
    ids=["no-path", "threshold-out-of-range", "missing-model"],
)
def test_usage_errors_exit_2(args: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    try:
        code = main(args)
    except SystemExit as exit_:
        code = exit_.code
    assert code == 2
    assert capsys.readouterr().err


def test_installed_command_prints_json_and_sets_the_exit_code(head_ct_dir: Path, tmp_path: Path) -> None:
    text_file = tmp_path / "notes.txt"
    text_file.write_text("not a scan")
    run = subprocess.run(
        [sys.executable, "-m", "hemowatch.cli", "classify", "--json", str(head_ct_dir / "images" / "002.png"),
         str(text_file)],
        capture_output=True, text=True, cwd=PROJECT_ROOT, timeout=120,
    )  # fmt: skip
    assert run.returncode == 1
    first, second = (json.loads(line) for line in run.stdout.splitlines())
    assert first["verdict"] in ("hemorrhage", "no_hemorrhage")
    assert "error" in second and "Traceback" not in run.stderr


def test_a_dicom_with_a_corrupt_element_is_named_without_a_traceback(tmp_path: Path) -> None:
    bad = tmp_path / "slice.dcm"
    bad.write_bytes(unknown_modality_vr(dicom_bytes(head_phantom(64))))
    done = subprocess.run([sys.executable, "-m", "hemowatch.cli", "classify", str(bad)],
                          capture_output=True, text=True, cwd=PROJECT_ROOT, timeout=120)
    assert done.returncode == 1
    assert "Modality (0008,0060) is damaged" in done.stdout
    assert "Unexpected error" not in done.stdout and "Traceback" not in done.stderr


def test_overlay_dir_naming_a_file_is_a_usage_error(tmp_path: Path, blank_png: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    a_file = tmp_path / "overlays"
    a_file.write_text("not a folder")
    assert main(["classify", str(blank_png), "--overlay-dir", str(a_file)]) == 2
    assert "names a file" in capsys.readouterr().err


def test_inputs_with_the_same_name_keep_their_own_overlay_and_the_table_says_where(
    tmp_path: Path, head_ct_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for folder, number in (("a", 1), ("b", 2)):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "scan.png").write_bytes((head_ct_dir / "images" / f"{number:03d}.png").read_bytes())
    overlays = tmp_path / "overlays"
    assert main(["classify", str(tmp_path / "a" / "scan.png"), str(tmp_path / "b" / "scan.png"),
                 "--overlay-dir", str(overlays)]) == 0
    captured = capsys.readouterr()
    header, first, second = captured.out.splitlines()
    assert "overlay" in header.split() and "scan.png" in first and "scan-2.png" in second
    assert sorted(path.name for path in overlays.iterdir()) == ["scan-2.png", "scan.png"]
    assert (overlays / "scan.png").read_bytes() != (overlays / "scan-2.png").read_bytes()
    assert f"written to {overlays}" in captured.err


def test_a_folder_of_pictures_is_one_study_per_picture(
    tmp_path: Path, head_ct_dir: Path, blank_png: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "slices"
    folder.mkdir()
    for number in (1, 2):
        (folder / f"{number:03d}.png").write_bytes((head_ct_dir / "images" / f"{number:03d}.png").read_bytes())
    code, lines = classify_json(capsys, str(folder))
    assert code == 0
    assert [Path(line["input"]).name for line in lines] == ["001.png", "002.png"]
    assert all(line["series"] == "picture (PNG)" for line in lines)


def test_with_study_a_folder_of_pictures_is_one_scan_ordered_by_the_numbers_in_its_names(
    tmp_path: Path, ct_ich_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """CT-ICH patient 071's 29 slices (haemorrhage on 19), saved as 1.jpg … 29.jpg: one study, judged with the
    study threshold, its most suspicious slice counted as in the original 01.jpg … 29.jpg."""
    original = ct_ich_dir / "brain" / "071"
    renamed = tmp_path / "071"
    renamed.mkdir()
    for path in original.glob("*.jpg"):
        (renamed / f"{int(path.stem)}.jpg").write_bytes(path.read_bytes())
    code, lines = classify_json(capsys, "--study", str(original), str(renamed))
    assert code == 0
    first, second = lines
    study_threshold = ModelCard.beside(DEFAULT_MODEL).operating_point.study.threshold
    for line in lines:
        assert (line["series"], line["n_slices"], line["verdict"]) == ("pictures (29 slices)", 29, "hemorrhage")
        assert line["threshold"] == round(study_threshold, 4)
    assert second["top_slice"] == first["top_slice"] and second["probability"] == first["probability"]
    assert first["n_assessable"] == 28  # the cap of bone at the top is left out


def test_with_study_a_damaged_picture_is_named(tmp_path: Path, head_ct_dir: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "1.png").write_bytes((head_ct_dir / "images" / "001.png").read_bytes())
    (tmp_path / "2.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    code, (line,) = classify_json(capsys, "--study", str(tmp_path))
    assert code == 1 and line["error"] == "2.png: The PNG file is damaged or incomplete."


def test_a_folder_without_scans_is_refused_in_cli_words(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "notes.txt").write_text("not a scan")
    code, (line,) = classify_json(capsys, str(tmp_path))
    assert code == 1 and line["error"].startswith("No DICOM images were found.")
    assert "Send" not in line["error"]
