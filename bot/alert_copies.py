"""Every copy of an alert (each message of its notices, in every chat, but the "resolved" ones) shows the alert as
it is now: who has seen and acknowledged it, whether it has resolved, and its Acknowledge button only while a
clinician may still take it. The Acknowledge button and the delivery of a "resolved" notice both edit them."""

from __future__ import annotations

import asyncio
import logging

from telegram import Bot
from telegram.constants import ParseMode
from telegram.error import TelegramError

from bot.alert_text import acknowledgement, with_responses
from bot.buttons import alert_markup
from core.notifications import STUDY_CONDITION, NoticeKind
from store import alerts, deliveries
from store.thread import StoreThread

log = logging.getLogger(__name__)


async def show_on_copies(bot: Bot, store: StoreThread, alert_id: int, edits: asyncio.Lock) -> None:
    """Edit every copy of the alert to show it as it is now. Under `edits`, one change at a time renders, so the
    last edit of each copy always shows them all. Under a head CT the doctor's read buttons stay."""
    async with edits:
        alert = await store.call(alerts.get_alert, alert_id)
        responses = await store.call(alerts.responses, alert_id)
        taken = acknowledgement(responses) is not None or not alert.is_open
        markup = alert_markup(alert.id, alert.condition, alert.values, taken)
        for sent in await store.call(deliveries.alert_messages, alert.id):
            if sent.kind is NoticeKind.RESOLVED:
                continue
            edited = with_responses(sent.text, responses, alert.resolved_at)
            where = {"chat_id": sent.chat_id, "message_id": sent.message_id, "parse_mode": ParseMode.HTML}
            try:
                if alert.condition == STUDY_CONDITION:  # sent as a picture with its caption
                    await bot.edit_message_caption(caption=edited, reply_markup=markup, **where)
                else:
                    await bot.edit_message_text(edited, reply_markup=markup, **where)
            except TelegramError as error:  # one stale copy must not stop the others
                log.warning("could not update alert %s in chat %s: %s", alert.id, sent.chat_id, error)
