"""The alert engine as pure functions: hold durations, hysteresis, overrides, neuro rules, NEWS2, staleness."""

from __future__ import annotations

from core.notifications import Severity
from core.vitals import Threshold, VitalSample
from monitor.engine import AlertCleared, AlertRaised, EngineConfig, PatientState, Profile, assess, check_stale
from monitor.rules import patient_rules

CONFIG = EngineConfig(hold_s=30, sbp_ceiling=160, stale_after_s=300, gcs_baseline_s=3600)
ADULT = Profile(patient_rules({}), neuro=False)
NEURO = Profile(patient_rules({}), neuro=True)
FULL_SET = {"hr": 70, "spo2": 97, "sbp": 120, "rr": 16, "temp": 37.0, "acvpu": "A"}


class Patient:
    """Feeds samples through the engine for one patient and keeps what came out."""

    def __init__(self, profile: Profile = ADULT, config: EngineConfig = CONFIG) -> None:
        self.profile = profile
        self.config = config
        self.state = PatientState(last_seen=0.0)
        self.scores: list[int | None] = []

    def observe(self, ts: float, device: str = "", **vitals: object) -> list[tuple[str, str]]:
        sample = VitalSample(patient_id="p", ts=ts, received_at=ts, device=device, **vitals)
        self.state, events, news2 = assess(self.state, sample, self.profile, self.config)
        self.scores.append(news2.total if news2 else None)
        return [_short(event) for event in events]

    def news2(self, ts: float, **vitals: object) -> list[tuple[str, str]]:
        """Like `observe`, the NEWS2 alerts only."""
        return [event for event in self.observe(ts, **vitals) if event[0].startswith("news2")]


def _short(event: AlertRaised | AlertCleared) -> tuple[str, str]:
    return (event.condition, "raised" if isinstance(event, AlertRaised) else "cleared")


def test_a_threshold_must_hold_for_the_rule_duration() -> None:
    patient = Patient()
    assert patient.observe(0, spo2=88) == []
    assert patient.observe(15, spo2=87) == []
    assert patient.observe(29.9, spo2=88) == []
    assert patient.observe(30, spo2=88) == [("spo2_low", "raised")]


def test_a_reading_back_in_range_restarts_the_hold() -> None:
    patient = Patient()
    patient.observe(0, spo2=88)
    patient.observe(20, spo2=95)
    assert patient.observe(40, spo2=88) == []
    assert patient.observe(69, spo2=88) == []
    assert patient.observe(70, spo2=88) == [("spo2_low", "raised")]


def test_one_alert_while_the_condition_persists_and_hysteresis_before_it_clears() -> None:
    patient = Patient()
    patient.observe(0, hr=140)
    assert patient.observe(30, hr=141) == [("hr_high", "raised")]
    assert patient.observe(60, hr=150) == []
    assert patient.observe(90, hr=129) == []  # inside the limit (130) but not by the 5/min margin
    assert patient.observe(120, hr=125) == [("hr_high", "cleared")]
    assert patient.observe(150, hr=131) == []  # a new breach starts a new hold


def test_raised_alert_carries_severity_title_and_the_values() -> None:
    patient = Patient()
    patient.observe(0, spo2=85, hr=100)
    sample = VitalSample(patient_id="p", ts=30, received_at=31, spo2=86, hr=101)
    _, events, _ = assess(patient.state, sample, ADULT, CONFIG)
    (event,) = events
    assert event == AlertRaised(
        "spo2_low", Severity.URGENT, "SpO2 low (below 90%)", {"spo2": 86, "hr": 101, "measured_at": 30}
    )


def test_patient_override_replaces_the_default_limit_on_one_side() -> None:
    patient = Patient(Profile(patient_rules({"spo2": Threshold("spo2", 85, None)}), neuro=False))
    patient.observe(0, spo2=87)
    assert patient.observe(60, spo2=87) == []  # fine for this patient (chronic lung disease)
    patient.observe(90, spo2=84)
    assert patient.observe(120, spo2=84) == [("spo2_low", "raised")]
    assert patient_rules({"hr": Threshold("hr", None, 110)})["hr"].low == 40


