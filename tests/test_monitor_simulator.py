"""The simulator: each scenario raises its alerts within a minute, and `hemowatch simulate` feeds a monitor."""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import aiomqtt
import pytest
from stores import store_environment, store_settings

from core.notifications import NoticeKind
from core.settings import Settings
from core.vitals import VitalSample
from monitor.engine import AlertRaised, PatientState, Profile, assess
from monitor.mqtt import vitals_topic
from monitor.rules import patient_rules
from monitor.simulator import OFFLINE_AFTER_S, SimulatedPatient
from monitor.vitals_monitor import VitalsMonitor, engine_config
from store.patients import add_patient, list_patients
from store import open_database
from store.vitals import vitals_between
from testsupport.broker import Mosquitto, free_port
from testsupport.doubles import T0, ManualClock, RecordingNotifier
from testsupport.waiting import eventually


def _alerts_within(scenario: str, seconds: int, seed: int) -> dict[str, float]:
    """Run one simulated patient at 1 Hz through the engine (the default settings: a 30 s hold); condition -> time
    raised."""
    patient = SimulatedPatient("sim-1", scenario, random.Random(seed))
    config = engine_config(Settings(_env_file=None))
    assert config.hold_s == 30
    state, profile = PatientState(last_seen=T0), Profile(patient_rules({}), neuro=True)
    raised: dict[str, float] = {}
    for second in range(seconds + 1):
        reading = patient.reading(second, T0 + second)
        if reading is None:
            continue
        reading.pop("ts")
        sample = VitalSample("sim-1", T0 + second, T0 + second, **reading)
        state, events, _ = assess(state, sample, profile, config)
        raised |= {e.condition: second for e in events if isinstance(e, AlertRaised) and e.condition not in raised}
    return raised


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize(
    ("scenario", "expected"),
    [
        ("hypoxia", {"spo2_low", "news2"}),
        ("hypertension", {"sbp_ceiling"}),
        ("deterioration", {"gcs_drop", "sbp_ceiling", "news2"}),
    ],
)
def test_each_scenario_alerts_within_a_minute(scenario: str, expected: set[str], seed: int) -> None:
    assert expected <= set(_alerts_within(scenario, 60, seed))


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_stable_patients_raise_nothing_for_ten_minutes(seed: int) -> None:
    assert _alerts_within("stable", 600, seed) == {}


def test_offline_sensor_stops_publishing() -> None:
    patient = SimulatedPatient("sim-1", "offline", random.Random(0))
    assert patient.reading(OFFLINE_AFTER_S - 1, T0) is not None
    assert patient.reading(OFFLINE_AFTER_S, T0) is None


async def test_simulate_command_feeds_the_monitor_until_sigterm(
    database: Path | str, tmp_path: Path, mosquitto: Mosquitto
) -> None:
    settings = Settings(_env_file=None, mqtt_url=mosquitto.url, **store_settings(database, tmp_path))
    env = os.environ | {"MQTT_URL": mosquitto.url} | store_environment(database, tmp_path)
    async with VitalsMonitor(settings, RecordingNotifier()) as monitor:
        await asyncio.wait_for(monitor.subscriber.subscribed.wait(), 10)
        simulator = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "hemowatch.cli", "simulate", "--patients", "2", "--rate", "20",
            "--scenario", "hypoxia", env=env, stdout=asyncio.subprocess.PIPE, cwd=tmp_path,
        )
        db = open_database(database)
        stored = lambda: [len(vitals_between(db, f"sim-{n}", 0, 2e9)) for n in (1, 2)]  # noqa: E731
        await eventually(lambda: min(stored()) >= 5, timeout=30)
        simulator.send_signal(signal.SIGTERM)
        output, _ = await simulator.communicate()
    assert simulator.returncode == 0
    assert b"published" in output
    assert [p.name for p in list_patients(db)] == ["Simulated patient 1", "Simulated patient 2"]
    assert monitor.stats.rejected == {}


def test_simulate_for_a_duration_stops_then_also_while_no_broker_answers(database: Path | str, tmp_path: Path) -> None:
    port = free_port()  # nothing listens there
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    env |= store_environment(database, tmp_path)
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "hemowatch.cli", "simulate", "--patients", "1", "--duration", "2",
                           "--broker", f"mqtt://127.0.0.1:{port}"], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=120)
    assert time.monotonic() - started < 15  # the retries stop at the end of the duration, after about 2 s
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        f"publishing 'stable' vitals for 1 patient (sim-1) at 1 Hz to 127.0.0.1:{port}; Ctrl+C stops",
        "published 0 samples",
    ]
    assert "broker unreachable" in done.stderr


async def test_hypoxia_scenario_gives_each_patient_at_most_one_alert_per_condition(
    database: Path | str, tmp_path: Path, mosquitto: Mosquitto
) -> None:
    """Three patients, 75 s of the hypoxia scenario at 1 Hz on a hand-moved clock, through the broker: the
    breathing rate and the NEWS2 score waver around their limits, which must not make alerts flap."""
    db = open_database(database)
    patients = [SimulatedPatient(f"sim-{n}", "hypoxia", random.Random(n)) for n in (1, 2, 3)]
    for patient in patients:
        add_patient(db, patient.patient_id, patient.patient_id, T0 - 60)
    clock, notifier = ManualClock(), RecordingNotifier()
    settings = Settings(_env_file=None, mqtt_url=mosquitto.url, **store_settings(database, tmp_path))
    async with VitalsMonitor(settings, notifier, clock) as monitor:
        await asyncio.wait_for(monitor.subscriber.subscribed.wait(), 10)
        async with aiomqtt.Client("127.0.0.1", mosquitto.port) as device:
            for second in range(76):
                clock.now = T0 + second
                for patient in patients:
                    topic = vitals_topic("hemowatch", patient.patient_id)
                    await device.publish(topic, json.dumps(patient.reading(second, clock.now)), qos=1)
                await eventually(lambda: monitor.stats.stored == 3 * (second + 1))  # noqa: B023
        await monitor.outbox.deliver_due()
    raised = [(n.patient_id, n.condition) for n in notifier.notices if n.kind is not NoticeKind.RESOLVED]
    alerts = db.execute("select patient_id, condition, count(*) from alerts group by 1, 2").fetchall()
    assert {patient_id for patient_id, _ in raised} == {"sim-1", "sim-2", "sim-3"}
    assert {condition for _, condition in raised} >= {"spo2_low", "news2"}
    assert sorted(raised) == sorted(set(raised)), "a condition alerted twice"
    assert all(count == 1 for _, _, count in alerts)
    assert not any(n.kind is NoticeKind.RESOLVED for n in notifier.notices)  # the episode never cleared
