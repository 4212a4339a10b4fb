"""The training command end to end on a few real patients and slices, with a budget of about a minute."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import onnxruntime
import pytest
from PIL import Image

from inference.model import HaemorrhageModel, file_sha256
from inference.preprocess import INPUT_SIZE, grey_from_image, prepare_batch
from training.ct_ich import HAEMORRHAGE_TYPES
from training.data import read_head_ct_labels

torch = pytest.importorskip("torch", reason="needs torch (the train extra)")
onnx = pytest.importorskip("onnx", reason="needs onnx (the train extra)")
pytest.importorskip("sklearn", reason="needs scikit-learn (the train extra)")
from training import compare  # noqa: E402
from training.__main__ import main  # noqa: E402
from training.fit import Recipe  # noqa: E402

pytestmark = pytest.mark.slow

PATIENTS = 4  # two who bled, two who did not
HEAD_CT_PER_CLASS = 2


@pytest.fixture
def few_patients(ct_ich_dir: Path, tmp_path: Path) -> Path:
    """A CT-ICH-like folder with two bleeding and two normal patients."""
    with (ct_ich_dir / "labels.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    bled = {row["patient"] for row in rows if row["hemorrhage"] == "1"}
    patients = sorted(bled)[:2] + sorted({row["patient"] for row in rows} - bled)[:2]
    folder = tmp_path / "ct-ich"
    for window in ("brain", "bone"):
        for patient in patients:
            shutil.copytree(ct_ich_dir / window / f"{int(patient):03d}", folder / window / f"{int(patient):03d}")
    chosen = [row for row in rows if row["patient"] in patients]
    with (folder / "labels.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(chosen)
    return folder


@pytest.fixture
def few_slices(head_ct_dir: Path, tmp_path: Path) -> Path:
    labels = read_head_ct_labels(head_ct_dir)
    chosen = [i for i in labels if labels[i] == 1][:HEAD_CT_PER_CLASS] + [i for i in labels if labels[i] == 0][:HEAD_CT_PER_CLASS]
    folder = tmp_path / "head-ct"
    (folder / "images").mkdir(parents=True)
    (folder / "labels.csv").write_text("id,hemorrhage\n" + "".join(f"{i},{labels[i]}\n" for i in chosen))
    for slice_id in chosen:
        shutil.copy(head_ct_dir / "images" / f"{slice_id}.png", folder / "images")
    return folder


def test_training_exports_models_that_serve_and_a_card_that_describes_them(
    few_patients: Path, few_slices: Path, tmp_path: Path
) -> None:
    out, work = tmp_path / "models", tmp_path / "work"
    args = ["--ct-ich", str(few_patients), "--head-ct", str(few_slices), "--out", str(out), "--folds", "2",
            "--epochs", "1", "--negatives-per-epoch", "16", "--work", str(work)]
    assert main(args) == 0
    kept = {name: torch.load(work / f"{name}.pt", weights_only=True) for name in ("fold-1", "fold-2", "final")}
    assert not torch.equal(kept["fold-1"]["_fc.weight"], kept["fold-2"]["_fc.weight"])  # each fold's own model
    assert set(np.load(work / "out_of_fold.npz")["fold"]) == {0, 1}

    card = json.loads((out / "hemowatch-ich.json").read_text())
    assert card["file"] == "hemowatch-ich.onnx"
    assert card["sha256"] == file_sha256(out / card["file"])
    assert set(card["variants"]) == {"float32", "int8"}
    for variant in card["variants"].values():
        assert variant["sha256"] == file_sha256(out / variant["file"])
        graph = onnx.load(str(out / variant["file"])).graph
        assert "Pad" not in {node.op_type for node in graph.node}  # padding lives in the convolutions
        producers = {output: node.op_type for node in graph.node for output in node.output}
        assert producers["probability"] == producers["types"] == "Sigmoid"  # in float, never 256 steps
        head_input = next(node.input[0] for node in graph.node if node.op_type == "Gemm")
        assert head_input == "features" and producers["features"] in ("ReduceMean", "DequantizeLinear")
    assert card["input"]["size"] == INPUT_SIZE and card["input"]["window"] == {"center": 35, "width": 80}
    assert 0.0 < card["threshold"] < 1.0 and 0.0 < card["study"]["threshold"] < 1.0
    validation = card["cross_validation"]
    assert validation["folds"] == 2
    assert validation["studies_through_dicom"]["patients"] == PATIENTS
    assert set(validation["studies_through_dicom"]["aggregation_auc"]) >= {"max", "top2_mean", "neighbour_max"}
    assert len(validation["slices_through_dicom"]["gated_slices"]["per_fold"]) == 2
    assert set(validation["types"]) == set(HAEMORRHAGE_TYPES)
    assert [source["licence"] for source in card["training_data"]][0] == "CC BY 4.0"

    model = HaemorrhageModel(out / card["file"])  # the service reads the card and the model together
    assert model.card.study is not None and model.card.type_names == HAEMORRHAGE_TYPES
    greys = [grey_from_image(Image.open(path)) for path in sorted((few_slices / "images").glob("*.png"))[:3]]
    batch, _ = prepare_batch(greys)
    prediction = model.predict(batch)
    probability, cam = prediction.probability, prediction.cam
    assert probability.shape == (3,) and np.all((probability >= 0) & (probability <= 1))
    assert cam.shape == (3, INPUT_SIZE // 32, INPUT_SIZE // 32) and np.isfinite(cam).all()
    assert prediction.types.shape == (3, len(HAEMORRHAGE_TYPES))
    assert model.card.head is not None and prediction.features.shape == (3, len(model.card.head.weights))
    session = onnxruntime.InferenceSession(str(out / card["file"]), providers=["CPUExecutionProvider"])
    assert [node.name for node in session.get_outputs()] == ["probability", "cam", "types", "features"]
    float32 = onnxruntime.InferenceSession(str(out / card["variants"]["float32"]["file"]),
                                           providers=["CPUExecutionProvider"])
    float_probability, features = float32.run(["probability", "features"], {"image": batch})
    np.testing.assert_allclose(model.card.head.probability(features), float_probability, rtol=0, atol=1e-6)

    again = tmp_path / "again"  # the kept weights, exported and scored again without training
    reuse_args = [*args, "--reuse-weights"]
    reuse_args[reuse_args.index("--out") + 1] = str(again)
    assert main(reuse_args) == 0
    card_again = json.loads((again / "hemowatch-ich.json").read_text())
    assert card_again["cross_validation"] == validation and card_again["threshold"] == card["threshold"]
    assert card_again["training_minutes"] == card["training_minutes"] > 0
    assert all(torch.equal(torch.load(work / f"{name}.pt", weights_only=True)["_fc.weight"], kept[name]["_fc.weight"])
               for name in kept)


def test_compare_trains_a_recipe_once_per_seed_on_the_same_held_out_patients(
    few_patients: Path, few_slices: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(compare.CANDIDATES, "shipped", Recipe(epochs=1, negatives_per_epoch=16))
    out = tmp_path / "comparisons.jsonl"
    args = ["--ct-ich", str(few_patients), "--head-ct", str(few_slices), "--recipe", "shipped", "--fold", "0",
            "--folds", "2", "--seed", "7", "--seed", "8", "--out", str(out)]
    assert compare.main(args) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    runs = [(row["recipe"], row["fold"], row["settings"]["seed"]) for row in rows]
    assert runs == [("shipped", 0, 7), ("shipped", 0, 8)]
    assert rows[0]["settings"] | {"seed": 8} == rows[1]["settings"]  # only the seed differs
    figures = ("slice_auc_pictures", "slice_auc_service_window", "study_auc_highest_slice", "head_ct_accuracy")
    assert all(0.0 <= row[figure] <= 1.0 for row in rows for figure in figures)
