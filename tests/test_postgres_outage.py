"""PostgreSQL going away and coming back (a restart, a failover of the database): the store connects again by
itself, and while no instance can read the database each one tells the admins that vitals cannot be stored, and
again when it can; a service started while the database is down waits for it, and says so to the admins too."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import AsyncExitStack
from pathlib import Path

import psycopg
import pytest
from botworld import ADMIN, settings_for

from core.notifications import ServiceEvent
from hemowatch.ingest_watch import IngestWatch
from hemowatch.wiring import running
from localbotapi import BotApiServer
from store import open_database
from store.ingest_watch import Heartbeat, beat, latest_heartbeat
from store.thread import StoreThread
from testsupport.broker import Mosquitto
from testsupport.doubles import RecordingNotifier
from testsupport.postgres import PostgresServer
from testsupport.waiting import eventually


@pytest.fixture
def server() -> Iterator[PostgresServer]:
    """A PostgreSQL server of the test's own, to halt and start."""
    own = PostgresServer()
    own.start()
    yield own
    own.stop()


def test_the_store_connects_again_after_the_server_restarts(server: PostgresServer) -> None:
    db = open_database(server.fresh_database())
    beat(db, Heartbeat("host-a:1", 1.0, None))
    server.halt()
    server.start()
    with pytest.raises(psycopg.OperationalError):
        latest_heartbeat(db)  # the statement running when the connection is found lost fails
    assert latest_heartbeat(db) == Heartbeat("host-a:1", 1.0, None)  # the next one connects again


async def test_an_instance_cut_off_from_the_database_tells_the_admins_and_again_when_it_is_back(
    server: PostgresServer,
) -> None:
    store, notifier = StoreThread("watch"), RecordingNotifier()
    await store.open(server.fresh_database())
    clock = asyncio.get_running_loop().time
    await store.call(beat, Heartbeat("host-a:1", clock() + 3600, None))  # a leader that keeps beating
    watch = IngestWatch(store, notifier, clock, after_s=0.4)
    watching = asyncio.create_task(watch.run())
    try:
        await asyncio.to_thread(server.halt)
        await eventually(lambda: notifier.told_admins, 10, "the admins told")
        await asyncio.to_thread(server.start)
        await eventually(lambda: len(notifier.told_admins) == 2, 10, "the admins told again")
    finally:
        watching.cancel()
        await store.close()
    stopped, back = notifier.told_admins
    assert stopped.event is ServiceEvent.INGEST_STOPPED and "the database cannot be reached" in stopped.reason
    assert back.event is ServiceEvent.INGEST_RECOVERED and back.since == stopped.since


@pytest.mark.timeout(120)
async def test_a_service_started_while_the_database_is_down_waits_for_it_and_tells_the_admin(
    server: PostgresServer, bot_api: BotApiServer, mosquitto: Mosquitto, tmp_path: Path
) -> None:
    settings = settings_for(bot_api, server.fresh_database(), tmp_path, mqtt_url=mosquitto.url,
                            ingest_stopped_notice_s=1)
    bot_api.introduce(ADMIN, "Ada")
    await asyncio.to_thread(server.halt)
    async with AsyncExitStack() as services:
        starting = asyncio.create_task(services.enter_async_context(running(settings)))
        down = await bot_api.wait_for_message(ADMIN, lambda m: "not being received" in m["text"], timeout=30)
        assert "the database cannot be reached" in down["text"] and not starting.done()
        await asyncio.to_thread(server.start)
        service = await asyncio.wait_for(starting, 30)
        await asyncio.wait_for(service.monitor.subscriber.subscribed.wait(), 10)
        await bot_api.wait_for_message(ADMIN, lambda m: "received again" in m["text"], timeout=30)