def test_systolic_ceiling_applies_to_haemorrhage_patients_only() -> None:
    neuro, other = Patient(NEURO), Patient(ADULT)
    for ts in (0, 15, 30):
        neuro_events, other_events = neuro.observe(ts, sbp=165), other.observe(ts, sbp=165)
    assert neuro_events == [("sbp_ceiling", "raised")]
    assert other_events == []
    assert neuro.observe(40, sbp=158) == []  # within the 5 mmHg hysteresis
    assert neuro.observe(50, sbp=154) == [("sbp_ceiling", "cleared")]


def test_gcs_drop_of_two_from_baseline_is_an_emergency_at_once() -> None:
    patient = Patient(NEURO)
    assert patient.observe(0, gcs=15) == []
    assert patient.observe(60, gcs=14) == []
    sample = VitalSample(patient_id="p", ts=120, received_at=120, gcs=13)
    patient.state, events, _ = assess(patient.state, sample, NEURO, CONFIG)
    assert [(e.condition, e.severity, e.title) for e in events] == [
        ("gcs_drop", Severity.EMERGENCY, "GCS dropped 2 points (from 15 to 13)")
    ]
    assert events[0].values["gcs_baseline"] == 15
    assert patient.observe(180, gcs=12) == []  # still the same alert
    assert patient.observe(240, gcs=14) == [("gcs_drop", "cleared")]


def test_every_alert_of_a_sample_that_completes_a_set_carries_its_news2() -> None:
    patient = Patient(NEURO)
    patient.observe(0, **FULL_SET, gcs=15)
    vitals = FULL_SET | {"gcs": 13, "acvpu": "C", "sbp": 165, "hr": 38}
    patient.state, events, news2 = assess(patient.state, VitalSample("p", 30, 30, **vitals), NEURO, CONFIG)
    assert [event.condition for event in events] == ["gcs_drop"]
    assert events[0].news2 == news2 and (news2.total, news2.components["consciousness"]) == (6, 3)
    patient.state, events, _ = assess(patient.state, VitalSample("p", 60, 60, **vitals), NEURO, CONFIG)
    assert {event.condition: event.news2 for event in events} == {"hr_low": news2, "sbp_ceiling": news2, "news2": news2}


def test_gcs_baseline_is_recent_best_and_frozen_while_alerted() -> None:
    patient = Patient(NEURO)
    patient.observe(0, gcs=15)
    patient.observe(60, gcs=14)
    patient.observe(4000, gcs=14)  # an hour later the best recent GCS is 14
    assert patient.observe(4060, gcs=13) == []
    assert patient.observe(4120, gcs=12) == [("gcs_drop", "raised")]
    assert patient.observe(9000, gcs=12) == []  # hours later: the baseline did not drift down to 12


def test_gcs_drop_is_not_judged_for_other_patients() -> None:
    patient = Patient(ADULT)
    patient.observe(0, gcs=15)
    assert patient.observe(60, gcs=10) == []


def test_news2_needs_a_complete_recent_set() -> None:
    patient = Patient()
    patient.observe(0, hr=70, spo2=97, sbp=120, rr=16)
    assert patient.scores == [None]  # no temperature or consciousness yet
    patient.observe(10, temp=37.0, acvpu="A")
    assert patient.scores[-1] == 0  # completed by the earlier readings
    patient.observe(2000, hr=72)
    assert patient.scores[-1] is None  # the rest are older than the 15 min window


def test_news2_medium_risk_is_urgent_and_high_risk_an_emergency_each_held_before_raised_and_cleared() -> None:
    patient = Patient()
    assert patient.news2(0, **FULL_SET) == []
    medium = FULL_SET | {"rr": 21, "spo2": 95, "sbp": 101, "hr": 91, "temp": 38.1}  # 6
    assert patient.news2(10, **medium) == []
    assert patient.news2(40, **medium) == [("news2", "raised")]  # held for 30 s
    high = medium | {"rr": 25}  # 7
    assert patient.news2(50, **high) == []
    assert patient.news2(80, **high) == [("news2_high", "raised")]
    assert patient.news2(90, **medium) == []  # 6: within the margin of the high level
    five = medium | {"temp": 37.0}  # 5
    assert patient.news2(100, **five) == []  # below by the margin: clearing starts
    assert patient.news2(129, **five) == []
    assert patient.news2(130, **five) == [("news2_high", "cleared")]
    assert patient.news2(140, **FULL_SET) == []
    assert patient.news2(170, **FULL_SET) == [("news2", "cleared")]


