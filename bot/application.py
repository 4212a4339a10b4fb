"""The bot's wiring: the Application, its handler table, its command menu and its one error handler."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from telegram import Bot, BotCommand, Update
from telegram.ext import Application, CallbackQueryHandler, CommandHandler, MessageHandler, filters

from bot import texts
from bot.access import Caller, Context, authorize
from bot.acknowledge import acknowledge
from bot.membership import help_command, invite, revoke, start
from bot.patient_commands import add_patient, list_patients, mute, status, thresholds
from bot.scans import scan_handlers
from bot.bot_data import BotData, install
from core.settings import Settings
from inference.analyzer import Analyzer
from store.thread import StoreThread

log = logging.getLogger(__name__)

MENU = [
    BotCommand("status", "latest vitals, NEWS2, alerts and trend of a patient"),
    BotCommand("patients", "the patients you follow"),
    BotCommand("mute", "pause non-emergency alerts about a patient"),
    BotCommand("thresholds", "see or change a patient's alert limits"),
    BotCommand("addpatient", "register a patient (doctors)"),
    BotCommand("invite", "invite a doctor or a caregiver"),
    BotCommand("revoke", "remove someone's access"),
    BotCommand("help", "what this bot can do"),
]


def build_application(
    settings: Settings, analyzer: Analyzer | None, store: StoreThread, clock: Callable[[], float] = time.time
) -> Application:
    """The bot, talking to `settings.telegram_api_url`, with every handler registered; `store` is open and
    serves the handlers' store calls."""
    if settings.telegram_bot_token is None:
        raise ValueError("TELEGRAM_BOT_TOKEN is not set")
    api = settings.telegram_api_url.rstrip("/")
    application = (
        Application.builder()
        .token(settings.telegram_bot_token.get_secret_value())
        .base_url(f"{api}/bot")
        .base_file_url(f"{api}/file/bot")
        .local_mode(settings.telegram_local_mode)
        .concurrent_updates(True)  # a long scan analysis must not hold up alerts and other users
        .build()
    )
    install(application.bot_data, BotData(settings, store, clock, analyzer))
    application.add_handler(CommandHandler("start", start))
    application.add_handler(CommandHandler("help", help_command))
    application.add_handler(CommandHandler("invite", invite))
    application.add_handler(CommandHandler("revoke", revoke))
    application.add_handler(CommandHandler("patients", list_patients))
    application.add_handler(CommandHandler("addpatient", add_patient))
    application.add_handler(CommandHandler("thresholds", thresholds))
    application.add_handler(CommandHandler("status", status))
    application.add_handler(CommandHandler("mute", mute))
    application.add_handler(CallbackQueryHandler(acknowledge))
    for handler in scan_handlers():
        application.add_handler(handler)
    application.add_handler(MessageHandler(filters.ALL, fallback))
    application.add_error_handler(on_error)
    return application


async def register_menu(bot: Bot) -> None:
    """The command list users see in Telegram's menu."""
    await bot.set_my_commands(MENU)


@authorize()
async def fallback(update: Update, context: Context, caller: Caller) -> None:
    """Anything else: point known users to /help (unknown ones get the usual explanation)."""
    if update.effective_message is not None:
        await update.effective_message.reply_text(texts.NOT_UNDERSTOOD)


async def on_error(update: object, context: Context) -> None:
    """Log every failure (by update id only: an update can carry an identifying file name) and tell the user."""
    update_id = update.update_id if isinstance(update, Update) else None
    log.error("error while handling update %s", update_id, exc_info=context.error)
    if isinstance(update, Update) and update.effective_message is not None:
        await update.effective_message.reply_text(texts.ERROR)
