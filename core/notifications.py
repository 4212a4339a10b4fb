"""The port between the monitor and whatever delivers its alerts (the Telegram bot, or a test recorder).

The monitor only knows `Notifier`; the bot implements it. Neither imports the other.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, Protocol


class Severity(StrEnum):
    WARNING = "warning"
    URGENT = "urgent"
    EMERGENCY = "emergency"


class NoticeKind(StrEnum):
    RAISED = "raised"  # a new alert: tell the patient's doctors and caregivers
    ESCALATED = "escalated"  # urgent/emergency left unacknowledged: the notifier decides who else
    RESOLVED = "resolved"  # the condition cleared
    REOPENED = "reopened"  # the condition returned soon after it cleared: the same alert is open again


@dataclass(frozen=True, slots=True)
class AlertNotice:
    """One message the monitor wants delivered, taken from the outbox.

    `outbox_id` is unique per notice, so a notifier can make delivery idempotent per recipient:
    a notice retried after a crash or a partial failure reaches nobody twice.
    """

    outbox_id: int
    alert_id: int
    kind: NoticeKind
    patient_id: str
    patient_name: str
    condition: str  # machine code, e.g. "spo2_low", "news2", "gcs_drop", "sbp_high", "sensor_offline"
    title: str  # short human wording, e.g. "SpO2 low"
    severity: Severity
    raised_at: datetime
    values: dict[str, Any] = field(default_factory=dict)  # the vitals that triggered it
    news2: int | None = None
    news2_components: dict[str, int] = field(default_factory=dict)
    escalation_level: int = 0


class DeliveryDeferred(Exception):
    """Delivery failed for a passing reason (rate limit, network, server error); retry later."""

    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.retry_after = retry_after


class DeliveryRefused(Exception):
    """Delivery can never succeed (for example every recipient blocked the bot); do not retry."""


class Notifier(Protocol):
    async def deliver(self, notice: AlertNotice) -> None:
        """Deliver `notice` to the people concerned, or raise DeliveryDeferred / DeliveryRefused."""
        ...
