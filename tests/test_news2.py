"""NEWS2 against the Royal College of Physicians' 2017 chart: every band edge, and whole worked sets."""

from __future__ import annotations

import pytest

from bot import vitals_text
from core.notifications import Severity
from core.vitals import NEWS2_PARAMETERS
from monitor.news2 import consciousness, news2_score

NORMAL = {"rr": 16, "spo2": 97, "on_oxygen": False, "sbp": 120, "hr": 70, "acvpu": "A", "temp": 37.0}


@pytest.mark.parametrize(
    ("parameter", "value", "component", "score"),
    [
        # Respiration rate: <=8 3, 9-11 1, 12-20 0, 21-24 2, >=25 3
        ("rr", 8, "rr", 3), ("rr", 9, "rr", 1), ("rr", 11, "rr", 1), ("rr", 12, "rr", 0), ("rr", 20, "rr", 0),
        ("rr", 21, "rr", 2), ("rr", 24, "rr", 2), ("rr", 25, "rr", 3),
        # SpO2 scale 1: <=91 3, 92-93 2, 94-95 1, >=96 0
        ("spo2", 91, "spo2", 3), ("spo2", 92, "spo2", 2), ("spo2", 93, "spo2", 2), ("spo2", 94, "spo2", 1),
        ("spo2", 95, "spo2", 1), ("spo2", 96, "spo2", 0),
        # Air or oxygen: oxygen 2
        ("on_oxygen", True, "o2", 2), ("on_oxygen", False, "o2", 0),
        # Systolic BP: <=90 3, 91-100 2, 101-110 1, 111-219 0, >=220 3
        ("sbp", 90, "sbp", 3), ("sbp", 91, "sbp", 2), ("sbp", 100, "sbp", 2), ("sbp", 101, "sbp", 1),
        ("sbp", 110, "sbp", 1), ("sbp", 111, "sbp", 0), ("sbp", 219, "sbp", 0), ("sbp", 220, "sbp", 3),
        # Pulse: <=40 3, 41-50 1, 51-90 0, 91-110 1, 111-130 2, >=131 3
        ("hr", 40, "hr", 3), ("hr", 41, "hr", 1), ("hr", 50, "hr", 1), ("hr", 51, "hr", 0), ("hr", 90, "hr", 0),
        ("hr", 91, "hr", 1), ("hr", 110, "hr", 1), ("hr", 111, "hr", 2), ("hr", 130, "hr", 2), ("hr", 131, "hr", 3),
        # Consciousness: Alert 0; new confusion, voice, pain, unresponsive 3
        ("acvpu", "A", "consciousness", 0), ("acvpu", "C", "consciousness", 3), ("acvpu", "V", "consciousness", 3),
        ("acvpu", "P", "consciousness", 3), ("acvpu", "U", "consciousness", 3),
        # Temperature: <=35.0 3, 35.1-36.0 1, 36.1-38.0 0, 38.1-39.0 1, >=39.1 2
        ("temp", 35.0, "temp", 3), ("temp", 35.1, "temp", 1), ("temp", 36.0, "temp", 1), ("temp", 36.1, "temp", 0),
        ("temp", 38.0, "temp", 0), ("temp", 38.1, "temp", 1), ("temp", 39.0, "temp", 1), ("temp", 39.1, "temp", 2),
    ],
)
def test_each_band_edge_of_the_chart(parameter: str, value: object, component: str, score: int) -> None:
    result = news2_score(**(NORMAL | {parameter: value}))
    assert result.components[component] == score
    assert result.total == score


def test_readings_are_rounded_as_charted_before_banding() -> None:
    assert news2_score(**(NORMAL | {"hr": 90.6})).components["hr"] == 1  # charted as 91
    assert news2_score(**(NORMAL | {"temp": 38.04})).components["temp"] == 0  # charted as 38.0
    assert news2_score(**(NORMAL | {"spo2": 91.4})).components["spo2"] == 3  # charted as 91


@pytest.mark.parametrize(
    ("observations", "total", "risk"),
    [
        # A well adult: aggregate 0, no response.
        ({}, 0, None),
        # Low risk (1-4): RR 22 (2), pulse 95 (1), temperature 38.2 (1).
        ({"rr": 22, "hr": 95, "temp": 38.2}, 4, None),
        # Low-medium: a single red score (new confusion 3) with an aggregate of 3 -> urgent ward review.
        ({"acvpu": "C"}, 3, Severity.URGENT),
        # Medium (5-6): RR 21 (2), SpO2 95 (1), SBP 101 (1), pulse 91 (1), temperature 38.1 (1).
        ({"rr": 21, "spo2": 95, "sbp": 101, "hr": 91, "temp": 38.1}, 6, Severity.URGENT),
        # High (7+): septic picture: RR 24 (2), SpO2 93 (2) on oxygen (2), SBP 105 (1), pulse 115 (2), 38.5 (1).
        ({"rr": 24, "spo2": 93, "on_oxygen": True, "sbp": 105, "hr": 115, "temp": 38.5}, 10, Severity.EMERGENCY),
        # Cushing's response in a haemorrhage patient: pulse 48 (1), RR 10 (1), SBP 190 (0), voice only (3),
        # temperature 36.0 (1).
        ({"hr": 48, "rr": 10, "sbp": 190, "acvpu": "V", "temp": 36.0}, 6, Severity.URGENT),
        # Aggregate 7 exactly is already high risk.
        ({"rr": 25, "spo2": 93, "hr": 111}, 7, Severity.EMERGENCY),
    ],
)
def test_worked_observation_sets(observations: dict, total: int, risk: Severity | None) -> None:
    result = news2_score(**(NORMAL | observations))
    assert result.total == total
    assert result.risk is risk


def test_consciousness_comes_from_acvpu_else_gcs() -> None:
    assert consciousness("V", 15) == "V"
    assert consciousness(None, 15) == "A"
    assert consciousness(None, 14) == "C"
    assert consciousness(None, None) is None


def test_every_component_is_shown_by_its_chart_name() -> None:
    """Messages name each component the score carries: a new confusion shows as consciousness, not by a code."""
    result = news2_score(**(NORMAL | {"acvpu": "C", "on_oxygen": True}))
    assert set(result.components) == set(NEWS2_PARAMETERS)
    assert vitals_text.news2(result.total, result.components) == "NEWS2 5 (supplemental oxygen 2, consciousness 3)"
