"""The alert engine: one patient's state plus one sample in, new state and alert events out.

Pure: no I/O, no clock. Rule durations are measured on the samples' own timestamps, so vitals replayed
after an outage are judged as they happened. Each device's samples are judged in the order of its own stamps
(one that arrives after a newer one from the same device is stored, not judged); a patient's judgement runs
on one timeline that never goes back, so a device whose clock is a little behind another's is judged at the
newest time seen for the patient rather than left out. (A stamp too far ahead was already replaced by the
arrival time, see `monitor.payload`.) Conditions (one alert each while they persist):

- `<vital>_low` / `<vital>_high`: threshold rules (see `monitor.rules`), held for `hold_s`, with hysteresis.
- `news2` (urgent: aggregate 5-6 or one parameter scoring 3) and `news2_high` (emergency: 7 or more),
  from the latest observation of each parameter within `news2_window_s`; raised once held for `hold_s`, and
  cleared only once the score has stayed `NEWS2_MARGIN` below its level (and no parameter scores 3, for
  `news2`) for `hold_s` as well, so a score wavering around a boundary raises one alert.
- Haemorrhage patients: `gcs_drop` (emergency: 2 or more points below the recent baseline, the best GCS in
  the last `gcs_baseline_s`) and `sbp_ceiling` (urgent: systolic above the ceiling for `hold_s`).
- `sensor_offline` (warning): no sample received for `stale_after_s`; see `check_stale`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from core.notifications import NEWS2_CONDITIONS, Severity
from core.vitals import NEWS2_PARAMETERS, VITALS, VitalSample
from monitor.news2 import News2, consciousness, news2_score
from monitor.rules import IDLE, RAISED, Condition, ThresholdRule, beyond, debounce, threshold_title

SBP_CEILING_MARGIN = 5.0  # mmHg back below the ceiling before `sbp_ceiling` clears
GCS_DROP = 2  # points below baseline that make an emergency
NEWS2_MARGIN = 1  # a raised NEWS2 alert stays while the score is within this many points under its level
NEWS2, NEWS2_HIGH = NEWS2_CONDITIONS
_NEWS2_INPUTS = ("rr", "spo2", "sbp", "hr", "temp")


@dataclass(frozen=True, slots=True)
class EngineConfig:
    """The engine's limits; those a site may set come from the settings, which hold their defaults (see
    `monitor.vitals_monitor.engine_config`)."""

    hold_s: float
    sbp_ceiling: float
    stale_after_s: float
    gcs_baseline_s: float = 3600.0
    news2_window_s: float = 900.0  # how old an observation may be and still complete a NEWS2 set


@dataclass(frozen=True, slots=True)
class Profile:
    """What the engine knows about one patient."""

    rules: Mapping[str, ThresholdRule]
    neuro: bool


@dataclass(frozen=True, slots=True)
class PatientState:
    last_seen: float  # when the monitor last received a sample (or started watching)
    last_ts: float | None = None  # the patient's timeline: newest time judged so far
    devices: Mapping[str, float] = field(default_factory=dict)  # device -> newest stamp of it judged
    conditions: Mapping[str, Condition] = field(default_factory=dict)  # only non-idle ones
    observations: Mapping[str, tuple[float, Any]] = field(default_factory=dict)  # vital -> (ts, value)
    gcs_baseline: tuple[float, int] | None = None  # (ts, GCS)


@dataclass(frozen=True, slots=True)
class AlertRaised:
    condition: str
    severity: Severity
    title: str
    values: dict[str, Any]
    news2: News2 | None = None  # the patient's NEWS2 with the sample that raised it, whatever the condition


@dataclass(frozen=True, slots=True)
class AlertCleared:
    condition: str


Event = AlertRaised | AlertCleared


class _Step:
    """Collects one sample's condition changes."""

    def __init__(self, state: PatientState, ts: float) -> None:
        self.conditions = dict(state.conditions)
        self.events: list[Event] = []
        self.ts = ts
        self.news2: News2 | None = None  # the patient's NEWS2 with this sample, given with every alert it raises

    def raised(self, condition: str) -> bool:
        return self.conditions.get(condition, IDLE).raised

    def tracks(self, conditions: tuple[str, ...]) -> bool:
        """Whether any of these conditions is raised or pending."""
        return any(condition in self.conditions for condition in conditions)

    def judge(self, condition: str, breached: bool, hold_s: float, clear_hold_s: float = 0.0) -> bool:
        """Advance one condition; True when this sample raises it (the caller then describes the alert)."""
        current = self.conditions.get(condition)
        if current is None and not breached:  # the common case: nothing going on
            return False
        new, change = debounce(current or IDLE, breached, self.ts, hold_s, clear_hold_s)
        if new is IDLE:
            self.conditions.pop(condition, None)
        else:
            self.conditions[condition] = new
        if change is False:
            self.events.append(AlertCleared(condition))
        return change is True

    def alert(self, condition: str, severity: Severity, title: str, values: dict[str, Any]) -> None:
        self.events.append(AlertRaised(condition, severity, title, values, self.news2))


