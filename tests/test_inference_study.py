"""The study verdict: one slice against the slice threshold, a series through its calibrated study score."""

from __future__ import annotations

import pytest

from inference.study import AGGREGATIONS, OperatingPoint, StudyCalibration, aggregate, study_verdict

SLICE_ONLY = OperatingPoint(slice_threshold=0.5)


def test_the_most_suspicious_assessable_slice_decides_without_a_study_calibration() -> None:
    outcome = study_verdict([None, 0.1, 0.7, 0.3, None], SLICE_ONLY)
    assert outcome.verdict == "hemorrhage"
    assert outcome.probability == 0.7 and outcome.threshold == 0.5
    assert outcome.top_slice == (2, 0.7)


def test_below_the_threshold_is_no_haemorrhage_and_the_threshold_itself_counts() -> None:
    assert study_verdict([0.2, 0.49], SLICE_ONLY).verdict == "no_hemorrhage"
    assert study_verdict([0.2, 0.5], SLICE_ONLY).verdict == "hemorrhage"


def test_no_assessable_slice_is_not_assessable() -> None:
    outcome = study_verdict([None, None], SLICE_ONLY)
    assert (outcome.verdict, outcome.probability, outcome.top_slice) == ("not_assessable", None, None)
    assert study_verdict([], SLICE_ONLY).verdict == "not_assessable"


def test_a_series_is_judged_by_its_calibrated_study_score_and_names_its_top_slice() -> None:
    study = StudyCalibration(aggregation="top2_mean", slope=2.0, intercept=-1.0, threshold=0.6)
    point = OperatingPoint(slice_threshold=0.5, study=study)
    # Log-odds ln 9 and 0 for the top two, 0.9 and 0.5: mean ln 9 / 2, times 2, minus 1: ln 9 - 1, so 9 / (9 + e).
    outcome = study_verdict([0.9, None, 0.5, 0.1], point)
    assert (outcome.verdict, outcome.threshold, outcome.top_slice) == ("hemorrhage", 0.6, (0, 0.9))
    assert outcome.probability == pytest.approx(0.76803, abs=1e-5)
    # Log-odds ln 9 and -ln 9: mean 0, calibrated -1, so 0.269: under 0.6, though 0.9 passes the slice threshold.
    outcome = study_verdict([0.9, 0.1], point)
    assert (outcome.verdict, outcome.top_slice) == ("no_hemorrhage", (0, 0.9))
    assert outcome.probability == pytest.approx(0.26894, abs=1e-5)


def test_a_steep_study_calibration_saturates_instead_of_overflowing() -> None:
    """A site profile fitted on a few well-separated series can calibrate with a slope in the hundreds."""
    steep = OperatingPoint(0.5, StudyCalibration(aggregation="max", slope=264.6, intercept=-47.0, threshold=0.8))
    normal = study_verdict([0.01, 0.02], steep)  # log-odds -3.9: 264.6 * -3.9 - 47 is far past exp's range
    assert (normal.verdict, normal.probability) == ("no_hemorrhage", 0.0)
    bleed = study_verdict([0.01, 0.99], steep)
    assert (bleed.verdict, bleed.probability) == ("hemorrhage", 1.0)


def test_a_single_assessable_slice_uses_the_slice_threshold_even_with_a_study_calibration() -> None:
    study = StudyCalibration(aggregation="max", slope=1.0, intercept=-10.0, threshold=0.9)
    outcome = study_verdict([None, 0.55], OperatingPoint(0.5, study))
    assert (outcome.verdict, outcome.probability, outcome.threshold) == ("hemorrhage", 0.55, 0.5)


@pytest.mark.parametrize(
    ("method", "expected"), [("max", 5.0), ("top2_mean", 4.0), ("top3_mean", 3.0), ("neighbour_max", 3.0)]
)
def test_aggregations(method: str, expected: float) -> None:
    assert method in AGGREGATIONS
    assert aggregate([1.0, 5.0, 3.0, -2.0], method) == pytest.approx(expected)


def test_neighbour_max_rewards_a_bleed_seen_on_adjacent_slices_over_an_isolated_spike() -> None:
    isolated = [0.0, 6.0, 0.0, 0.0, 0.0]
    adjacent = [0.0, 3.0, 3.0, 3.0, 0.0]
    assert aggregate(adjacent, "neighbour_max") > aggregate(isolated, "neighbour_max")
    assert aggregate(isolated, "max") > aggregate(adjacent, "max")
