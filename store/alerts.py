"""Alerts: their lifecycle and the escalation policy.

Lifecycle: raised -> notified (the RAISED notice was delivered) -> acknowledged (by a clinician) -> resolved; an
alert may also resolve straight from raised or notified. Someone who cannot take charge clinically (a caregiver)
only records that they have seen it (a `seen` event): its state stays, so it keeps escalating. A condition
that returns soon after its alert resolved re-opens that alert (see `raise_alert`) instead of paging anew. Every
transition, each escalation and each `seen` is an `alert_events` row.
Each change that people must hear about queues its notice in the outbox (`store.outbox`) in the same
transaction, so a crash never loses one.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import sqlite_utils

from core.notifications import NoticeKind, Severity
from core.roles import Role
from store.outbox import mark_delivered, queue_notice
from store.schema import atomic


class AlertState(StrEnum):
    RAISED = "raised"
    NOTIFIED = "notified"
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"


_OPEN = "state in ('raised', 'notified', 'acknowledged')"


@dataclass(frozen=True, slots=True)
class Alert:
    id: int
    patient_id: str
    condition: str  # e.g. "spo2_low", "news2", "gcs_drop", "sbp_ceiling", "sensor_offline"
    severity: Severity
    state: AlertState
    title: str
    values: dict[str, Any]  # the vitals that triggered it
    news2: int | None
    news2_components: dict[str, int]
    raised_at: float
    acknowledged_by: int | None
    acknowledged_at: float | None
    resolved_at: float | None
    escalation_level: int
    last_escalated_at: float | None

    @property
    def is_open(self) -> bool:
        return self.state is not AlertState.RESOLVED


@dataclass(frozen=True, slots=True)
class AlertEvent:
    """One stored step of an alert's history: a state change, an escalation or someone having seen it."""

    alert_id: int
    at: float
    state: str  # an AlertState value, "escalated", "reopened" or "seen"
    actor: str | None  # who acknowledged or saw it (Telegram id), else None
    note: str | None
    actor_name: str | None = None  # the actor's name at the time
    actor_role: Role | None = None  # the actor's role for the patient at the time


def _event(row: dict) -> AlertEvent:
    role = row["actor_role"]
    return AlertEvent(
        row["alert_id"], row["at"], row["state"], row["actor"], row["note"], row["actor_name"],
        None if role is None else Role(role),
    )


def _alert(row: dict) -> Alert:
    details = json.loads(row["details"] or "{}")
    return Alert(
        id=row["id"], patient_id=row["patient_id"], condition=row["condition"], severity=Severity(row["severity"]),
        state=AlertState(row["state"]), title=row["title"], values=details.get("values", {}), news2=row["news2"],
        news2_components=details.get("news2_components", {}), raised_at=row["raised_at"],
        acknowledged_by=row["acknowledged_by"], acknowledged_at=row["acknowledged_at"],
        resolved_at=row["resolved_at"], escalation_level=row["escalation_level"],
        last_escalated_at=row["last_escalated_at"],
    )


def _record(db: sqlite_utils.Database, alert_id: int, at: float, state: str, actor: str | None = None,
            note: str | None = None, actor_name: str | None = None, actor_role: Role | None = None) -> None:
    db.execute(
        "insert into alert_events (alert_id, at, state, actor, note, actor_name, actor_role) "
        "values (?, ?, ?, ?, ?, ?, ?)",
        [alert_id, at, state, actor, note, actor_name, actor_role],
    )


def raise_alert(
    db: sqlite_utils.Database,
    patient_id: str,
    condition: str,
    severity: Severity,
    title: str,
    now: float,
    values: dict[str, Any] | None = None,
    news2: int | None = None,
    news2_components: dict[str, int] | None = None,
    reopen_within_s: float = 0.0,
) -> int:
    """Open an alert and queue its RAISED notice; returns the alert id.

    If the patient's alert for this condition resolved within `reopen_within_s`, that alert is re-opened
    instead: it takes the new title and values, goes back to `acknowledged` if someone had taken it (else to
    `raised`), keeps its escalation level with the escalation clock restarted, and queues a REOPENED notice
    rather than a new alert's page."""
    details = json.dumps({"values": values or {}, "news2_components": news2_components or {}})
    with atomic(db):
        recent = reopen_within_s > 0 and db.execute(
            "select id, acknowledged_at from alerts where patient_id = ? and condition = ? and state = 'resolved' "
            "and resolved_at >= ? order by id desc limit 1",
            [patient_id, condition, now - reopen_within_s],
        ).fetchone()
        if recent:
            alert_id, acknowledged_at = recent
            db.execute(
                "update alerts set state = ?, title = ?, details = ?, news2 = ?, resolved_at = null, "
                "last_escalated_at = ? where id = ?",
                ["acknowledged" if acknowledged_at is not None else "raised", title, details, news2, now, alert_id],
            )
            _record(db, alert_id, now, "reopened")
            queue_notice(db, alert_id, NoticeKind.REOPENED, now)
            return alert_id
        alert_id = db.execute(
            "insert into alerts (patient_id, condition, severity, state, title, details, news2, raised_at, "
            "escalation_level) values (?, ?, ?, 'raised', ?, ?, ?, ?, 0)",
            [patient_id, condition, severity.value, title, details, news2, now],
        ).lastrowid
        _record(db, alert_id, now, AlertState.RAISED)
        queue_notice(db, alert_id, NoticeKind.RAISED, now)
    return alert_id


