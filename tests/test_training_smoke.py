"""The training command end to end on a handful of real slices, with a budget of seconds."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnxruntime
import pytest
from PIL import Image

from inference.model import file_sha256
from inference.preprocess import INPUT_SIZE, grey_from_image, prepare_batch
from training.__main__ import main
from training.data import read_labels

PER_CLASS = 4


@pytest.fixture
def few_slices(head_ct_dir: Path, tmp_path: Path) -> Path:
    """A data folder like the reference one, with four slices of each class."""
    labels = read_labels(head_ct_dir)
    chosen = [i for i in labels if labels[i] == 1][:PER_CLASS] + [i for i in labels if labels[i] == 0][:PER_CLASS]
    folder = tmp_path / "data"
    (folder / "images").mkdir(parents=True)
    (folder / "labels.csv").write_text("id,hemorrhage\n" + "".join(f"{i},{labels[i]}\n" for i in chosen))
    for slice_id in chosen:
        shutil.copy(head_ct_dir / "images" / f"{slice_id}.png", folder / "images")
    return folder


def test_training_exports_a_model_that_serves(few_slices: Path, tmp_path: Path) -> None:
    out = tmp_path / "models"
    assert main(["--data", str(few_slices), "--out", str(out), "--folds", "2", "--epochs", "1"]) == 0

    card = json.loads((out / "hemowatch-ich.json").read_text())
    onnx_path = out / card["file"]
    assert card["sha256"] == file_sha256(onnx_path)
    assert card["input"]["size"] == INPUT_SIZE and card["input"]["window"] == {"center": 40, "width": 80}
    assert 0.0 < card["threshold"] < 1.0
    assert card["calibration"]["method"] == "platt"
    assert card["cross_validation"]["folds"] == 2 and len(card["cross_validation"]["per_fold"]) == 2
    assert card["cross_validation"]["slices"] == 2 * PER_CLASS
    for key in ("auc", "accuracy", "sensitivity", "specificity"):
        assert set(card["cross_validation"]["metrics"][key]) == {"mean", "std"}

    session = onnxruntime.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    assert [node.name for node in session.get_inputs()] == ["image"]
    assert [node.name for node in session.get_outputs()] == ["probability", "cam"]
    greys = [grey_from_image(Image.open(path)) for path in sorted((few_slices / "images").glob("*.png"))[:3]]
    batch, _ = prepare_batch(greys)
    probability, cam = session.run(None, {"image": batch})
    assert probability.shape == (3,) and probability.dtype == np.float32
    assert np.all((probability >= 0) & (probability <= 1))
    assert cam.shape == (3, INPUT_SIZE // 32, INPUT_SIZE // 32) and np.isfinite(cam).all()
