"""The notification outbox: every notice the monitor wants delivered, as a queue of rows.

A notice is queued in the same transaction as the alert change that caused it (`queue_notice`), so a crash
never loses one; the dispatcher takes the due rows (`due_notices`), claims each while delivering it, and marks
it delivered, deferred (to retry later, on its own schedule), held (nobody can receive it yet) or failed for
good. Pending rows survive restarts.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime

from core.notifications import AlertNotice, NoticeKind, Severity
from store.database import Database, atomic


@dataclass(frozen=True, slots=True)
class PendingNotice:
    notice: AlertNotice
    attempts: int  # failed deliveries so far
    due_at: float  # not to be tried before this time
    held: bool = False  # nobody could receive it last time: it does not hold back the notices after it


HELD = "held: "  # how `last_error` marks a held notice
_HELD_COLUMN = "coalesce(o.last_error, '') like 'held: %' as held"


def queue_notice(db: Database, alert_id: int, kind: NoticeKind, now: float) -> None:
    """Queue a notice about the alert as it stands now (the caller holds the transaction that changed it)."""
    row = next(db.query(
        "select a.condition, a.title, a.severity, a.raised_at, a.details, a.news2, a.escalation_level, "
        "p.name as patient_name from alerts a join patients p on p.id = a.patient_id where a.id = ?",
        [alert_id],
    ))
    details = json.loads(row.pop("details") or "{}")
    payload = row | {"values": details.get("values", {}), "news2_components": details.get("news2_components", {})}
    db.execute(
        "insert into outbox (alert_id, kind, payload, created_at, attempts, next_attempt_at) values (?, ?, ?, ?, 0, ?)",
        [alert_id, kind.value, json.dumps(payload), now, now],
    )


def _notice(row: dict) -> AlertNotice:
    payload = json.loads(row["payload"])
    return AlertNotice(
        outbox_id=row["id"], alert_id=row["alert_id"], kind=NoticeKind(row["kind"]), patient_id=row["patient_id"],
        patient_name=payload["patient_name"], condition=payload["condition"], title=payload["title"],
        severity=Severity(payload["severity"]), raised_at=datetime.fromtimestamp(payload["raised_at"], UTC),
        values=payload["values"], news2=payload["news2"], news2_components=payload["news2_components"],
        escalation_level=payload["escalation_level"],
    )


def pending_notices(db: Database, limit: int = 100) -> list[PendingNotice]:
    """Undelivered, unfailed notices in the order they were queued, due or not."""
    rows = db.query(
        f"select o.*, a.patient_id, {_HELD_COLUMN} from outbox o join alerts a on a.id = o.alert_id "
        "where o.delivered_at is null and o.failed_at is null order by o.id limit ?",
        [limit],
    )
    return [PendingNotice(_notice(row), row["attempts"], row["next_attempt_at"], bool(row["held"])) for row in rows]


def due_notices(db: Database, now: float, limit: int = 100) -> list[PendingNotice]:
    """Notices due at `now`, each the oldest pending one of its alert (so nobody reads "resolved" before
    "raised"), emergencies first, then in the order they were queued. A deferred notice holds back only the
    later notices of its own alert."""
    rows = db.query(
        f"select o.*, a.patient_id, {_HELD_COLUMN} from outbox o join alerts a on a.id = o.alert_id "
        "where o.delivered_at is null and o.failed_at is null and o.next_attempt_at <= ? "
        "and (o.claimed_until is null or o.claimed_until <= ?) and not exists ("
        "  select 1 from outbox e where e.alert_id = o.alert_id and e.id < o.id "
        "  and e.delivered_at is null and e.failed_at is null"
        ") order by a.severity = 'emergency' desc, o.id limit ?",
        [now, now, limit],
    )
    return [PendingNotice(_notice(row), row["attempts"], row["next_attempt_at"], bool(row["held"])) for row in rows]


def next_due_at(db: Database) -> float | None:
    """When the next pending notice falls due, or its claim runs out (None when nothing is pending)."""
    return db.execute(
        "select min(case when claimed_until > next_attempt_at then claimed_until else next_attempt_at end) "
        "from outbox where delivered_at is null and failed_at is null"
    ).fetchone()[0]


def outbox_backlog(db: Database) -> tuple[int, float | None]:
    """How many notices are pending (neither delivered nor failed for good, held ones included), and when the
    oldest of them was queued (None when none is)."""
    count, oldest = db.execute(
        "select count(*), min(created_at) from outbox where delivered_at is null and failed_at is null"
    ).fetchone()
    return count, oldest


def claim_notice(db: Database, outbox_id: int, now: float, until: float) -> bool:
    """Take a due notice for delivery until `until`, so no other monitor process offers it meanwhile; False when it
    is not due, claimed by another, or not pending. The claim ends when the notice is marked; one left by a process
    that died runs out at `until`, or is released at the next start (`release_claims`)."""
    with atomic(db):
        return bool(db.execute(
            "update outbox set claimed_until = ? where id = ? and next_attempt_at <= ? "
            "and (claimed_until is null or claimed_until <= ?) and delivered_at is null and failed_at is null",
            [until, outbox_id, now, now],
        ).rowcount)


def release_claims(db: Database) -> int:
    """The only process delivering starts: claims still standing were left by a process that died while delivering,
    and their notices are offered again at once (the notifier skips the chats they reached)."""
    with atomic(db):
        return db.execute(
            "update outbox set claimed_until = null where claimed_until is not null "
            "and delivered_at is null and failed_at is null"
        ).rowcount


def mark_delivered(db: Database, outbox_id: int, now: float) -> tuple[int, NoticeKind]:
    """Record that the notifier took the notice; returns its alert id and kind (see `alerts.notice_delivered`)."""
    with atomic(db):
        alert_id, kind = db.execute(
            "update outbox set delivered_at = ?, claimed_until = null where id = ? returning alert_id, kind",
            [now, outbox_id],
        ).fetchone()
    return alert_id, NoticeKind(kind)


def defer_notice(db: Database, outbox_id: int, reason: str, retry_at: float) -> None:
    with atomic(db):
        db.execute(
            "update outbox set attempts = attempts + 1, next_attempt_at = ?, last_error = ?, claimed_until = null "
            "where id = ?",
            [retry_at, reason, outbox_id],
        )


def hold_notice(db: Database, outbox_id: int, reason: str, retry_at: float) -> None:
    """Nobody can receive the notice yet: keep it pending, offered again at `retry_at` or when someone joins."""
    defer_notice(db, outbox_id, HELD + reason, retry_at)


def release_held(db: Database, now: float) -> int:
    """Someone joined (or the service restarted with other settings): offer every held notice again now."""
    with atomic(db):
        return db.execute(
            "update outbox set next_attempt_at = ? where delivered_at is null and failed_at is null "
            "and last_error like 'held: %' and next_attempt_at > ?",
            [now, now],
        ).rowcount


def held_alert_ids(db: Database) -> set[int]:
    """Alerts with a notice that nobody could receive yet."""
    rows = db.query(
        "select distinct alert_id from outbox where delivered_at is null and failed_at is null "
        "and last_error like 'held: %'"
    )
    return {row["alert_id"] for row in rows}


def fail_notice(db: Database, outbox_id: int, reason: str, now: float) -> None:
    """The notice can never be delivered: keep it, with the reason, out of the queue."""
    with atomic(db):
        db.execute(
            "update outbox set attempts = attempts + 1, failed_at = ?, last_error = ?, claimed_until = null "
            "where id = ?",
            [now, reason, outbox_id],
        )
