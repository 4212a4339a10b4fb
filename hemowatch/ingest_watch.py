"""Someone is told when vitals stop coming in: every instance watches the ingesting instance's heartbeat.

The instance that ingests (the leader) writes a heartbeat every few seconds, saying whether it is subscribed at the
broker. Every instance, the leader included, looks at it: when no instance has ingested for INGEST_STOPPED_NOTICE_S
(none leads) or the leader has not reached the broker for that long, the admins are told in Telegram, and again when
vitals come in once more. The notice is recorded in the store first, so with several instances watching it is sent
once, by whichever can still speak.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import NoReturn

import psycopg

from core.backoff import Backoff

from core.notifications import DeliveryHeld, Notifier, ServiceEvent, ServiceNotice
from store import ingest_watch
from store.ingest_watch import Heartbeat
from store.thread import StoreThread

log = logging.getLogger(__name__)

CHECK_EVERY_S = 10.0  # at most; a quarter of the notice delay when that is shorter


def this_instance() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def stop_of(heartbeat: Heartbeat | None, now: float, watching_since: float, after_s: float) -> tuple[float, str] | None:
    """Since when and why vitals have not been received for longer than `after_s`, or None when they are."""
    if heartbeat is None:
        since, reason = watching_since, "no HemoWatch instance has received vitals since this one started"
    elif heartbeat.at < now - after_s:
        since, reason = heartbeat.at, f"no HemoWatch instance leads (the last, {heartbeat.instance}, went silent)"
    elif heartbeat.broker_down_since is not None:
        since, reason = heartbeat.broker_down_since, f"{heartbeat.instance} cannot reach the MQTT broker"
    else:
        return None
    return (since, reason) if since < now - after_s else None


class IngestWatch:
    """Checks the heartbeat and tells the admins when ingest has stopped for `after_s`, and when it is back."""

    def __init__(self, store: StoreThread, notifier: Notifier, clock: Callable[[], float], after_s: float) -> None:
        self._store = store
        self._notifier = notifier
        self._clock = clock
        self._after_s = after_s
        self._watching_since = clock()

    async def run(self) -> NoReturn:
        """Check until cancelled. While the database cannot be read, nobody can tell from it whether vitals come in
        (on PostgreSQL the leader stops when it loses the database): this instance tells the admins itself once
        that has lasted `after_s`, and again when it can read the database, with no record of it (each instance
        that is cut off tells them)."""
        failing_since: float | None = None
        told = False
        while True:
            try:
                await self.check()
            except Exception as error:
                now = self._clock()
                if failing_since is None:
                    failing_since = now
                    log.warning("cannot check whether vitals are received: %s", error)
                if not told and now - failing_since >= self._after_s:
                    told = True
                    await self._tell(ServiceNotice(ServiceEvent.INGEST_STOPPED, _moment(failing_since),
                                                   _unreachable(error)))
            else:
                if told:
                    await self._tell(ServiceNotice(ServiceEvent.INGEST_RECOVERED, _moment(failing_since or 0),
                                                   "the database could not be reached", until=_moment(self._clock())))
                failing_since, told = None, False
            await asyncio.sleep(min(CHECK_EVERY_S, self._after_s / 4))

    async def check(self) -> None:
        now = self._clock()
        heartbeat = await self._store.call(ingest_watch.latest_heartbeat)
        stop = stop_of(heartbeat, now, self._watching_since, self._after_s)
        told = await self._store.call(ingest_watch.open_notice)
        if stop is not None and told is None:
            since, reason = stop
            if await self._store.call(ingest_watch.start_notice, ServiceEvent.INGEST_STOPPED.value, since, reason, now):
                log.error("vitals have not been received since %s: %s", _moment(since).isoformat(), reason)
                await self._tell(ServiceNotice(ServiceEvent.INGEST_STOPPED, _moment(since), reason))
        elif stop is None and told is not None:
            if await self._store.call(ingest_watch.end_notice, told.id, now):
                log.info("vitals are received again")
                await self._tell(ServiceNotice(ServiceEvent.INGEST_RECOVERED, _moment(told.since), told.reason,
                                               until=_moment(now)))

    async def _tell(self, notice: ServiceNotice) -> None:
        await _tell(self._notifier, notice)


async def open_when_reachable(
    store: StoreThread, url: str, notifier: Notifier, after_s: float, can_speak: asyncio.Task[bool]
) -> None:
    """Open `store` on the PostgreSQL database at `url`, waiting for the server while it cannot be reached (logged
    once). Once that has lasted `after_s` and the bot can speak (`can_speak`: the token check), the admins are told,
    and told again when the database answers."""
    backoff, started, told = Backoff(0.5, 10.0), time.monotonic(), None
    while True:
        try:
            await store.open(url)
        except psycopg.OperationalError as error:
            if backoff.failures == 0:
                log.warning("cannot reach the PostgreSQL database in DATABASE_URL (%s); trying again until it answers",
                            _first_line(error))
            if told is None and time.monotonic() - started >= after_s and can_speak.done() and can_speak.result():
                told = ServiceNotice(ServiceEvent.INGEST_STOPPED, datetime.now(UTC) - timedelta(
                    seconds=time.monotonic() - started), _unreachable(error))
                await _tell(notifier, told)
            await asyncio.sleep(backoff.next_delay())
        else:
            if backoff.failures:
                log.info("the PostgreSQL database answers")
            if told is not None:
                await _tell(notifier, ServiceNotice(ServiceEvent.INGEST_RECOVERED, told.since,
                                                    "the database could not be reached", until=datetime.now(UTC)))
            return


async def _tell(notifier: Notifier, notice: ServiceNotice) -> None:
    try:
        await notifier.tell_admins(notice)
    except DeliveryHeld as held:
        log.warning("no admin to tell that %s: %s", notice.event.value.replace("_", " "), held)


def _first_line(error: Exception) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _unreachable(error: Exception) -> str:
    return f"the database cannot be reached ({_first_line(error)}), so no instance can store or judge vitals"


def _moment(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)
