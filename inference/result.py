"""What one analysed study gives back: derived values only, nothing that identifies the person scanned."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from inference.percent import DECIMALS
from inference.study import Verdict


@dataclass(frozen=True)
class ModelInfo:
    name: str
    version: str
    sha256: str
    threshold: float  # the model card's operating point


@dataclass(frozen=True)
class SiteProfileInfo:
    """The site profile a verdict came from."""

    id: int
    n_cases: int


@dataclass(frozen=True)
class StudyResult:
    """The verdict on one series (or one picture)."""

    verdict: Verdict
    probability: float | None  # None when not assessable
    threshold: float  # the study threshold for a series, the slice threshold for a single slice
    n_slices: int
    n_assessable: int
    top_slice: tuple[int, float] | None  # (slice number counted from 1 at the lowest slice, its probability)
    reason: str | None  # why the study is not assessable
    series_label: str  # e.g. "series 2 (CT, 28 slices)"
    model: ModelInfo
    elapsed_ms: float
    warnings: list[str] = field(default_factory=list)
    overlay_png: bytes | None = field(default=None, repr=False)  # heat-map on the top slice
    heatmap_shows_region: bool | None = None  # a region of the heat-map stands out (None: no heat-map)
    suspected_type: str | None = None  # e.g. "epidural", only on a flagged study, only types the model tells apart
    site_profile: SiteProfileInfo | None = None  # None: the shipped model's own calibration and thresholds
    # The assessable slices' pooled features and the shipped model's probabilities of them (lowest slice first),
    # kept only when asked for: what a doctor's read or a commissioning case is learned from.
    slice_features: np.ndarray | None = field(default=None, repr=False, compare=False)
    slice_probabilities: np.ndarray | None = field(default=None, repr=False, compare=False)

    def to_json_dict(self, input_name: str) -> dict[str, Any]:
        """The `hemowatch classify --json` object for this study."""
        return {
            "input": input_name,
            "series": self.series_label,
            "verdict": self.verdict,
            "probability": None if self.probability is None else round(self.probability, DECIMALS),
            "threshold": round(self.threshold, DECIMALS),
            "n_slices": self.n_slices,
            "n_assessable": self.n_assessable,
            "top_slice": None
            if self.top_slice is None
            else {"index": self.top_slice[0], "probability": round(self.top_slice[1], DECIMALS)},
            "suspected_type": self.suspected_type,
            "reason": self.reason,
            "warnings": self.warnings,
            "model": {"name": self.model.name, "version": self.model.version, "sha256": self.model.sha256},
            "site_profile": None if self.site_profile is None else self.site_profile.id,
            "elapsed_ms": round(self.elapsed_ms, 1),
        }
