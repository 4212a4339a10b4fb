"""Which of the instances sharing one PostgreSQL database leads: the one holding a session-level advisory lock.

The lock lives exactly as long as the connection that took it. When the leader ends, by `kill -9` or a crash
too, its kernel closes the socket and the server drops the lock at once; when the leader's machine or network
goes, the server's keepalives (set on the connection below) drop it within about 6 s, and when the leader is
frozen (a paused virtual machine, a stopped process), the server ends its idle session after FROZEN_S. A standby
tries the lock
every `retry_s`. The leader checks its connection every `check_s` and sets `lost` when a check fails or outlasts
`check_timeout_s`: with the defaults within 4 s, before the server lets a standby take over.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from typing import Any

import psycopg

from core.backoff import Backoff

log = logging.getLogger(__name__)

LEADER_KEY = int.from_bytes(hashlib.sha256(b"hemowatch-leader").digest()[:8], "big", signed=True)
RECONNECT_MAX_S = 5.0  # longest pause between connection attempts: a standby stays ready to take over
# Our side notices a dead server in seconds (libpq: keepalive seconds, tcp_user_timeout milliseconds)...
CLIENT_KEEPALIVES: dict[str, Any] = {
    "keepalives": 1, "keepalives_idle": 3, "keepalives_interval": 1, "keepalives_count": 3,
    "tcp_user_timeout": 6000, "connect_timeout": 5,
}
FROZEN_S = 10  # a leader that has not checked its lease for this long (a paused VM, a stuck process) loses it
# ...and the server a dead leader: its own defaults wait for the operating system's, two hours on Linux. A frozen
# leader's kernel still answers keepalives: the server ends its session once it has been idle for FROZEN_S.
SERVER_SETTINGS = (
    "set tcp_keepalives_idle = 3; set tcp_keepalives_interval = 1; set tcp_keepalives_count = 3; "
    f"set tcp_user_timeout = 6000; set idle_session_timeout = {FROZEN_S * 1000}"
)


class Lease:
    """Leadership of the instances sharing one PostgreSQL database: a session-level advisory lock held on a
    connection of its own."""

    def __init__(
        self, url: str, *, key: int = LEADER_KEY, retry_s: float = 0.5, check_s: float = 1.0,
        check_timeout_s: float = 3.0,
    ) -> None:
        self._url = url
        self._key = key
        self._retry_s = retry_s
        self._check_s = check_s
        self._check_timeout_s = check_timeout_s
        self._watcher: asyncio.Task[None] | None = None  # checks the lock's connection while held
        self.lost = asyncio.Event()  # set when the lease is lost while held: stop acting as leader at once

    @property
    def held(self) -> bool:
        return self._watcher is not None and not self.lost.is_set()

    async def acquire(self) -> None:
        """Wait until this instance holds the lease, through any number of failed connections."""
        backoff, unreachable = Backoff(self._retry_s, RECONNECT_MAX_S), False
        while True:
            connection: psycopg.AsyncConnection[Any] | None = None
            try:
                connection = await psycopg.AsyncConnection.connect(self._url, autocommit=True, **CLIENT_KEEPALIVES)
                await connection.execute(SERVER_SETTINGS)
                if unreachable:
                    log.info("PostgreSQL answers again: waiting for the leadership lease")
                unreachable = False
                backoff.reset()
                await self._lock(connection)
            except psycopg.OperationalError as error:
                await _close(connection)
                if not unreachable:
                    log.warning("cannot reach PostgreSQL for the leadership lease (%s); trying again", error)
                unreachable = True
                await asyncio.sleep(backoff.next_delay())
            except BaseException:
                await _close(connection)
                raise
            else:
                self.lost.clear()
                self._watcher = asyncio.create_task(self._watch(connection))
                log.info("this instance holds the leadership lease")
                return

    async def release(self) -> None:
        """Let go of the lease: closing its connection ends the session and with it the lock."""
        watcher, self._watcher = self._watcher, None
        if watcher is not None:
            watcher.cancel()
            await asyncio.gather(watcher, return_exceptions=True)

    async def __aenter__(self) -> Lease:
        await self.acquire()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.release()

    async def _lock(self, connection: psycopg.AsyncConnection[Any]) -> None:
        while True:
            cursor = await connection.execute("select pg_try_advisory_lock(%s)", (self._key,))
            if (await cursor.fetchone()) == (True,):
                return
            await asyncio.sleep(self._retry_s)

    async def _watch(self, connection: psycopg.AsyncConnection[Any]) -> None:
        """Check the connection every `check_s` until a check fails or outlasts `check_timeout_s`, then set `lost`.
        The check runs as a task of its own so that a server that stopped answering is given up on in time:
        cancelling a query makes psycopg wait for the server's answer to the cancellation."""
        check: asyncio.Task[Any] | None = None
        try:
            while True:
                await asyncio.sleep(self._check_s)
                check = asyncio.create_task(connection.execute("select 1"))
                done, _ = await asyncio.wait({check}, timeout=self._check_timeout_s)
                if not done or check.exception() is not None:
                    break
            reason = check.exception() if done else f"no answer within {self._check_timeout_s:g} s"
            self.lost.set()
            log.error("lost the leadership lease (%s): this instance stops leading", reason)
        finally:
            await connection.close()  # first: a query cut off from its connection is cancelled without waiting
            if check is not None:
                check.cancel()
                await asyncio.gather(check, return_exceptions=True)


async def _close(connection: psycopg.AsyncConnection[Any] | None) -> None:
    if connection is not None:
        await connection.close()
