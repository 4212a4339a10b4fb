"""Alert delivery over Telegram: the bot's implementation of the monitor's `Notifier` port.

Who hears what: a new alert goes to the patient's doctors and caregivers (except those who muted the
patient, unless it is an emergency); an escalation goes to the patient's doctors, and from the second level
on to the admins too; a "resolved" notice goes to whoever heard the alert. With nobody linked to a patient,
the admins are told, and with no admin configured every doctor. A head CT flagged by the DICOM node goes, with
its heat-map, to the doctors on call (every doctor when nobody is, the admins when there is no doctor); its
escalation to every doctor and the admins. Each copy (but a "resolved" one) lists who has already seen or
acknowledged the alert, and has no button once a clinician acknowledged it; once a "resolved" notice has gone
out, the alert's earlier copies say so and lose their button (`bot.alert_copies`). A notice nobody can receive yet is
held (`DeliveryHeld`): it stays in the outbox and reaches the first admin or member who joins. Each (notice,
chat) is sent at most once, so outbox retries never repeat a message. A chat Telegram refuses an alert for (too
long, say) gets its short plain form; one that cannot get even that is named to the admins. A service notice
(the vitals store failing, and working again) goes to the admins named in the settings, without the store.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from html import escape

import sqlite_utils
from telegram import Bot, InlineKeyboardMarkup, Message
from telegram.ext import Application
from telegram.constants import ParseMode
from telegram.error import BadRequest, Forbidden, NetworkError, RetryAfter, TelegramError

from bot.admin_messages import tell_admins
from bot.alert_copies import show_on_copies
from bot.alert_text import (
    acknowledgement,
    notice_text,
    service_text,
    short_notice_text,
    undelivered_text,
    with_responses,
)
from bot.bot_data import KEY, BotData
from bot.buttons import alert_markup
from bot.studies import study_recipients
from bot.telegram_calls import retry_after_s
from core.notifications import (
    STUDY_CONDITION,
    AlertNotice,
    DeliveryDeferred,
    DeliveryHeld,
    NoticeKind,
    ServiceNotice,
    Severity,
)
from core.roles import Role
from core.settings import Settings
from store import alerts, deliveries, people, studies
from store.deliveries import DeliveryStatus
from store.thread import StoreThread

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Recipient:
    telegram_id: int
    chat_id: int


def recipients(
    db: sqlite_utils.Database, notice: AlertNotice, admin_ids: frozenset[int], now: float
) -> list[Recipient]:
    """Who should get this notice, blocked chats left out."""
    if notice.condition == STUDY_CONDITION:
        chosen, with_admins = study_recipients(db, notice, admin_ids)
        return _with_admins(db, chosen, admin_ids, with_admins)
    members = people.members_of(db, notice.patient_id)
    if notice.kind is NoticeKind.ESCALATED:
        chosen = [m.person for m in members if m.role is Role.DOCTOR]
        with_admins = notice.escalation_level >= 2 or not chosen
    else:
        chosen = [
            m.person for m in members
            if notice.severity is Severity.EMERGENCY
            or people.muted_until(db, notice.patient_id, m.person.telegram_id, now) is None
        ]
        with_admins = not members or (notice.kind is NoticeKind.RESOLVED and notice.escalation_level >= 2)
    return _with_admins(db, chosen, admin_ids, with_admins)


def _with_admins(
    db: sqlite_utils.Database, chosen: list[people.Person], admin_ids: frozenset[int], with_admins: bool
) -> list[Recipient]:
    found = {p.telegram_id: Recipient(p.telegram_id, p.chat_id) for p in chosen if not p.blocked}
    if with_admins:
        for admin_id in sorted(admin_ids):
            found.setdefault(admin_id, Recipient(admin_id, admin_id))
        if not admin_ids:  # nobody is in charge of the service: the doctors are
            for doctor in people.doctors(db):
                if not doctor.blocked:
                    found.setdefault(doctor.telegram_id, Recipient(doctor.telegram_id, doctor.chat_id))
    return list(found.values())


@dataclass(frozen=True, slots=True)
class _Alert:
    """What goes to every recipient of a notice: its HTML text (kept with the delivery: an Acknowledge press adds
    the responses anew), the text shown with the responses so far, its short plain form, the picture and buttons."""

    text: str
    shown: str
    short_text: str
    picture: bytes | None
    markup: InlineKeyboardMarkup | None


class TelegramNotifier:
    """Sends notices with `bot`; every store call runs on `store`'s thread, never on the event loop."""

    def __init__(
        self, bot: Bot, store: StoreThread, settings: Settings, clock: Callable[[], float] = time.time,
        edits: asyncio.Lock | None = None,
    ) -> None:
        self._bot = bot
        self._store = store
        self._settings = settings
        self._clock = clock
        self._edits = edits or asyncio.Lock()  # the bot's `BotData.alert_edits`, shared with the Acknowledge button

    async def deliver(self, notice: AlertNotice) -> None:
        """Send the notice to every recipient not yet served; raise DeliveryDeferred or DeliveryHeld per the port."""
        settled = await self._store.call(deliveries.settled_chats, notice.outbox_id)
        text = shown = notice_text(notice)
        markup = None
        if notice.kind is not NoticeKind.RESOLVED:
            responses = await self._store.call(alerts.responses, notice.alert_id)
            shown = with_responses(text, responses)
            markup = alert_markup(notice.alert_id, notice.condition, notice.values, bool(acknowledgement(responses)))
        picture = None
        if notice.condition == STUDY_CONDITION:
            picture = await self._store.call(studies.study_overlay, notice.values["study"])
        alert = _Alert(text, shown, short_notice_text(notice), picture, markup)
        deferred: DeliveryDeferred | None = None
        refused: list[tuple[Recipient, BadRequest]] = []
        chosen = await self._store.call(recipients, notice, self._settings.admin_user_ids, self._clock())
        for recipient in chosen:
            if recipient.chat_id in settled:
                continue
            try:
                await self._send(notice, recipient, alert)
            except RetryAfter as error:  # the others wait too
                deferred = DeliveryDeferred("Telegram rate limit", retry_after_s(error))
                break
            except Forbidden:
                log.info("user %s blocked the bot; not sending there until they write again", recipient.telegram_id)
                await self._store.call(people.record_blocked, recipient.telegram_id, self._clock())
                await self._record(notice, recipient, DeliveryStatus.BLOCKED)
            except BadRequest as error:  # e.g. chat not found: retrying will not help
                log.warning("Telegram refused alert %s for chat %s, also in its short form: %s",
                            notice.alert_id, recipient.chat_id, error)
                await self._record(notice, recipient, DeliveryStatus.FAILED)
                refused.append((recipient, error))
            except NetworkError as error:  # 5xx, timeouts, connection errors: the outbox retries
                deferred = DeliveryDeferred(f"Telegram unavailable: {error}")
        if refused:
            await self._tell_admins(notice, refused)
        if deferred is not None:
            raise deferred
        if not await self._store.call(deliveries.was_sent, notice.outbox_id):
            raise DeliveryHeld(
                "nobody can receive it (set ADMIN_USER_IDS or invite a doctor)" if not chosen
                else "every recipient blocked the bot or cannot be written to"
            )
        if notice.kind is NoticeKind.RESOLVED:
            await show_on_copies(self._bot, self._store, notice.alert_id, self._edits)

    async def _send(self, notice: AlertNotice, recipient: Recipient, alert: _Alert) -> None:
        """Send the alert to one chat, in its short plain form if Telegram refuses the full one, and record it."""
        try:
            message = await self._post(recipient.chat_id, alert, alert.shown, ParseMode.HTML)
            text = alert.text
        except BadRequest as error:  # too long, say: the same again would be refused again
            log.warning("Telegram refused alert %s for chat %s (%s); sending its short form",
                        notice.alert_id, recipient.chat_id, error)
            message = await self._post(recipient.chat_id, alert, alert.short_text, None)
            text = escape(alert.short_text)  # kept as HTML, as the Acknowledge button edits it
        await self._record(notice, recipient, DeliveryStatus.SENT, message.message_id, text)

    async def _post(self, chat_id: int, alert: _Alert, text: str, parse_mode: str | None) -> Message:
        if alert.picture is not None:
            return await self._bot.send_photo(
                chat_id, alert.picture, caption=text, parse_mode=parse_mode, reply_markup=alert.markup
            )
        return await self._bot.send_message(chat_id, text, parse_mode=parse_mode, reply_markup=alert.markup)

    async def tell_admins(self, notice: ServiceNotice) -> None:
        """Send a service notice to each admin in ADMIN_USER_IDS (an admin's chat id is their user id), trying
        again while Telegram fails; no store call, as it may be the store the notice is about."""
        if not self._settings.admin_user_ids:
            raise DeliveryHeld("no admin is configured (set ADMIN_USER_IDS)")
        await tell_admins(self._bot, self._settings.admin_user_ids, service_text(notice), "the service notice")

    async def _tell_admins(self, notice: AlertNotice, refused: list[tuple[Recipient, BadRequest]]) -> None:
        """Name to the admins the recipients an alert did not reach at all."""
        text = undelivered_text(notice, [recipient.telegram_id for recipient, _ in refused], refused[0][1].message)
        chats = [recipient.chat_id for recipient, _ in refused]
        if not self._settings.admin_user_ids:
            log.warning("alert %s did not reach chats %s, and no admin is set (ADMIN_USER_IDS) to be told",
                        notice.alert_id, chats)
        for admin_id in sorted(self._settings.admin_user_ids):
            try:
                await self._bot.send_message(admin_id, text)
            except TelegramError as error:
                log.warning("could not tell admin %s that alert %s did not reach chats %s: %s", admin_id,
                            notice.alert_id, chats, error)

    async def _record(
        self, notice: AlertNotice, recipient: Recipient, status: DeliveryStatus,
        message_id: int | None = None, text: str | None = None,
    ) -> None:
        await self._store.call(
            deliveries.record_delivery, notice.outbox_id, recipient.chat_id, status, self._clock(), message_id, text
        )


def notifier_of(application: Application) -> TelegramNotifier:
    """The notifier of a bot built by `bot.application.build_application`: its store, settings and clock, and the
    lock under which its Acknowledge button edits alert copies."""
    shared: BotData = application.bot_data[KEY]
    return TelegramNotifier(application.bot, shared.store, shared.settings, shared.clock, shared.alert_edits)
