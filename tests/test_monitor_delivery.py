"""Delivery guarantees against a real mosquitto and a real store: a monitor killed with SIGKILL loses
no sample the broker handed it, a message delivered twice is stored and judged once, and a notice whose delivery
a process that died had claimed goes out at the next start, not when the claim runs out."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import aiomqtt
import pytest
from stores import store_settings

from core.notifications import NoticeKind, Severity
from core.settings import Settings
from monitor.mqtt import vitals_topic
from monitor.outbox import CLAIM_S, OutboxDispatcher
from monitor.vitals_monitor import VitalsMonitor
from store.alerts import open_alerts, raise_alert
from store.outbox import claim_notice, pending_notices
from store.patients import add_patient
from store import open_database
from store.vitals import vitals_between
from store.database import Database
from store.thread import StoreThread
from testsupport.broker import Mosquitto
from testsupport.doubles import T0, ManualClock, RecordingNotifier
from testsupport.waiting import eventually

MONITOR_PROCESS = Path(__file__).with_name("monitor_process.py")
CALM = {"hr": 72, "spo2": 97, "sbp": 125, "dbp": 80, "rr": 15, "temp": 36.8, "acvpu": "A"}


@pytest.fixture
def db(database: Path | str) -> Database:
    opened = open_database(database)
    add_patient(opened, "p1", "Ann Smith", T0 - 3600)
    return opened


@asynccontextmanager
async def _monitor_process(database: Path | str, mqtt_url: str) -> AsyncIterator[asyncio.subprocess.Process]:
    """A monitor in a child process, once it is subscribed; killed (SIGKILL) on leaving at the latest."""
    checkout = str(MONITOR_PROCESS.parents[1])  # for `testsupport`, which is not installed with the service
    process = await asyncio.create_subprocess_exec(
        sys.executable, str(MONITOR_PROCESS), str(database), mqtt_url, stdout=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": checkout},
    )
    try:
        assert await asyncio.wait_for(process.stdout.readline(), 30) == b"subscribed\n"
        yield process
    finally:
        if process.returncode is None:
            process.kill()
        await process.wait()


async def _device(port: int, payloads: list[dict]) -> None:
    """A bedside device publishing one message after another, each acknowledged by the broker (QoS 1)."""
    async with aiomqtt.Client("127.0.0.1", port, identifier="bed-1") as device:
        for payload in payloads:
            await device.publish(vitals_topic("hemowatch", "p1"), json.dumps(payload), qos=1)


def _stored(db: Database) -> Callable[[], int]:
    return lambda: db.execute("select count(*) from vitals").fetchone()[0]


async def test_monitor_killed_mid_stream_stores_every_sample_exactly_once_after_restart(
    database: Path | str, mosquitto: Mosquitto, db: Database
) -> None:
    total, start = 3000, time.time() - 3600  # the child runs on the real clock: samples from the last hour
    payloads = [{"ts": start + i, **CALM, "hr": 60 + i % 40} for i in range(total)]
    stored = _stored(db)
    async with _monitor_process(database, mosquitto.url) as first:
        device = asyncio.create_task(_device(mosquitto.port, payloads))
        await eventually(lambda: stored() >= total // 4, timeout=60)
        first.kill()  # SIGKILL: no chance to store or acknowledge what it holds
        await first.wait()
    async with _monitor_process(database, mosquitto.url):  # the same client id, so the same session
        await device
        await eventually(lambda: stored() == total, timeout=60)
    rows = db.execute("select ts, hr from vitals order by ts").fetchall()
    assert rows == [(p["ts"], p["hr"]) for p in payloads]


async def test_a_message_delivered_twice_is_stored_and_judged_once(
    database: Path | str, tmp_path: Path, mosquitto: Mosquitto, db: Database
) -> None:
    clock, notifier = ManualClock(), RecordingNotifier()
    settings = Settings(_env_file=None, mqtt_url=mosquitto.url, stale_after_s=120, **store_settings(database, tmp_path))
    first, second = {"ts": T0, **CALM}, {"ts": T0 + 120, **CALM}
    async with VitalsMonitor(settings, notifier, clock) as monitor:
        await asyncio.wait_for(monitor.subscriber.subscribed.wait(), 10)
        await _device(mosquitto.port, [first, first])
        await eventually(lambda: monitor.stats.stored + monitor.stats.duplicates == 2)
        clock.advance(120)
        await monitor.check_stale()
        await eventually(lambda: len(notifier.notices) == 1)
        # The same sample again: not new data, so the sensor is still offline.
        await _device(mosquitto.port, [first])
        await eventually(lambda: monitor.stats.duplicates == 2)
        assert [alert.condition for alert in open_alerts(db, "p1")] == ["sensor_offline"]
        await _device(mosquitto.port, [second])
        await eventually(lambda: len(notifier.notices) == 2)
        assert (monitor.stats.stored, monitor.stats.duplicates) == (2, 2)
    assert notifier.seen() == [("sensor_offline", NoticeKind.RAISED), ("sensor_offline", NoticeKind.RESOLVED)]
    assert [s.ts for s in vitals_between(db, "p1", T0, T0 + 200)] == [T0, T0 + 120]


async def test_a_notice_claimed_by_a_process_that_died_is_delivered_at_the_next_start(
    db: Database, database: Path | str
) -> None:
    alert_id = raise_alert(db, "p1", "spo2_low", Severity.URGENT, "SpO2 low", time.time())
    (pending,) = pending_notices(db)
    assert claim_notice(db, pending.notice.outbox_id, time.time(), time.time() + CLAIM_S)  # then it died
    store, notifier = StoreThread("outbox"), RecordingNotifier()
    await store.open(database)
    dispatcher = OutboxDispatcher(store.call, notifier, time.time)
    delivering = asyncio.create_task(dispatcher.run())
    try:
        await eventually(lambda: notifier.notices, 5, "the notice delivered well before its claim ran out")
    finally:
        delivering.cancel()
        await store.close()
    assert [(n.alert_id, n.kind) for n in notifier.notices] == [(alert_id, NoticeKind.RAISED)]
