"""The composition root: one process running the MQTT broker (if embedded), the monitor and the bot."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import signal
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from urllib.parse import urlsplit

import sqlite_utils
from telegram.ext import Application

from bot.app import build_application, register_menu
from bot.notifier import TelegramNotifier
from hemowatch.settings import Settings
from hemowatch.store import open_database
from inference.analyzer import Analyzer
from monitor.broker import EmbeddedBroker
from monitor.service import Monitor

log = logging.getLogger(__name__)

NO_TOKEN = (
    "HemoWatch needs a Telegram bot token to run.\n"
    "1. In Telegram, open @BotFather, send /newbot and follow the steps; it answers with a token.\n"
    "2. Copy .env.example to .env and put the token after TELEGRAM_BOT_TOKEN= (or set that environment "
    "variable).\n"
    "Then start HemoWatch again."
)


@dataclass
class Service:
    """The running parts, for tests and benchmarks that drive them."""

    application: Application
    monitor: Monitor
    db: sqlite_utils.Database


@asynccontextmanager
async def running(settings: Settings, clock: Callable[[], float] = time.time) -> AsyncIterator[Service]:
    """Start the broker (when embedded), the bot and the monitor; stop them in reverse order on exit."""
    db = open_database(settings.hemowatch_db)
    async with AsyncExitStack() as stack:
        stack.callback(db.close)
        if not settings.mqtt_url:
            broker = EmbeddedBroker(settings.embedded_broker_host, settings.embedded_broker_port)
            await stack.enter_async_context(broker)
        application = build_application(settings, Analyzer.from_settings(settings), db, clock)
        await application.initialize()
        stack.push_async_callback(application.shutdown)
        await register_menu(application.bot)
        await application.start()
        stack.push_async_callback(application.stop)
        await _receive_updates(application, settings)
        stack.push_async_callback(application.updater.stop)
        monitor = Monitor(settings, TelegramNotifier(application.bot, db, settings, clock), clock=clock)
        await stack.enter_async_context(monitor)
        log.info("HemoWatch is running as @%s", application.bot.username)
        yield Service(application, monitor, db)
        log.info("HemoWatch is stopping")


async def serve(settings: Settings, stop: asyncio.Event, clock: Callable[[], float] = time.time) -> None:
    """Run everything until `stop` is set."""
    async with running(settings, clock):
        await stop.wait()


async def _receive_updates(application: Application, settings: Settings) -> None:
    """Long polling by default; a webhook when WEBHOOK_URL is set (its path is where updates arrive)."""
    if not settings.webhook_url:
        await application.updater.start_polling()
        return
    token = settings.telegram_bot_token.get_secret_value()
    await application.updater.start_webhook(
        listen=settings.webhook_listen,
        port=settings.webhook_port,
        url_path=urlsplit(settings.webhook_url).path.lstrip("/"),
        webhook_url=settings.webhook_url,
        secret_token=hashlib.sha256(token.encode()).hexdigest(),  # Telegram echoes it; strangers cannot
    )


def run_service(settings: Settings) -> int:
    """`hemowatch run`: serve until SIGINT or SIGTERM."""
    if settings.telegram_bot_token is None:
        print(NO_TOKEN, file=sys.stderr)
        return 2

    logging.getLogger("transitions").setLevel(logging.WARNING)  # the embedded broker's state machine chatter

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for number in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(number, stop.set)
        await serve(settings, stop)

    asyncio.run(main())
    return 0
