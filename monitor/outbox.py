"""Delivers the outbox to the notifier: in order, with retries, and across restarts.

A notice is marked delivered only after the notifier returns, so a crash in between means it is offered
again after restart (once its claim of CLAIM_S has run out); the notifier deduplicates by `outbox_id`, so
people see it once. The claim also keeps several monitor processes on one database from offering the same
notice twice. A deferred notice holds back the ones queued after it, so nobody reads "resolved" before
"raised". A notice nobody can receive yet (`DeliveryHeld`) is logged with its content and kept; it holds back
only later notices of the same alert, and is offered again with growing pauses, at once when someone joins
(`release_held`), and at every start.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from contextlib import suppress
from typing import Any, NoReturn

from core.notifications import DeliveryDeferred, DeliveryHeld, DeliveryRefused, Notifier
from store.alerts import notice_delivered
from store.outbox import (
    PendingNotice,
    claim_notice,
    defer_notice,
    fail_notice,
    hold_notice,
    pending_notices,
    release_held,
)

log = logging.getLogger(__name__)

StoreCall = Callable[..., Awaitable[Any]]  # runs `function(db, *args)` on the store thread
CLAIM_S = 30.0  # a notice being delivered is held this long against other processes (and a crash)


class OutboxDispatcher:
    def __init__(
        self,
        store: StoreCall,
        notifier: Notifier,
        clock: Callable[[], float],
        *,
        poll_s: float = 1.0,
        first_retry_s: float = 2.0,
        max_retry_s: float = 300.0,
        batch: int = 100,
    ) -> None:
        self._store = store
        self._notifier = notifier
        self._clock = clock
        self._poll_s = poll_s
        self._first_retry_s = first_retry_s
        self._max_retry_s = max_retry_s
        self._batch = batch
        self._wake = asyncio.Event()

    def wake(self) -> None:
        """New notices were queued (or time moved on): look now rather than at the next poll."""
        self._wake.set()

    async def run(self) -> NoReturn:
        await self._store(release_held, self._clock())  # the settings may have changed: admins, say
        while True:
            self._wake.clear()
            pause_s = await self.deliver_due()
            with suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), pause_s)

    async def deliver_due(self) -> float:
        """Offer every due notice in order; returns how long to wait before looking again."""
        entries: list[PendingNotice] = await self._store(pending_notices, self._batch, self._clock())
        waiting: set[int] = set()  # alerts whose earlier notice is held: their later notices wait behind it
        for entry in entries:
            now = self._clock()
            outbox_id = entry.notice.outbox_id
            if entry.notice.alert_id in waiting:
                continue
            if entry.due_at > now:
                return min(entry.due_at - now, self._poll_s)
            if not await self._store(claim_notice, outbox_id, now, now + CLAIM_S):
                return self._poll_s  # another monitor process is delivering it
            try:
                await self._notifier.deliver(entry.notice)
            except DeliveryHeld as held:
                delay_s = self._retry_s(entry.attempts)
                if not entry.held:  # said once per notice; the retries stay quiet
                    log.warning("notice %d kept pending, %s: %s", outbox_id, held, entry.notice.summary())
                await self._store(hold_notice, outbox_id, str(held), self._clock() + delay_s)
                waiting.add(entry.notice.alert_id)
                continue
            except DeliveryRefused as refusal:
                log.warning("notice %d refused for good: %s", outbox_id, refusal)
                await self._store(fail_notice, outbox_id, str(refusal), self._clock())
                continue
            except DeliveryDeferred as deferral:
                delay_s = deferral.retry_after if deferral.retry_after is not None else self._retry_s(entry.attempts)
                log.info("notice %d deferred (%s); retrying in %.1f s", outbox_id, deferral, delay_s)
                await self._store(defer_notice, outbox_id, str(deferral), self._clock() + delay_s)
                return min(delay_s, self._poll_s)
            except Exception as error:  # a notifier bug must not stop the outbox
                delay_s = self._retry_s(entry.attempts)
                log.exception("notifier failed on notice %d; retrying in %.1f s", outbox_id)
                await self._store(defer_notice, outbox_id, repr(error), self._clock() + delay_s)
                return min(delay_s, self._poll_s)
            await self._store(notice_delivered, outbox_id, self._clock())
        return 0.0 if len(entries) == self._batch else self._poll_s

    def _retry_s(self, attempts: int) -> float:
        return min(self._max_retry_s, self._first_retry_s * 2**attempts)
