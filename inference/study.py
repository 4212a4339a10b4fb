"""From per-slice probabilities to one study verdict.

A single slice (a picture) is judged by its calibrated probability against the slice threshold. A series of
several assessable slices is judged as a study: its slices' log-odds are aggregated as the model card says
(chosen by patient-level cross-validation: the maximum, a top-k mean, or the highest mean of neighbouring
slices), and that score is calibrated again on out-of-fold patients, so the study probability is what it
claims to be and the study threshold holds the cross-validated patient sensitivity. The most suspicious slice
is still named, for the heat-map and for the reader.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy.special import expit

Verdict = Literal["hemorrhage", "no_hemorrhage", "not_assessable"]
_EPSILON = 1e-7


@dataclass(frozen=True)
class StudyCalibration:
    """How a series' slice probabilities become a calibrated study probability, and where it flags."""

    aggregation: str
    slope: float
    intercept: float
    threshold: float

    def probability(self, slice_probabilities: Sequence[float]) -> float:
        logits = [math.log(p / (1 - p)) for p in np.clip(slice_probabilities, _EPSILON, 1 - _EPSILON)]
        score = aggregate(logits, self.aggregation)
        return float(expit(self.slope * score + self.intercept))  # a steep calibration overflows math.exp


@dataclass(frozen=True)
class OperatingPoint:
    """The slice threshold for single slices, and the study calibration for series (None: the slice rule)."""

    slice_threshold: float
    study: StudyCalibration | None = None


@dataclass(frozen=True)
class StudyVerdict:
    verdict: Verdict
    probability: float | None
    threshold: float  # the threshold that applied: the study's for a series, the slice's for one slice
    top_slice: tuple[int, float] | None  # (0-based position in the series, probability)


def study_verdict(probabilities: Sequence[float | None], point: OperatingPoint) -> StudyVerdict:
    """Verdict over the slices' probabilities (lowest slice first), `None` marking a slice not assessable."""
    scored = [(index, p) for index, p in enumerate(probabilities) if p is not None]
    if not scored:
        return StudyVerdict("not_assessable", None, point.slice_threshold, None)
    top = max(scored, key=lambda item: item[1])
    if point.study is not None and len(scored) > 1:
        probability = point.study.probability([p for _, p in scored])
        threshold = point.study.threshold
    else:
        probability, threshold = top[1], point.slice_threshold
    verdict: Verdict = "hemorrhage" if probability >= threshold else "no_hemorrhage"
    return StudyVerdict(verdict, probability, threshold, top)


def _top_mean(scores: np.ndarray, count: int) -> float:
    return float(np.sort(scores)[::-1][:count].mean())


def _neighbour_max(scores: np.ndarray) -> float:
    if len(scores) < 3:
        return float(scores.max())
    return float(np.convolve(scores, np.ones(3) / 3, mode="valid").max())


AGGREGATIONS: dict[str, Callable[[np.ndarray], float]] = {
    "max": lambda scores: float(scores.max()),
    "top2_mean": lambda scores: _top_mean(scores, 2),
    "top3_mean": lambda scores: _top_mean(scores, 3),
    "neighbour_max": _neighbour_max,
}
"""Ways to turn the slice scores of one series (assessable slices, lowest first) into one study score:
the highest, the mean of the two or three highest, or the highest mean of three neighbouring slices."""


def aggregate(scores: Sequence[float], method: str) -> float:
    """The study score of a series' slice scores (log-odds of assessable slices, lowest first)."""
    return AGGREGATIONS[method](np.asarray(scores, dtype=np.float64))
