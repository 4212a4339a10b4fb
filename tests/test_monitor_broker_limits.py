"""What the broker keeps for the monitor while it is away: mosquitto with its default queue limit drops
messages silently, which the monitor reports at start; the shipped `deploy/mosquitto.conf` keeps them all."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from pathlib import Path

import aiomqtt
import pytest
from stores import store_settings

from core.settings import PROJECT_ROOT, Settings
from monitor.ingest import DROPPED_TOPIC
from monitor.mqtt import vitals_topic
from monitor.vitals_monitor import VitalsMonitor
from store.patients import add_patient
from store import open_database
from testsupport.broker import Mosquitto, free_port
from testsupport.doubles import RecordingNotifier
from testsupport.waiting import eventually

AWAY = 1500  # messages published while the monitor is stopped
# The lines of the shipped configuration that decide what is kept (listener, users and paths are the test's own).
SHIPPED = tuple(
    line for line in (PROJECT_ROOT / "deploy" / "mosquitto.conf").read_text().splitlines()
    if line.split(" ")[0] in {
        "persistence", "autosave_interval", "max_queued_messages", "max_queued_bytes", "max_inflight_messages",
        "set_tcp_nodelay",
    }
)


async def _published_while_away(
    broker: Mosquitto, database: Path | str, tmp_path: Path, dropped: int
) -> tuple[int, VitalsMonitor]:
    """Register the session, stop the monitor, publish AWAY samples, and restart it once the broker counts
    `dropped` messages dropped; returns how many of the AWAY samples it stored, and the running monitor."""
    db = open_database(database)
    add_patient(db, "p1", "Ann Smith", time.time() - 3600)
    settings = Settings(_env_file=None, mqtt_url=broker.url, **store_settings(database, tmp_path))
    async with VitalsMonitor(settings, RecordingNotifier()) as monitor:
        await asyncio.wait_for(monitor.subscriber.subscribed.wait(), 10)
    start = time.time() - AWAY
    async with aiomqtt.Client("127.0.0.1", broker.port, max_inflight_messages=100) as device:
        for i in range(AWAY):
            await device.publish(vitals_topic("hemowatch", "p1"), json.dumps({"ts": start + i, "hr": 70}), qos=1)
        await device.subscribe(DROPPED_TOPIC)  # mosquitto refreshes $SYS every second here
        async with asyncio.timeout(10):
            async for count in device.messages:
                if int(count.payload) == dropped:
                    break
    monitor = VitalsMonitor(settings, RecordingNotifier())
    await monitor.start()
    await asyncio.wait_for(monitor.subscriber.subscribed.wait(), 10)
    async with aiomqtt.Client("127.0.0.1", broker.port) as device:  # a last sample, behind all the queued ones
        await device.publish(vitals_topic("hemowatch", "p1"), json.dumps({"ts": time.time(), "hr": 71}), qos=1)
    count = lambda hr: db.execute("select count(*) from vitals where hr = ?", [hr]).fetchone()[0]  # noqa: E731
    await eventually(lambda: count(71) == 1, what="the last sample, delivered after every queued one")
    return count(70), monitor


async def test_mosquitto_with_its_default_queue_limit_drops_and_the_monitor_says_so(
    database: Path | str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    broker = Mosquitto(port=free_port(), workdir=tmp_path, settings=("persistence true", "sys_interval 1"))
    broker.start()
    caplog.set_level(logging.WARNING, logger="monitor.ingest")
    try:
        stored, monitor = await _published_while_away(broker, database, tmp_path, dropped=AWAY - 1000)
        try:
            await eventually(lambda: monitor.subscriber.broker_drops.count is not None)
        finally:
            await monitor.stop()
    finally:
        broker.stop()
    assert stored == 1000  # mosquitto kept 1,000 and dropped the rest without a word to anyone
    warnings = [r.getMessage() for r in caplog.records if "dropped" in r.getMessage()]
    # the broker's first count may come before or after the drops: either way the advice is given
    assert "since it started" in warnings[0] and "max_queued_messages 0" in warnings[0]
    assert monitor.subscriber.broker_drops.count == AWAY - 1000


async def test_the_shipped_broker_configuration_keeps_everything_for_the_monitor(
    database: Path | str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    assert {line.split(" ")[0] for line in SHIPPED} >= {"persistence", "max_queued_messages", "max_inflight_messages"}
    broker = Mosquitto(port=free_port(), workdir=tmp_path, settings=(*SHIPPED, "sys_interval 1"))
    broker.start()
    caplog.set_level(logging.WARNING, logger="monitor.ingest")
    try:
        stored, monitor = await _published_while_away(broker, database, tmp_path, dropped=0)
        try:
            await eventually(lambda: monitor.subscriber.broker_drops.count == 0)
        finally:
            await monitor.stop()
    finally:
        broker.stop()
    assert stored == AWAY
    assert not [r for r in caplog.records if "dropped" in r.getMessage()]


@pytest.mark.parametrize("shared_group", ["", "monitors"])  # MQTT 3.1.1, and v5
async def test_two_monitors_with_one_client_id_are_told_they_take_each_others_session(
    database: Path | str, tmp_path: Path, mosquitto: Mosquitto, caplog: pytest.LogCaptureFixture, shared_group: str
) -> None:
    open_database(database)
    caplog.set_level(logging.WARNING, logger="monitor.ingest")
    settings = Settings(
        _env_file=None, mqtt_url=mosquitto.url, mqtt_client_id="ward-7", mqtt_shared_group=shared_group,
        **store_settings(database, tmp_path),
    )
    async with VitalsMonitor(settings, RecordingNotifier()), VitalsMonitor(settings, RecordingNotifier()):
        await eventually(lambda: any("same client id 'ward-7'" in r.getMessage() for r in caplog.records), timeout=20)
    told = [r.getMessage() for r in caplog.records if r.name == "monitor.ingest" and r.levelno == logging.ERROR]
    assert "5 times in a row" in told[0] and "MQTT_CLIENT_ID" in told[0]


async def test_one_monitor_reconnecting_after_an_outage_is_not_taken_for_two(
    database: Path | str, tmp_path: Path, mosquitto: Mosquitto, caplog: pytest.LogCaptureFixture
) -> None:
    open_database(database)
    caplog.set_level(logging.ERROR, logger="monitor.ingest")
    settings = Settings(_env_file=None, mqtt_url=mosquitto.url, **store_settings(database, tmp_path))
    async with VitalsMonitor(settings, RecordingNotifier()) as monitor:
        for _ in range(3):
            await asyncio.wait_for(monitor.subscriber.subscribed.wait(), 10)
            await asyncio.to_thread(mosquitto.restart)
            await eventually(lambda: not monitor.subscriber.subscribed.is_set())
        await asyncio.wait_for(monitor.subscriber.subscribed.wait(), 10)
    assert not [r for r in caplog.records if "client id" in r.getMessage()]
