"""The leadership lease against a real PostgreSQL: one holder at a time, a standby taking over soon after the
holder lets go, is cut off, stops answering or is killed, and a lease that waits out an outage quietly."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import psycopg
import pytest

from store.leadership import FROZEN_S, LEADER_KEY, Lease
from testsupport.broker import free_port
from testsupport.postgres import PostgresServer
from testsupport.waiting import eventually

CHECKOUT = Path(__file__).resolve().parents[1]
RETRY_S, CHECK_S, CHECK_TIMEOUT_S = 0.5, 1.0, 3.0  # the lease's defaults
TAKEOVER_S = 10.0  # a standby leads within this after the leader dies
# A lease held in a process of its own, which says so once it holds it.
HOLDER = """
import asyncio, sys
from store.leadership import Lease

async def hold():
    await Lease(sys.argv[1]).acquire()
    print("held", flush=True)
    await asyncio.Event().wait()

asyncio.run(hold())
"""

MakeLease = Callable[..., Lease]


@pytest.fixture
async def lease(postgres_url: str) -> AsyncIterator[MakeLease]:
    """Makes leases on the test's database and releases them all at the end."""
    made: list[Lease] = []

    def make(**options: float) -> Lease:
        made.append(Lease(postgres_url, **options))
        return made[-1]

    yield make
    for each in made:
        await each.release()


def _admin(postgres: PostgresServer, sql: str, *params: object) -> list[tuple]:
    with psycopg.connect(postgres.admin_url, autocommit=True) as admin:
        return admin.execute(sql, params).fetchall()


def _holders(postgres: PostgresServer, url: str) -> list[int]:
    """The backends holding the leader lock in the database of `url` (a bigint key shows as two oids)."""
    unsigned = LEADER_KEY % 2**64
    return [pid for (pid,) in _admin(
        postgres,
        "select l.pid from pg_locks l join pg_database d on d.oid = l.database where l.locktype = 'advisory' "
        "and l.granted and d.datname = %s and l.classid::bigint = %s and l.objid::bigint = %s",
        url.rsplit("/", 1)[1], unsigned >> 32, unsigned & 0xFFFFFFFF,
    )]


def _sessions(postgres: PostgresServer, url: str) -> int:
    return _admin(postgres, "select count(*) from pg_stat_activity where datname = %s", url.rsplit("/", 1)[1])[0][0]


async def _refused_for(acquiring: asyncio.Task[None], seconds: float) -> bool:
    """Whether `acquiring` is still waiting after `seconds` (several tries of the lock)."""
    done, _ = await asyncio.wait({acquiring}, timeout=seconds)
    return not done


async def test_a_second_lease_waits_while_the_first_is_held_and_takes_it_soon_after_release(
    postgres: PostgresServer, postgres_url: str, lease: MakeLease
) -> None:
    first, second = lease(), lease()
    await asyncio.wait_for(first.acquire(), 5)
    acquiring = asyncio.create_task(second.acquire())
    assert await _refused_for(acquiring, 4 * RETRY_S)
    (holder,) = _holders(postgres, postgres_url)
    assert first.held and not second.held

    released = asyncio.get_running_loop().time()
    await first.release()
    await asyncio.wait_for(acquiring, 5)
    assert asyncio.get_running_loop().time() - released < RETRY_S + 0.5
    assert second.held and not first.held and not first.lost.is_set()
    (new_holder,) = _holders(postgres, postgres_url)
    assert new_holder != holder


async def test_a_holder_whose_session_is_terminated_loses_the_lease_and_the_standby_takes_it(
    postgres: PostgresServer, postgres_url: str, lease: MakeLease
) -> None:
    holder, standby = lease(), lease()
    await asyncio.wait_for(holder.acquire(), 5)
    acquiring = asyncio.create_task(standby.acquire())
    (pid,) = _holders(postgres, postgres_url)
    _admin(postgres, "select pg_terminate_backend(%s)", pid)
    await asyncio.wait_for(holder.lost.wait(), CHECK_S + CHECK_TIMEOUT_S)
    assert not holder.held
    await asyncio.wait_for(acquiring, 2 * RETRY_S + 1)
    assert standby.held


async def test_a_holder_whose_server_stops_answering_loses_the_lease_after_the_check_timeout(
    postgres: PostgresServer, postgres_url: str, lease: MakeLease
) -> None:
    check_s, timeout_s = 0.2, 1.0
    holder = lease(check_s=check_s, check_timeout_s=timeout_s)
    await asyncio.wait_for(holder.acquire(), 5)
    (pid,) = _holders(postgres, postgres_url)
    os.kill(pid, signal.SIGSTOP)  # the backend keeps its socket open but answers nothing
    try:
        stopped = asyncio.get_running_loop().time()
        await asyncio.wait_for(holder.lost.wait(), check_s + timeout_s + 1)
        assert asyncio.get_running_loop().time() - stopped >= timeout_s
        assert not holder.held
    finally:
        os.kill(pid, signal.SIGCONT)
    await eventually(lambda: not _holders(postgres, postgres_url), 5, "the closed session to let go of the lock")


