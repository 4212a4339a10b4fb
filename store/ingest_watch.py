"""Whether vitals are being ingested, as the ingesting instance reports it every few seconds, and the notices
that told the admins ingest had stopped (one open at a time, whichever instance tells)."""

from __future__ import annotations

from dataclasses import dataclass

from store.database import Database, atomic


@dataclass(frozen=True, slots=True)
class Heartbeat:
    instance: str  # host:pid of the instance that ingests
    at: float  # its last word
    broker_down_since: float | None  # since when it has not been subscribed at the broker (None: it is)


@dataclass(frozen=True, slots=True)
class OpenNotice:
    id: int
    event: str
    since: float
    reason: str


def beat(db: Database, heartbeat: Heartbeat) -> None:
    """The ingesting instance's word that it runs, and whether it reaches the broker."""
    with atomic(db):
        db.upsert("ingest_heartbeat", {"instance": heartbeat.instance, "at": heartbeat.at,
                                       "broker_down_since": heartbeat.broker_down_since}, key=["instance"])
        db.execute("delete from ingest_heartbeat where instance != ? and at < ?", [heartbeat.instance, heartbeat.at])


def latest_heartbeat(db: Database) -> Heartbeat | None:
    row = db.execute(
        "select instance, at, broker_down_since from ingest_heartbeat order by at desc limit 1"
    ).fetchone()
    return Heartbeat(*row) if row else None


def open_notice(db: Database) -> OpenNotice | None:
    """The notice about an ingest stop that has not ended, if any."""
    row = db.execute(
        "select id, event, since, reason from service_notices where ended_at is null order by id desc limit 1"
    ).fetchone()
    return OpenNotice(*row) if row else None


def start_notice(db: Database, event: str, since: float, reason: str, now: float) -> OpenNotice | None:
    """Record that the admins are being told of a stop; None when another instance already is telling them."""
    with atomic(db):
        if open_notice(db) is not None:
            return None
        notice_id = db.insert(
            "service_notices", {"event": event, "since": since, "reason": reason, "told_at": now}
        )
    return OpenNotice(notice_id, event, since, reason)


def end_notice(db: Database, notice_id: int, now: float) -> bool:
    """Record that the stop ended; False when another instance already did (and tells the admins)."""
    with atomic(db):
        return db.execute(
            "update service_notices set ended_at = ? where id = ? and ended_at is null", [now, notice_id]
        ).rowcount == 1
