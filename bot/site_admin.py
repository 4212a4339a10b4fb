"""The admins and the site profile: every change of the profile in use is told to them once, whoever made it (the
command line, the nightly update, /siterollback), and `/siterollback` goes back to what was in use before."""

from __future__ import annotations

from telegram import Update
from telegram.ext import Application

from bot import texts
from bot.access import Caller, Context, authorize
from bot.admin_messages import tell_admins
from bot.bot_data import KEY, BotData, bot_data
from bot.site_text import site_change_text
from core.roles import Role
from store import site_profiles
from store.site_profiles import SiteChange, StoredProfile
from store.database import Database

Pending = tuple[SiteChange, StoredProfile | None, StoredProfile | None]  # the change, what it put in use, what was


async def announce_site_changes(application: Application) -> int:
    """Tell the admins of each change they have not been told of, oldest first; how many were told. Changes wait
    while no admin is set (ADMIN_USER_IDS)."""
    shared: BotData = application.bot_data[KEY]
    admin_ids = shared.settings.admin_user_ids
    if not admin_ids:
        return 0
    async with shared.site_announcing:
        pending = await shared.store.call(_pending)
        for change, profile, before in pending:
            await tell_admins(application.bot, admin_ids, site_change_text(change, profile, before),
                              f"the site profile change {change.id}")
            await shared.store.call(site_profiles.mark_announced, change.id, shared.clock())
    return len(pending)


def _pending(db: Database) -> list[Pending]:
    history = site_profiles.changes(db)

    def profile(profile_id: int | None) -> StoredProfile | None:
        return None if profile_id is None else site_profiles.get_profile(db, profile_id)

    return [
        (change, profile(change.profile_id), profile(history[index - 1].profile_id if index else None))
        for index, change in enumerate(history)
        if change.announced_at is None
    ]


@authorize(Role.ADMIN)
async def site_rollback(update: Update, context: Context, caller: Caller) -> None:
    """Make active again what was in use before the last change; the admins are told as of any change."""
    shared = bot_data(context)
    restored = await shared.store.call(site_profiles.roll_back, f"{caller.name} (Telegram)", shared.clock())
    if restored is False:
        await update.effective_message.reply_text(texts.NOTHING_TO_ROLL_BACK)
        return
    await announce_site_changes(context.application)
