"""The study verdict: the most suspicious assessable slice decides, unassessable slices never do."""

from __future__ import annotations

from inference.study import study_verdict


def test_the_most_suspicious_assessable_slice_decides() -> None:
    outcome = study_verdict([None, 0.1, 0.7, 0.3, None], threshold=0.5)
    assert outcome.verdict == "hemorrhage"
    assert outcome.probability == 0.7
    assert outcome.top_slice == (2, 0.7)


def test_below_the_threshold_is_no_haemorrhage_and_the_threshold_itself_counts() -> None:
    assert study_verdict([0.2, 0.49], threshold=0.5).verdict == "no_hemorrhage"
    assert study_verdict([0.2, 0.5], threshold=0.5).verdict == "hemorrhage"


def test_no_assessable_slice_is_not_assessable() -> None:
    outcome = study_verdict([None, None], threshold=0.5)
    assert (outcome.verdict, outcome.probability, outcome.top_slice) == ("not_assessable", None, None)
    assert study_verdict([], threshold=0.5).verdict == "not_assessable"
