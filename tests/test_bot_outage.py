"""Telegram failing in every way but a refused token never ends the service (`hemowatch.wiring.serve` with a real
mosquitto and the local Bot API server): vitals are stored, the alert arrives once Telegram recovers, and the
log says what happened in one line per failure, without a traceback."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from pathlib import Path

import aiomqtt
import pytest
from botworld import ADMIN, settings_for

from core.roles import Role
from hemowatch.wiring import serve
from localbotapi import JSON, BotApiServer
from monitor.mqtt import vitals_topic
from store import open_database, patients, people, vitals
from testsupport.broker import Mosquitto
from testsupport.waiting import eventually

DOCTOR = 10
PATIENT = "ward-1"
pytestmark = pytest.mark.timeout(120)


def is_alert(message: JSON) -> bool:
    return "SpO2 low" in message.get("text", "") and "edit_date" not in message


async def test_server_errors_at_start_up_and_while_polling_end_nothing(
    bot_api: BotApiServer, mosquitto: Mosquitto, database: Path | str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    settings = settings_for(bot_api, database, tmp_path, mqtt_url=mosquitto.url, rule_hold_s=0)
    db = open_database(database)
    patients.add_patient(db, PATIENT, "Patient", time.time())
    invitation = people.create_invitation(db, Role.DOCTOR, PATIENT, ADMIN, time.time(), 3600)
    people.redeem_invitation(db, invitation.code, DOCTOR, "Dr Ada", DOCTOR, time.time())
    asked = bot_api.send_text(DOCTOR, "/help")  # waits at Telegram until the bot can poll

    bot_api.fail_next("getMe", 500, count=2)  # the token check fails twice, then passes
    bot_api.fail_next("setMyCommands", 500, count=2)
    bot_api.fail_next("getUpdates", 500, count=3)  # the first polls fail, however long start-up took
    stop = asyncio.Event()
    service = asyncio.create_task(serve(settings, stop))
    try:
        await eventually(lambda: "subscribed to" in caplog.text, 30, "the monitor to subscribe")
        await bot_api.wait_for_message(DOCTOR, lambda m: "/status" in m.get("text", ""), after=asked, timeout=60)
        bot_api.fail_next("sendMessage", 500)  # the alert's first try fails
        port = int(mosquitto.url.rsplit(":", 1)[1])
        async with aiomqtt.Client("127.0.0.1", port) as device:  # SpO2 85%: an alert at once (no hold time)
            sample = {"ts": time.time(), "spo2": 85.0, "hr": 104.0}
            await device.publish(vitals_topic("hemowatch", PATIENT), json.dumps(sample), qos=1)
        await eventually(lambda: vitals.latest_vitals(db, PATIENT) is not None, 30, "vitals to be stored")

        alert = await bot_api.wait_for_message(DOCTOR, is_alert, timeout=60)
        assert "SpO2 85%" in alert["text"]
        await eventually(lambda: bot_api.commands, 60, "the command menu to be registered once Telegram recovers")
        assert not service.done()
    finally:
        stop.set()
        await asyncio.wait_for(service, 30)
        db.close()

    for method in ("getMe", "setMyCommands", "getUpdates", "sendMessage"):
        assert any(call.status == 500 for call in bot_api.calls_to(method)), method
        assert bot_api.calls_to(method)[-1].status == 200, method
    assert len([m for m in bot_api.history(DOCTOR) if is_alert(m)]) == 1
    records = [record for record in caplog.records if record.levelno >= logging.WARNING]
    assert not [record for record in records if record.exc_info], "a traceback was logged"
    assert all("\n" not in record.getMessage() for record in records)
    failures = [record.getMessage() for record in records if "Telegram failed" in record.getMessage()]
    assert sum("getMe" in line for line in failures) == 2
    assert any("setMyCommands" in line for line in failures)
    assert any("getUpdates" in line for line in failures)
    assert any("deferred (Telegram unavailable" in record.getMessage() for record in caplog.records)


async def test_a_rate_limit_on_the_token_check_is_waited_out(
    bot_api: BotApiServer, mosquitto: Mosquitto, database: Path | str, tmp_path: Path
) -> None:
    bot_api.fail_next("getMe", 429, retry_after=1)
    stop = asyncio.Event()
    service = asyncio.create_task(serve(settings_for(bot_api, database, tmp_path, mqtt_url=mosquitto.url), stop))
    try:
        sent = bot_api.send_text(ADMIN, "/help")
        assert "/status" in (await bot_api.wait_for_message(ADMIN, after=sent, timeout=30))["text"]
    finally:
        stop.set()
        await asyncio.wait_for(service, 30)
    assert [call.status for call in bot_api.calls_to("getMe")][:2] == [429, 200]
