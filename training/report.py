"""From out-of-fold scores to the shipped operating points and the figures the model card reports.

Every figure comes from patients that the model scoring them never saw. Calibrations and thresholds are fitted
on the same out-of-fold scores, pooled over folds, and so are the choices they report (study aggregation,
which types to show, which model variant to ship).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from inference.study import AGGREGATIONS
from training.crossval import VARIANTS, OutOfFold
from training.ct_ich import HAEMORRHAGE_TYPES
from training.data import TrainingSet
from training.evaluation import (
    PlattScaling,
    auc,
    balanced_threshold,
    binary_metrics,
    fit_platt,
    study_scores,
    summarise,
    triage_threshold,
)
from training.export import IDENTITY

MIN_TYPE_AUC = 0.80
MAX_QUANTIZATION_LOSS = 0.005  # study AUC the 8-bit model may lose and still ship
MIN_SENSITIVITY = 0.95


@dataclass(frozen=True)
class OperatingPoints:
    slice_calibration: PlattScaling
    slice_threshold: float
    aggregation: str
    study_calibration: PlattScaling
    study_threshold: float
    variant: str
    shown_types: tuple[str, ...]


def _per_fold(fold: np.ndarray, scores: np.ndarray, labels: np.ndarray, threshold: float) -> dict[str, Any]:
    folds = [binary_metrics(scores[fold == k], labels[fold == k], threshold) for k in np.unique(fold)]
    return {"pooled": binary_metrics(scores, labels, threshold), "per_fold": folds, "summary": summarise(folds)}


def _study(
    data: TrainingSet, oof: OutOfFold, variant: str, method: str, calibration: PlattScaling
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per scanner patient: name, study score of `method` over calibrated slice log-odds, whether they bled, fold."""
    scanner = data.has_hu
    calibrated_logits = calibration.slope * oof.dicom[variant] + calibration.intercept
    names, scores, bled = study_scores(
        calibrated_logits[scanner], oof.dicom_assessable[scanner], data.groups[scanner], data.numbers[scanner],
        data.labels[scanner, 0], method,
    )
    fold_of = np.array([oof.fold[data.groups == name][0] for name in names])
    return names, scores, bled, fold_of


def _aggregation_aucs(data: TrainingSet, oof: OutOfFold, variant: str) -> dict[str, float]:
    """Out-of-fold patient AUC of each study aggregation over the variant's uncalibrated slice log-odds."""
    aucs = {}
    for method in AGGREGATIONS:
        _, scores, bled, _ = _study(data, oof, variant, method, IDENTITY)
        aucs[method] = auc(scores, bled)
    return aucs


