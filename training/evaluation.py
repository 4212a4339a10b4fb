"""Scoring out-of-fold predictions: calibration, the triage operating point and the usual metrics."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score, roc_curve

from inference.study import aggregate


@dataclass(frozen=True)
class PlattScaling:
    """Calibrated probability = sigmoid(slope * logit + intercept)."""

    slope: float
    intercept: float

    def probability(self, logits: np.ndarray) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-(self.slope * np.asarray(logits, dtype=np.float64) + self.intercept)))


def fit_platt(logits: np.ndarray, labels: np.ndarray) -> PlattScaling:
    """Platt scaling fitted by (practically unregularised) logistic regression on held-out logits."""
    model = LogisticRegression(C=1e6).fit(np.asarray(logits, dtype=np.float64).reshape(-1, 1), labels)
    return PlattScaling(slope=float(model.coef_[0, 0]), intercept=float(model.intercept_[0]))


def triage_threshold(probabilities: np.ndarray, labels: np.ndarray, min_sensitivity: float = 0.95) -> float:
    """The highest threshold that still flags `min_sensitivity` of the haemorrhages (so the fewest false
    alarms), placed halfway to the next lower score to leave a margin."""
    positives = np.sort(probabilities[labels == 1])[::-1]
    needed = int(np.ceil(min_sensitivity * len(positives)))
    cut = positives[needed - 1]
    below = probabilities[probabilities < cut]
    return float((cut + below.max()) / 2) if below.size else float(cut)


def balanced_threshold(probabilities: np.ndarray, labels: np.ndarray) -> float:
    """The threshold with the largest sensitivity + specificity (Youden's J) on held-out scores."""
    false_positive, true_positive, thresholds = roc_curve(labels, probabilities)
    return float(min(thresholds[np.argmax(true_positive - false_positive)], 1.0))


def binary_metrics(probabilities: np.ndarray, labels: np.ndarray, threshold: float) -> dict[str, float]:
    """AUC, and accuracy, sensitivity and specificity when `probability >= threshold` means haemorrhage."""
    flagged = probabilities >= threshold
    positive = labels == 1
    return {
        "auc": auc(probabilities, labels),
        "accuracy": float(np.mean(flagged == positive)),
        "sensitivity": float(np.mean(flagged[positive])) if positive.any() else float("nan"),
        "specificity": float(np.mean(~flagged[~positive])) if (~positive).any() else float("nan"),
    }


def summarise(per_fold: list[dict[str, float]]) -> dict[str, dict[str, float]]:
    """Mean and standard deviation of each metric over folds."""
    values = {key: [fold[key] for fold in per_fold] for key in per_fold[0]}
    return {key: {"mean": float(np.mean(runs)), "std": float(np.std(runs))} for key, runs in values.items()}


def study_scores(
    slice_scores: np.ndarray, assessable: np.ndarray, groups: np.ndarray, numbers: np.ndarray,
    labels: np.ndarray, method: str,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per patient of the scanner collection: its name, study score (aggregated over its assessable slices,
    lowest first) and whether it bled."""
    names, scores, bled = [], [], []
    for group in np.unique(groups):
        rows = np.flatnonzero(groups == group)
        rows = rows[np.argsort(numbers[rows])]
        kept = rows[assessable[rows]]
        if not kept.size:
            continue
        names.append(group)
        scores.append(aggregate(slice_scores[kept], method))
        bled.append(labels[rows].max())
    return np.array(names), np.array(scores), np.array(bled, dtype=np.int64)


def auc(scores: np.ndarray, labels: np.ndarray) -> float:
    return float(roc_auc_score(labels, scores)) if len(set(labels.tolist())) == 2 else float("nan")
