"""The shipped model and its card agree: same file, same inputs and outputs, usable operating point."""

from __future__ import annotations

import json
from pathlib import Path

import onnxruntime
import pytest

from inference.model import file_sha256
from inference.preprocess import INPUT_SIZE

MODELS = Path(__file__).resolve().parents[1] / "models"


@pytest.fixture(scope="module")
def card() -> dict:
    return json.loads((MODELS / "hemowatch-ich.json").read_text())


def test_card_names_the_shipped_file_by_its_checksum(card: dict) -> None:
    assert card["name"] == "hemowatch-ich"
    assert card["sha256"] == file_sha256(MODELS / card["file"])


def test_declared_input_and_outputs_match_the_graph(card: dict) -> None:
    session = onnxruntime.InferenceSession(str(MODELS / card["file"]), providers=["CPUExecutionProvider"])
    (image,) = session.get_inputs()
    assert image.name == card["input"]["name"] == "image"
    assert image.type == "tensor(float)"
    assert image.shape[1:] == card["input"]["shape"][1:] == [3, INPUT_SIZE, INPUT_SIZE]
    assert card["input"]["size"] == INPUT_SIZE
    assert [output.name for output in session.get_outputs()] == list(card["outputs"]) == ["probability", "cam"]
    probability, cam = session.get_outputs()
    assert len(probability.shape) == 1 and len(cam.shape) == 3
    assert cam.shape[1:] == card["outputs"]["cam"]["shape"][1:]


def test_operating_point_and_evidence_are_recorded(card: dict) -> None:
    assert 0.0 < card["threshold"] < 1.0
    assert card["calibration"]["method"] == "platt"
    assert {"slope", "intercept"} <= set(card["calibration"])
    validation = card["cross_validation"]
    assert validation["folds"] == len(validation["per_fold"]) == 5
    assert validation["slices"] == card["training_data"]["slices"]
    assert card["input"]["window"] == {"center": 40, "width": 80}
    assert card["pretrained_weights"]["licence"] == "Apache-2.0"
    assert card["reproduce"].startswith("python -m training")
