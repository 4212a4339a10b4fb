"""Cross-validation folds grouped by patient: no patient's cases on both sides of a fold."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

MAX_FOLDS = 5


def grouped_folds(groups: Sequence[str], labels: Sequence[int], seed: int = 2026) -> np.ndarray:
    """A fold number per case. Patients are dealt to the folds round-robin after a seeded shuffle, bleeding
    patients (any case labelled 1) first, so each fold holds both classes where the counts allow."""
    patients = sorted(set(groups))
    bleeding = {group for group, label in zip(groups, labels) if label}
    rng = np.random.default_rng(seed)
    order = [patients[i] for i in rng.permutation(len(patients))]
    order = [p for p in order if p in bleeding] + [p for p in order if p not in bleeding]
    count = min(MAX_FOLDS, len(patients))
    fold_of = {patient: position % count for position, patient in enumerate(order)}
    return np.array([fold_of[group] for group in groups], dtype=np.int64)