def operating_points_and_report(data: TrainingSet, oof: OutOfFold) -> tuple[OperatingPoints, dict[str, Any]]:
    labels = data.labels[:, 0].astype(np.int64)
    scanner = data.has_hu
    head_ct = ~scanner

    # Study aggregation, chosen on the float32 graph by out-of-fold patient AUC (which no monotone slice
    # calibration changes); the 8-bit graph ships when it keeps float32's study AUC under that aggregation.
    aggregation_auc = {variant: _aggregation_aucs(data, oof, variant) for variant in VARIANTS}
    aggregation = max(AGGREGATIONS, key=lambda method: aggregation_auc["float32"][method])
    study_auc_by_variant = {variant: aggregation_auc[variant][aggregation] for variant in VARIANTS}
    keeps_auc = study_auc_by_variant["int8"] >= study_auc_by_variant["float32"] - MAX_QUANTIZATION_LOSS
    variant = "int8" if keeps_auc else "float32"

    # One slice calibration for both ways in: pictures of every slice, and scanner slices the DICOM gate passed.
    gated = scanner & oof.dicom_assessable
    pooled_logits = np.concatenate([oof.picture[variant], oof.dicom[variant][gated]])
    pooled_labels = np.concatenate([labels, labels[gated]])
    slice_calibration = fit_platt(pooled_logits, pooled_labels)
    picture_p = slice_calibration.probability(oof.picture[variant])
    dicom_p = slice_calibration.probability(oof.dicom[variant])
    # A single slice cannot be held to 95% sensitivity without flagging nearly every picture (a bleed may show
    # as a few pixels on one slice): its threshold balances sensitivity and specificity on the pictures.
    slice_threshold = balanced_threshold(picture_p, labels)

    names, scores, bled, study_fold = _study(data, oof, variant, aggregation, slice_calibration)
    study_calibration = fit_platt(scores, bled)
    study_p = study_calibration.probability(scores)
    study_threshold = triage_threshold(study_p, bled, MIN_SENSITIVITY)

    # Types: shown only where the out-of-fold AUC among haemorrhage slices reaches MIN_TYPE_AUC.
    types: dict[str, Any] = {}
    bleeding_scanner = np.flatnonzero(scanner & (labels == 1) & oof.dicom_assessable)
    flagged = dicom_p >= slice_threshold
    shown = []
    for index, name in enumerate(HAEMORRHAGE_TYPES):
        truth = data.labels[:, 1 + index]
        with_type = scanner & (truth == 1)
        patients = len(np.unique(data.groups[with_type]))
        among_bleeds = auc(oof.dicom_types[bleeding_scanner, index], truth[bleeding_scanner].astype(np.int64))
        all_slices = auc(oof.dicom_types[scanner, index], truth[scanner].astype(np.int64))
        seen = with_type & oof.dicom_assessable
        sensitivity = float(flagged[seen].mean()) if seen.any() else float("nan")
        qualifies = bool(among_bleeds >= MIN_TYPE_AUC)
        if qualifies:
            shown.append(name)
        types[name] = {
            "slices": int(with_type.sum()),
            "patients": patients,
            "auc_among_haemorrhage_slices": among_bleeds,
            "auc_all_slices": all_slices,
            "haemorrhage_sensitivity_at_slice_threshold": sensitivity,
            "shown": qualifies,
        }

    missed_by_gate = scanner & (labels == 1) & ~oof.dicom_assessable
    report: dict[str, Any] = {
        "folds": int(oof.fold.max() + 1),
        "split": "by patient: no patient's slices on both sides; stratified by source and by whether the patient bled",
        "shipped_variant": variant,
        "study_auc_by_variant": study_auc_by_variant,
        "slices_as_pictures": {
            "scanner_collection": _per_fold(oof.fold[scanner], picture_p[scanner], labels[scanner], slice_threshold),
            "scanner_collection_passing_picture_gate": binary_metrics(
                picture_p[scanner & data.picture_assessable], labels[scanner & data.picture_assessable], slice_threshold
            ),
            "head_ct": _per_fold(oof.fold[head_ct], picture_p[head_ct], labels[head_ct], slice_threshold)
            if head_ct.any() else None,
        },
        "slices_through_dicom": {
            "all_slices": binary_metrics(dicom_p[scanner], labels[scanner], slice_threshold),
            "gated_slices": _per_fold(oof.fold[gated], dicom_p[gated], labels[gated], slice_threshold),
        },
        "studies_through_dicom": {
            "patients": int(len(names)),
            "bleeding_patients": int(bled.sum()),
            "aggregation_auc": aggregation_auc["float32"],
            "aggregation_auc_by_variant": aggregation_auc,
            "aggregation": aggregation,
            **_per_fold(study_fold, study_p, bled, study_threshold),
        },
        "gate": {
            "picture_gate_passed": {
                "scanner_slices": float(data.picture_assessable[scanner].mean()),
                "scanner_haemorrhage_slices": float(data.picture_assessable[scanner & (labels == 1)].mean()),
                "head_ct_slices": float(data.picture_assessable[head_ct].mean()) if head_ct.any() else None,
            },
            "dicom_gate_passed": {
                "scanner_slices": float(oof.dicom_assessable[scanner].mean()),
                "scanner_haemorrhage_slices": float(oof.dicom_assessable[scanner & (labels == 1)].mean()),
                "haemorrhage_slices_excluded": int(missed_by_gate.sum()),
                "patients_with_every_bleeding_slice_excluded": int(sum(
                    1 for group in np.unique(data.groups[scanner & (labels == 1)])
                    if not oof.dicom_assessable[(data.groups == group) & (labels == 1)].any()
                )),
            },
        },
        "types": types,
    }
    points = OperatingPoints(
        slice_calibration=slice_calibration,
        slice_threshold=slice_threshold,
        aggregation=aggregation,
        study_calibration=study_calibration,
        study_threshold=study_threshold,
        variant=variant,
        shown_types=tuple(shown),
    )
    return points, report
