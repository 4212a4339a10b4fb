"""The port between the monitor and whatever delivers its alerts (the Telegram bot, or a test recorder).

The monitor only knows `Notifier`; the bot implements it. Neither imports the other. Alert notices come from
the outbox; service notices (about the service itself, for the admins) are handed over directly, as they may
be about the store the outbox lives in.
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


# The condition of an alert raised by the DICOM node for a head CT with suspected haemorrhage; its notice's
# `values` carry the study's derived facts (see `store.studies`), and it goes to the doctors on call.
STUDY_CONDITION = "ct_haemorrhage"

# The conditions of the monitor's NEWS2 alerts (medium and high risk), whose titles give the score.
NEWS2_CONDITIONS = ("news2", "news2_high")


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

    def summary(self) -> str:
        """The notice's content on one line, for a log: what, how severe, whose, which values."""
        values = ", ".join(f"{name} {value}" for name, value in self.values.items())
        news2 = f"; NEWS2 {self.news2}" if self.news2 is not None else ""
        return (
            f"{self.severity.value} {self.kind.value} alert {self.alert_id} for patient {self.patient_id} "
            f"({self.patient_name}): {self.title}, raised {self.raised_at:%Y-%m-%d %H:%M} UTC"
            f"{'; ' + values if values else ''}{news2}"
        )


class ServiceEvent(StrEnum):
    STORE_FAILING = "store_failing"  # vitals cannot be stored: they wait at the broker, and so do their alerts
    STORE_RECOVERED = "store_recovered"  # they are stored again


@dataclass(frozen=True, slots=True)
class ServiceNotice:
    """A word to the admins about the service itself rather than about a patient."""

    event: ServiceEvent
    since: datetime  # when the trouble began
    reason: str  # the last error, e.g. "database is locked"
    until: datetime | None = None  # when it ended (STORE_RECOVERED)


class DeliveryDeferred(Exception):
    """Delivery failed for a passing reason (rate limit, network, server error); retry later."""

    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.retry_after = retry_after


class DeliveryHeld(DeliveryDeferred):
    """Nobody can receive the notice yet (no admin configured, nobody linked, every chat blocked). It stays
    pending without holding back other patients' notices, and is offered again when someone joins."""


class DeliveryRefused(Exception):
    """Delivery can never succeed (for example every recipient blocked the bot); do not retry."""


class Notifier(Protocol):
    async def deliver(self, notice: AlertNotice) -> None:
        """Deliver `notice` to the people concerned, or raise DeliveryDeferred / DeliveryHeld / DeliveryRefused."""
        ...

    async def tell_admins(self, notice: ServiceNotice) -> None:
        """Send `notice` to the admins without using the store (it may be the store that fails), retrying passing
        failures meanwhile; raise DeliveryHeld when there is no admin to tell."""
        ...