def resolve_alert(db: sqlite_utils.Database, alert_id: int, now: float) -> bool:
    """Close an open alert and queue its RESOLVED notice; False when it was already resolved."""
    with atomic(db):
        changed = db.execute(
            f"update alerts set state = 'resolved', resolved_at = ? where id = ? and {_OPEN}", [now, alert_id]
        ).rowcount
        if changed:
            _record(db, alert_id, now, AlertState.RESOLVED)
            queue_notice(db, alert_id, NoticeKind.RESOLVED, now)
    return bool(changed)


def acknowledge_alert(
    db: sqlite_utils.Database, alert_id: int, telegram_id: int, now: float, name: str | None = None,
    role: Role | None = None,
) -> bool:
    """Record that a clinician took charge, which ends the escalation; False when the alert is unknown, already
    acknowledged or resolved. Who may do so is the caller's decision (the bot: doctors and admins)."""
    with atomic(db):
        changed = db.execute(
            "update alerts set state = 'acknowledged', acknowledged_by = ?, acknowledged_at = ? "
            "where id = ? and state in ('raised', 'notified')",
            [telegram_id, now, alert_id],
        ).rowcount
        if changed:
            _record(db, alert_id, now, AlertState.ACKNOWLEDGED, str(telegram_id), actor_name=name, actor_role=role)
    return bool(changed)


def note_seen(db: sqlite_utils.Database, alert_id: int, telegram_id: int, now: float, name: str, role: Role) -> bool:
    """Record that someone who cannot take charge clinically has seen an alert still waiting for a clinician.
    The alert's state does not change, so it keeps escalating. False when they already said so, or the alert
    is unknown, acknowledged or resolved."""
    with atomic(db):
        waiting = db.execute(
            "select 1 from alerts where id = ? and state in ('raised', 'notified') and not exists "
            "(select 1 from alert_events where alert_id = ? and state = 'seen' and actor = ?)",
            [alert_id, alert_id, str(telegram_id)],
        ).fetchone()
        if waiting:
            _record(db, alert_id, now, "seen", str(telegram_id), actor_name=name, actor_role=role)
    return waiting is not None


def escalate_overdue(db: sqlite_utils.Database, now: float, after_s: float) -> list[int]:
    """Escalate urgent and emergency alerts left unacknowledged `after_s` since raised or last escalated:
    one level up and an ESCALATED notice each. Returns the escalated alert ids."""
    with atomic(db):
        rows = db.execute(
            "select id from alerts where state in ('raised', 'notified') and severity in ('urgent', 'emergency') "
            "and coalesce(last_escalated_at, raised_at) + ? <= ?",
            [after_s, now],
        ).fetchall()
        for (alert_id,) in rows:
            db.execute(
                "update alerts set escalation_level = escalation_level + 1, last_escalated_at = ? where id = ?",
                [now, alert_id],
            )
            level = db.execute("select escalation_level from alerts where id = ?", [alert_id]).fetchone()[0]
            _record(db, alert_id, now, "escalated", note=f"level {level}")
            queue_notice(db, alert_id, NoticeKind.ESCALATED, now)
    return [alert_id for (alert_id,) in rows]


def get_alert(db: sqlite_utils.Database, alert_id: int) -> Alert | None:
    rows = list(db.query("select * from alerts where id = ?", [alert_id]))
    return _alert(rows[0]) if rows else None


def open_alerts(db: sqlite_utils.Database, patient_id: str | None = None) -> list[Alert]:
    """Alerts not yet resolved, for one patient or all, oldest first."""
    if patient_id is None:
        rows = db.query(f"select * from alerts where {_OPEN} order by id")
    else:
        rows = db.query(f"select * from alerts where patient_id = ? and {_OPEN} order by id", [patient_id])
    return [_alert(row) for row in rows]


def count_open_alerts(db: sqlite_utils.Database) -> int:
    """Alerts not yet resolved, of every patient and study."""
    return db.execute(f"select count(*) from alerts where {_OPEN}").fetchone()[0]


def find_open_alert(db: sqlite_utils.Database, patient_id: str, condition: str) -> int | None:
    """The id of the patient's open alert for this condition, if any."""
    row = db.execute(
        f"select id from alerts where patient_id = ? and condition = ? and {_OPEN} order by id desc limit 1",
        [patient_id, condition],
    ).fetchone()
    return row[0] if row else None


def alert_events(db: sqlite_utils.Database, alert_id: int) -> list[AlertEvent]:
    """The alert's history, oldest first."""
    rows = db.query("select * from alert_events where alert_id = ? order by id", [alert_id])
    return [_event(row) for row in rows]


def responses(db: sqlite_utils.Database, alert_id: int) -> list[AlertEvent]:
    """Who has seen the alert and who acknowledged it, oldest first; an event stored without a name (before
    names were kept) takes the person's current one."""
    rows = db.query(
        "select e.alert_id, e.at, e.state, e.actor, e.note, e.actor_role, "
        "coalesce(e.actor_name, u.display_name, e.actor) as actor_name from alert_events e "
        "left join users u on u.telegram_id = cast(e.actor as integer) "
        "where e.alert_id = ? and e.state in ('seen', 'acknowledged') order by e.id",
        [alert_id],
    )
    return [_event(row) for row in rows]


def notice_delivered(db: sqlite_utils.Database, outbox_id: int, now: float) -> None:
    """The notifier took the notice; a delivered RAISED (or REOPENED) notice moves its alert to `notified`."""
    with atomic(db):
        alert_id, kind = mark_delivered(db, outbox_id, now)
        if kind in (NoticeKind.RAISED, NoticeKind.REOPENED) and db.execute(
            "update alerts set state = 'notified' where id = ? and state = 'raised'", [alert_id]
        ).rowcount:
            _record(db, alert_id, now, AlertState.NOTIFIED)
