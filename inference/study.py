"""From per-slice probabilities to one study verdict.

The study probability is the highest calibrated probability among the assessable slices. A bleed is often
visible on a few slices only, so averaging would dilute it; the maximum keeps the most suspicious slice in
charge, which suits triage, where a missed bleed costs more than a second look. The price is that a long
series has more chances of one falsely high slice, so the reported probability is that of the most
suspicious slice, not a study-level calibration.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

Verdict = Literal["hemorrhage", "no_hemorrhage", "not_assessable"]


@dataclass(frozen=True)
class StudyVerdict:
    verdict: Verdict
    probability: float | None
    top_slice: tuple[int, float] | None  # (0-based position in the series, probability)


def study_verdict(probabilities: Sequence[float | None], threshold: float) -> StudyVerdict:
    """Verdict over the slices' probabilities, `None` marking a slice that is not assessable."""
    scored = [(index, p) for index, p in enumerate(probabilities) if p is not None]
    if not scored:
        return StudyVerdict("not_assessable", None, None)
    index, probability = max(scored, key=lambda item: item[1])
    verdict: Verdict = "hemorrhage" if probability >= threshold else "no_hemorrhage"
    return StudyVerdict(verdict, probability, (index, probability))
