"""The bot's wiring: the Application, its one table of commands (menu and handlers), its one error handler."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from telegram import Bot, BotCommand, Update
from telegram.error import TelegramError
from telegram.ext import Application, CallbackQueryHandler, CommandHandler, MessageHandler, filters

from bot import texts
from bot.access import Caller, Context, authorize
from bot.acknowledge import acknowledge
from bot.bot_data import BotData, SiteProfileLookup, install, no_site_profile
from bot.membership import help_command, invite, revoke, start
from bot.patient_commands import add_patient, list_patients, mute, status, thresholds
from bot.reads import record_read
from bot.scans import scan_handlers
from bot.site_admin import site_rollback
from bot.stats import BotStats, CountingRequest
from bot.studies import list_studies, oncall
from bot.telegram_calls import is_passing
from core.settings import Settings
from inference.analyzer import ScanAnalyzer
from store.thread import StoreThread

log = logging.getLogger(__name__)

Handler = Callable[[Update, Context], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Command:
    name: str
    handler: Handler
    menu: str | None  # the description in Telegram's command menu; None keeps it out of the menu


# Every command, in the order of the menu: both the handlers and the menu are made from this table.
COMMANDS = [
    Command("status", status, "latest vitals, NEWS2, alerts and trend of a patient"),
    Command("patients", list_patients, "the patients you follow"),
    Command("mute", mute, "pause non-emergency alerts about a patient"),
    Command("thresholds", thresholds, "see or change a patient's alert limits"),
    Command("addpatient", add_patient, "register a patient (doctors)"),
    Command("invite", invite, "invite a doctor or a caregiver"),
    Command("revoke", revoke, "remove someone's access"),
    Command("oncall", oncall, "go on or off call for head CT alerts, or see who is on call (doctors)"),
    Command("studies", list_studies, "the last head CTs the scanners sent, with their triage (doctors)"),
    Command("siterollback", site_rollback, "go back to the site profile in use before the last change (admins)"),
    Command("help", help_command, "what this bot can do"),
    Command("start", start, None),  # opened from an invitation link, or by Telegram's Start button
]


def build_application(
    settings: Settings, analyzer: ScanAnalyzer | None, store: StoreThread, clock: Callable[[], float] = time.time,
    site_profile: SiteProfileLookup = no_site_profile, stats: BotStats | None = None,
) -> Application:
    """The bot, talking to `settings.telegram_api_url`, with every handler registered; `store` is open and
    serves the handlers' store calls; `site_profile` finds the site profile the analyzer's verdicts use; `stats`
    gets the bot's counts (failed Bot API calls, scan analyses)."""
    if settings.telegram_bot_token is None:
        raise ValueError("TELEGRAM_BOT_TOKEN is not set")
    stats = stats or BotStats()
    api = settings.telegram_api_url.rstrip("/")
    application = (
        Application.builder()
        .token(settings.telegram_bot_token.get_secret_value())
        .base_url(f"{api}/bot")
        .base_file_url(f"{api}/file/bot")
        .local_mode(settings.telegram_local_mode)
        .concurrent_updates(True)  # a long scan analysis must not hold up alerts and other users
        .request(CountingRequest(stats.telegram_errors))
        .get_updates_request(CountingRequest(stats.telegram_errors, connection_pool_size=1))  # as the builder's own
        .build()
    )
    install(application.bot_data, BotData(settings, store, clock, analyzer, site_profile, stats=stats))
    for command in COMMANDS:
        application.add_handler(CommandHandler(command.name, command.handler))
    application.add_handler(CallbackQueryHandler(record_read, pattern=r"^read:"))
    application.add_handler(CallbackQueryHandler(acknowledge))  # `ack:` buttons, and anything else is refused
    for handler in scan_handlers():
        application.add_handler(handler)
    application.add_handler(MessageHandler(filters.ALL, fallback))
    application.add_error_handler(on_error)
    return application


async def register_menu(bot: Bot) -> None:
    """The command list users see in Telegram's menu."""
    await bot.set_my_commands([BotCommand(command.name, command.menu) for command in COMMANDS if command.menu])


@authorize()
async def fallback(update: Update, context: Context, caller: Caller) -> None:
    """Anything else: point known users to /help (unknown ones get the usual explanation)."""
    if update.effective_message is not None:
        await update.effective_message.reply_text(texts.NOT_UNDERSTOOD)


async def on_error(update: object, context: Context) -> None:
    """Log every failure (by update id only: an update can carry an identifying file name) and tell the user.

    When Telegram itself failed (network, server error, rate limit) the answer cannot get through either:
    one log line, no traceback, no second try."""
    update_id = update.update_id if isinstance(update, Update) else None
    if is_passing(context.error):
        log.warning("Telegram failed while answering update %s (%s); the user gets no answer", update_id,
                    context.error)
        return
    log.error("error while handling update %s", update_id, exc_info=context.error)
    if isinstance(update, Update) and update.effective_message is not None:
        try:
            await update.effective_message.reply_text(texts.ERROR)
        except TelegramError as error:
            log.warning("could not tell the user about the error in update %s: %s", update_id, error)
