"""`hemowatch site`: commissioning on real pictures, the profile that `classify` then uses, the history, rollback
and switching off, and every kind of bad input named by its row with nothing adopted."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from stores import store_environment

from commissioning import adoption
from commissioning.fitting import Case, Recipe
from commissioning.head import Head
from commissioning.plot import calibration_points, roc_points
from core.settings import DEFAULT_MODEL
from hemowatch.cli import main
from inference.model import ModelCard
from store import open_database, site_profiles


@pytest.fixture
def _database(database: Path | str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path | str:
    """The test's store, where the commands `main` runs find it."""
    for name, value in store_environment(database, tmp_path).items():
        monkeypatch.setenv(name, value)
    return database


def _write_csv(path: Path, rows: list[tuple[str, str]]) -> Path:
    with path.open("w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["path", "hemorrhage"])
        writer.writerows(rows)
    return path


@pytest.fixture(scope="module")
def head_ct_rows(head_ct_dir: Path) -> list[tuple[str, str]]:
    with (head_ct_dir / "labels.csv").open() as file:
        return [(str(head_ct_dir / "images" / f"{row['id']}.png"), row["hemorrhage"]) for row in csv.DictReader(file)]


def _classify(capsys: pytest.CaptureFixture[str], path: str) -> dict:
    capsys.readouterr()
    assert main(["classify", "--json", path]) == 0
    captured = capsys.readouterr()
    return json.loads(captured.out) | {"stderr": captured.err}


def test_commissioning_adopts_a_profile_that_classify_then_names_until_rolled_back(
    tmp_path: Path, head_ct_rows: list[tuple[str, str]], capsys: pytest.CaptureFixture[str], _database: Path | str
) -> None:
    picture = head_ct_rows[0][0]
    before = _classify(capsys, picture)
    assert before["site_profile"] is None
    assert "the model has not been validated at this site" in before["stderr"]

    assert main(["site", "commission", str(_write_csv(tmp_path / "cases.csv", head_ct_rows))]) == 0
    out = capsys.readouterr().out
    assert "shipped model" in out and "candidate profile" in out
    assert "Out of fold on 160 cases (80 with haemorrhage), folds grouped by patient." in out
    assert "Adopted site profile 1" in out

    after = _classify(capsys, picture)
    assert after["site_profile"] == 1
    assert "verdicts calibrated for this hospital on 160 cases (site profile 1)" in after["stderr"]
    db = open_database(_database)
    stored = site_profiles.active_profile(db)
    assert (stored.id, stored.n_cases, stored.n_bleeding, stored.sensitivity_target) == (1, 160, 80, 0.95)
    assert set(stored.figures) == {"shipped", "candidate", "reason", "out_of_fold"}
    assert len(stored.figures["out_of_fold"]["probability"]) == 160
    assert stored.figures["candidate"]["sensitivity"] >= 0.9

    assert main(["site", "report", "--plot", str(tmp_path / "report.png")]) == 0
    report = capsys.readouterr().out
    assert report.startswith("Site profile 1, adopted ")
    assert "Since adoption: no doctor's read yet." in report
    assert f"ROC and calibration written to {tmp_path / 'report.png'}" in report
    with Image.open(tmp_path / "report.png") as plot:
        assert plot.format == "PNG" and plot.size == (1170, 650)

    assert main(["site", "off"]) == 0
    assert _classify(capsys, picture)["site_profile"] is None
    assert main(["site", "rollback"]) == 0
    assert "site profile 1 (160 cases)" in capsys.readouterr().out
    assert _classify(capsys, picture)["site_profile"] == 1
    assert main(["site", "history"]) == 0
    history = capsys.readouterr().out.splitlines()
    assert [line.split("  ")[1].strip() for line in history[1:]] == ["adopted", "off", "rolled back"]


def test_each_bad_row_is_named_and_nothing_is_adopted(
    tmp_path: Path, head_ct_rows: list[tuple[str, str]], capsys: pytest.CaptureFixture[str], _database: Path | str
) -> None:
    not_a_picture = tmp_path / "notes.png"
    not_a_picture.write_text("not a scan")
    rows = [*head_ct_rows[:3], ("missing.png", "1"), (head_ct_rows[0][0], "0"), (head_ct_rows[5][0], "yes")]
    assert main(["site", "commission", str(_write_csv(tmp_path / "bad.csv", rows))]) == 2
    err = capsys.readouterr().err
    assert err.splitlines() == [
        f"hemowatch site commission: 3 problems in {tmp_path / 'bad.csv'}:",
        "  row 5: missing.png does not exist",
        f"  row 6: {head_ct_rows[0][0]} is listed again (first on row 2)",
        "  row 7: hemorrhage must be 0 or 1, not 'yes'",
    ]
    rows = [*head_ct_rows[:12], (str(not_a_picture), "0")]
    assert main(["site", "commission", str(_write_csv(tmp_path / "unreadable.csv", rows))]) == 2
    assert "  row 14: notes.png: HemoWatch reads PNG, JPEG, DICOM" in capsys.readouterr().err
    bleeding_only = [row for row in head_ct_rows if row[1] == "1"][:20]
    assert main(["site", "commission", str(_write_csv(tmp_path / "one-class.csv", bleeding_only))]) == 2
    assert ("Too few cases: 20 patients with haemorrhage and 0 without; at least 5 of each are needed, so add 5 "
            "more patients with no-haemorrhage cases.") in capsys.readouterr().err
    assert main(["site", "commission", str(tmp_path / "absent.csv")]) == 2
    assert "cannot read it (No such file or directory)" in capsys.readouterr().err
    db = open_database(_database)
    assert site_profiles.profiles(db) == [] and site_profiles.changes(db) == []
    assert db.execute("select count(*) from site_cases").fetchone() == (0,)


def test_a_commission_that_fails_while_adopting_leaves_nothing_behind(
    store_location: Path | str, monkeypatch: pytest.MonkeyPatch
) -> None:
    card = ModelCard.beside(DEFAULT_MODEL)
    recipe = Recipe(Head(card.head.weights.astype(float), card.head.bias), card.sha256, "max", 0.95)
    rng = np.random.default_rng(0)
    cases = [Case(f"p{i}", i % 2, rng.normal(size=(1, len(card.head.weights))) + i % 2, np.array([0.5]))
             for i in range(20)]
    db = open_database(store_location)

    def disk_full(*args: object, **kwargs: object) -> int:
        raise OSError("disk full")

    monkeypatch.setattr(site_profiles, "adopt_profile", disk_full)
    with pytest.raises(OSError):
        adoption.commission(db, cases, recipe, card.operating_point, model_version="x", by="test", now=1.0)
    assert db.execute("select count(*) from site_cases").fetchone() == (0,)
    assert site_profiles.active_profile(db) is None


def test_rollback_returns_to_what_was_in_use_before_the_last_change(store_location: Path | str) -> None:
    db = open_database(store_location)

    def adopt(now: float) -> int:
        return site_profiles.adopt_profile(
            db, profile_json="{}", figures={}, case_ids=[], model_sha256="m", model_version="v", n_patients=0,
            n_bleeding=0, sensitivity_target=0.95, by="test", now=now)

    assert site_profiles.roll_back(db, "test", 0.0) is False
    first, second = adopt(1.0), adopt(2.0)
    assert site_profiles.active_profile(db).id == second
    assert site_profiles.roll_back(db, "test", 3.0).id == first
    assert site_profiles.switch_off(db, "test", 4.0) and site_profiles.active_profile(db) is None
    assert not site_profiles.switch_off(db, "test", 5.0)
    assert site_profiles.roll_back(db, "test", 6.0).id == first
    assert [change.action for change in site_profiles.changes(db)] == [
        "adopted", "adopted", "rolled back", "off", "rolled back"]


def test_the_roc_and_calibration_points_follow_the_cases() -> None:
    probabilities = np.array([0.9, 0.8, 0.3, 0.2, 0.05])
    labels = np.array([1, 0, 1, 0, 0])
    fpr, tpr = roc_points(probabilities, labels)
    assert list(zip(fpr, tpr)) == [(0, 0), (0, 0.5), (1 / 3, 0.5), (1 / 3, 1), (2 / 3, 1), (1, 1)]
    assert calibration_points(probabilities, labels) == [
        (0.05, 0.0, 1), (0.2, 0.0, 1), (0.3, 1.0, 1), (0.8, 0.0, 1), (0.9, 1.0, 1)]
