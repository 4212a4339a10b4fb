"""The running monitor: MQTT ingest, the store thread, the outbox and the periodic jobs, wired together.

    async with VitalsMonitor(settings, notifier):   # or: await VitalsMonitor(settings, notifier).run()
        ...

Everything that touches SQLite runs on worker threads with the monitor's own connections, so disk never
blocks the event loop: one thread stores vitals and alerts, another serves the outbox, so notices do not
wait behind a large batch of samples. A message is acknowledged to the broker only once its batch is
committed (or it is rejected for a reason in the message itself), so a process killed at any moment loses
nothing: the broker sends what was not acknowledged again, and the store skips what it already has. While the
store fails, a batch is retried until it is stored (see `monitor.store_outage`). The composition root calls
`stop()` (leaving the `async with`) on SIGTERM: messages already received are stored and acknowledged (unless
the store is failing: they are then left to the broker), then the subscription closes and the store is closed.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from contextlib import suppress
from functools import partial
from types import TracebackType
from typing import Any, Self

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from core.notifications import Notifier
from core.settings import Settings
from monitor.engine import EngineConfig
from monitor.ingest import Message, VitalsSubscriber, session_options
from monitor.mqtt import broker_url, client_options, vitals_topic
from monitor.outbox import OutboxDispatcher
from monitor.payload import Admission
from monitor.store_outage import StoreOutage
from monitor.ward import IngestStats, Ward
from store import ingest_watch
from store.alerts import escalate_overdue
from store.ingest_watch import Heartbeat
from store.thread import StoreThread
from store.vitals import prune_vitals

log = logging.getLogger(__name__)

MAX_BATCH = 2000  # messages per store transaction
BATCH_LINGER_S = 0.005  # after the first message, wait this long for more: fewer hand-offs to the store thread
STORE_BUSY_S = 5.0  # a store attempt waits this long for another writer; also bounds how long stop() waits for it
REFRESH_S = 10.0  # how often patients and thresholds changed by the bot are picked up
HEARTBEAT_S = 5.0  # at most this long between the monitor's words in the store that it runs and reaches the broker
RETENTION_EVERY_S = 3600.0


def engine_config(settings: Settings) -> EngineConfig:
    """The alert engine's limits as the settings give them."""
    return EngineConfig(
        hold_s=settings.rule_hold_s, sbp_ceiling=settings.sbp_ceiling, stale_after_s=settings.stale_after_s
    )


