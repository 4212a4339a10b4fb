"""The shipped model and its card agree: same files, same inputs and outputs, operating points and the
cross-validation evidence behind them; the 8-bit model agrees with its float32 original."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime
import pytest

from inference.model import file_sha256
from inference.preprocess import INPUT_SIZE
from inference.study import AGGREGATIONS
from training.ct_ich import HAEMORRHAGE_TYPES

MODELS = Path(__file__).resolve().parents[1] / "models"


@pytest.fixture(scope="module")
def card() -> dict:
    return json.loads((MODELS / "hemowatch-ich.json").read_text())


def _session(path: Path) -> onnxruntime.InferenceSession:
    return onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def test_card_names_the_shipped_file_and_both_variants_by_their_checksums(card: dict) -> None:
    assert card["name"] == "hemowatch-ich" and card["file"] == "hemowatch-ich.onnx"
    assert card["sha256"] == file_sha256(MODELS / card["file"])
    assert set(card["variants"]) == {"float32", "int8"}
    for variant in card["variants"].values():
        assert variant["sha256"] == file_sha256(MODELS / variant["file"])
    assert card["variants"][card["variant"]]["file"] == card["file"]


def test_no_variant_pads_outside_its_convolutions(card: dict) -> None:
    onnx = pytest.importorskip("onnx", reason="needs onnx (the train extra)")
    for variant in card["variants"].values():
        graph = onnx.load(str(MODELS / variant["file"])).graph
        assert "Pad" not in {node.op_type for node in graph.node}  # padding lives in the convolutions


def test_declared_input_and_outputs_match_the_graph(card: dict) -> None:
    session = _session(MODELS / card["file"])
    (image,) = session.get_inputs()
    assert image.name == card["input"]["name"] == "image"
    assert image.type == "tensor(float)"
    assert image.shape[1:] == card["input"]["shape"][1:] == [3, INPUT_SIZE, INPUT_SIZE]
    names = ["probability", "cam", "types", "features"]
    assert [output.name for output in session.get_outputs()] == list(card["outputs"]) == names
    probability, cam, types, features = session.get_outputs()
    assert len(probability.shape) == 1 and cam.shape[1:] == card["outputs"]["cam"]["shape"][1:]
    assert types.shape[1] == len(card["outputs"]["types"]["names"]) == len(HAEMORRHAGE_TYPES)
    assert features.type == "tensor(float)" and features.shape[1:] == card["outputs"]["features"]["shape"][1:] == [1280]
    assert len(card["outputs"]["features"]["head"]["weights"]) == 1280


def test_operating_points_and_evidence_are_recorded(card: dict) -> None:
    assert 0.0 < card["threshold"] < 1.0 and card["calibration"]["method"] == "platt"
    study = card["study"]
    assert study["aggregation"] in AGGREGATIONS and 0.0 < study["threshold"] < 1.0
    assert {"slope", "intercept"} <= set(study["calibration"])
    validation = card["cross_validation"]
    assert validation["split"].startswith("by patient")
    studies = validation["studies_through_dicom"]
    assert len(studies["per_fold"]) == validation["folds"] == 5
    assert studies["aggregation"] == study["aggregation"]
    assert studies["aggregation_auc"][study["aggregation"]] == max(studies["aggregation_auc"].values())
    assert studies["pooled"]["sensitivity"] >= 0.95
    shown = card["types"]["shown"]
    assert all(validation["types"][name]["auc_among_haemorrhage_slices"] >= 0.8 for name in shown)
    assert card["input"]["window"] == {"center": 35, "width": 80}


def test_every_training_source_is_named_with_its_licence(card: dict) -> None:
    sources = {source["name"].split(":")[0]: source for source in card["training_data"]}
    assert sources["CT-ICH"]["licence"] == "CC BY 4.0" and "10.13026/w8q8-ky94" in sources["CT-ICH"]["citation"]
    assert "Head CT - hemorrhage" in sources
    assert card["pretrained_weights"]["licence"] == "Apache-2.0"
    assert card["reproduce"].startswith("python -m training")


def test_the_8_bit_model_agrees_with_float32_on_real_slices(card: dict, real_slices: np.ndarray) -> None:
    outputs = {
        name: _session(MODELS / variant["file"]).run(None, {"image": real_slices})
        for name, variant in card["variants"].items()
    }
    float_p, int8_p = outputs["float32"][0], outputs["int8"][0]
    # Compared in log-odds, the scale that calibration and study aggregation work on (a fixed step in probability
    # means little near 0.5 and a great deal near 0 or 1), between 1% and 99%: beyond, the 8-bit output saturates
    # (its range is calibrated on training slices) and no verdict turns on the difference.
    float_odds, int8_odds = (np.log(p / (1 - p)) for p in (np.clip(float_p, 0.01, 0.99), np.clip(int8_p, 0.01, 0.99)))
    difference = np.abs(float_odds - int8_odds)
    assert difference.mean() < 0.3 and difference.max() < 1.25
    assert np.corrcoef(float_p, int8_p)[0, 1] > 0.99
    assert np.corrcoef(outputs["float32"][1].ravel(), outputs["int8"][1].ravel())[0, 1] > 0.98  # the heat-maps
    threshold = card["threshold"]
    assert np.mean((float_p >= threshold) == (int8_p >= threshold)) >= 0.9