def assess(
    state: PatientState, sample: VitalSample, profile: Profile, config: EngineConfig
) -> tuple[PatientState, list[Event], News2 | None]:
    """Judge one sample. Returns the new state, the alerts raised or cleared, and the NEWS2 when the
    sample completed a set of observations."""
    at = sample.ts if state.last_ts is None else max(sample.ts, state.last_ts)
    step = _Step(state, at)
    if step.raised("sensor_offline"):
        step.conditions.pop("sensor_offline")
        step.events.append(AlertCleared("sensor_offline"))
    if sample.ts < state.devices.get(sample.device, sample.ts):  # arrived after a newer one of its device
        return replace(state, last_seen=sample.received_at, conditions=step.conditions), step.events, None

    present = sample.values()
    observations = dict(state.observations)
    for name, value in present.items():
        observations[name] = (at, value)
    step.news2 = news2 = _news2(observations, at, config.news2_window_s)
    for rule in profile.rules.values():
        value = present.get(rule.vital)
        if value is None or (rule.within(value) and not (step.conditions and step.tracks(rule.conditions))):
            continue  # the common case, kept cheap: in range and nothing pending
        for side, limit, condition in zip(("low", "high"), (rule.low, rule.high), rule.conditions, strict=True):
            breached = beyond(value, limit, side, step.raised(condition), rule.margin)
            if step.judge(condition, breached, config.hold_s):
                step.alert(condition, rule.severity, threshold_title(rule, side), present | {"measured_at": step.ts})

    gcs_baseline = state.gcs_baseline
    if profile.neuro:
        if sample.sbp is not None:
            breached = beyond(sample.sbp, config.sbp_ceiling, "high", step.raised("sbp_ceiling"), SBP_CEILING_MARGIN)
            if step.judge("sbp_ceiling", breached, config.hold_s):
                title = f"{VITALS['sbp'].label} above {VITALS['sbp'].reading(config.sbp_ceiling)}"
                step.alert("sbp_ceiling", Severity.URGENT, title, present | {"measured_at": step.ts})
        if sample.gcs is not None:
            gcs_baseline = _judge_gcs(step, gcs_baseline, sample.gcs, present, config)

    if news2 is not None:
        _judge_news2(step, news2, observations, config.hold_s)
    devices = {**state.devices, sample.device: sample.ts}
    new_state = PatientState(sample.received_at, at, devices, step.conditions, observations, gcs_baseline)
    return new_state, step.events, news2


def _judge_gcs(
    step: _Step, baseline: tuple[float, int] | None, gcs: int, present: dict[str, Any], config: EngineConfig
) -> tuple[float, int]:
    base_ts, base = baseline or (step.ts, gcs)
    if step.judge("gcs_drop", base - gcs >= GCS_DROP, 0.0):
        title = f"GCS dropped {base - gcs} points (from {base} to {gcs})"
        step.alert("gcs_drop", Severity.EMERGENCY, title, present | {"measured_at": step.ts, "gcs_baseline": base})
    # The baseline is frozen while the drop is alerted; otherwise it follows the best recent GCS.
    if not step.raised("gcs_drop") and (gcs >= base or step.ts - base_ts > config.gcs_baseline_s):
        return step.ts, gcs
    return base_ts, base


def _news2(observations: Mapping[str, tuple[float, Any]], now: float, window_s: float) -> News2 | None:
    fresh = {name: value for name, (ts, value) in observations.items() if now - ts <= window_s}
    level = consciousness(fresh.get("acvpu"), fresh.get("gcs"))
    if level is None or any(name not in fresh for name in _NEWS2_INPUTS):
        return None
    return news2_score(
        rr=fresh["rr"], spo2=fresh["spo2"], on_oxygen=bool(fresh.get("o2", False)), sbp=fresh["sbp"],
        hr=fresh["hr"], acvpu=level, temp=fresh["temp"],
    )


def _judge_news2(step: _Step, news2: News2, observations: Mapping[str, tuple[float, Any]], hold_s: float) -> None:
    total, risk = news2.total, news2.risk
    high = total >= 7 - (NEWS2_MARGIN if step.raised(NEWS2_HIGH) else 0)
    _judge_news2_level(step, NEWS2_HIGH, high, Severity.EMERGENCY, news2, observations, hold_s)
    if step.raised(NEWS2):  # stays while within the margin, also once the score has climbed to high risk
        urgent = total >= 5 - NEWS2_MARGIN or max(news2.components.values()) == 3
    else:  # counts from 5 (or a 3) up; a patient already alerted at high risk gets no second, urgent, alert
        urgent = risk is not None and not step.raised(NEWS2_HIGH)
    _judge_news2_level(step, NEWS2, urgent, Severity.URGENT, news2, observations, hold_s)


def _judge_news2_level(
    step: _Step, condition: str, breached: bool, severity: Severity, news2: News2,
    observations: Mapping[str, tuple[float, Any]], hold_s: float,
) -> None:
    if step.judge(condition, breached, hold_s, clear_hold_s=hold_s):
        values = {name: value for name, (_, value) in observations.items()} | {"measured_at": step.ts}
        step.alert(condition, severity, _news2_title(news2), values)


def _news2_title(news2: News2) -> str:
    if news2.total >= 5:
        return f"NEWS2 {news2.total} ({'high' if news2.total >= 7 else 'medium'} risk)"
    worst = max(news2.components, key=news2.components.__getitem__)
    return f"NEWS2 {news2.total} ({NEWS2_PARAMETERS[worst]} scores 3)"


def check_stale(state: PatientState, now: float, config: EngineConfig) -> tuple[PatientState, list[Event]]:
    """Raise `sensor_offline` once no sample has arrived for `stale_after_s`."""
    silent_s = now - state.last_seen
    if silent_s < config.stale_after_s or state.conditions.get("sensor_offline", IDLE).raised:
        return state, []
    silence = f"{silent_s / 60:.0f} min" if silent_s >= 120 else f"{silent_s:.0f} s"
    title = f"Sensor offline (no vitals for {silence})"
    event = AlertRaised("sensor_offline", Severity.WARNING, title, {"last_seen": state.last_seen})
    return replace(state, conditions={**state.conditions, "sensor_offline": RAISED}), [event]


def seeded_state(now: float, raised: set[str]) -> PatientState:
    """State for a patient the monitor starts watching, with the conditions of alerts still open."""
    return PatientState(last_seen=now, conditions=dict.fromkeys(raised, RAISED))
