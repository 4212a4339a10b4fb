"""`/status`, `/thresholds` and `/mute` answers, through the real bot stack with a controllable clock."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from botworld import DOCTOR, PATIENT, BotWorld, running_ward

from core.notifications import Severity
from core.vitals import VitalSample
from localbotapi import BotApiServer
from store import alerts, patients
from store.database import atomic
from store.vitals import insert_vitals


@pytest.fixture
async def world(bot_api: BotApiServer, database: Path | str, tmp_path: Path) -> AsyncIterator[BotWorld]:
    async with running_ward(bot_api, database, tmp_path) as world:
        yield world


async def test_status_shows_latest_vitals_with_age_news2_alerts_and_a_trend(world: BotWorld) -> None:
    now = world.clock()
    samples = [
        VitalSample(PATIENT, now - 3600 + minute * 60, now, hr=80.0 + minute / 2, spo2=96.0, sbp=130.0, dbp=80.0)
        for minute in range(57)
    ]
    samples.append(VitalSample(PATIENT, now - 180, now, hr=118.0, spo2=91.0, sbp=150.0, dbp=90.0, rr=23.0,
                               temp=37.9, o2=False, acvpu="A", news2=5,
                               news2_components={"rr": 2, "spo2": 2, "hr": 1, "temp": 0}))
    with atomic(world.db):
        insert_vitals(world.db, samples)
    alerts.raise_alert(world.db, PATIENT, "news2", Severity.URGENT, "NEWS2 5 (medium risk)", now - 120)

    reply = await world.say(DOCTOR, f"/status {PATIENT}")
    assert "Latest vital signs (3 min ago)" in reply["text"]
    assert "Heart rate 118/min · SpO2 91%" in reply["text"]
    assert "NEWS2 5 (respiration rate 2, SpO2 2, pulse 1)" in reply["text"]
    assert "Open alerts (1):\n• urgent: NEWS2 5 (medium risk), raised 2 min ago, no doctor has acknowledged it yet" in (
        reply["text"])
    trend = await world.api.wait_for_message(DOCTOR, lambda m: "photo" in m, after=reply)
    assert trend["caption"].startswith("The last hour: heart rate, SpO2 and blood pressure.")  # what the readings cover


async def test_status_without_vitals_sends_no_picture(world: BotWorld) -> None:
    reply = await world.say(DOCTOR, f"/status {PATIENT}")
    assert "No vital signs received yet." in reply["text"] and "No open alerts." in reply["text"]
    await world.say(DOCTOR, "/help")  # a later round trip, so a picture would have arrived by now
    assert not any("photo" in m for m in world.api.history(DOCTOR))


@pytest.mark.parametrize(
    "arguments", ["pulse 40 120", "hr low 120", "hr 40", "hr - inf", "hr nan 120", "temp 36,5 38", "hr 1e2 -"]
)
async def test_threshold_changes_not_understood_are_explained_and_not_stored(world: BotWorld, arguments: str) -> None:
    reply = await world.say(DOCTOR, f"/thresholds {PATIENT} {arguments}")
    assert "Vitals and the limits they can have: hr 20 to 300/min, spo2 40 to 100%, sbp 40 to 300 mmHg, " \
           "dbp 15 to 200 mmHg, rr 0 to 80/min, temp 25 to 45 °C." in reply["text"]
    assert patients.get_thresholds(world.db, PATIENT) == {}


@pytest.mark.parametrize(
    ("arguments", "answer"),
    [
        ("spo2 101 -", "SpO2 limits must be from 40 to 100%; 101 is not. The limits are unchanged."),
        ("hr - 301", "Heart rate limits must be from 20 to 300/min; 301 is not. The limits are unchanged."),
        ("spo2 95 90", "SpO2: the low limit (95) must be below the high one (90). The limits are unchanged."),
        ("HR 150 -", "Heart rate: the low limit (150) must be below the high one (130, the standard one). "
                     "The limits are unchanged."),
    ],
)
async def test_threshold_changes_a_patient_cannot_have_say_what_is_allowed(
    world: BotWorld, arguments: str, answer: str
) -> None:
    reply = await world.say(DOCTOR, f"/thresholds {PATIENT} {arguments}")
    assert reply["text"] == answer
    assert patients.get_thresholds(world.db, PATIENT) == {}


async def test_one_sided_threshold(world: BotWorld) -> None:
    reply = await world.say(DOCTOR, f"/thresholds {PATIENT} sbp - 150")
    assert "Systolic pressure: standard to 150 mmHg" in reply["text"]
    assert patients.get_thresholds(world.db, PATIENT)["sbp"].high == 150
    reply = await world.say(DOCTOR, f"/thresholds {PATIENT} temp 35.5 38.25")
    assert "Temperature: 35.5 to 38.25 °C" in reply["text"]


@pytest.mark.parametrize(("minutes", "answer"), [("721", "at most 720 minutes"), ("soon", "Use /mute"),
                                                 ("²", "Use /mute"), ("0", "are on again")])
async def test_mute_answers(world: BotWorld, minutes: str, answer: str) -> None:
    assert answer in (await world.say(DOCTOR, f"/mute {PATIENT} {minutes}"))["text"]