class VitalsMonitor:
    """Receives vitals, judges and stores them, and hands alerts to `notifier` through the outbox."""

    def __init__(
        self, settings: Settings, notifier: Notifier, clock: Callable[[], float] = time.time, instance: str = ""
    ) -> None:
        """`instance`: how the heartbeat names this process (`hemowatch.ingest_watch` reads it)."""
        self._settings = settings
        self._instance = instance
        self._broker_down_since: float | None = None
        self._notifier = notifier
        self._clock = clock
        self._store = StoreThread("hemowatch-store")
        self._outbox_store = StoreThread("hemowatch-outbox")
        self._queue: asyncio.Queue[Message] = asyncio.Queue()
        self._ward: Ward | None = None
        self._outage: StoreOutage | None = None
        self._tasks: list[asyncio.Task[Any]] = []
        self._scheduler = AsyncIOScheduler()
        self.outbox = OutboxDispatcher(self._outbox_store.call, notifier, clock)
        topic_filter = vitals_topic(settings.mqtt_topic_prefix, "+")
        if settings.mqtt_shared_group:
            topic_filter = f"$share/{settings.mqtt_shared_group}/{topic_filter}"
        url = broker_url(settings.mqtt_url, settings.embedded_broker_host, settings.embedded_broker_port)
        options = client_options(url, settings.mqtt_ca_file)
        options |= session_options(settings.mqtt_client_id, shared=bool(settings.mqtt_shared_group))
        self.subscriber = VitalsSubscriber(options, topic_filter, self._take, clock)
        self._source = f"{topic_filter} at {options['hostname']}:{options['port']}"

    @property
    def started(self) -> bool:
        return self._ward is not None

    @property
    def stats(self) -> IngestStats:
        assert self._ward is not None, "start() the monitor first"
        return self._ward.stats

    async def start(self) -> None:
        settings = self._settings
        db = await self._store.open(settings.database, settings.sqlite_synchronous, STORE_BUSY_S)
        await self._outbox_store.open(settings.database, settings.sqlite_synchronous, STORE_BUSY_S)
        admission = Admission(
            settings.mqtt_max_payload_bytes, settings.device_clock_tolerance_s, settings.retention_days * 86400
        )
        self._ward = Ward(
            db, engine_config(settings), settings.mqtt_topic_prefix, admission,
            shared=bool(settings.mqtt_shared_group), reopen_within_s=settings.alert_reopen_s,
        )
        self._outage = StoreOutage(self._ward.stats, self._notifier, self._clock, settings.store_outage_notice_s)
        await self.refresh()
        self._broker_down_since = self._clock()
        self._tasks = [
            asyncio.create_task(self.subscriber.run(), name="mqtt-ingest"),
            asyncio.create_task(self._store_messages(), name="store-vitals"),
            asyncio.create_task(self.outbox.run(), name="outbox"),
            asyncio.create_task(self._outage.tell_admins(), name="admin-notices"),
        ]
        every = partial(self._scheduler.add_job, trigger="interval", coalesce=True, max_instances=1)
        every(self._unless_failing(self.refresh), seconds=REFRESH_S)
        every(self._unless_failing(self.check_stale), seconds=min(10.0, max(1.0, settings.stale_after_s / 5)))
        every(self._unless_failing(self.escalate), seconds=min(10.0, max(1.0, settings.escalate_after_s / 5)))
        every(self._unless_failing(self.prune), seconds=RETENTION_EVERY_S)
        every(self._unless_failing(self.beat), seconds=min(HEARTBEAT_S, settings.ingest_stopped_notice_s / 4),
              next_run_time=datetime.now(UTC))
        self._scheduler.start()
        log.info("monitor started; vitals from %s", self._source)

    async def stop(self) -> None:
        """Stop taking messages, store and acknowledge what was taken, disconnect, stop delivering, close the
        store. Messages arriving meanwhile stay unacknowledged in the broker's session for the next start, and
        so do those taken when the store is failing: stopping then gives up on them."""
        if self._scheduler.running:
            self._scheduler.shutdown(wait=False)
        if not self._tasks:
            return
        ingest, storing, outbox, admin_notices = self._tasks
        self._tasks = []
        self.subscriber.stop_taking()
        await self._settle()
        await _cancel(ingest)
        await _cancel(storing)
        await _cancel(outbox)
        await _cancel(admin_notices)
        await self._store.close()
        await self._outbox_store.close()
        log.info("monitor stopped")

    async def run(self) -> None:
        """Run until cancelled."""
        async with self:
            await asyncio.Future()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    # --- periodic jobs (public so tests can drive them with their own clock) -------------------------

    async def refresh(self) -> None:
        """Pick up patients and thresholds changed through the bot."""
        await self._store.run(self._ward.refresh, self._clock())

    async def check_stale(self) -> None:
        """Raise "sensor offline" for patients gone quiet."""
        if await self._store.run(self._ward.check_stale, self._clock()):
            self.outbox.wake()

    async def escalate(self) -> None:
        """Escalate urgent and emergency alerts nobody acknowledged in time."""
        if await self._store.call(escalate_overdue, self._clock(), self._settings.escalate_after_s):
            self.outbox.wake()

    async def beat(self) -> None:
        """Say in the store that this monitor runs, and since when it has not been subscribed at the broker."""
        now = self._clock()
        if self.subscriber.subscribed.is_set():
            self._broker_down_since = None
        elif self._broker_down_since is None:
            self._broker_down_since = now
        # On the outbox's connection: a heartbeat waiting for a locked database must not hold up the vitals.
        await self._outbox_store.call(ingest_watch.beat, Heartbeat(self._instance, now, self._broker_down_since))

    async def prune(self) -> None:
        """Drop raw samples older than the retention period (alerts stay)."""
        pruned = await self._store.call(prune_vitals, self._clock() - self._settings.retention_days * 86400)
        log.info("pruned %d samples older than %g days", pruned, self._settings.retention_days)

    # --- internals ----------------------------------------------------------------------------------

    def _unless_failing(self, job: Callable[[], Awaitable[None]]) -> Callable[[], Awaitable[None]]:
        """`job`, skipped while storing fails: the batch being retried finds out when the store is back, and
        the job would only wait for the store and fail again."""

        async def run() -> None:
            if not self._outage.failing.is_set():
                with suppress(asyncio.CancelledError):  # the scheduler cancels jobs still running when it stops
                    await job()

        return run

    async def _settle(self) -> None:
        """Wait until the messages taken are stored and acknowledged, or until storing fails."""
        settled = asyncio.ensure_future(self._queue.join())
        failing = asyncio.ensure_future(self._outage.failing.wait())
        try:
            done, _ = await asyncio.wait({settled, failing}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            settled.cancel()
            failing.cancel()
        if settled not in done:
            log.warning(
                "stopping while vitals cannot be stored: the messages received and not stored are left "
                "unacknowledged, for the broker to send again at the next start"
            )

    def _take(self, message: Message) -> None:
        self.stats.received += 1
        self._queue.put_nowait(message)

    async def _store_messages(self) -> None:
        """Take whatever has queued up as one batch, so the batch size follows the load. The batch being stored
        holds the oldest message not yet stored: the queue behind it has only later ones."""
        while True:
            batch = [await self._queue.get()]
            self.stats.oldest_unstored_at = batch[0].received_at
            await asyncio.sleep(BATCH_LINGER_S)
            while len(batch) < MAX_BATCH and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            try:
                if await self._outage.retry(partial(self._store.run, self._ward.ingest, batch)):
                    self.outbox.wake()
                self.subscriber.acknowledge(batch)  # stored, or rejected for good: the broker may forget them
            finally:
                self.stats.oldest_unstored_at = None
                for _ in batch:
                    self._queue.task_done()


async def _cancel(task: asyncio.Task[Any]) -> None:
    """Cancel `task` and wait for it to end.

    The request is repeated because a cancellation can be swallowed when it lands while aiomqtt is
    connecting (`asyncio.wait_for` on Python 3.11), which would otherwise leave shutdown waiting forever.
    """
    while not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=1.0)
    if not task.cancelled() and (error := task.exception()) is not None:
        log.error("%s ended with an error", task.get_name(), exc_info=error)