def test_a_news2_score_wavering_around_a_boundary_raises_one_alert_and_does_not_flap() -> None:
    patient = Patient()
    six = FULL_SET | {"rr": 21, "spo2": 95, "sbp": 101, "hr": 91, "temp": 38.1}
    seven = six | {"rr": 25}
    events = [event for second in range(300) for event in patient.news2(second, **(six if second % 3 else seven))]
    assert events == [("news2", "raised")]  # 7 never held for 30 s
    events = [event for second in range(300, 331) for event in patient.news2(second, **seven)]
    assert events == [("news2_high", "raised")]
    events = [event for second in range(331, 900) for event in patient.news2(second, **(six if second % 3 else seven))]
    assert events == []  # within a point of 7, never cleared


def test_a_patient_jumping_to_high_risk_gets_one_emergency_alert() -> None:
    patient = Patient()
    patient.observe(0, **FULL_SET)
    high = FULL_SET | {"rr": 25, "spo2": 93, "hr": 111}
    assert patient.news2(10, **high) == []
    sample = VitalSample(patient_id="p", ts=40, received_at=40, **high)
    _, events, news2 = assess(patient.state, sample, ADULT, CONFIG)
    assert [(e.condition, e.severity, e.title) for e in events if e.condition.startswith("news2")] == [
        ("news2_high", Severity.EMERGENCY, "NEWS2 7 (high risk)")
    ]
    assert events[-1].news2 == news2 and news2.components["rr"] == 3


def test_a_single_parameter_scoring_three_raises_news2() -> None:
    patient = Patient()
    assert patient.observe(0, **(FULL_SET | {"acvpu": "C"})) == []
    assert patient.observe(30, **(FULL_SET | {"acvpu": "C"})) == [("news2", "raised")]
    assert patient.scores == [3, 3]


def test_late_samples_are_not_judged() -> None:
    patient = Patient()
    patient.observe(100, spo2=97)
    assert patient.observe(50, spo2=80) == []
    assert patient.observe(131, spo2=80) == []  # the hold did not start at the late sample


def test_each_device_keeps_its_own_order_on_the_patients_one_timeline() -> None:
    patient = Patient()
    patient.observe(100, device="monitor", hr=70)  # this device's clock runs 20 s ahead of the oximeter's
    assert patient.observe(81, device="oximeter", spo2=80) == []  # judged, at 100 (the timeline never goes back)
    assert patient.state.conditions["spo2_low"].pending_since == 100
    patient.observe(120, device="monitor", hr=71)
    assert patient.observe(111, device="oximeter", spo2=80) == []
    assert patient.observe(130, device="oximeter", spo2=80) == [("spo2_low", "raised")]
    assert patient.observe(129, device="oximeter", spo2=99) == []  # older than the oximeter's last: not judged
    assert patient.state.conditions["spo2_low"].raised


def test_sensor_offline_after_silence_and_cleared_when_data_returns() -> None:
    state = PatientState(last_seen=1000.0)
    state, events = check_stale(state, 1299.0, CONFIG)
    assert events == []
    state, events = check_stale(state, 1300.0, CONFIG)
    assert [_short(e) for e in events] == [("sensor_offline", "raised")]
    assert events[0].severity is Severity.WARNING and "5 min" in events[0].title
    state, events = check_stale(state, 2000.0, CONFIG)
    assert events == []  # one alert while it lasts
    sample = VitalSample(patient_id="p", ts=2001, received_at=2001, hr=70)
    state, events, _ = assess(state, sample, ADULT, CONFIG)
    assert [_short(e) for e in events] == [("sensor_offline", "cleared")]
    assert state.last_seen == 2001
