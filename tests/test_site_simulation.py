"""The site simulation's parts on real pictures: a fold model exported as the product runs it, cases read by the
product's reader, draws that commission through the product's judge, and the figures' summary."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from commissioning.cases import Row, read_cases
from core.settings import DEFAULT_MODEL
from inference.analyzer import Analyzer
from inference.model import HaemorrhageModel, ModelCard
from inference.preprocess import grey_from_image, prepare_batch
from training.data import read_head_ct_labels
from training.network import checkpoint_path, pretrained_network
from training.site_simulation import (
    FoldModel, _load_cases, _save_cases, bleeding_count, card_section, commission_draw, export_fold_model, summarise,
    table,
)

PER_CLASS = 8


@pytest.fixture(scope="module")
def shipped() -> FoldModel:
    return FoldModel(DEFAULT_MODEL, ModelCard.beside(DEFAULT_MODEL))


@pytest.fixture(scope="module")
def picture_rows(head_ct_dir: Path) -> list[Row]:
    labels = read_head_ct_labels(head_ct_dir)
    chosen = [i for i in labels if labels[i]][:PER_CLASS] + [i for i in labels if not labels[i]][:PER_CLASS]
    return [Row(0, head_ct_dir / "images" / f"{i}.png", labels[i], f"head-ct/{i}") for i in chosen]


@pytest.fixture(scope="module")
def cases(picture_rows: list[Row], shipped: FoldModel):
    found, left_out = read_cases(picture_rows, Analyzer(shipped.path, threads=1))
    assert left_out == [] and len(found) == 2 * PER_CLASS
    return found


@pytest.mark.parametrize(("n", "share", "expected"), [
    (5, 0.43, 2), (5, 0.9, 3), (10, 0.43, 5), (10, 0.9, 5), (20, 0.43, 9), (20, 0.5, 10), (20, 0.9, 15),
])
def test_draws_hold_the_sites_share_of_bleeding_patients_but_the_products_minimum_of_each(
    n: int, share: float, expected: int
) -> None:
    assert bleeding_count(n, share) == expected


def test_cases_kept_on_disk_come_back_the_same(cases, tmp_path: Path) -> None:
    _save_cases(tmp_path / "cases.npz", cases)
    again = _load_cases(tmp_path / "cases.npz")
    assert [(case.group, case.label) for case in again] == [(case.group, case.label) for case in cases]
    assert all(np.array_equal(a.features, b.features) and np.array_equal(a.shipped, b.shipped)
               for a, b in zip(again, cases, strict=True))


def test_a_draw_commissions_on_its_patients_and_is_judged_on_the_others(cases, shipped: FoldModel) -> None:
    refused = commission_draw(cases, shipped, 5, np.random.default_rng(1), elsewhere=cases[:4])
    assert refused["outcome"] == "refused: too few cases" and refused["printed_candidate"] is None
    assert (refused["bleeding_patients"], refused["normal_patients"], refused["test_patients"]) == (2, 3, 11)
    assert refused["test"]["in_use"] == refused["test"]["shipped"]
    assert set(refused["test"]) == {"shipped", "candidate", "in_use", "shipped_elsewhere", "candidate_elsewhere"}
    judged = commission_draw(cases, shipped, 10, np.random.default_rng(1))
    assert judged["outcome"] in ("adopted", "not adopted") and judged["printed_candidate"]["cases"] == 10
    assert (judged["bleeding_patients"], judged["test_patients"], judged["test_cases"]) == (5, 6, 6)
    in_use = "candidate" if judged["outcome"] == "adopted" else "shipped"
    assert judged["test"]["in_use"] == judged["test"][in_use]
    rest = [case for case in cases if case.group not in judged["patients"]]
    flagged = [case.shipped[0] >= shipped.card.threshold for case in rest]
    assert len(rest) == 6 and judged["test"]["shipped"]["alerts_per_100"] == pytest.approx(100 * np.mean(flagged))


def test_the_summary_gives_each_site_and_size_one_row(cases, shipped: FoldModel) -> None:
    draws = [{"site": "head-ct pictures", "fold": 0, "draw": draw}
             | commission_draw(cases, shipped, 5, np.random.default_rng(draw)) for draw in range(3)]
    (row,) = summarise(draws)
    assert (row["site"], row["n"], row["draws"]) == ("head-ct pictures", 5, 3)
    assert row["outcomes"] == {"adopted": 0, "not adopted": 0, "refused: too few cases": 3}
    assert set(row["test"]) == {"shipped", "candidate", "in_use"}
    assert row["test"]["in_use"] == row["test"]["shipped"] and "when_adopted" not in row
    assert table([row]).splitlines()[2].startswith("| head-ct pictures | 5 | 0 / 0 / 3 | 11 |")
    result = {"method": "", "command": "", "machine": "", "minutes": 0.1, "folds_trained": 0,
              "sensitivity_target": 0.95, "summary": [row]}
    (card_row,) = card_section(result)["simulation"]["summary"]
    shipped_auc = row["test"]["shipped"]["auc"]
    assert card_row["shipped"]["auc"] == f"{shipped_auc['median']:.3f} ({shipped_auc['p10']:.3f}-{shipped_auc['p90']:.3f})"
    assert set(card_row) == {"site", "n", "draws", "outcomes", "test_patients", "shipped", "in_use"}


def test_a_fold_model_runs_with_the_shipped_operating_point_and_its_own_head(
    head_ct_dir: Path, tmp_path: Path
) -> None:
    net = pretrained_network(checkpoint_path(), outputs=6).eval()
    shipped_card = json.loads(DEFAULT_MODEL.with_suffix(".json").read_text())
    model = export_fold_model(net, shipped_card, tmp_path, "fold 1/2")
    assert model.card.operating_point == ModelCard.beside(DEFAULT_MODEL).operating_point
    assert model.card.version == "2.6.0 (fold 1/2)" and model.recipe.model_sha256 == model.card.sha256
    greys = [grey_from_image(Image.open(path)) for path in sorted((head_ct_dir / "images").glob("*.png"))[:3]]
    batch, _ = prepare_batch(greys)
    prediction = HaemorrhageModel(model.path).predict(batch)
    np.testing.assert_allclose(model.card.head.probability(prediction.features), prediction.probability, atol=1e-6)
