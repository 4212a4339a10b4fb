"""The demo's example slices: unchanged slices of the collection the shipped model was trained on, which is what
the demo page says of them (rather than how well the model does on them)."""

from __future__ import annotations

import json
from pathlib import Path

from core.settings import DEFAULT_MODEL
from hemowatch.demo.cast import EXAMPLES, EXAMPLES_DIR, examples_in_training_data
from training.ct_ich import brain_picture_path, read_slices


def test_each_example_is_an_unchanged_slice_of_the_training_collection_with_its_label(ct_ich_dir: Path) -> None:
    slices = {(item.patient, item.number): item for item in read_slices(ct_ich_dir)}
    for example in EXAMPLES:
        patient, number = example.file.removeprefix("patient").removesuffix(".jpg").split("-slice")
        item = slices[(patient, int(number))]
        assert (EXAMPLES_DIR / example.file).read_bytes() == brain_picture_path(ct_ich_dir, item).read_bytes()
        assert example.title.endswith("no haemorrhage") == (item.haemorrhage == 0), example.title


def test_the_shipped_model_card_names_the_examples_collection_among_its_training_data(tmp_path: Path) -> None:
    assert examples_in_training_data(DEFAULT_MODEL)
    card = json.loads(DEFAULT_MODEL.with_suffix(".json").read_text(encoding="utf-8"))
    other = tmp_path / "other.onnx"
    other.with_suffix(".json").write_text(json.dumps(card | {"training_data": card["training_data"][1:]}))
    assert not examples_in_training_data(other)
