"""What the monitor does while its store fails (a full disk, a lost or locked database, a failover).

A batch that cannot be stored is tried again until it is, with exponential backoff from 0.5 s to 10 s; its
messages, and those received behind it, stay unacknowledged, so the broker keeps them and sends them again
should the monitor stop meanwhile. How many wait in memory is bounded by the broker's limit of unacknowledged
messages in flight per client (mosquitto's `max_inflight_messages`); the rest wait in the broker's queue.

An outage is logged once at ERROR when it starts and once when storing works again, and counted in
`IngestStats`. The admins are told once it has lasted `tell_after_s`, and again when it ends. Those notices go
to the notifier directly rather than through the outbox, which lives in the failing store.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import NoReturn, TypeVar

from core.backoff import Backoff
from core.notifications import DeliveryHeld, Notifier, ServiceEvent, ServiceNotice
from monitor.ward import IngestStats

log = logging.getLogger(__name__)

T = TypeVar("T")

FIRST_RETRY_S = 0.5
MAX_RETRY_S = 10.0  # at most this long between attempts, so samples held are judged soon after the store is back


class StoreOutage:
    """Retries store attempts through an outage and says so: in the log, in `stats` and to the admins."""

    def __init__(
        self, stats: IngestStats, notifier: Notifier, clock: Callable[[], float], tell_after_s: float
    ) -> None:
        self._stats = stats
        self._notifier = notifier
        self._clock = clock
        self._tell_after_s = tell_after_s
        self._backoff = Backoff(FIRST_RETRY_S, MAX_RETRY_S)
        self._notices: asyncio.Queue[ServiceNotice] = asyncio.Queue()
        self._timer: asyncio.TimerHandle | None = None  # tells the admins once the outage has lasted long enough
        self._told = False  # the admins heard of the current outage
        self._reason = ""  # the latest failure
        self._failures = 0  # failed attempts in the current outage
        self._began = 0.0  # loop time at which the current outage began
        self.failing = asyncio.Event()  # set while storing fails

    async def retry(self, attempt: Callable[[], Awaitable[T]]) -> T:
        """`await attempt()` until it succeeds, pausing between failures; cancel to give up."""
        while True:
            started_at, started = self._clock(), asyncio.get_running_loop().time()
            try:
                result = await attempt()
            except Exception as error:
                self._failed(error, started_at, started)
                await asyncio.sleep(self._backoff.next_delay())
            else:
                if self.failing.is_set():
                    self._recovered()
                return result

    async def tell_admins(self) -> NoReturn:
        """Hand the admins' notices to the notifier, one after the other (runs as a task of its own)."""
        while True:
            notice = await self._notices.get()
            try:
                await self._notifier.tell_admins(notice)
            except DeliveryHeld as held:
                log.warning("the admins could not be told that %s: %s", _what(notice), held)
            except Exception:  # a notifier bug must not end the task
                log.exception("telling the admins that %s failed", _what(notice))

    def _failed(self, error: Exception, started_at: float, started: float) -> None:
        self._stats.store_failures += 1
        self._failures += 1
        self._reason = str(error) or type(error).__name__
        if self.failing.is_set():
            log.debug("storing vitals failed again: %s", self._reason)
            return
        self.failing.set()
        self._stats.store_failing_since, self._began = started_at, started
        self._stats.store_outages += 1
        log.error(
            "storing vitals fails (%s): the messages are kept unacknowledged at the broker and tried again until "
            "they are stored; no vitals alert can be raised meanwhile. Said once until storing works again",
            self._reason, exc_info=error,
        )
        loop = asyncio.get_running_loop()
        self._timer = loop.call_at(started + self._tell_after_s, self._tell_failing)

    def _recovered(self) -> None:
        since = self._stats.store_failing_since
        assert since is not None
        log.warning(
            "storing vitals works again after %.0f s and %d failed attempt%s (the last: %s)",
            asyncio.get_running_loop().time() - self._began, self._failures, "s" * (self._failures > 1), self._reason,
        )
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._told:
            self._notices.put_nowait(ServiceNotice(
                ServiceEvent.STORE_RECOVERED, _utc(since), self._reason, until=_utc(self._clock())
            ))
            self._told = False
        self._stats.store_failing_since = None
        self._failures = 0
        self._backoff.reset()
        self.failing.clear()

    def _tell_failing(self) -> None:
        self._timer = None
        since = self._stats.store_failing_since
        assert since is not None
        self._notices.put_nowait(ServiceNotice(ServiceEvent.STORE_FAILING, _utc(since), self._reason))
        self._told = True


def _utc(at: float) -> datetime:
    return datetime.fromtimestamp(at, UTC)


def _what(notice: ServiceNotice) -> str:
    failing = notice.event is ServiceEvent.STORE_FAILING
    return "vitals are not being stored" if failing else "vitals are stored again"
