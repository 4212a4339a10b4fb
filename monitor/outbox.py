"""Delivers the outbox to the notifier: each notice on its own retry schedule, and across restarts.

A notice is marked delivered only after the notifier returns, so a crash in between means it is offered
again after restart, or by the instance that takes over: the dispatcher releases the claims left standing when it
starts (`release_claims`), and the notifier deduplicates by `outbox_id`, so people see it once. While a process
delivers, its claim (up to CLAIM_S) keeps other monitor processes on one database from offering the same notice. A deferred notice holds back only the later notices of its own alert, so nobody reads
"resolved" before "raised" while other alerts go ahead; emergencies are offered first and retried at most
EMERGENCY_RETRY_S apart, whatever the backoff (or `retry_after`) of other notices. A notice nobody can receive
yet (`DeliveryHeld`) is logged with its content once and kept, offered again like a deferred one, at once when
someone joins (`release_held`), and at every start. A failing store (a full disk, a lost or locked database)
pauses delivery, tried again with backoff, rather than ending it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from contextlib import suppress
from typing import Any, NoReturn

from core.backoff import Backoff, doubling_s
from core.notifications import AlertNotice, DeliveryDeferred, DeliveryHeld, DeliveryRefused, Notifier, Severity
from store.alerts import notice_delivered
from store.outbox import (
    PendingNotice,
    claim_notice,
    defer_notice,
    due_notices,
    fail_notice,
    hold_notice,
    next_due_at,
    release_claims,
    release_held,
)

log = logging.getLogger(__name__)

StoreCall = Callable[..., Awaitable[Any]]  # runs `function(db, *args)` on the store thread
CLAIM_S = 30.0  # a notice being delivered is held this long against other processes (and a crash)
EMERGENCY_RETRY_S = 30.0  # an emergency notice that could not be delivered is tried again at most this late


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
        # At start, held notices are offered again (the settings may have changed: admins, say), and so are those
        # whose delivery a process that died had claimed.
        released = False
        backoff = Backoff(self._poll_s, EMERGENCY_RETRY_S)
        while True:
            self._wake.clear()
            try:
                if not released:
                    await self._store(release_held, self._clock())
                    await self._store(release_claims)
                    released = True
                pause_s = await self.deliver_due()
            except Exception as error:  # the store fails: the notices wait in it
                pause_s = backoff.next_delay()
                log.warning("delivering notices waits for the store (%s); trying again in %.1f s", error, pause_s)
            else:
                backoff.reset()
            with suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), pause_s)

    async def deliver_due(self) -> float:
        """Offer every due notice once; returns how long to wait before looking again."""
        entries: list[PendingNotice] = await self._store(due_notices, self._clock(), self._batch)
        for entry in entries:
            await self._offer(entry)
        if len(entries) == self._batch:
            return 0.0
        next_at = await self._store(next_due_at)
        return self._poll_s if next_at is None else min(self._poll_s, max(0.0, next_at - self._clock()))

    async def _offer(self, entry: PendingNotice) -> None:
        notice, now = entry.notice, self._clock()
        if not await self._store(claim_notice, notice.outbox_id, now, now + CLAIM_S):
            return  # another monitor process is delivering it
        try:
            await self._notifier.deliver(notice)
        except DeliveryHeld as held:
            delay_s = self._retry_s(notice, entry.attempts)
            if not entry.held:  # said once per notice; the retries stay quiet
                log.warning("notice %d kept pending, %s: %s", notice.outbox_id, held, notice.summary())
            await self._store(hold_notice, notice.outbox_id, str(held), self._clock() + delay_s)
        except DeliveryRefused as refusal:
            log.warning("notice %d refused for good: %s", notice.outbox_id, refusal)
            await self._store(fail_notice, notice.outbox_id, str(refusal), self._clock())
        except DeliveryDeferred as deferral:
            delay_s = self._retry_s(notice, entry.attempts, deferral.retry_after)
            log.info("notice %d deferred (%s); retrying in %.1f s", notice.outbox_id, deferral, delay_s)
            await self._store(defer_notice, notice.outbox_id, str(deferral), self._clock() + delay_s)
        except Exception as error:  # a notifier bug must not stop the outbox
            delay_s = self._retry_s(notice, entry.attempts)
            log.exception("notifier failed on notice %d; retrying in %.1f s", notice.outbox_id, delay_s)
            await self._store(defer_notice, notice.outbox_id, repr(error), self._clock() + delay_s)
        else:
            await self._store(notice_delivered, notice.outbox_id, self._clock())

    def _retry_s(self, notice: AlertNotice, attempts: int, retry_after: float | None = None) -> float:
        delay_s = doubling_s(self._first_retry_s, self._max_retry_s, attempts) if retry_after is None else retry_after
        return min(delay_s, EMERGENCY_RETRY_S) if notice.severity is Severity.EMERGENCY else delay_s
