"""The composition root: the only place that builds the engines and receivers from settings and wires them.

One process runs the MQTT broker (if embedded), the vitals monitor, the DICOM node and the bot, each given what it
needs from the settings here; with PostgreSQL, several such processes share the work (see `running`).
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
from hemowatch.ingest_watch import IngestWatch, open_when_reachable, this_instance
from hemowatch.instance_lock import instance_lock
from hemowatch.site_jobs import announce_changes, update_nightly
from hemowatch.systemd import notify, watchdog
from monitor.broker import EmbeddedBroker
from monitor.vitals_monitor import VitalsMonitor
from store.leadership import Lease
from store.thread import StoreThread

log = logging.getLogger(__name__)


@dataclass
class RunningService:
    """The running parts, for tests and benchmarks that drive them."""

    application: Application
    monitor: VitalsMonitor
    receiving: asyncio.Event  # set once updates arrive (polling started or webhook registered)
    dicom: DicomNode | None  # None when DICOM_PORT is 0
    deposed: asyncio.Event  # set when this instance loses the lead to another (PostgreSQL only): it must stop


class LeadLost(Exception):
    """This instance lost its lease on the shared database; another instance takes over."""


@asynccontextmanager
async def running(settings: Settings, clock: Callable[[], float] = time.time) -> AsyncIterator[RunningService]:
    """Start the DICOM node, then (once this instance leads) the broker when embedded, the monitor and the bot; stop
    them in reverse order. The bot and the DICOM node judge scans with the site profile in use, the admins hear of
    every change of it, and with SITE_AUTO_UPDATE it is refitted every night (`hemowatch.site_jobs`).

    On SQLite the database is locked for this process before anything starts (`hemowatch.instance_lock`): a second
    service on it raises AlreadyRunning. On PostgreSQL (DATABASE_URL) several instances may run: each runs its DICOM
    node, its health endpoint and the ingest watch (`hemowatch.ingest_watch`) at once, and stands by until it holds
    the lease (`store.leadership`); only the leader ingests vitals, polls Telegram and runs the jobs and the outbox.
    The leader connects to the broker with the one shared MQTT_CLIENT_ID, so it inherits the persistent session and
    the messages queued in it, and takes the session from a half-dead predecessor. A leader that loses its lease
    sets `deposed` and must stop: `serve` then raises LeadLost.

    The monitor starts before the bot, so vitals are stored and alerts queued in the outbox even while Telegram
    cannot be reached; the bot keeps trying to connect and the outbox delivers once it can. Only the token check
    (getMe) is waited for, as a refused token ends the start; the command menu and receiving updates are set up in
    the background, retried while Telegram fails. The bot (its handlers and its notifier) has a store thread of its
    own, like the monitor, so the database never blocks the loop.

    Under systemd (`hemowatch.systemd`) the watchdog is pinged from the start, and READY=1 is sent once scans are
    taken: a Telegram that cannot be reached at boot must not have the unit killed for a start that does not end.
    With METRICS_PORT, /healthz and /metrics (`hemowatch.health`) are served from then on.
    """
    bot_store = StoreThread("hemowatch-bot")
    async with AsyncExitStack() as stack:
        if settings.database_url is None:
            stack.enter_context(instance_lock(settings.hemowatch_db))
        await stack.enter_async_context(watchdog())
        stack.push_async_callback(bot_store.close)
        scan_workers = await asyncio.to_thread(scan_workers_from_settings, settings)
        stack.callback(scan_workers.close)
        site_profile = site_profile_lookup(scan_workers.model_info.sha256)
        bot_stats = BotStats()
        application = build_application(settings, scan_workers, bot_store, clock, site_profile, bot_stats)
        stack.push_async_callback(application.shutdown)  # after the monitor has stopped delivering
        notifier = notifier_of(application)
        token_check = asyncio.create_task(
            keep_trying("the token check (getMe)", application.initialize, meanwhile="vitals are still stored"))
        background = [token_check]
        stack.push_async_callback(_stop_receiving, application, background)
        if settings.database_url is None:
            await bot_store.open(settings.hemowatch_db, settings.sqlite_synchronous)
        else:
            await open_when_reachable(bot_store, settings.database_url.get_secret_value(), notifier,
                                      settings.ingest_stopped_notice_s, token_check)
        monitor = VitalsMonitor(settings, notifier, clock=clock, instance=this_instance())
        dicom = None
        if settings.dicom_port:
            dicom_workers = scan_workers
            if settings.dicom_threshold is not None:
                dicom_workers = await asyncio.to_thread(scan_workers_from_settings, settings, settings.dicom_threshold)
                stack.callback(dicom_workers.close)
            dicom = DicomNode(settings, dicom_workers, on_alert=monitor.outbox.wake, clock=clock,
                              site_profile=site_profile)
            await stack.enter_async_context(dicom)  # alerts wait in the outbox until the leader delivers them
        watched = Watched(monitor, bot_stats, dicom, clock, leading=settings.database_url is None)
        if settings.metrics_port:
            await stack.enter_async_context(serving(settings, watched))
        notify("READY=1")
        watch = IngestWatch(bot_store, notifier, clock, settings.ingest_stopped_notice_s)
        background.append(asyncio.create_task(_watch_ingest(token_check, watch)))
        deposed = asyncio.Event()
        if settings.database_url is not None:
            background.append(await _take_the_lead(stack, settings.database_url.get_secret_value(), watched, deposed))
        if not settings.mqtt_url:
            await stack.enter_async_context(EmbeddedBroker(settings.embedded_broker_host, settings.embedded_broker_port))
        await stack.enter_async_context(monitor)
        if not await asyncio.shield(token_check):
            raise InvalidToken("Telegram refused the token check")
        await application.start()
        stack.push_async_callback(application.stop)
        receiving = asyncio.Event()
        leading = [
            asyncio.create_task(keep_trying("the command menu (setMyCommands)", lambda: register_menu(application.bot))),
            asyncio.create_task(_receive_updates(application, settings, receiving)),
            asyncio.create_task(announce_changes(application), name="site-profile-changes"),
        ]
        if settings.site_auto_update:
            leading.append(asyncio.create_task(update_nightly(settings, application), name="site-profile-nightly"))
        stack.push_async_callback(_stop_receiving, application, leading)  # before the application stops
        log.info("HemoWatch is running as @%s", application.bot.username)
        watched.phase = Phase.RUNNING
        yield RunningService(application, monitor, receiving, dicom, deposed)
        log.info("HemoWatch is stopping")
        watched.phase = Phase.STOPPING
        notify("STOPPING=1")


async def _take_the_lead(
    stack: AsyncExitStack, url: str, watched: Watched, deposed: asyncio.Event
) -> asyncio.Task[None]:
    """Stand by until this instance holds the lease on the database at `url` (let go of when `stack` closes); the
    task returned sets `deposed` if the lease is lost."""
    watched.phase = Phase.STANDING_BY
    lease = Lease(url)
    stack.push_async_callback(lease.release)
    log.info("standing by: another instance may lead; taking over when it stops")
    await lease.acquire()
    watched.leading = True
    log.info("this instance leads: it ingests vitals, polls Telegram and runs the jobs")
    return asyncio.create_task(_depose_on(lease.lost, deposed), name="lease")


async def _watch_ingest(token_check: asyncio.Task[bool], watch: IngestWatch) -> None:
    """Once the bot can speak, tell the admins whenever no instance ingests vitals (`hemowatch.ingest_watch`)."""
    if await asyncio.shield(token_check):
        await watch.run()


async def _depose_on(lost: asyncio.Event, deposed: asyncio.Event) -> None:
    await lost.wait()
    log.error("this instance lost its lease on the database; it stops so that another instance leads")
    deposed.set()


async def serve(settings: Settings, stop: asyncio.Event, clock: Callable[[], float] = time.time) -> None:
    """Run everything until `stop` is set, also when that comes while still waiting for Telegram or for the lead;
    LeadLost when the lease was lost instead."""
    started = asyncio.Event()

    deposed = False

    async def until_stopped() -> None:
        nonlocal deposed
        async with running(settings, clock) as service:
            started.set()
            stopping = asyncio.create_task(stop.wait())
            losing = asyncio.create_task(service.deposed.wait())
            await asyncio.wait({stopping, losing}, return_when=asyncio.FIRST_COMPLETED)
            stopping.cancel()
            losing.cancel()
            deposed = service.deposed.is_set()

    service = asyncio.create_task(until_stopped())
    stop_requested = asyncio.create_task(stop.wait())
    await asyncio.wait({service, stop_requested}, return_when=asyncio.FIRST_COMPLETED)
    stop_requested.cancel()
    if not started.is_set():
        service.cancel()  # still starting: unwind what has started
    with suppress(asyncio.CancelledError):
        await service
    if deposed:
        raise LeadLost("This instance lost its lease on the shared database, so it stopped; another instance leads.")


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
