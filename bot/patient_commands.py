"""Commands about patients: /patients, /addpatient, /thresholds, /status and /mute."""

from __future__ import annotations

import asyncio
import functools
import re
from collections.abc import Awaitable, Callable
from dataclasses import asdict

import sqlite_utils
from telegram import Update

from bot import texts, vitals_text
from bot.access import Caller, Context, authorize, may_manage, may_view, visible_patient_ids
from bot.alert_text import acknowledgement, who
from bot.bot_data import bot_data
from bot.telegram_limits import MAX_TEXT, NAME_MAX, clip, pages
from bot.trend import LONGEST_S, render_trend, span_words, trend_span
from core.roles import Role
from core.vitals import THRESHOLD_VITALS, LimitError
from store import alerts, patients, people, vitals

MAX_MUTE_MINUTES = 12 * 60
PAGE_FOOTER_ROOM = 100  # of a /patients page, kept for "Page 2 of 3. Send /patients 3 for the next."
WHOLE_NUMBER = re.compile(r"[0-9]{1,6}")  # a page, minutes: ASCII digits only, as int() takes them
LIMIT = re.compile(r"-|[0-9]{1,3}(?:\.[0-9]{1,2})?")  # an alert limit, or `-` for the standard one


PatientHandler = Callable[[Update, Context, Caller, str, list[str]], Awaitable[None]]


def about_patient(usage: str) -> Callable[[PatientHandler], Callable[[Update, Context], Awaitable[None]]]:
    """For commands whose first argument is a patient the caller must be able to see.

    The handler receives the patient id and the remaining arguments; a patient the caller is not linked to
    gets the same answer as one that does not exist.
    """

    def decorate(handler: PatientHandler) -> Callable[[Update, Context], Awaitable[None]]:
        @authorize()
        @functools.wraps(handler)
        async def guarded(update: Update, context: Context, caller: Caller) -> None:
            args = context.args or []
            if not args:
                await update.effective_message.reply_text(usage)
            elif not await bot_data(context).store.call(may_view, caller, args[0]):
                await update.effective_message.reply_text(texts.no_patient(args[0]))
            else:
                await handler(update, context, caller, args[0], args[1:])

        return guarded

    return decorate


@authorize()
async def list_patients(update: Update, context: Context, caller: Caller) -> None:
    """Lists the patients the user follows, with who else follows them (for doctors); `/patients 2` shows the
    second page of a list too long for one message."""
    entries = await bot_data(context).store.call(_patient_entries, caller)
    if not entries:
        await update.effective_message.reply_text(texts.NO_PATIENTS)
        return
    found = pages(entries, MAX_TEXT - PAGE_FOOTER_ROOM)
    number = _page_number(context.args or [], len(found))
    if number is None:
        await update.effective_message.reply_text(texts.patients_usage(len(found)))
        return
    footer = f"\n\n{texts.patients_page(number, len(found))}" if len(found) > 1 else ""
    await update.effective_message.reply_text(found[number - 1] + footer)


def _page_number(args: list[str], total: int) -> int | None:
    """The page `/patients [page]` asks for (the first without one); None when it is not one of `total`."""
    if not args:
        return 1
    if len(args) == 1 and WHOLE_NUMBER.fullmatch(args[0]) and 1 <= int(args[0]) <= total:
        return int(args[0])
    return None


def _patient_entries(db: sqlite_utils.Database, caller: Caller) -> list[str]:
    """One entry per patient the caller may see, with who follows them (a line each) where the caller manages
    the patient."""
    entries = []
    for row in patients.list_patients(db, visible_patient_ids(db, caller)):
        lines = [f"• {row.id} – {clip(row.name, NAME_MAX)}"]
        if may_manage(db, caller, row.id):
            lines += [
                f"    {clip(m.person.display_name, NAME_MAX)} ({m.role}, user id {m.person.telegram_id})"
                for m in people.members_of(db, row.id)
            ]
        entries.append("\n".join(lines))
    return entries


@authorize(Role.DOCTOR)
async def add_patient(update: Update, context: Context, caller: Caller) -> None:
    """Registers a patient to monitor; a doctor who adds one becomes their doctor."""
    shared = bot_data(context)
    args = context.args or []
    if not args or not patients.PATIENT_ID.fullmatch(args[0]):
        await update.effective_message.reply_text(texts.ADDPATIENT_USAGE)
        return
    patient_id, given = args[0], " ".join(args[1:]) or args[0]
    if await shared.store.call(patients.get_patient, patient_id) is not None:
        await update.effective_message.reply_text(texts.patient_exists(patient_id))
        return
    name = clip(given, NAME_MAX)  # a longer name would crowd every alert and list
    now = shared.clock()
    await shared.store.call(patients.add_patient, patient_id, name, now)
    if caller.role is Role.DOCTOR:
        await shared.store.call(people.add_member, patient_id, caller.telegram_id, Role.DOCTOR, now)
    shortened = f"\n{texts.name_shortened(NAME_MAX)}" if name != given else ""
    await update.effective_message.reply_text(texts.patient_added(patient_id, name) + shortened)


