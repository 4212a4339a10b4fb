"""The Acknowledge button under alert messages."""

from __future__ import annotations

import logging

from telegram import Update
from telegram.constants import ParseMode
from telegram.error import TelegramError

from bot import texts
from bot.access import Caller, Context, authorize, may_view
from bot.alert_text import acknowledged_text
from bot.bot_data import bot_data
from bot.buttons import parse_ack
from core.notifications import STUDY_CONDITION
from core.roles import Role
from store import alerts, deliveries

log = logging.getLogger(__name__)


@authorize()
async def acknowledge(update: Update, context: Context, caller: Caller) -> None:
    """Records who is dealing with an alert and shows it on everyone's copy of the message."""
    shared = bot_data(context)
    query = update.callback_query
    alert_id = parse_ack(query.data)
    alert = await shared.store.call(alerts.get_alert, alert_id) if alert_id is not None else None
    is_study = alert is not None and alert.condition == STUDY_CONDITION
    if alert is None or not (
        caller.has_role(Role.DOCTOR) if is_study else await shared.store.call(may_view, caller, alert.patient_id)
    ):
        await query.answer(texts.ALERT_GONE, show_alert=True)
        return
    now = shared.clock()
    if not await shared.store.call(alerts.acknowledge_alert, alert_id, caller.telegram_id, now):
        current = await shared.store.call(alerts.get_alert, alert_id)
        await query.answer(texts.ALREADY_ACKNOWLEDGED if current.is_open else texts.ALREADY_RESOLVED)
        return
    await query.answer(texts.STUDY_ACKNOWLEDGED if is_study else texts.ACKNOWLEDGED)
    for sent in await shared.store.call(deliveries.alert_messages, alert_id):
        edited = acknowledged_text(sent.text, caller.name, now)
        where = {"chat_id": sent.chat_id, "message_id": sent.message_id, "parse_mode": ParseMode.HTML}
        try:
            if is_study:  # sent as a picture with its caption
                await context.bot.edit_message_caption(caption=edited, reply_markup=None, **where)
            else:
                await context.bot.edit_message_text(edited, reply_markup=None, **where)
        except TelegramError as error:  # one stale copy must not stop the others
            log.warning("could not mark alert %s acknowledged in chat %s: %s", alert_id, sent.chat_id, error)
