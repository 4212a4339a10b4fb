"""Device clocks and several devices per patient, against a real mosquitto and a real SQLite file: a sample
stamped in the future or a second device's fast clock never suspends judgement, two readings of one second
are both stored and judged, and a sample older than the retention window is rejected."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
from typing import Any

import aiomqtt
import pytest
from stores import store_settings

from core.notifications import NoticeKind
from core.settings import Settings
from monitor.mqtt import vitals_topic
from monitor.vitals_monitor import VitalsMonitor
from store.patients import add_patient
from store import open_database
from store.vitals import vitals_between
from store.database import Database
from testsupport.broker import Mosquitto
from testsupport.doubles import T0, ManualClock, RecordingNotifier
from testsupport.waiting import eventually

CALM = {"hr": 72, "spo2": 97, "sbp": 125, "dbp": 80, "rr": 15, "temp": 36.8}


@pytest.fixture
def db(database: Path | str) -> Database:
    opened = open_database(database)
    add_patient(opened, "p1", "Ann Smith", T0 - 3600)
    add_patient(opened, "p2", "Ben Jones", T0 - 3600)
    return opened


def _monitor(database: Path | str, tmp_path: Path, mosquitto: Mosquitto, clock: ManualClock,
             notifier: RecordingNotifier, **overrides: Any) -> VitalsMonitor:
    settings = Settings(_env_file=None, mqtt_url=mosquitto.url, **store_settings(database, tmp_path), **overrides)
    return VitalsMonitor(settings, notifier, clock)


async def _send(device: aiomqtt.Client, monitor: VitalsMonitor, patient_id: str, *payloads: dict) -> None:
    """Publish and wait until the monitor has taken each message (so the clock can move on)."""
    before = monitor.stats.stored + monitor.stats.duplicates + sum(monitor.stats.rejected.values())
    for payload in payloads:
        await device.publish(vitals_topic("hemowatch", patient_id), json.dumps(payload), qos=1)
    done = before + len(payloads)
    await eventually(lambda: monitor.stats.stored + monitor.stats.duplicates + sum(monitor.stats.rejected.values()) == done)


def _raised(notifier: RecordingNotifier, patient_id: str) -> set[str]:
    return {n.condition for n in notifier.notices if n.patient_id == patient_id and n.kind is NoticeKind.RAISED}


async def test_one_sample_stamped_in_the_future_does_not_silence_the_patient(
    database: Path | str, tmp_path: Path, mosquitto: Mosquitto, db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    clock, notifier = ManualClock(), RecordingNotifier()
    caplog.set_level(logging.WARNING, logger="monitor.ward")
    async with _monitor(database, tmp_path, mosquitto, clock, notifier) as monitor:
        await asyncio.wait_for(monitor.subscriber.subscribed.wait(), 10)
        async with aiomqtt.Client("127.0.0.1", mosquitto.port) as device:
            await _send(device, monitor, "p1", {"ts": T0 + 290, **CALM, "gcs": 15})  # a clock glitch
            await _send(device, monitor, "p2", {"ts": T0, **CALM, "gcs": 15})  # a control patient
            for second in range(1, 32):  # then, in real time: SpO2 80 and GCS 15 -> 9 for 30 s
                clock.now = T0 + second
                for patient_id in ("p1", "p2"):
                    await _send(device, monitor, patient_id, {"ts": clock.now, **CALM, "spo2": 80, "gcs": 9})
        for patient_id in ("p2", "p1"):  # the control patient's alerts, and the same for p1
            await eventually(lambda: {"spo2_low", "gcs_drop"} <= _raised(notifier, patient_id), what=patient_id)  # noqa: B023
        await monitor.outbox.deliver_due()
        assert _raised(notifier, "p1") == _raised(notifier, "p2")
    glitch = vitals_between(db, "p1", T0, T0)
    assert [(s.ts, s.device_ts) for s in glitch] == [(T0, T0 + 290)]  # kept, with its arrival time
    warnings = [r.getMessage() for r in caplog.records if "ahead" in r.getMessage()]
    assert len(warnings) == 1 and "patient p1" in warnings[0] and "290 s ahead" in warnings[0]


async def test_a_second_device_with_a_fast_clock_does_not_suspend_the_first(
    database: Path | str, tmp_path: Path, mosquitto: Mosquitto, db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    clock, notifier = ManualClock(), RecordingNotifier()
    caplog.set_level(logging.WARNING, logger="monitor.ward")
    async with _monitor(database, tmp_path, mosquitto, clock, notifier, rule_hold_s=20) as monitor:
        await asyncio.wait_for(monitor.subscriber.subscribed.wait(), 10)
        async with aiomqtt.Client("127.0.0.1", mosquitto.port) as device:
            for second in range(26):  # SpO2 80 for 25 s from the oximeter; the monitor's clock runs 60 s fast
                clock.now = T0 + second
                await _send(device, monitor, "p1", {"ts": clock.now + 60, "hr": 72, "device": "bedside-monitor"})
                await _send(device, monitor, "p1", {"ts": clock.now, "spo2": 80, "device": "oximeter"})
        await eventually(lambda: _raised(notifier, "p1") == {"spo2_low"}, what="the SpO2 alert")
    assert len(vitals_between(db, "p1", T0, T0 + 100)) == 52
    warnings = [r.getMessage() for r in caplog.records if "ahead" in r.getMessage()]
    assert warnings == [
        "device 'bedside-monitor' of patient p1 stamps its samples 60 s ahead of this machine's clock; they are "
        "judged on arrival time until its clock is set right (said once per device)"
    ]


async def test_two_readings_of_one_second_are_both_stored_and_judged_and_only_true_resends_skipped(
    database: Path | str, tmp_path: Path, mosquitto: Mosquitto, db: Database
) -> None:
    clock, notifier = ManualClock(), RecordingNotifier()
    async with _monitor(database, tmp_path, mosquitto, clock, notifier, rule_hold_s=0) as monitor:
        await asyncio.wait_for(monitor.subscriber.subscribed.wait(), 10)
        async with aiomqtt.Client("127.0.0.1", mosquitto.port) as device:
            both = [{"ts": T0, "hr": 80}, {"ts": T0, "spo2": 84}]
            await _send(device, monitor, "p1", *both)
            await eventually(lambda: _raised(notifier, "p1") == {"spo2_low"}, what="the SpO2 alert")
            await _send(device, monitor, "p1", *both)  # both sent again: resends
            await _send(device, monitor, "p1", {"ts": T0, "hr": 80, "device": "second-monitor"})
        assert (monitor.stats.stored, monitor.stats.duplicates) == (3, 2)
    stored = [(s.hr, s.spo2, s.device) for s in vitals_between(db, "p1", T0, T0)]
    assert stored == [(80, None, ""), (None, 84, ""), (80, None, "second-monitor")]


async def test_samples_older_than_the_retention_window_are_rejected(
    database: Path | str, tmp_path: Path, mosquitto: Mosquitto, db: Database
) -> None:
    clock, notifier = ManualClock(), RecordingNotifier()
    async with _monitor(database, tmp_path, mosquitto, clock, notifier, retention_days=2, rule_hold_s=0) as monitor:
        await asyncio.wait_for(monitor.subscriber.subscribed.wait(), 10)
        async with aiomqtt.Client("127.0.0.1", mosquitto.port) as device:
            await _send(device, monitor, "p1", {"ts": T0 - 2 * 86400 - 1, "spo2": 80}, {"ts": T0 - 2 * 86400, "hr": 70})
        assert (monitor.stats.stored, monitor.stats.rejected) == (1, {"too old": 1})
    assert notifier.notices == []
