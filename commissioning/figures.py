"""The figures a site profile is judged by, all on out-of-fold predictions: ranking (AUC with a bootstrap
interval over patients), the operating point (sensitivity, specificity) and the alert load."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
from scipy.stats import rankdata

BOOTSTRAP_ROUNDS = 1000


def auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve (the Mann-Whitney statistic, ties counted half); nan with one class only."""
    labels = np.asarray(labels, dtype=bool)
    positives, negatives = int(labels.sum()), int((~labels).sum())
    if not positives or not negatives:
        return float("nan")
    ranks = rankdata(scores)
    return float((ranks[labels].sum() - positives * (positives + 1) / 2) / (positives * negatives))


def bootstrap_auc_interval(
    scores: np.ndarray, labels: np.ndarray, groups: Sequence[str], seed: int = 2026
) -> tuple[float, float]:
    """The 95% interval of the AUC, resampling patients (with all their cases) rather than cases."""
    groups_array = np.asarray(groups)
    patients = np.unique(groups_array)
    members = [np.flatnonzero(groups_array == patient) for patient in patients]
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(BOOTSTRAP_ROUNDS):
        rows = np.concatenate([members[i] for i in rng.integers(0, len(patients), len(patients))])
        value = auc(scores[rows], labels[rows])
        if not np.isnan(value):
            values.append(value)
    if not values:
        return float("nan"), float("nan")
    low, high = np.percentile(values, [2.5, 97.5])
    return float(low), float(high)


def threshold_for_sensitivity(probabilities: np.ndarray, labels: np.ndarray, sensitivity: float) -> float:
    """The highest threshold that still flags at least `sensitivity` of the positives (a case is flagged when its
    probability is at or above the threshold)."""
    positives = np.sort(np.asarray(probabilities)[np.asarray(labels, dtype=bool)])[::-1]
    if not len(positives):
        raise ValueError("no positive case to choose a threshold on")
    needed = int(np.ceil(sensitivity * len(positives) - 1e-9))
    return float(positives[max(needed, 1) - 1])


@dataclass(frozen=True)
class Figures:
    """How a set of verdicts agrees with the confirmed labels."""

    cases: int
    positives: int
    auc: float
    auc_low: float
    auc_high: float
    sensitivity: float
    specificity: float
    alerts_per_100: float

    @classmethod
    def of(cls, probabilities: np.ndarray, flagged: np.ndarray, labels: np.ndarray, groups: Sequence[str]) -> Figures:
        labels = np.asarray(labels, dtype=bool)
        flagged = np.asarray(flagged, dtype=bool)
        low, high = bootstrap_auc_interval(np.asarray(probabilities), labels, groups)
        return cls(
            cases=len(labels),
            positives=int(labels.sum()),
            auc=auc(np.asarray(probabilities), labels),
            auc_low=low,
            auc_high=high,
            sensitivity=float(flagged[labels].mean()) if labels.any() else float("nan"),
            specificity=float((~flagged[~labels]).mean()) if (~labels).any() else float("nan"),
            alerts_per_100=float(flagged.mean() * 100),
        )

    def to_dict(self) -> dict[str, float | int]:
        return {key: (None if isinstance(value, float) and np.isnan(value) else value)
                for key, value in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict) -> Figures:
        return cls(**{key: float("nan") if value is None else value for key, value in data.items()})
