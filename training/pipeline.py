"""The whole reproduction: patient-wise cross-validation, operating points, final fit, export, model card."""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from training.card import NAME, build_card, write_card
from training.crossval import CALIBRATION_SLICES, OutOfFold, cross_validate, serving_inputs
from training.data import TrainingSet, load_training_set
from training.export import export_onnx, quantize
from training.fit import Recipe, train
from training.network import HaemorrhageNet, checkpoint_path, trained_network
from training.report import OperatingPoints, operating_points_and_report

log = logging.getLogger(__name__)

MAX_EXPORT_DIFFERENCE = 1e-3


def _save_oof(oof: OutOfFold, path: Path) -> None:
    arrays = {field.name: getattr(oof, field.name) for field in dataclasses.fields(oof)}
    flat = {key: value for key, value in arrays.items() if not isinstance(value, dict)}
    for name in ("picture", "dicom"):
        flat.update({f"{name}_{variant}": scores for variant, scores in arrays[name].items()})
    np.savez_compressed(path, **flat)


def _training_minutes(work_dir: Path | None, measured: float | None) -> float | None:
    """How long training took: as measured now, kept beside the weights; or, reusing them, as kept then."""
    record = None if work_dir is None else work_dir / "training-minutes.json"
    if measured is not None and record is not None:
        record.write_text(json.dumps(round(measured, 1)))
    if measured is None and record is not None and record.exists():
        return float(json.loads(record.read_text()))
    return measured


def export_shipped(
    net: HaemorrhageNet, data: TrainingSet, points: OperatingPoints, out_dir: Path, seed: int
) -> dict[str, Path]:
    """Write both variants; the shipped one is `<NAME>.onnx`, the other keeps its variant in its name."""
    paths = {"float32": out_dir / f"{NAME}.onnx", "int8": out_dir / f"{NAME}-int8.onnx"}
    if points.variant == "int8":
        paths = {"float32": out_dir / f"{NAME}-float32.onnx", "int8": out_dir / f"{NAME}.onnx"}
    difference = export_onnx(net, points.slice_calibration, paths["float32"])
    log.info("exported %s; onnxruntime and torch differ by at most %.2g", paths["float32"], difference)
    if difference > MAX_EXPORT_DIFFERENCE:
        raise RuntimeError(f"the exported model disagrees with torch by {difference:.3g}")
    rows = np.random.default_rng(seed).permutation(len(data))[:CALIBRATION_SLICES]
    quantize(paths["float32"], paths["int8"], serving_inputs(data, rows))
    return paths


def reproduce(
    ct_ich: Path | None, head_ct: Path | None, out_dir: Path, recipe: Recipe, folds: int = 5,
    work_dir: Path | None = None, comparisons: list[dict[str, Any]] | None = None, reuse: bool = False,
) -> dict[str, Any]:
    """Cross-validate the recipe, then fit it on every slice and write the models and `<NAME>.json`. With
    `reuse`, the weights an earlier run kept in `work_dir` are exported and scored again instead of trained."""
    if reuse and work_dir is None:
        raise ValueError("reusing weights needs the work folder that keeps them")
    started = time.monotonic()
    weights = checkpoint_path()
    data = load_training_set(ct_ich, head_ct)
    log.info("%d slices (%d with haemorrhage) from %d patients", len(data), int(data.labels[:, 0].sum()),
             len(np.unique(data.groups)))
    if work_dir is not None:
        work_dir.mkdir(parents=True, exist_ok=True)
    oof = cross_validate(data, recipe, folds, weights, ct_ich, keep=work_dir, reuse=reuse)
    if work_dir is not None:
        _save_oof(oof, work_dir / "out_of_fold.npz")
    points, report = operating_points_and_report(data, oof)
    studies = report["studies_through_dicom"]["pooled"]
    log.info("cross-validation: study AUC %.3f, sensitivity %.3f, specificity %.3f (%s, %s)", studies["auc"],
             studies["sensitivity"], studies["specificity"], points.aggregation, points.variant)
    if reuse:
        assert work_dir is not None
        net = trained_network(work_dir / "final.pt", outputs=data.labels.shape[1])
    else:
        net = train(data, recipe, weights, name="final")
        if work_dir is not None:
            torch.save(net.state_dict(), work_dir / "final.pt")
    paths = export_shipped(net, data, points, out_dir, recipe.seed)
    minutes = _training_minutes(work_dir, None if reuse else (time.monotonic() - started) / 60)
    card = build_card(
        paths, points=points, cross_validation=report, recipe=recipe, data=data,
        training_minutes=minutes, comparisons=comparisons,
    )
    write_card(card, out_dir / f"{NAME}.json")
    return card
