"""The running monitor against a real mosquitto (and the embedded broker), a real SQLite file and a
recording notifier: ingest, rejections, alert delivery, escalation, staleness, outages and restarts."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
from typing import Any

import aiomqtt
import pytest
from stores import store_settings

from core.notifications import AlertNotice, DeliveryDeferred, DeliveryHeld, DeliveryRefused, NoticeKind, Severity
from core.settings import Settings
from monitor.broker import EmbeddedBroker
from monitor.mqtt import vitals_topic
from monitor.vitals_monitor import VitalsMonitor
from store.alerts import AlertState, acknowledge_alert, get_alert, open_alerts
from store.outbox import pending_notices, release_held
from store.patients import add_patient, set_threshold
from store import open_database
from store.vitals import latest_vitals, vitals_between
from store.database import Database
from testsupport.broker import Mosquitto, free_port
from testsupport.doubles import T0, ManualClock, RecordingNotifier
from testsupport.waiting import eventually

CALM = {"hr": 72, "spo2": 97, "sbp": 125, "dbp": 80, "rr": 15, "temp": 36.8, "acvpu": "A"}
HYPOXIC = CALM | {"spo2": 86}  # SpO2 below 90 and NEWS2 SpO2 component 3


def _settings(database: Path | str, tmp_path: Path, url: str, **overrides: Any) -> Settings:
    return Settings(_env_file=None, mqtt_url=url, rule_hold_s=0, **store_settings(database, tmp_path) | overrides)


@pytest.fixture
def db(database: Path | str) -> Database:
    opened = open_database(database)
    add_patient(opened, "p1", "Ann Smith", T0 - 3600)
    return opened


async def _publish(port: int, samples: list[tuple[str, dict | bytes]]) -> None:
    async with aiomqtt.Client("127.0.0.1", port) as client:
        for patient_id, payload in samples:
            data = payload if isinstance(payload, bytes) else json.dumps(payload)
            await client.publish(vitals_topic("hemowatch", patient_id), data, qos=1)


async def _subscribed(monitor: VitalsMonitor) -> None:
    await asyncio.wait_for(monitor.subscriber.subscribed.wait(), 10)


async def test_vitals_are_stored_and_bad_messages_counted_without_stopping(
    database: Path | str, tmp_path: Path, mosquitto: Mosquitto, db: Database
) -> None:
    monitor = VitalsMonitor(_settings(database, tmp_path, mosquitto.url), RecordingNotifier(), ManualClock())
    await monitor.start()
    try:
        await _subscribed(monitor)
        await _publish(mosquitto.port, [
            ("p1", b"\x00\x01 binary noise"),
            ("p1", b'{"hr": NaN}'),
            ("p1", b'{"hr": "fast"}'),
            ("p1", b'{"spo2": 140}'),
            ("p1", b'{"hr": 70, "pad": "' + b"x" * 5000 + b'"}'),
            ("intruder", {"ts": T0, "hr": 70}),
            ("p1", b'{"hr": 80, "hr": 25}'),
            ("p1", {"ts": T0, **CALM, "gcs": 15, "o2": True}),
        ])
        await eventually(lambda: monitor.stats.stored == 1 and sum(monitor.stats.rejected.values()) == 7)
        assert monitor.stats.rejected == {
            "malformed": 1, "invalid": 3, "oversized": 1, "unknown patient": 1, "duplicate key": 1
        }
        stored = latest_vitals(db, "p1")
        assert (stored.ts, stored.received_at, stored.hr, stored.o2, stored.gcs) == (T0, T0, 72, True, 15)
        assert stored.news2 == 2 and stored.news2_components["o2"] == 2
    finally:
        await monitor.stop()


async def test_alert_delivered_once_per_transition_then_resolved(
    database: Path | str, tmp_path: Path, mosquitto: Mosquitto, db: Database
) -> None:
    notifier = RecordingNotifier()
    async with VitalsMonitor(_settings(database, tmp_path, mosquitto.url), notifier, ManualClock()) as monitor:
        await _subscribed(monitor)
        await _publish(mosquitto.port, [("p1", {"ts": T0 + i, **HYPOXIC}) for i in range(5)])
        await eventually(lambda: monitor.stats.stored == 5 and len(notifier.notices) == 2)
        assert notifier.seen() == [("spo2_low", NoticeKind.RAISED), ("news2", NoticeKind.RAISED)]
        raised = notifier.notices[0]
        assert (raised.patient_name, raised.severity, raised.title) == ("Ann Smith", Severity.URGENT, "SpO2 low (below 90%)")
        assert raised.values["spo2"] == 86 and notifier.notices[1].news2 == 3
        await eventually(lambda: get_alert(db, raised.alert_id).state is AlertState.NOTIFIED)
        await _publish(mosquitto.port, [("p1", {"ts": T0 + 10, **CALM})])
        await eventually(lambda: len(notifier.notices) == 4)
    assert notifier.seen()[2:] == [("spo2_low", NoticeKind.RESOLVED), ("news2", NoticeKind.RESOLVED)]
    assert open_alerts(db) == []


async def test_an_emergency_back_within_minutes_reopens_the_same_alert(
    database: Path | str, tmp_path: Path, mosquitto: Mosquitto, db: Database
) -> None:
    clock, notifier = ManualClock(), RecordingNotifier()
    high = CALM | {"rr": 25, "spo2": 93, "hr": 111}  # NEWS2 7
    async with VitalsMonitor(_settings(database, tmp_path, mosquitto.url), notifier, clock) as monitor:
        await _subscribed(monitor)
        for stored, (offset, vitals) in enumerate(((0, high), (60, CALM), (240, high)), start=1):
            clock.now = T0 + offset
            await _publish(mosquitto.port, [("p1", {"ts": clock.now, **vitals})])
            await eventually(lambda: monitor.stats.stored == stored and len(notifier.notices) == 2 * stored)  # noqa: B023
    emergencies = [(n.kind, n.alert_id) for n in notifier.notices if n.condition == "news2_high"]
    first = emergencies[0][1]
    assert emergencies == [(NoticeKind.RAISED, first), (NoticeKind.RESOLVED, first), (NoticeKind.REOPENED, first)]
    assert [a.id for a in open_alerts(db) if a.condition == "news2_high"] == [first]


async def test_threshold_changes_are_picked_up(
    database: Path | str, tmp_path: Path, mosquitto: Mosquitto, db: Database
) -> None:
    notifier = RecordingNotifier()
    async with VitalsMonitor(_settings(database, tmp_path, mosquitto.url), notifier, ManualClock()) as monitor:
        await _subscribed(monitor)
        set_threshold(db, "p1", "hr", None, 100)
        await monitor.refresh()
        await _publish(mosquitto.port, [("p1", {"ts": T0, "hr": 105})])
        await eventually(lambda: len(notifier.notices) == 1)
    assert notifier.notices[0].title == "Heart rate high (above 100/min)"


async def test_unacknowledged_urgent_alert_escalates_on_time(
    database: Path | str, tmp_path: Path, mosquitto: Mosquitto, db: Database
) -> None:
    clock, notifier = ManualClock(), RecordingNotifier()
    settings = _settings(database, tmp_path, mosquitto.url, escalate_after_s=300)
    async with VitalsMonitor(settings, notifier, clock) as monitor:
        await _subscribed(monitor)
        await _publish(mosquitto.port, [("p1", {"ts": T0, "spo2": 85})])
        await eventually(lambda: len(notifier.notices) == 1)
        clock.advance(299)
        await monitor.escalate()
        assert [alert.escalation_level for alert in open_alerts(db)] == [0]  # not yet
        clock.advance(1)
        await monitor.escalate()
        await eventually(lambda: len(notifier.notices) == 2)
        assert (notifier.notices[1].kind, notifier.notices[1].escalation_level) == (NoticeKind.ESCALATED, 1)
        clock.advance(300)
        await monitor.escalate()
        await eventually(lambda: len(notifier.notices) == 3)
        assert notifier.notices[2].escalation_level == 2
        assert acknowledge_alert(db, notifier.notices[0].alert_id, 777, clock())
        clock.advance(3000)
        await monitor.escalate()
        await monitor.outbox.deliver_due()
    assert [n.kind for n in notifier.notices] == [NoticeKind.RAISED, NoticeKind.ESCALATED, NoticeKind.ESCALATED]


async def test_silent_sensor_raises_offline_and_returning_data_resolves_it(
    database: Path | str, tmp_path: Path, mosquitto: Mosquitto, db: Database
) -> None:
    clock, notifier = ManualClock(), RecordingNotifier()
    settings = _settings(database, tmp_path, mosquitto.url, stale_after_s=120)
    async with VitalsMonitor(settings, notifier, clock) as monitor:
        await _subscribed(monitor)
        clock.advance(119)
        await monitor.check_stale()
        clock.advance(1)
        await monitor.check_stale()
        await eventually(lambda: len(notifier.notices) == 1)
        assert (notifier.notices[0].condition, notifier.notices[0].severity) == ("sensor_offline", Severity.WARNING)
        await monitor.check_stale()
        await _publish(mosquitto.port, [("p1", {"ts": clock(), "hr": 70})])
        await eventually(lambda: len(notifier.notices) == 2)
    assert notifier.seen() == [("sensor_offline", NoticeKind.RAISED), ("sensor_offline", NoticeKind.RESOLVED)]


async def test_deferred_notice_is_retried_on_its_own_schedule_in_order_within_its_alert_and_refused_one_dropped(
    database: Path | str, tmp_path: Path, mosquitto: Mosquitto, db: Database
) -> None:
    clock = ManualClock()

    async def flaky(notice: AlertNotice) -> None:
        if notice.condition == "news2":
            raise DeliveryRefused("every recipient blocked the bot")
        if len([n for n in notifier.attempts if n.condition == "spo2_low"]) == 1:
            raise DeliveryDeferred("429: too many requests", retry_after=30)

    notifier = RecordingNotifier(flaky)
    async with VitalsMonitor(_settings(database, tmp_path, mosquitto.url), notifier, clock) as monitor:
        await _subscribed(monitor)
        await _publish(mosquitto.port, [("p1", {"ts": T0, **HYPOXIC}), ("p1", {"ts": T0 + 1, **CALM})])
        # The SpO2 alert's first notice waits 30 s; the other alert's notices do not wait behind it.
        await eventually(lambda: len(notifier.attempts) == 3)
        await monitor.outbox.deliver_due()
        assert [(n.condition, n.kind) for n in notifier.attempts] == [
            ("spo2_low", NoticeKind.RAISED), ("news2", NoticeKind.RAISED), ("news2", NoticeKind.RESOLVED)
        ]  # and "resolved" did not overtake the deferred "raised" of its alert
        clock.advance(30)
        monitor.outbox.wake()
        await eventually(lambda: len(notifier.notices) == 2)
    assert notifier.seen() == [("spo2_low", NoticeKind.RAISED), ("spo2_low", NoticeKind.RESOLVED)]


async def test_an_emergency_after_a_long_outage_goes_first_and_is_retried_at_most_30_s_apart(
    database: Path | str, tmp_path: Path, mosquitto: Mosquitto, db: Database
) -> None:
    clock, outage = ManualClock(), [True]

    async def telegram(notice: AlertNotice) -> None:
        if outage[0]:
            raise DeliveryDeferred("Telegram unavailable")

    notifier = RecordingNotifier(telegram)
    tries = lambda condition: [n for n in notifier.attempts if n.condition == condition]  # noqa: E731
    settings = _settings(database, tmp_path, mosquitto.url, escalate_after_s=86400, stale_after_s=86400)
    async with VitalsMonitor(settings, notifier, clock) as monitor:
        await _subscribed(monitor)
        await _publish(mosquitto.port, [("p1", {"ts": T0, "spo2": 85, "gcs": 15})])
        await eventually(lambda: len(tries("spo2_low")) == 1)
        for _ in range(12):  # an hour of outage: the urgent notice's backoff grows to 300 s
            clock.advance(300)
            await monitor.outbox.deliver_due()
        assert len(tries("spo2_low")) == 13  # retried 2, 4, ... s, then 300 s apart
        await _publish(mosquitto.port, [("p1", {"ts": clock(), "gcs": 12})])  # GCS drop: an emergency
        await eventually(lambda: len(tries("gcs_drop")) == 1)  # offered at once, not behind the urgent one
        for attempt in range(2, 12):  # still out: tried again within 30 s, however often it failed
            clock.advance(30)
            await monitor.outbox.deliver_due()
            assert len(tries("gcs_drop")) == attempt
        outage[0] = False
        clock.advance(30)
        await monitor.outbox.deliver_due()
        assert notifier.seen() == [("gcs_drop", NoticeKind.RAISED)]  # the urgent one waits for its own time
        clock.advance(300)
        await monitor.outbox.deliver_due()
    assert notifier.seen() == [("gcs_drop", NoticeKind.RAISED), ("spo2_low", NoticeKind.RAISED)]


async def test_rejected_messages_are_logged_by_a_short_prefix(
    database: Path | str, tmp_path: Path, mosquitto: Mosquitto, db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    monitor = VitalsMonitor(_settings(database, tmp_path, mosquitto.url), RecordingNotifier(), ManualClock())
    async with monitor:
        await _subscribed(monitor)
        await _publish(mosquitto.port, [
            ("x" * 60_000, {"hr": 80}),  # a 60 kB topic
            ("p1", b'{"ts": 1' + b"0" * 309 + b', "hr": 80}'),  # a 310-digit time stamp
            ("p1", b'{"hr": 80, "note": "' + b"y" * 3000 + b'", "hr": 81}'),  # each reason has a line of its own
        ])
        await eventually(lambda: sum(monitor.stats.rejected.values()) == 3)
    lines = [r.getMessage() for r in caplog.records if "rejected message" in r.getMessage()]
    assert len(lines) == 3
    assert all(len(line) < 600 for line in lines), [len(line) for line in lines]
    assert "… (60026 characters)" in lines[0]
    assert "bytes)" in lines[1] and "bytes)" in lines[2]


async def test_a_notice_nobody_can_receive_stays_pending_without_holding_back_others(
    database: Path | str, tmp_path: Path, mosquitto: Mosquitto, db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    add_patient(db, "p2", "Bob Jones", T0 - 3600)
    clock = ManualClock()
    joined: list[int] = []

    async def nobody_for_p1(notice: AlertNotice) -> None:
        if notice.patient_id == "p1" and not joined:
            raise DeliveryHeld("nobody can receive it")

    notifier = RecordingNotifier(nobody_for_p1)
    async with VitalsMonitor(_settings(database, tmp_path, mosquitto.url), notifier, clock) as monitor:
        await _subscribed(monitor)
        await _publish(mosquitto.port, [("p1", {"ts": T0, **HYPOXIC}), ("p1", {"ts": T0 + 1, **CALM})])
        await eventually(lambda: {n.patient_id for n in notifier.attempts} == {"p1"})
        await _publish(mosquitto.port, [("p2", {"ts": T0 + 2, **HYPOXIC})])
        await eventually(lambda: [n.patient_id for n in notifier.notices] == ["p2", "p2"])  # spo2_low and news2
        pending = {(e.notice.condition, e.notice.kind): e for e in pending_notices(db) if e.notice.patient_id == "p1"}
        assert pending[("spo2_low", NoticeKind.RAISED)].held
        resolved = pending[("spo2_low", NoticeKind.RESOLVED)]  # waits behind its alert's held notice, untried
        assert not resolved.held and resolved.attempts == 0

        joined.append(1)  # someone joined: the held notices go out at once, in order
        assert release_held(db, clock()) >= 1
        monitor.outbox.wake()
        await eventually(lambda: not pending_notices(db), 10, "the held notices to be delivered")
    p1 = [(n.condition, n.kind) for n in notifier.notices if n.patient_id == "p1"]
    assert p1.index(("spo2_low", NoticeKind.RAISED)) < p1.index(("spo2_low", NoticeKind.RESOLVED))
    kept = [r for r in caplog.records if r.levelname == "WARNING" and "kept pending" in r.getMessage()]
    assert kept and "p1 (Ann Smith)" in kept[0].getMessage() and "spo2 86" in kept[0].getMessage()
    assert len([r for r in kept if "SpO2 low" in r.getMessage()]) == 1  # said once, however often retried


async def test_broker_restart_mid_stream_loses_no_sample(
    database: Path | str, tmp_path: Path, mosquitto: Mosquitto, db: Database
) -> None:
    notifier = RecordingNotifier()
    total = 300
    samples = [{"ts": T0 + i, **(HYPOXIC if 50 <= i < 250 else CALM)} for i in range(total)]
    settings = _settings(database, tmp_path, mosquitto.url)
    async with VitalsMonitor(settings, notifier, ManualClock(T0 + total)) as monitor:
        await _subscribed(monitor)
        sent = 0
        while sent < total:  # a device: resend whatever the broker did not acknowledge
            try:
                async with aiomqtt.Client("127.0.0.1", mosquitto.port, identifier="bed-1", clean_session=False) as device:
                    while sent < total:
                        await device.publish(vitals_topic("hemowatch", "p1"), json.dumps(samples[sent]), qos=1)
                        sent += 1
                        if sent == total // 3:
                            await asyncio.to_thread(mosquitto.restart)
            except aiomqtt.MqttError:
                await asyncio.sleep(0.1)
        stored = lambda: {s.ts for s in vitals_between(db, "p1", T0, T0 + total)}  # noqa: E731
        await eventually(lambda: len(stored()) == total, timeout=30)
        await eventually(lambda: len(notifier.notices) == 4)
    assert sorted(notifier.seen()) == sorted(
        [(c, k) for c in ("spo2_low", "news2") for k in (NoticeKind.RAISED, NoticeKind.RESOLVED)]
    )


async def test_restart_delivers_the_pending_alert_and_what_was_published_meanwhile(
    database: Path | str, tmp_path: Path, mosquitto: Mosquitto, db: Database
) -> None:
    async def hang(notice: AlertNotice) -> None:
        await asyncio.Event().wait()  # the process dies before the notifier returns

    first = RecordingNotifier(hang)
    settings = _settings(database, tmp_path, mosquitto.url)
    async with VitalsMonitor(settings, first, ManualClock()) as monitor:
        await _subscribed(monitor)
        await _publish(mosquitto.port, [("p1", {"ts": T0, "spo2": 85})])
        await eventually(lambda: len(first.attempts) == 1)
    await _publish(mosquitto.port, [("p1", {"ts": T0 + 1 + i, "spo2": 85}) for i in range(5)])

    second = RecordingNotifier()
    async with VitalsMonitor(settings, second, ManualClock(T0 + 60)) as monitor:
        await _subscribed(monitor)
        await eventually(lambda: monitor.stats.stored == 5)
        await eventually(lambda: len(second.notices) == 1)
        await monitor.outbox.deliver_due()
    assert second.notices[0].outbox_id == first.attempts[0].outbox_id  # the same notice, offered again
    assert second.seen() == [("spo2_low", NoticeKind.RAISED)]  # and no second alert for the same condition
    assert len(vitals_between(db, "p1", T0, T0 + 10)) == 6


async def test_embedded_broker_serves_the_monitor_and_says_its_queue_is_memory_only(
    database: Path | str, tmp_path: Path, db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="monitor.broker")
    notifier = RecordingNotifier()
    port = free_port()
    settings = _settings(database, tmp_path, "", embedded_broker_port=port)
    async with EmbeddedBroker("127.0.0.1", port) as broker:
        assert broker.url == f"mqtt://127.0.0.1:{port}"
        async with VitalsMonitor(settings, notifier, ManualClock()) as monitor:
            await _subscribed(monitor)
            await _publish(port, [("p1", {"ts": T0, **HYPOXIC}), ("p1", {"ts": T0 + 1, **CALM})])
            await eventually(lambda: monitor.stats.stored == 2 and len(notifier.notices) == 4)
    assert notifier.seen() == [
        ("spo2_low", NoticeKind.RAISED), ("news2", NoticeKind.RAISED),
        ("spo2_low", NoticeKind.RESOLVED), ("news2", NoticeKind.RESOLVED),
    ]
    assert any("memory only" in r.getMessage() and "deploy/mosquitto.conf" in r.getMessage() for r in caplog.records)


async def test_shared_subscription_splits_the_load_between_monitors(
    database: Path | str, tmp_path: Path, mosquitto: Mosquitto, db: Database
) -> None:
    add_patient(db, "p2", "Ben Jones", T0 - 3600)
    clock, notifiers = ManualClock(), [RecordingNotifier(), RecordingNotifier()]
    workers = [
        VitalsMonitor(_settings(database, tmp_path, mosquitto.url, mqtt_shared_group="monitors",
                                mqtt_client_id=f"monitor-{n}", stale_after_s=60), notifier, clock)
        for n, notifier in enumerate(notifiers)
    ]
    async with workers[0], workers[1]:
        for worker in workers:
            await _subscribed(worker)
        await _publish(mosquitto.port, [("p1", {"ts": T0 + i, **CALM}) for i in range(50)])
        await eventually(lambda: sum(w.stats.stored for w in workers) == 50)
        assert all(w.stats.stored > 0 for w in workers)
        clock.advance(60)
        for worker in workers:
            await worker.check_stale()
            await worker.outbox.deliver_due()
    assert len(vitals_between(db, "p1", T0, T0 + 50)) == 50  # each sample stored once
    delivered = [n for notifier in notifiers for n in notifier.notices]
    assert {n.patient_id for n in delivered} == {"p1"}  # p2 never sent: no worker claims it went quiet
    assert sorted(n.outbox_id for n in delivered) == sorted({n.outbox_id for n in delivered})  # each once


async def test_retention_prunes_old_samples_and_keeps_alerts(
    database: Path | str, tmp_path: Path, mosquitto: Mosquitto, db: Database
) -> None:
    clock, notifier = ManualClock(T0 - 2 * 86400), RecordingNotifier()
    settings = _settings(database, tmp_path, mosquitto.url, retention_days=1)
    async with VitalsMonitor(settings, notifier, clock) as monitor:
        await _subscribed(monitor)
        await _publish(mosquitto.port, [("p1", {"ts": T0 - 2 * 86400, "spo2": 85})])
        await eventually(lambda: monitor.stats.stored == 1 and len(notifier.notices) == 1)
        clock.now = T0
        await _publish(mosquitto.port, [("p1", {"ts": T0, "hr": 70})])
        await eventually(lambda: monitor.stats.stored == 2)
        await monitor.prune()
    assert [s.ts for s in vitals_between(db, "p1", 0, T0)] == [T0]
    assert [a.condition for a in open_alerts(db, "p1")] == ["spo2_low"]
