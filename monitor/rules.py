"""Threshold rules per vital: adult defaults, per-patient overrides, hold duration and hysteresis.

Pure functions. A rule's condition must hold for `hold_s` (measured on sample timestamps) before it is
raised, and clears only once the value is back inside the limit by the rule's margin.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from core.notifications import Severity
from core.vitals import THRESHOLD_VITALS, VITALS, Threshold

Side = Literal["low", "high"]

_CONDITIONS = {vital: (f"{vital}_low", f"{vital}_high") for vital in THRESHOLD_VITALS}


@dataclass(frozen=True, slots=True)
class ThresholdRule:
    """Alert when `vital` goes below `low` or above `high` (None: that side is not watched)."""

    vital: str
    low: float | None
    high: float | None
    margin: float  # hysteresis: how far back inside a limit the value must come to clear
    severity: Severity

    @property
    def conditions(self) -> tuple[str, str]:
        return _CONDITIONS[self.vital]

    def within(self, value: float) -> bool:
        """Inside both limits (no hysteresis)."""
        return (self.low is None or value >= self.low) and (self.high is None or value <= self.high)


_MARGIN_AND_SEVERITY: dict[str, tuple[float, Severity]] = {
    "hr": (5, Severity.URGENT),
    "spo2": (2, Severity.URGENT),
    "sbp": (5, Severity.URGENT),
    "dbp": (5, Severity.WARNING),
    "rr": (2, Severity.URGENT),
    "temp": (0.3, Severity.WARNING),
}
# The standard adult limits (`core.vitals.VITALS`); a patient's thresholds override them.
ADULT_DEFAULTS: dict[str, ThresholdRule] = {
    vital: ThresholdRule(vital, *VITALS[vital].standard, margin, severity)
    for vital, (margin, severity) in _MARGIN_AND_SEVERITY.items()
}


def patient_rules(overrides: Mapping[str, Threshold]) -> dict[str, ThresholdRule]:
    """The defaults with a patient's own limits laid over them."""
    rules = dict(ADULT_DEFAULTS)
    for vital, threshold in overrides.items():
        default = ADULT_DEFAULTS[vital]
        rules[vital] = ThresholdRule(
            vital,
            default.low if threshold.low is None else threshold.low,
            default.high if threshold.high is None else threshold.high,
            default.margin,
            default.severity,
        )
    return rules


@dataclass(frozen=True, slots=True)
class Condition:
    """Where one alert condition stands: out of range since `pending_since` and not yet raised; or raised, and
    back in range since `clearing_since` but not for long enough to clear."""

    raised: bool = False
    pending_since: float | None = None
    clearing_since: float | None = None


IDLE = Condition()
RAISED = Condition(raised=True)


def debounce(
    condition: Condition, breached: bool, ts: float, hold_s: float, clear_hold_s: float = 0.0
) -> tuple[Condition, bool | None]:
    """Advance one condition by one observation: raise once breached for `hold_s`, clear once no longer
    breached for `clear_hold_s`. Returns the new condition and True (raise), False (clear) or None (no change)."""
    if condition.raised:
        if breached:
            return RAISED, None
        since = ts if condition.clearing_since is None else condition.clearing_since
        if ts - since >= clear_hold_s:
            return IDLE, False
        return Condition(raised=True, clearing_since=since), None
    if not breached:
        return IDLE, None
    since = ts if condition.pending_since is None else condition.pending_since
    if ts - since >= hold_s:
        return RAISED, True
    return Condition(pending_since=since), None


def beyond(value: float, limit: float | None, side: Side, raised: bool, margin: float) -> bool:
    """Whether `value` is past `limit` on `side`; once raised, it must come back inside by `margin` to clear."""
    if limit is None:
        return False
    slack = margin if raised else 0.0
    return value < limit + slack if side == "low" else value > limit - slack


def threshold_title(rule: ThresholdRule, side: Side) -> str:
    """E.g. "SpO2 low (below 90%)"."""
    limit = rule.low if side == "low" else rule.high
    direction = "below" if side == "low" else "above"
    vital = VITALS[rule.vital]
    return f"{vital.label} {side} ({direction} {vital.reading(limit)})"
