"""Doctors' reads: the Bleed confirmed / No bleed buttons under a scan's verdict and a head CT alert.

A read labels the scan's cases in the casebook (their features, verdict and site profile were kept when it was
judged), with who gave it and when; a later read replaces it. Only doctors (and admins) may read, and a scan sent
in the chat only the doctor who sent it. A bleed confirmed on a scan HemoWatch called normal is told to the admins
at once: the profile in use may be missing bleeds.
"""

from __future__ import annotations

from dataclasses import dataclass

from telegram import Update

from bot import texts
from bot.access import Caller, Context, authorize
from bot.admin_messages import tell_admins
from bot.bot_data import bot_data
from bot.buttons import parse_read
from bot.site_text import missed_bleed_text
from core.roles import Role
from store import scans, site_profiles
from store.database import Database, atomic
from store.site_profiles import SCAN_PREFIX, StoredCase


@dataclass(frozen=True, slots=True)
class Read:
    previous: int | None  # the read it replaces, None for the first
    missed: bool  # a bleed confirmed (newly) where no case of the scan was flagged
    top: StoredCase  # the scan's most suspicious case


@authorize(Role.DOCTOR)
async def record_read(update: Update, context: Context, caller: Caller) -> None:
    """Record the read, answer the press, and tell the admins at once of a missed bleed."""
    shared = bot_data(context)
    query = update.callback_query
    parsed = parse_read(query.data)
    read = None if parsed is None else await shared.store.call(_record, *parsed, caller, shared.clock())
    if read is None:
        await query.answer(texts.READ_GONE, show_alert=True)
        return
    scan_ref, label = parsed
    await query.answer(texts.read_recorded(label, read.previous))
    if read.missed:
        await tell_admins(context.bot, shared.settings.admin_user_ids,
                          missed_bleed_text(caller.name, scan_ref, read.top), "the missed bleed")


def _record(db: Database, scan_ref: str, label: int, caller: Caller, now: float) -> Read | None:
    """The read stored on every case of the scan, or None when there is none the caller may read."""
    with atomic(db):
        cases = site_profiles.cases_of(db, scan_ref)
        if not cases or not _may_read(db, caller, scan_ref):
            return None
        site_profiles.record_read(db, scan_ref, label, caller.telegram_id, now)
    previous = cases[0].label
    flagged = any(case.verdict == "hemorrhage" for case in cases)
    top = max(cases, key=lambda case: case.probability or 0.0)
    return Read(previous, label == 1 and previous != 1 and not flagged, top)


def _may_read(db: Database, caller: Caller, scan_ref: str) -> bool:
    """A scan from the chat is read by the doctor who sent it (its verdict went to them only); a study from a
    scanner by any doctor."""
    if not scan_ref.startswith(SCAN_PREFIX) or caller.role is Role.ADMIN:
        return True
    return scans.sent_by(db, int(scan_ref.removeprefix(SCAN_PREFIX))) == caller.telegram_id
