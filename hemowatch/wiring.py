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
from functools import partial
from urllib.parse import urlsplit

from telegram.error import InvalidToken
from telegram.ext import Application

from bot.application import build_application, register_menu
from bot.notifier import notifier_of
from bot.stats import BotStats
from bot.telegram_calls import keep_trying, log_polling_error
from core.settings import Settings
from dicomnode.node import DicomNode
from hemowatch.builders import scan_workers_from_settings, site_profile_lookup
from hemowatch.health import Phase, Watched, serving
from hemowatch.instance_lock import instance_lock
from hemowatch.site_jobs import announce_changes, update_nightly
from hemowatch.systemd import notify, watchdog
from monitor.broker import EmbeddedBroker
from monitor.vitals_monitor import VitalsMonitor
from store.thread import StoreThread

log = logging.getLogger(__name__)


@dataclass
class RunningService:
    """The running parts, for tests and benchmarks that drive them."""

    application: Application
    monitor: VitalsMonitor
    receiving: asyncio.Event  # set once updates arrive (polling started or webhook registered)
    dicom: DicomNode | None  # None when DICOM_PORT is 0


@asynccontextmanager
async def running(settings: Settings, clock: Callable[[], float] = time.time) -> AsyncIterator[RunningService]:
    """Start the broker (when embedded), the monitor, the DICOM node and the bot; stop them in reverse order. The bot
    and the DICOM node judge scans with the site profile in use, the admins hear of every change of it, and with
    SITE_AUTO_UPDATE it is refitted every night (`hemowatch.site_jobs`).

    The monitor starts first, so vitals are stored and alerts queued in the outbox even while Telegram
    cannot be reached; the bot keeps trying to connect and the outbox delivers once it can. Only the token
    check (getMe) is waited for, as a refused token ends the start; the command menu and receiving updates
    are set up in the background, retried while Telegram fails. The bot (its handlers and its notifier) has a
    store thread of its own, like the monitor, so SQLite never runs on the loop. Before anything starts, the
    database is locked for this process (`hemowatch.instance_lock`): a second service on it raises AlreadyRunning.

    Under systemd (`hemowatch.systemd`) the watchdog is pinged from the start, and READY=1 is sent once vitals are
    stored and scans are taken: a Telegram that cannot be reached at boot must not have the unit killed for a
    start that does not end. With METRICS_PORT, /healthz and /metrics (`hemowatch.health`) are served from then on.
    """
    bot_store = StoreThread("hemowatch-bot")
    async with AsyncExitStack() as stack:
        stack.enter_context(instance_lock(settings.hemowatch_db))
        await stack.enter_async_context(watchdog())
        stack.push_async_callback(bot_store.close)
        await bot_store.open(settings.hemowatch_db, settings.sqlite_synchronous)
        if not settings.mqtt_url:
            broker = EmbeddedBroker(settings.embedded_broker_host, settings.embedded_broker_port)
            await stack.enter_async_context(broker)
        scan_workers = await asyncio.to_thread(scan_workers_from_settings, settings)
        stack.callback(scan_workers.close)
        site_profile = site_profile_lookup(scan_workers.model_info.sha256)
        bot_stats = BotStats()
        application = build_application(settings, scan_workers, bot_store, clock, site_profile, bot_stats)
        stack.push_async_callback(application.shutdown)  # after the monitor has stopped delivering
        monitor = VitalsMonitor(settings, notifier_of(application), clock=clock)
        await stack.enter_async_context(monitor)
        dicom = None
        if settings.dicom_port:
            dicom_workers = scan_workers
            if settings.dicom_threshold is not None:
                dicom_workers = await asyncio.to_thread(scan_workers_from_settings, settings, settings.dicom_threshold)
                stack.callback(dicom_workers.close)
            dicom = DicomNode(settings, dicom_workers, on_alert=monitor.outbox.wake, clock=clock,
                              site_profile=site_profile)
            await stack.enter_async_context(dicom)  # alerts wait in the outbox until the bot is connected
        watched = Watched(monitor, bot_stats, dicom, clock)
        if settings.metrics_port:
            await stack.enter_async_context(serving(settings, watched))
        notify("READY=1")
        if not await keep_trying("the token check (getMe)", application.initialize, meanwhile="vitals are still stored"):
            raise InvalidToken("Telegram refused the token check")
        await application.start()
        stack.push_async_callback(application.stop)
        receiving = asyncio.Event()
        background = [
            asyncio.create_task(keep_trying("the command menu (setMyCommands)", lambda: register_menu(application.bot))),
            asyncio.create_task(_receive_updates(application, settings, receiving)),
            asyncio.create_task(announce_changes(application), name="site-profile-changes"),
        ]
        if settings.site_auto_update:
            background.append(asyncio.create_task(update_nightly(settings, application), name="site-profile-nightly"))
        stack.push_async_callback(_stop_receiving, application, background)
        log.info("HemoWatch is running as @%s", application.bot.username)
        watched.phase = Phase.RUNNING
        yield RunningService(application, monitor, receiving, dicom)
        log.info("HemoWatch is stopping")
        watched.phase = Phase.STOPPING
        notify("STOPPING=1")


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


async def _receive_updates(application: Application, settings: Settings, receiving: asyncio.Event) -> None:
    """Long polling by default; a webhook when WEBHOOK_URL is set (its path is where updates arrive).

    Either starts once Telegram takes its bootstrap call (deleteWebhook or setWebhook), retried until then
    while the service runs on; failures of getUpdates later are retried by python-telegram-bot's polling loop.
    """
    updater = application.updater
    if not settings.webhook_url:
        start = partial(updater.start_polling, error_callback=log_polling_error)
        what = "the switch to polling (deleteWebhook)"
    else:
        token = settings.telegram_bot_token.get_secret_value()
        start = partial(
            updater.start_webhook,
            listen=settings.webhook_listen,
            port=settings.webhook_port,
            url_path=urlsplit(settings.webhook_url).path.lstrip("/"),
            webhook_url=settings.webhook_url,
            secret_token=hashlib.sha256(token.encode()).hexdigest(),  # Telegram echoes it; strangers cannot
        )
        what = "the webhook registration (setWebhook)"
    if await keep_trying(what, start):
        receiving.set()


async def _stop_receiving(application: Application, background: list[asyncio.Task[object]]) -> None:
    for task in background:
        task.cancel()
    for task in background:
        with suppress(asyncio.CancelledError):
            await task
    if application.updater.running:
        await application.updater.stop()
