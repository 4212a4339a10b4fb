"""The whole reproduction: stratified cross-validation, calibration, operating point, final fit, export."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.model_selection import StratifiedKFold

from training.card import NAME, build_card, write_card
from training.data import LabelledSlices, load_slices
from training.evaluation import PlattScaling, binary_metrics, fit_platt, summarise, triage_threshold
from training.export import export_onnx
from training.fit import Recipe, predict_logits, train
from training.network import checkpoint_path

log = logging.getLogger(__name__)

MAX_EXPORT_DIFFERENCE = 1e-3


def out_of_fold_logits(data: LabelledSlices, recipe: Recipe, folds: int, weights: Path) -> np.ndarray:
    """Fold index of each slice (column 0) and the logit it got from the model that never saw it (column 1)."""
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=recipe.seed)
    result = np.zeros((len(data.labels), 2))
    for fold, (fit_rows, held_rows) in enumerate(splitter.split(data.tensors, data.labels)):
        started = time.monotonic()
        name = f"fold {fold + 1}/{folds}"
        net = train(data.tensors[fit_rows], data.labels[fit_rows], recipe, weights, name=name)
        result[held_rows, 0] = fold
        result[held_rows, 1] = predict_logits(net, data.tensors[held_rows])
        held_auc = binary_metrics(result[held_rows, 1], data.labels[held_rows], threshold=0.0)["auc"]
        log.info("fold %d/%d: held-out AUC %.3f, %.0f s", fold + 1, folds, held_auc, time.monotonic() - started)
    return result


def cross_validation_report(
    folds_and_logits: np.ndarray, labels: np.ndarray
) -> tuple[dict[str, Any], PlattScaling, float]:
    """Metrics from out-of-fold predictions, the Platt calibration and the triage threshold they give."""
    fold_of, logits = folds_and_logits[:, 0].astype(int), folds_and_logits[:, 1]
    calibration = fit_platt(logits, labels)
    probabilities = calibration.probability(logits)
    threshold = triage_threshold(probabilities, labels)
    per_fold = [
        binary_metrics(probabilities[fold_of == fold], labels[fold_of == fold], threshold)
        for fold in range(fold_of.max() + 1)
    ]
    pooled = binary_metrics(probabilities, labels, threshold)
    report = {
        "folds": int(fold_of.max() + 1),
        "slices": int(len(labels)),
        "oof_auc": pooled["auc"],
        "oof": pooled,
        "metrics": summarise(per_fold),
        "per_fold": per_fold,
        "note": "accuracy, sensitivity and specificity at the shipped threshold, "
        "on calibrated out-of-fold probabilities",
    }
    return report, calibration, threshold


def reproduce(data_dir: Path, out_dir: Path, recipe: Recipe, folds: int = 5) -> dict[str, Any]:
    """Cross-validate the recipe, then fit it on every slice and write `<NAME>.onnx` and `<NAME>.json`."""
    started = time.monotonic()
    weights = checkpoint_path()
    data = load_slices(data_dir)
    log.info("%d slices (%d with haemorrhage) from %s", len(data.labels), int(data.labels.sum()), data_dir)
    report, calibration, threshold = cross_validation_report(
        out_of_fold_logits(data, recipe, folds, weights), data.labels
    )
    pooled = report["oof"]
    log.info(
        "cross-validation: AUC %.3f, accuracy %.3f, sensitivity %.3f, specificity %.3f at threshold %.3f",
        pooled["auc"], pooled["accuracy"], pooled["sensitivity"], pooled["specificity"], threshold,
    )
    net = train(data.tensors, data.labels, recipe, weights, name="final")
    onnx_path = out_dir / f"{NAME}.onnx"
    difference = export_onnx(net, calibration, onnx_path)
    log.info("exported %s; onnxruntime and torch differ by at most %.2g", onnx_path, difference)
    if difference > MAX_EXPORT_DIFFERENCE:
        raise RuntimeError(f"the exported model disagrees with torch by {difference:.3g}")
    card = build_card(
        onnx_path,
        threshold=threshold,
        calibration=calibration,
        cross_validation=report,
        recipe=recipe,
        slices=len(data.labels),
        training_minutes=(time.monotonic() - started) / 60,
    )
    write_card(card, out_dir / f"{NAME}.json")
    return card
