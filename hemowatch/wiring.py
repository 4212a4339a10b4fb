"""The composition root: the only place that builds the engines and receivers from settings and wires them.

One process runs the MQTT broker (if embedded), the vitals monitor and the bot, each given what it needs
from the settings here.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager, suppress
from dataclasses import dataclass
from urllib.parse import urlsplit

from telegram.error import NetworkError
from telegram.ext import Application

from bot.application import build_application, register_menu
from bot.notifier import TelegramNotifier
from core.settings import Settings
from hemowatch.builders import scan_workers_from_settings
from monitor.broker import EmbeddedBroker
from monitor.mqtt import Backoff
from monitor.vitals_monitor import VitalsMonitor
from store.thread import StoreThread

log = logging.getLogger(__name__)


@dataclass
class RunningService:
    """The running parts, for tests and benchmarks that drive them."""

    application: Application
    monitor: VitalsMonitor


@asynccontextmanager
async def running(settings: Settings, clock: Callable[[], float] = time.time) -> AsyncIterator[RunningService]:
    """Start the broker (when embedded), the monitor and the bot; stop them in reverse order on exit.

    The monitor starts first, so vitals are stored and alerts queued in the outbox even while Telegram
    cannot be reached; the bot keeps trying to connect and the outbox delivers once it can. The bot (its
    handlers and its notifier) has a store thread of its own, like the monitor, so SQLite never runs on the loop.
    """
    bot_store = StoreThread("hemowatch-bot")
    async with AsyncExitStack() as stack:
        stack.push_async_callback(bot_store.close)
        await bot_store.open(settings.hemowatch_db, settings.sqlite_synchronous)
        if not settings.mqtt_url:
            broker = EmbeddedBroker(settings.embedded_broker_host, settings.embedded_broker_port)
            await stack.enter_async_context(broker)
        scan_workers = await asyncio.to_thread(scan_workers_from_settings, settings)
        stack.callback(scan_workers.close)
        application = build_application(settings, scan_workers, bot_store, clock)
        stack.push_async_callback(application.shutdown)  # after the monitor has stopped delivering
        monitor = VitalsMonitor(settings, TelegramNotifier(application.bot, bot_store, settings, clock), clock=clock)
        await stack.enter_async_context(monitor)
        await _connect(application)
        await register_menu(application.bot)
        await application.start()
        stack.push_async_callback(application.stop)
        await _receive_updates(application, settings)
        stack.push_async_callback(application.updater.stop)
        log.info("HemoWatch is running as @%s", application.bot.username)
        yield RunningService(application, monitor)
        log.info("HemoWatch is stopping")


async def serve(settings: Settings, stop: asyncio.Event, clock: Callable[[], float] = time.time) -> None:
    """Run everything until `stop` is set, also when that comes while still waiting for Telegram."""
    started = asyncio.Event()

    async def until_stopped() -> None:
        async with running(settings, clock):
            started.set()
            await stop.wait()

    service = asyncio.create_task(until_stopped())
    stop_requested = asyncio.create_task(stop.wait())
    await asyncio.wait({service, stop_requested}, return_when=asyncio.FIRST_COMPLETED)
    stop_requested.cancel()
    if not started.is_set():
        service.cancel()  # still starting: unwind what has started
    with suppress(asyncio.CancelledError):
        await service


async def _connect(application: Application) -> None:
    """Initialise the bot, trying again with backoff while Telegram cannot be reached."""
    backoff = Backoff(first_s=1.0, max_s=60.0)
    while True:
        try:
            await application.initialize()
            return
        except NetworkError as error:  # TimedOut included; a wrong token raises InvalidToken instead
            delay = backoff.next_delay()
            log.warning("cannot reach Telegram (%s); trying again in %.0f s (vitals are still stored)", error, delay)
            await asyncio.sleep(delay)


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
