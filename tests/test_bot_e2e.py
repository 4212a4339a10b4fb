"""The whole service (`hemowatch.wiring.running`: bot, monitor, real mosquitto, the local Bot API server):
a caregiver joins, a patient deteriorates, the alert arrives with its button, the caregiver's press is shown as
seen while the alert keeps escalating, the doctor's acknowledgement stops it, and Telegram failures still end in
exactly one message per person."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiomqtt
import pytest
from botworld import ADMIN, settings_for

from core.roles import Role
from hemowatch.wiring import RunningService, running, serve
from localbotapi import JSON, BotApiServer
from monitor.mqtt import vitals_topic
from store import alerts, open_database, outbox, patients, people, vitals
from store.database import Database
from testsupport.broker import Mosquitto
from testsupport.doubles import ManualClock
from testsupport.waiting import eventually

DOCTOR, CAREGIVER = 10, 20
PATIENT, OTHER_PATIENT = "ward-1", "ward-2"
pytestmark = pytest.mark.timeout(120)
Served = tuple[RunningService, ManualClock, Database]  # the service, its clock, the tests' connection


def is_alert(message: JSON) -> bool:
    return "SpO2 low" in message.get("text", "") and "edit_date" not in message


@pytest.fixture
async def service(
    bot_api: BotApiServer, mosquitto: Mosquitto, database: Path | str, tmp_path: Path
) -> AsyncIterator[Served]:
    clock = ManualClock(time.time())
    settings = settings_for(bot_api, database, tmp_path, mqtt_url=mosquitto.url)
    db = open_database(database)
    for patient_id in (PATIENT, OTHER_PATIENT):
        patients.add_patient(db, patient_id, f"Patient {patient_id}", clock())
    invitation = people.create_invitation(db, Role.DOCTOR, PATIENT, ADMIN, clock(), 3600)
    people.redeem_invitation(db, invitation.code, DOCTOR, "Dr Ada", DOCTOR, clock())
    async with running(settings, clock) as service:
        yield service, clock, db  # the tests look at the store through their own connection
    db.close()


async def say(api: BotApiServer, user_id: int, text: str) -> JSON:
    sent = api.send_text(user_id, text)
    return await api.wait_for_message(user_id, after=sent)


async def caregiver_joins(api: BotApiServer) -> None:
    await say(api, ADMIN, "/start")
    invitation = await say(api, DOCTOR, f"/invite caregiver {PATIENT}")
    code = re.search(r"start=(\S+)", invitation["text"]).group(1)
    assert "joined as caregiver" in (await say(api, CAREGIVER, f"/start {code}"))["text"]
    await api.wait_for_message(DOCTOR, lambda m: "joined as caregiver" in m.get("text", ""))


async def deteriorate(mosquitto_url: str, clock: ManualClock, settings_hold_s: float) -> None:
    """SpO2 falls to 85% and stays there longer than the rules' hold time."""
    port = int(mosquitto_url.rsplit(":", 1)[1])
    async with aiomqtt.Client("127.0.0.1", port) as client:
        for _ in range(int(settings_hold_s // 10) + 3):
            payload = {"ts": clock(), "spo2": 85.0, "hr": 104.0}
            await client.publish(vitals_topic("hemowatch", PATIENT), json.dumps(payload), qos=1)
            clock.advance(10)


def is_escalation(message: JSON) -> bool:
    return "⏫" in message.get("text", "") and "edit_date" not in message


async def test_a_caregiver_s_press_leaves_the_alert_escalating_until_the_doctor_acknowledges(
    bot_api: BotApiServer, mosquitto: Mosquitto, service: Served
) -> None:
    running_service, clock, db = service
    settings = running_service.application.bot_data["shared"].settings
    await caregiver_joins(bot_api)
    await deteriorate(mosquitto.url, clock, settings.rule_hold_s)

    alert_message = await bot_api.wait_for_message(CAREGIVER, is_alert, timeout=30)
    assert "SpO2 85%" in alert_message["text"]
    doctor_message = await bot_api.wait_for_message(DOCTOR, is_alert)
    (alert,) = alerts.open_alerts(db, PATIENT)
    button = alert_message["reply_markup"]["inline_keyboard"][0][0]["callback_data"]

    # the caregiver has seen it: every copy says so, and the doctors are still told, then the admins
    bot_api.press_button(CAREGIVER, alert_message, button)
    for user, message in ((CAREGIVER, alert_message), (DOCTOR, doctor_message)):
        await bot_api.wait_for_message(
            user, lambda m, i=message["message_id"]: m["message_id"] == i and "Seen by User 20 (caregiver)" in m["text"]
        )
    for level in (1, 2):
        clock.advance(settings.escalate_after_s)
        await running_service.monitor.escalate()
        assert alerts.get_alert(db, alert.id).escalation_level == level
    for user in (DOCTOR, ADMIN):
        await bot_api.wait_for_message(user, lambda m: is_escalation(m) and "Seen by User 20 (caregiver)" in m["text"])
    assert alerts.get_alert(db, alert.id).acknowledged_by is None
    await eventually(lambda: not outbox.pending_notices(db), 30, "the outbox to empty")
    assert [len([m for m in bot_api.history(user) if is_escalation(m)]) for user in (DOCTOR, ADMIN, CAREGIVER)] == [
        2, 1, 0
    ]

    # the doctor acknowledges: every copy, the escalations too, names them and loses its button
    bot_api.press_button(DOCTOR, doctor_message, button)
    copies = [m for user in (DOCTOR, ADMIN, CAREGIVER) for m in bot_api.history(user) if "edit_date" not in m
              and (is_alert(m) or is_escalation(m))]
    assert len(copies) == 5
    for copy in copies:
        chat, message_id = copy["chat"]["id"], copy["message_id"]
        await bot_api.wait_for_message(
            chat, lambda m, i=message_id: m["message_id"] == i and "Acknowledged by Dr Ada (doctor)" in m["text"]
        )
        assert "reply_markup" not in bot_api.message(chat, message_id)
    assert alerts.get_alert(db, alert.id).acknowledged_by == DOCTOR

    # acknowledged by a doctor: however long it stays open, it escalates no further
    for _ in range(3):
        clock.advance(settings.escalate_after_s)
        await running_service.monitor.escalate()
    assert alerts.get_alert(db, alert.id).escalation_level == 2
    history = [e.state for e in alerts.alert_events(db, alert.id) if e.state != "notified"]  # notified: any time
    assert history == ["raised", "seen", "escalated", "escalated", "acknowledged"]

    status = await say(bot_api, CAREGIVER, f"/status {PATIENT}")
    assert "SpO2 85%" in status["text"] and "SpO2 low" in status["text"]
    assert "acknowledged by Dr Ada (doctor)" in status["text"]
    trend = await bot_api.wait_for_message(CAREGIVER, lambda m: "photo" in m, after=status)
    assert "heart rate, SpO2 and blood pressure" in trend["caption"]
    refused = await say(bot_api, CAREGIVER, f"/status {OTHER_PATIENT}")
    assert "can't find patient ward-2" in refused["text"]


async def test_rate_limit_then_server_error_and_the_alert_arrives_once(
    bot_api: BotApiServer, mosquitto: Mosquitto, service: Served
) -> None:
    running_service, clock, db = service
    settings = running_service.application.bot_data["shared"].settings
    await caregiver_joins(bot_api)
    bot_api.fail_next("sendMessage", 429, retry_after=5)
    await deteriorate(mosquitto.url, clock, settings.rule_hold_s)
    await eventually(lambda: attempts(db) == 1, 30, "the outbox to defer the notice after 429")
    bot_api.fail_next("sendMessage", 500)
    clock.advance(600)  # past the retry time
    running_service.monitor.outbox.wake()
    await eventually(lambda: attempts(db) == 2, 30, "the outbox to defer the notice after 500")
    assert failed_sends(bot_api, 429) and failed_sends(bot_api, 500)
    clock.advance(600)
    running_service.monitor.outbox.wake()
    for user in (DOCTOR, CAREGIVER):
        await bot_api.wait_for_message(user, is_alert, timeout=30)
    await eventually(lambda: not outbox.pending_notices(db), 30, "the outbox to empty")
    for user in (DOCTOR, CAREGIVER):
        assert len([m for m in bot_api.history(user) if is_alert(m)]) == 1


def attempts(db: Database) -> int:
    """Failed delivery attempts of the (only) pending notice; 0 when none is pending."""
    return sum(entry.attempts for entry in outbox.pending_notices(db))


def failed_sends(api: BotApiServer, status: int) -> bool:
    return any(call.status == status for call in api.calls_to("sendMessage"))



async def test_vitals_are_stored_while_telegram_cannot_be_reached_and_the_bot_comes_up_later(
    bot_api: BotApiServer, mosquitto: Mosquitto, database: Path | str, tmp_path: Path
) -> None:
    settings = settings_for(bot_api, database, tmp_path, mqtt_url=mosquitto.url)
    db = open_database(database)
    patients.add_patient(db, PATIENT, "Patient", time.time())
    bot_api.fail_next("getMe", 500, count=1000)  # Telegram is down when the service starts
    stop = asyncio.Event()
    service = asyncio.create_task(serve(settings, stop))

    async with aiomqtt.Client("127.0.0.1", mosquitto.port) as device:  # a device sends until the monitor listens
        for _ in range(120):
            sample = {"ts": time.time(), "hr": 72}
            await device.publish(vitals_topic("hemowatch", PATIENT), json.dumps(sample), qos=1)
            if vitals.latest_vitals(db, PATIENT) is not None:
                break
            await asyncio.sleep(0.25)
    assert vitals.latest_vitals(db, PATIENT) is not None, "no sample stored while Telegram was down"
    assert bot_api.calls_to("getMe") and all(call.status == 500 for call in bot_api.calls_to("getMe"))
    assert not service.done()

    bot_api.fail_next("getMe", 500, count=1)  # one more failure, then Telegram answers again
    sent = bot_api.send_text(ADMIN, "/help")
    assert "/status" in (await bot_api.wait_for_message(ADMIN, after=sent, timeout=60))["text"]
    stop.set()
    await asyncio.wait_for(service, 30)
    db.close()


async def test_a_stop_while_telegram_cannot_be_reached_ends_the_service(
    bot_api: BotApiServer, mosquitto: Mosquitto, database: Path | str, tmp_path: Path
) -> None:
    bot_api.fail_next("getMe", 500, count=1000)
    stop = asyncio.Event()
    service = asyncio.create_task(serve(settings_for(bot_api, database, tmp_path, mqtt_url=mosquitto.url), stop))
    await eventually(lambda: len(bot_api.calls_to("getMe")) >= 2, 30, "a second attempt to reach Telegram")
    stop.set()
    await asyncio.wait_for(service, 30)
