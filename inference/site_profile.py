"""A site profile: the model's verdicts re-fitted to one hospital's own confirmed cases.

It replaces the model card's last steps with the site's: a head on the pooled `features` output, its
calibration, the slice threshold, and the study calibration and threshold. The network itself is unchanged,
so a profile holds only for the model file it was fitted on (`model_sha256`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.special import expit

from inference.study import OperatingPoint, StudyCalibration

FORMAT = 1


@dataclass(frozen=True)
class SiteProfile:
    model_sha256: str
    weights: np.ndarray  # one per feature
    bias: float
    slope: float  # slice calibration: sigmoid(slope * logit + intercept)
    intercept: float
    slice_threshold: float
    study: StudyCalibration | None  # None: a series is judged by its top slice against the slice threshold
    id: int | None = None  # the profile's number in the HemoWatch database, once stored
    n_cases: int = 0
    pull: float | None = None  # how strongly the head was held to the shipped head when fitted

    def slice_probabilities(self, features: np.ndarray) -> np.ndarray:
        """Calibrated probabilities for `(N, F)` pooled features."""
        logits = np.asarray(features, dtype=np.float64) @ self.weights + self.bias
        return expit(self.slope * logits + self.intercept)

    @property
    def operating_point(self) -> OperatingPoint:
        return OperatingPoint(self.slice_threshold, self.study)

    def to_json(self) -> str:
        study = None if self.study is None else {
            "aggregation": self.study.aggregation, "slope": self.study.slope,
            "intercept": self.study.intercept, "threshold": self.study.threshold,
        }
        return json.dumps({
            "format": FORMAT, "model_sha256": self.model_sha256,
            "head": {"weights": [float(value) for value in self.weights], "bias": self.bias},
            "calibration": {"slope": self.slope, "intercept": self.intercept},
            "slice_threshold": self.slice_threshold, "study": study, "pull": self.pull,
        })

    @classmethod
    def from_json(cls, text: str, id: int | None = None, n_cases: int = 0) -> SiteProfile:
        data: dict[str, Any] = json.loads(text)
        if data.get("format") != FORMAT:
            raise ValueError(f"site profile format {data.get('format')} is not {FORMAT}")
        study = data["study"]
        return cls(
            model_sha256=str(data["model_sha256"]),
            weights=np.asarray(data["head"]["weights"], dtype=np.float64),
            bias=float(data["head"]["bias"]),
            slope=float(data["calibration"]["slope"]),
            intercept=float(data["calibration"]["intercept"]),
            slice_threshold=float(data["slice_threshold"]),
            study=None if study is None else StudyCalibration(
                str(study["aggregation"]), float(study["slope"]), float(study["intercept"]), float(study["threshold"])
            ),
            id=id,
            n_cases=n_cases,
            pull=data.get("pull"),
        )