@about_patient(texts.THRESHOLDS_USAGE)
async def thresholds(update: Update, context: Context, caller: Caller, patient_id: str, args: list[str]) -> None:
    """Shows a patient's alert limits; their doctors can change one."""
    shared = bot_data(context)
    if args:
        if not await shared.store.call(may_manage, caller, patient_id):
            await update.effective_message.reply_text(texts.not_your_patient_to_manage(patient_id))
            return
        limit = _parse_limit(args)
        if limit is None:
            await update.effective_message.reply_text(texts.threshold_usage())
            return
        try:
            await shared.store.call(patients.set_threshold, patient_id, *limit)
        except LimitError as error:
            await update.effective_message.reply_text(texts.threshold_refused(str(error)))
            return
    limits = (await shared.store.call(patients.get_thresholds, patient_id)).values()
    lines = [vitals_text.limit(t.vital, t.low, t.high) for t in limits]
    await update.effective_message.reply_text(texts.thresholds(patient_id, lines))


def _parse_limit(args: list[str]) -> tuple[str, float | None, float | None] | None:
    """`spo2 92 100` or `sbp - 150` (`-` keeps the standard limit on that side) as written, or None; whether the
    limits are allowed is `core.vitals.check_limits`'s to say."""
    if len(args) != 3 or args[0].lower() not in THRESHOLD_VITALS or not all(LIMIT.fullmatch(word) for word in args[1:]):
        return None
    vital, low, high = args
    return vital.lower(), _limit(low), _limit(high)


def _limit(word: str) -> float | None:
    return None if word == "-" else float(word)


@about_patient(texts.STATUS_USAGE)
async def status(update: Update, context: Context, caller: Caller, patient_id: str, args: list[str]) -> None:
    """Latest vital signs with their age, NEWS2, open alerts and a trend picture of the last hours' readings."""
    shared = bot_data(context)
    now = shared.clock()
    patient = await shared.store.call(patients.get_patient, patient_id)
    lines = [texts.status_heading(patient_id, patient.name)]
    latest = await shared.store.call(vitals.latest_vitals, patient_id)
    if latest is None:
        lines.append(texts.NO_VITALS)
    else:
        lines.append(texts.latest_vitals(vitals_text.age(now - latest.ts), vitals_text.vitals_line(latest.values())))
        if latest.news2 is not None:
            lines.append(vitals_text.news2(latest.news2, latest.news2_components or {}))
    open_now = await shared.store.call(alerts.open_alerts, patient_id)
    lines.append(texts.open_alerts_heading(len(open_now)))
    for alert in open_now:
        responses = await shared.store.call(alerts.responses, alert.id)
        taken = acknowledgement(responses)
        acknowledged_by = None if taken is None else who(taken)
        seen_by = [who(event) for event in responses if event is not taken]
        lines.append(texts.open_alert(
            alert.severity, alert.title, vitals_text.age(now - alert.raised_at), acknowledged_by, seen_by
        ))
    await update.effective_message.reply_text("\n".join(lines))
    recent = await shared.store.call(vitals.vitals_between, patient_id, now - LONGEST_S, now)
    samples = [asdict(s) for s in recent]
    if samples:
        span = trend_span(samples, now)
        picture = await asyncio.to_thread(render_trend, samples, now, span)
        await update.effective_message.reply_photo(picture, caption=texts.trend_caption(span_words(span)))


@about_patient(texts.MUTE_USAGE)
async def mute(update: Update, context: Context, caller: Caller, patient_id: str, args: list[str]) -> None:
    """Pauses non-emergency alerts about one patient for this user (at night, say)."""
    shared = bot_data(context)
    if len(args) != 1 or not WHOLE_NUMBER.fullmatch(args[0]):
        await update.effective_message.reply_text(texts.MUTE_USAGE)
        return
    minutes = int(args[0])
    if minutes > MAX_MUTE_MINUTES:
        await update.effective_message.reply_text(texts.mute_too_long(MAX_MUTE_MINUTES))
        return
    await shared.store.call(people.mute, patient_id, caller.telegram_id, shared.clock() + minutes * 60)
    reply = texts.muted(patient_id, minutes) if minutes else texts.unmuted(patient_id)
    await update.effective_message.reply_text(reply)
