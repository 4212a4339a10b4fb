"""Which alert notice reached which chat, so a retried notice reaches nobody twice."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


from core.notifications import NoticeKind
from store.database import Database


class DeliveryStatus(StrEnum):
    SENT = "sent"
    BLOCKED = "blocked"  # the user blocked the bot
    FAILED = "failed"  # Telegram refused the message for good (e.g. chat not found)


@dataclass(frozen=True, slots=True)
class SentMessage:
    chat_id: int
    message_id: int
    text: str  # as first sent, without the lines saying who has seen or acknowledged it
    kind: NoticeKind


def settled_chats(db: Database, outbox_id: int) -> set[int]:
    """Chats this notice was already sent to, or that refused it for good."""
    return {row["chat_id"] for row in db.query("select chat_id from deliveries where outbox_id = ?", [outbox_id])}


def record_delivery(
    db: Database,
    outbox_id: int,
    chat_id: int,
    status: DeliveryStatus,
    now: float,
    message_id: int | None = None,
    text: str | None = None,
) -> None:
    db.upsert(
        "deliveries",
        {
            "outbox_id": outbox_id, "chat_id": chat_id, "message_id": message_id, "sent_at": now,
            "status": status.value, "text": text,
        },
        key=["outbox_id", "chat_id"],
    )


def was_sent(db: Database, outbox_id: int) -> bool:
    """Whether at least one chat received this notice."""
    rows = db.query("select 1 from deliveries where outbox_id = ? and status = 'sent' limit 1", [outbox_id])
    return any(True for _ in rows)


def alert_messages(db: Database, alert_id: int) -> list[SentMessage]:
    """Every message sent about this alert (all its notices, all chats), oldest first."""
    rows = db.query(
        "select d.chat_id, d.message_id, d.text, o.kind from deliveries d join outbox o on o.id = d.outbox_id "
        "where o.alert_id = ? and d.status = 'sent' and d.message_id is not null order by d.sent_at",
        [alert_id],
    )
    return [SentMessage(row["chat_id"], row["message_id"], row["text"] or "", NoticeKind(row["kind"])) for row in rows]
