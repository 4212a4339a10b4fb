"""The monitor while its store fails, against a real mosquitto and a real SQLite file whose write lock another
process holds (as a long transaction, a backup or a failover would): nothing is acknowledged until it is
stored, every sample is stored once when the store is back, the admins hear of the outage and of its end, and
stopping meanwhile leaves the messages to the broker."""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import UTC, datetime
from pathlib import Path

import aiomqtt
import pytest

from core.notifications import AlertNotice, DeliveryDeferred, NoticeKind, ServiceEvent
from core.settings import Settings
from monitor.mqtt import vitals_topic
from monitor.vitals_monitor import STORE_BUSY_S, VitalsMonitor
from store.patients import add_patient
from store import open_database
from store.database import Database
from testsupport.broker import Mosquitto
from testsupport.doubles import T0, ManualClock, RecordingNotifier
from testsupport.store_lock import write_lock
from testsupport.waiting import eventually

CALM = {"hr": 72, "spo2": 97, "sbp": 125, "dbp": 80, "rr": 15, "temp": 36.8, "acvpu": "A"}
HYPOXIC = CALM | {"spo2": 86}
NOTICE_AFTER_S = 2.0  # the admins are told once storing has failed this long (30 s in service)


@pytest.fixture
def db(tmp_path: Path) -> Database:
    database = open_database(tmp_path / "hemowatch.db")
    add_patient(database, "p1", "Ann Smith", T0 - 3600)
    return database


def _monitor(tmp_path: Path, mosquitto: Mosquitto, notifier: RecordingNotifier, clock: ManualClock) -> VitalsMonitor:
    settings = Settings(
        _env_file=None, mqtt_url=mosquitto.url, hemowatch_db=tmp_path / "hemowatch.db", rule_hold_s=0,
        store_outage_notice_s=NOTICE_AFTER_S,
    )
    return VitalsMonitor(settings, notifier, clock)


async def _publish(port: int, samples: list[dict]) -> None:
    async with aiomqtt.Client("127.0.0.1", port) as device:
        for sample in samples:
            await device.publish(vitals_topic("hemowatch", "p1"), json.dumps(sample), qos=1)


def _stored(db: Database) -> tuple[int, int]:
    """Rows in the vitals table, and how many different readings (measurement times) they hold."""
    return tuple(db.execute("select count(*), count(distinct ts) from vitals").fetchone())


async def test_samples_published_while_the_store_is_locked_are_stored_once_after_it_and_the_admins_told(
    tmp_path: Path, mosquitto: Mosquitto, db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="monitor.store_outage")
    notifier, total = RecordingNotifier(), 300
    samples = [{"ts": T0 + i, **(HYPOXIC if 100 <= i < 200 else CALM)} for i in range(total)]
    async with _monitor(tmp_path, mosquitto, notifier, ManualClock(T0 + total)) as monitor:
        await asyncio.wait_for(monitor.subscriber.subscribed.wait(), 10)
        async with write_lock(tmp_path / "hemowatch.db"):
            await _publish(mosquitto.port, samples)
            # Two attempts wait out their busy timeout and fail: the outage outlasts the notice delay.
            await eventually(lambda: monitor.stats.store_failures >= 2, 4 * STORE_BUSY_S, "two failed attempts")
            stats = monitor.stats
            assert (stats.stored, stats.rejected, stats.store_outages) == (0, {}, 1)
            assert stats.store_failing_since == T0 + total
            await eventually(lambda: len(notifier.told_admins) == 1, 5, "the admins to be told")
            assert _stored(db) == (0, 0)
        await eventually(lambda: monitor.stats.stored == total, 30, "every sample to be stored")
        await eventually(lambda: len(notifier.notices) == 4, 10, "the alerts of the samples held")
        await eventually(lambda: len(notifier.told_admins) == 2, 5, "the admins to hear of the recovery")
        stats = monitor.stats
    assert _stored(db) == (total, total)
    assert (stats.duplicates, stats.rejected, stats.store_outages, stats.store_failing_since) == (0, {}, 1, None)
    assert sorted(notifier.seen()) == sorted(
        [(c, k) for c in ("spo2_low", "news2") for k in (NoticeKind.RAISED, NoticeKind.RESOLVED)]
    )
    failing, recovered = notifier.told_admins
    since = datetime.fromtimestamp(T0 + total, UTC)
    assert (failing.event, failing.since, failing.reason) == (ServiceEvent.STORE_FAILING, since, "database is locked")
    assert (recovered.event, recovered.since, recovered.until) == (ServiceEvent.STORE_RECOVERED, since, since)
    said = [(r.levelname, r.getMessage()) for r in caplog.records if r.name == "monitor.store_outage"]
    assert [level for level, _ in said] == ["ERROR", "WARNING"]  # once each, however many attempts failed
    assert said[0][1].startswith("storing vitals fails (database is locked): the messages are kept unacknowledged")
    assert said[1][1].startswith("storing vitals works again after")


async def test_stopping_while_the_store_fails_acknowledges_nothing_and_the_next_start_stores_it_all(
    tmp_path: Path, mosquitto: Mosquitto, db: Database
) -> None:
    samples = [{"ts": T0 + i, **CALM} for i in range(50)]
    async with write_lock(tmp_path / "hemowatch.db"):
        first = _monitor(tmp_path, mosquitto, RecordingNotifier(), ManualClock(T0 + len(samples)))
        await first.start()  # while the store is locked: it starts, and waits with what it receives
        await asyncio.wait_for(first.subscriber.subscribed.wait(), 10)
        await _publish(mosquitto.port, samples)
        await eventually(lambda: first.stats.store_failures >= 1, 2 * STORE_BUSY_S, "a failed attempt")
        stopping = asyncio.get_running_loop().time()
        await first.stop()  # gives up on the batch: at most the attempt under way is waited for
        assert asyncio.get_running_loop().time() - stopping < 2 * STORE_BUSY_S
        assert first.stats.stored == 0 and not first.stats.rejected
    assert _stored(db) == (0, 0)

    async with _monitor(tmp_path, mosquitto, RecordingNotifier(), ManualClock(T0 + len(samples))) as second:
        await eventually(lambda: second.stats.stored == len(samples), 15, "the broker to send every sample again")
    assert _stored(db) == (len(samples), len(samples))


async def test_a_notice_due_while_the_store_is_locked_is_delivered_once_it_is_free(
    tmp_path: Path, mosquitto: Mosquitto, db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    clock = ManualClock()

    async def first_try_fails(notice: AlertNotice) -> None:
        if len(notifier.attempts) == 1:
            raise DeliveryDeferred("Telegram unavailable")

    notifier = RecordingNotifier(first_try_fails)
    found_locked = lambda: any("notices waits for the store" in r.getMessage() for r in caplog.records)  # noqa: E731
    async with _monitor(tmp_path, mosquitto, notifier, clock) as monitor:
        await asyncio.wait_for(monitor.subscriber.subscribed.wait(), 10)
        await _publish(mosquitto.port, [{"ts": T0, "spo2": 85}])
        await eventually(lambda: len(notifier.attempts) == 1)  # deferred: tried again 2 s later
        async with write_lock(tmp_path / "hemowatch.db"):
            clock.advance(2)
            monitor.outbox.wake()
            await eventually(found_locked, 2 * STORE_BUSY_S, "the outbox to find the store locked")
        await eventually(lambda: len(notifier.notices) == 1, 2 * STORE_BUSY_S, "the notice to be delivered")
    assert notifier.seen() == [("spo2_low", NoticeKind.RAISED)]
