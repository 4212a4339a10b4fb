"""The shipped graphs' `features` output is the pooled vector their final layer reads: the head the card records
turns it into the graph's own `probability`, and it is the average of the map the heat-map weighs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from inference.model import HaemorrhageModel, ModelCard, SliceHead, open_session

MODELS = Path(__file__).resolve().parents[1] / "models"
FEATURES = 1280  # EfficientNet-Lite0's last feature map has this many channels
OTHER_OUTPUTS = ("probability", "cam", "types")


@pytest.fixture(scope="module")
def variants() -> dict[str, Path]:
    card = json.loads((MODELS / "hemowatch-ich.json").read_text())
    return {name: MODELS / variant["file"] for name, variant in card["variants"].items()}


@pytest.fixture(scope="module")
def head() -> SliceHead:
    card = ModelCard.beside(MODELS / "hemowatch-ich.onnx")
    assert card.head is not None
    return card.head


def _run(path: Path, batch: np.ndarray) -> dict[str, np.ndarray]:
    session = open_session(path, threads=2)
    return dict(zip([output.name for output in session.get_outputs()], session.run(None, {"image": batch})))


def _log_odds(probability: np.ndarray) -> np.ndarray:
    clipped = np.clip(probability.astype(np.float64), 0.01, 0.99)
    return np.log(clipped / (1 - clipped))


def test_both_graphs_output_the_pooled_features(variants: dict[str, Path], real_slices: np.ndarray) -> None:
    for name, path in variants.items():
        features = _run(path, real_slices)["features"]
        assert features.shape == (len(real_slices), FEATURES) and features.dtype == np.float32
        assert features.min() >= 0.0 and features.max() <= 6.0  # averages of ReLU6 activations
        if name == "int8":  # the dequantized 8-bit copy the final layer reads: one scale, at most 256 values
            assert len(np.unique(features)) <= 256


def test_the_card_head_turns_float32_features_into_the_graphs_probability(
    head: SliceHead, real_slices: np.ndarray
) -> None:
    prediction = HaemorrhageModel(MODELS / "hemowatch-ich.onnx").predict(real_slices)
    assert prediction.features.shape == (len(real_slices), FEATURES)
    assert prediction.probability.min() < 0.01 and prediction.probability.max() > 0.99  # both ends are checked
    np.testing.assert_allclose(head.probability(prediction.features), prediction.probability, rtol=0, atol=1e-6)
    # The heat-map is the feature map weighted by the same row, so its mean is the logit without the bias.
    np.testing.assert_allclose(
        prediction.cam.mean(axis=(1, 2)), head.logit(prediction.features) - head.bias, rtol=0, atol=1e-5
    )


def test_the_card_head_turns_8_bit_features_into_the_graphs_probability_within_its_rounding(
    head: SliceHead, variants: dict[str, Path], real_slices: np.ndarray
) -> None:
    outputs = _run(variants["int8"], real_slices)
    probability, formula = outputs["probability"], head.probability(outputs["features"])
    # The 8-bit graph rounds the head's weights, its logit (steps of 0.058, 0.039 after calibration) and the
    # calibration itself; measured on these slices: at most 0.034, on average 0.008 in log-odds. Between 1% and
    # 99%, as the 8-bit comparison with float32 does: beyond, the graph's probability saturates (about 0.8% and
    # 99.4%) while the formula's does not.
    difference = np.abs(_log_odds(formula) - _log_odds(probability))
    assert difference.max() < 0.05 and difference.mean() < 0.015
    assert np.mean((probability > 0.01) & (probability < 0.99)) > 0.5  # most slices are inside that range
    np.testing.assert_allclose(outputs["cam"].mean(axis=(1, 2)), head.logit(outputs["features"]) - head.bias,
                               rtol=0, atol=0.01)


def test_adding_the_output_to_a_graph_without_it_gives_the_shipped_graph_and_changes_no_other_output(
    variants: dict[str, Path], real_slices: np.ndarray, tmp_path: Path
) -> None:
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("torch")
    from training.export import add_features_output

    for path in variants.values():
        model = onnx.load(str(path))
        (output,) = [output for output in model.graph.output if output.name == "features"]
        model.graph.output.remove(output)
        for node in model.graph.node:  # the pooled vector under another name, as the exporter leaves it
            node.input[:] = ["pooled" if name == "features" else name for name in node.input]
            node.output[:] = ["pooled" if name == "features" else name for name in node.output]
        without = tmp_path / path.name
        onnx.save(model, str(without))
        before = _run(without, real_slices)
        assert set(before) == set(OTHER_OUTPUTS)

        add_features_output(without)
        assert without.read_bytes() == path.read_bytes()
        after = _run(without, real_slices)
        assert all(np.array_equal(before[name], after[name]) for name in OTHER_OUTPUTS)
        add_features_output(without)  # a graph that has the output is left as it is
        assert without.read_bytes() == path.read_bytes()