@asynccontextmanager
async def holder_elsewhere(url: str) -> AsyncIterator[asyncio.subprocess.Process]:
    """A process of its own holding the lease on `url`, once it says so; killed on leaving at the latest."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", HOLDER, url, stdout=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(CHECKOUT)},
    )
    try:
        assert await asyncio.wait_for(process.stdout.readline(), 30) == b"held\n"
        yield process
    finally:
        if process.returncode is None:
            process.kill()
        await process.wait()


async def test_a_standby_takes_over_at_once_from_a_holder_killed_with_sigkill(
    postgres: PostgresServer, postgres_url: str, lease: MakeLease
) -> None:
    async with holder_elsewhere(postgres_url) as process:
        standby = lease()
        acquiring = asyncio.create_task(standby.acquire())
        assert await _refused_for(acquiring, 2 * RETRY_S)
        killed = asyncio.get_running_loop().time()
        process.kill()
        await asyncio.wait_for(acquiring, TAKEOVER_S)
    # The kernel closes a killed process's socket, so the server ends its session at once: one try later, ours.
    assert asyncio.get_running_loop().time() - killed < RETRY_S + 1.0
    assert standby.held


async def test_a_standby_takes_over_from_a_holder_frozen_for_longer_than_frozen_s(
    postgres: PostgresServer, postgres_url: str, lease: MakeLease
) -> None:
    async with holder_elsewhere(postgres_url) as process:
        standby = lease()
        acquiring = asyncio.create_task(standby.acquire())
        frozen = asyncio.get_running_loop().time()
        process.send_signal(signal.SIGSTOP)  # its kernel still answers TCP keepalives: only idleness tells
        await asyncio.wait_for(acquiring, FROZEN_S + TAKEOVER_S)
        taken_over_s = asyncio.get_running_loop().time() - frozen
        process.send_signal(signal.SIGCONT)
    assert FROZEN_S - 1 <= taken_over_s < FROZEN_S + RETRY_S + 1.0
    assert standby.held


def _said(caplog: pytest.LogCaptureFixture) -> list[tuple[str, str]]:
    return [(r.levelname, r.getMessage()) for r in caplog.records if r.name == "store.leadership"]


async def test_acquire_keeps_trying_while_postgres_is_unreachable_and_says_so_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="store.leadership")
    server = PostgresServer(port=free_port())  # not started yet: nothing listens on its port
    lease = Lease(server.admin_url, retry_s=0.05)
    acquiring = asyncio.create_task(lease.acquire())
    try:
        await eventually(lambda: _said(caplog), 5, "the outage to be reported")
        await asyncio.to_thread(server.start)  # a second or more, through several failed attempts
        await asyncio.wait_for(acquiring, 10)
        assert lease.held
    finally:
        await lease.release()
        server.stop()
    said = _said(caplog)
    assert [level for level, _ in said] == ["WARNING", "INFO", "INFO"]
    assert said[0][1].startswith("cannot reach PostgreSQL for the leadership lease (")
    assert said[1:] == [
        ("INFO", "PostgreSQL answers again: waiting for the leadership lease"),
        ("INFO", "this instance holds the leadership lease"),
    ]


async def test_cancelling_acquire_leaves_nothing_behind(
    postgres: PostgresServer, postgres_url: str, lease: MakeLease, caplog: pytest.LogCaptureFixture
) -> None:
    unreachable = Lease(f"postgresql://postgres@127.0.0.1:{free_port()}/postgres", retry_s=0.05)
    acquiring = asyncio.create_task(unreachable.acquire())
    await eventually(lambda: _said(caplog), 5, "the outage to be reported")
    acquiring.cancel()
    with pytest.raises(asyncio.CancelledError):
        await acquiring
    assert not unreachable.held

    holder, standby = lease(), lease()
    await asyncio.wait_for(holder.acquire(), 5)
    acquiring = asyncio.create_task(standby.acquire())
    await eventually(lambda: _sessions(postgres, postgres_url) == 2, 5, "the standby to connect")
    acquiring.cancel()
    with pytest.raises(asyncio.CancelledError):
        await acquiring
    await eventually(lambda: _sessions(postgres, postgres_url) == 1, 5, "the standby's session to end")
    assert holder.held and not standby.held
