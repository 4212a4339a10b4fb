"""The site profile while the service runs: the admins are told of every change of the profile in use (looked for
every minute, as `hemowatch site` changes it from the command line too), and with SITE_AUTO_UPDATE the profile is
refitted every night from the doctors' reads, as `hemowatch site update` does: a candidate is adopted only when it
is not worse, and the admins are told what changed with the figures before and after.

The nightly update runs only when a doctor has given a read since the last change of the profile in use, so the
same cases never adopt a profile again that an admin rolled back, and never while the profile is switched off.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, time, timedelta

from telegram.ext import Application

from bot.site_admin import announce_site_changes
from commissioning.adoption import Outcome, update
from commissioning.fitting import TooFewCases
from core.settings import Settings
from hemowatch.site_command import site_recipe
from inference.model import ModelCard
from store import open_database, site_profiles

log = logging.getLogger(__name__)

ANNOUNCE_EVERY_S = 60.0
NIGHTLY_AT = time(3, 0)  # the server's local time
NIGHTLY = "nightly update"  # who made the change, in the history and in the admins' message


async def announce_changes(application: Application, every_s: float = ANNOUNCE_EVERY_S) -> None:
    """Tell the admins of site profile changes as they appear, until cancelled."""
    while True:
        try:
            await announce_site_changes(application)
        except Exception:  # the store or Telegram: try again at the next round
            log.exception("could not tell the admins of site profile changes; trying again in %.0f s", every_s)
        await asyncio.sleep(every_s)


async def update_nightly(settings: Settings, application: Application) -> None:
    """Refit the site profile at NIGHTLY_AT every night, until cancelled, and tell the admins of a change."""
    while True:
        await asyncio.sleep(seconds_until(NIGHTLY_AT, datetime.now().astimezone()))
        try:
            await asyncio.to_thread(update_site_profile, settings, datetime.now().timestamp())
            await announce_site_changes(application)
        except Exception:
            log.exception("the nightly site profile update failed; the profile in use stays")


def seconds_until(at: time, now: datetime) -> float:
    """Seconds from `now` to the next `at` (tomorrow's when today's has passed)."""
    target = now.replace(hour=at.hour, minute=at.minute, second=0, microsecond=0)
    if target <= now:
        target += timedelta(days=1)
    return (target - now).total_seconds()


def update_site_profile(settings: Settings, now: float) -> Outcome | None:
    """`hemowatch site update` for the nightly job, with its own connection; None when it did not judge (no
    read since the last change, the profile switched off, too few confirmed cases, or a model without features)."""
    card = ModelCard.beside(settings.hemowatch_model)
    if card.head is None:
        log.warning("nightly site update: the model card describes no features output")
        return None
    db = open_database(settings.database)
    try:
        history = site_profiles.changes(db)
        if history and history[-1].action == "off":
            log.info("nightly site update: the site profile is switched off, and stays so")
            return None
        if not site_profiles.reads_since(db, history[-1].at if history else 0.0):
            log.info("nightly site update: no doctor's read since the last change; nothing to learn")
            return None
        outcome = update(db, site_recipe(settings, card), card.operating_point, model_version=card.version,
                         by=NIGHTLY, now=now)
    except TooFewCases as error:
        log.info("nightly site update: %s", error)
        return None
    finally:
        db.close()
    log.info("nightly site update: %s (%s)", "adopted" if outcome.profile_id else "kept the profile in use",
             outcome.judgement.reason)
    return outcome
