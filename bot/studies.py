"""Head CTs pushed by scanners (the DICOM node records them): who is on call for their alerts, `/oncall`, and
the list of the last triaged studies, `/studies`."""

from __future__ import annotations

from datetime import UTC, datetime
from html import escape

import sqlite_utils
from telegram import Update
from telegram.constants import ParseMode

from bot import texts
from bot.access import Caller, Context, authorize
from bot.bot_data import bot_data
from bot.telegram_limits import IDENTIFIER_MAX, MAX_TEXT, NAME_MAX, clip, pages
from core.notifications import AlertNotice, NoticeKind
from core.roles import Role
from inference.percent import percent
from store import people, studies
from store.people import Person

VERDICT_WORDS = {
    "hemorrhage": "🔴 haemorrhage suspected", "no_hemorrhage": "no haemorrhage suspected",
    "not_assessable": "not assessable", studies.SKIPPED: "skipped",
}


def on_call_people(db: sqlite_utils.Database, admin_ids: frozenset[int]) -> list[Person]:
    """The doctors on call who still hold their role (a revoked doctor is on call no more)."""
    found = []
    for telegram_id in studies.on_call(db):
        person = people.get_person(db, telegram_id)
        if person is not None and person.role is Role.DOCTOR and telegram_id not in admin_ids:
            found.append(person)
    return found


def study_recipients(db: sqlite_utils.Database, notice: AlertNotice, admin_ids: frozenset[int]) -> tuple[
    list[Person], bool
]:
    """Who hears about a study: the doctors on call, else every doctor, else the admins; an escalation goes to
    every doctor and the admins. Returns the people and whether the admins are added."""
    doctors = people.people_with_role(db, Role.DOCTOR)
    if notice.kind is NoticeKind.ESCALATED:
        return doctors, True
    chosen = on_call_people(db, admin_ids) or doctors
    return chosen, not chosen


@authorize(Role.DOCTOR)
async def oncall(update: Update, context: Context, caller: Caller) -> None:
    """Puts a doctor on call for head CT alerts (`on`), off again (`off`), or says who is on call."""
    shared = bot_data(context)
    word = (context.args or [""])[0].lower()
    if word in ("on", "off"):
        if caller.role is not Role.DOCTOR:
            await update.effective_message.reply_text(texts.ONCALL_ONLY_DOCTORS)
            return
        await shared.store.call(studies.set_on_call, caller.telegram_id, word == "on", shared.clock())
        await update.effective_message.reply_text(texts.ONCALL_ON if word == "on" else texts.ONCALL_OFF)
        return
    if word:
        await update.effective_message.reply_text(texts.ONCALL_USAGE)
        return
    names = [p.display_name for p in await shared.store.call(on_call_people, shared.settings.admin_user_ids)]
    await update.effective_message.reply_text(texts.on_call_list(names) if names else texts.NOBODY_ON_CALL)


@authorize(Role.DOCTOR)
async def list_studies(update: Update, context: Context, caller: Caller) -> None:
    """The last 20 head CTs the scanners sent: when, accession, scanner, verdict, probability, who is reading it
    and the doctor's read."""
    shared = bot_data(context)
    audits = await shared.store.call(studies.recent_studies, 20)
    if not audits:
        await update.effective_message.reply_text(texts.NO_STUDIES)
        return
    lines = ["<b>Last head CTs from the scanners</b> (newest first)"]
    lines += [study_line(audit) for audit in audits]
    for page in pages(lines, MAX_TEXT):  # one message, unless long accession numbers and names fill it
        await update.effective_message.reply_text(page, parse_mode=ParseMode.HTML)


def study_line(audit: studies.StudyAudit) -> str:
    """One study: received, accession, scanner, verdict with probability, and the doctor's read of it (bleed
    confirmed or not, and by whom), else who is reading it (acknowledged its alert); what came from the scanner is
    cut short, so that the line stays a line."""
    received = datetime.fromtimestamp(audit.last_received_at, UTC).strftime("%d %b %H:%M UTC")
    parts = [received]
    if audit.accession:
        parts.append(f"acc. {escape(clip(audit.accession, IDENTIFIER_MAX))}")
    parts.append(f"from {escape(clip(audit.ae_title, IDENTIFIER_MAX))}")
    verdict = VERDICT_WORDS.get(audit.verdict, audit.verdict)
    if audit.probability is not None:
        verdict += f" {percent(audit.probability)} (≥{percent(audit.threshold)})"
    elif audit.reason:
        verdict += f": {escape(clip(audit.reason, NAME_MAX))}"
    parts.append(verdict)
    if audit.read_label is not None:
        parts.append(f"read: {texts.READ_WORDS[audit.read_label]} ({escape(clip(audit.read_by or 'someone', NAME_MAX))})")
    elif audit.acknowledged_by:
        parts.append(f"being read by {escape(clip(audit.acknowledged_by, NAME_MAX))}")
    elif audit.alert_id is not None:
        parts.append("not acknowledged yet")
    elif audit.in_casebook:
        parts.append("not read yet")
    return "• " + " · ".join(parts)
