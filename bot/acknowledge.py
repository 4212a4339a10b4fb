"""The Acknowledge button under alert messages.

A doctor's or an admin's press acknowledges the alert, which ends its escalation. Anyone else who may see the
patient (a caregiver) only records that they have seen it: a relative's tap is not a clinical response, so the
alert keeps escalating and its button stays for the doctors. Every copy of the message lists both.
"""

from __future__ import annotations

import sqlite_utils
from telegram import Update

from bot import texts
from bot.access import Caller, Context, authorize, patient_role
from bot.alert_copies import show_on_copies
from bot.bot_data import bot_data
from bot.buttons import parse_ack
from core.notifications import STUDY_CONDITION
from core.roles import CLINICAL_ROLES, Role
from store import alerts


@authorize()
async def acknowledge(update: Update, context: Context, caller: Caller) -> None:
    """Records the press as an acknowledgement or as "seen" and shows it on everyone's copy of the message."""
    shared = bot_data(context)
    query = update.callback_query
    alert_id = parse_ack(query.data)
    alert = await shared.store.call(alerts.get_alert, alert_id) if alert_id is not None else None
    role = None if alert is None else await shared.store.call(_role_for, caller, alert)
    if alert is None or role is None:
        await query.answer(texts.ALERT_GONE, show_alert=True)
        return
    now = shared.clock()
    clinical = role in CLINICAL_ROLES
    record = alerts.acknowledge_alert if clinical else alerts.note_seen
    if not await shared.store.call(record, alert.id, caller.telegram_id, now, caller.name, role):
        await query.answer(_refusal(await shared.store.call(alerts.get_alert, alert.id)))
        return
    if alert.condition == STUDY_CONDITION:
        await query.answer(texts.STUDY_ACKNOWLEDGED)
    else:
        await query.answer(texts.ACKNOWLEDGED if clinical else texts.SEEN)
    await show_on_copies(context.bot, shared.store, alert.id, shared.alert_edits)


def _role_for(db: sqlite_utils.Database, caller: Caller, alert: alerts.Alert) -> Role | None:
    """The caller's role for the alert's patient, None when they may not press its button. A head CT from a
    scanner belongs to no followed patient: only doctors (and admins) may take it."""
    if alert.condition == STUDY_CONDITION:
        return caller.role if caller.has_role(Role.DOCTOR) else None
    return patient_role(db, caller, alert.patient_id)


def _refusal(alert: alerts.Alert) -> str:
    if not alert.is_open:
        return texts.ALREADY_RESOLVED
    return texts.ALREADY_ACKNOWLEDGED if alert.state is alerts.AlertState.ACKNOWLEDGED else texts.ALREADY_SEEN
